//! The devices service's command handlers.

use std::sync::Arc;

use chrono::Duration;
use gatehouse_bus::CommandRouter;
use gatehouse_bus::host::{ServiceContext, Task, WriteSide};
use gatehouse_contracts::clock::Clock;
use gatehouse_contracts::commands::{Accepted, Command, CommandEnvelope, Failure, FailureKind};
use gatehouse_contracts::devices::{
    DEVICE_VIEW, DecideDevice, DeleteDevice, DeviceAuthorizationIssued, DeviceDecision,
    DeviceRedeemed, DeviceView, DeviceViewer, FindPendingDevice, RedeemDeviceCode,
    RequestDeviceAuthorization, SetDeviceLock, USER_CODE_ALPHABET, USER_CODE_LEN, USER_CODE_SCOPE,
    device_stream, normalize_user_code,
};
use gatehouse_contracts::envelope::StreamId;
use gatehouse_contracts::failures::{CommonFailure, DevicesFailure};
use gatehouse_contracts::ids::DeviceId;
use gatehouse_eventlog::sweep::{list_all, run_every};
use gatehouse_eventlog::writer::{require_caller, store_failure};
use gatehouse_eventlog::{CommandWriter, EventStore, Extras, UniqueClaim, ViewStore};
use gatehouse_secrets::{BusSealer, MasterKey, SealedSecret};
use gatehouse_tokens::{DEVICE_CODE_FORMAT, DeviceCodes};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

use crate::domain::{self, DeviceLifetimes, DeviceState, FlowSettings, PollRefusal, Rejection};

/// New user codes drawn when one collides with a held claim (odds ~2^-34 each).
pub const USER_CODE_ATTEMPTS: usize = 5;

/// The longest authorization lifetime and polling interval the settings accept.
const MAX_AUTHORIZATION_TTL: u64 = 24 * 3600;
const MAX_POLL_INTERVAL: u32 = 300;
/// The longest device token lifetime the settings accept (10 years, like API keys).
const MAX_TOKEN_TTL: u64 = 10 * 366 * 24 * 3600;

/// Where user codes come from: [`generate_user_code`] unless a test injects its own.
pub type UserCodeGenerator = Arc<dyn Fn() -> String + Send + Sync>;

/// A random user code: [`USER_CODE_LEN`] characters of the RFC 8628 base-20 alphabet, drawn
/// without modulo bias.
pub fn generate_user_code() -> String {
    let mut code = String::with_capacity(USER_CODE_LEN);
    let mut rng = rand::rngs::OsRng;
    while code.len() < USER_CODE_LEN {
        let byte = (rng.next_u32() & 0xff) as u8;
        // 240 = 12 × 20: bytes above it would favour the first letters.
        if byte < 240 {
            code.push(char::from(USER_CODE_ALPHABET[usize::from(byte % 20)]));
        }
    }
    code
}

/// The devices service's write side: its commands, and the sweeper that records lapsed
/// authorizations.
pub fn write_side(ctx: &ServiceContext<'_>, settings: &DeviceSettings) -> WriteSide {
    let service = DevicesService::new(
        ctx.log.clone(),
        ctx.master,
        ctx.clock.clone(),
        settings.clone(),
    );
    tracing::info!(settings = ?service.settings(), "devices service settings");
    let sweeper = service.clone().run_lapse_sweeper(
        ctx.views.clone(),
        service.lapse_sweep_interval(),
        ctx.shutdown.clone(),
    );
    WriteSide {
        service: "devices",
        router: service.router(),
        tasks: vec![Task::infallible("lapse sweeper", sweeper)],
    }
}

/// Settings of the device flow, as flags and environment variables. Flatten it into a
/// command line (`#[command(flatten)]`) to offer the same options everywhere.
#[derive(Clone, Debug, clap::Args)]
pub struct DeviceSettings {
    /// Seconds a device authorization waits for approval and redemption (at most a day).
    #[arg(
        long,
        env = "GATEHOUSE_DEVICE_AUTHORIZATION_TTL",
        default_value_t = 600,
        value_parser = clap::value_parser!(u64).range(1..=MAX_AUTHORIZATION_TTL)
    )]
    pub device_authorization_ttl: u64,
    /// Seconds between polls a device is first allowed (grows by 5 on each slow_down).
    #[arg(
        long,
        env = "GATEHOUSE_DEVICE_POLL_INTERVAL",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_POLL_INTERVAL))
    )]
    pub device_poll_interval: u32,
    /// Lifetime in seconds of tokens of devices not marked trusted.
    #[arg(
        long,
        env = "GATEHOUSE_DEVICE_TOKEN_TTL",
        default_value_t = 24 * 3600,
        value_parser = clap::value_parser!(u64).range(1..=MAX_TOKEN_TTL)
    )]
    pub device_token_ttl: u64,
    /// Lifetime in seconds of tokens of trusted devices.
    #[arg(
        long,
        env = "GATEHOUSE_TRUSTED_DEVICE_TOKEN_TTL",
        default_value_t = 30 * 24 * 3600,
        value_parser = clap::value_parser!(u64).range(1..=MAX_TOKEN_TTL)
    )]
    pub trusted_device_token_ttl: u64,
    /// Seconds between sweeps that record requests nobody decided on as lapsed
    /// (`device.authorization_lapsed`), releasing their user codes.
    #[arg(
        long,
        env = "GATEHOUSE_DEVICE_LAPSE_SWEEP_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub device_lapse_sweep_seconds: u64,
    /// Seconds after its expiry that an undecided request is recorded as lapsed. Until then
    /// its device code still gets `expired_token` (gateways forget it on the event), for
    /// clients that poll past `expires_in`.
    #[arg(
        long,
        env = "GATEHOUSE_DEVICE_LAPSE_GRACE_SECONDS",
        default_value_t = 600,
        value_parser = clap::value_parser!(u64).range(0..=MAX_AUTHORIZATION_TTL)
    )]
    pub device_lapse_grace_seconds: u64,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        Self {
            device_authorization_ttl: 600,
            device_poll_interval: 5,
            device_token_ttl: 24 * 3600,
            trusted_device_token_ttl: 30 * 24 * 3600,
            device_lapse_sweep_seconds: 60,
            device_lapse_grace_seconds: 600,
        }
    }
}

/// `value` seconds, kept within `1..=max` (settings built in code skip clap's checks, and
/// an unbounded lifetime would overflow the time arithmetic).
fn seconds(value: u64, max: u64) -> Duration {
    Duration::seconds(i64::try_from(value.clamp(1, max)).unwrap_or(1))
}

impl DeviceSettings {
    /// The flow settings.
    pub fn flow(&self) -> FlowSettings {
        FlowSettings {
            authorization_ttl: seconds(self.device_authorization_ttl, MAX_AUTHORIZATION_TTL),
            interval_seconds: self.device_poll_interval.clamp(1, MAX_POLL_INTERVAL),
        }
    }

    /// How long after its expiry an undecided request is recorded as lapsed.
    pub fn lapse_grace(&self) -> Duration {
        Duration::seconds(
            i64::try_from(self.device_lapse_grace_seconds.min(MAX_AUTHORIZATION_TTL)).unwrap_or(0),
        )
    }

    /// The token lifetimes.
    pub fn lifetimes(&self) -> DeviceLifetimes {
        DeviceLifetimes {
            untrusted: seconds(self.device_token_ttl, MAX_TOKEN_TTL),
            trusted: seconds(self.trusted_device_token_ttl, MAX_TOKEN_TTL),
        }
    }
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        let message = r.to_string();
        match r {
            Rejection::NotFound => {
                Failure::new(FailureKind::NotFound, CommonFailure::NotFound, message)
            }
            Rejection::NotPending => Failure::new(
                FailureKind::NotFound,
                DevicesFailure::InvalidUserCode,
                message,
            ),
            Rejection::Invalid(_) => {
                Failure::new(FailureKind::Invalid, CommonFailure::Invalid, message)
            }
        }
    }
}

/// Frees whatever user code the appending device stream holds (its value is a keyed hash
/// of a code the service no longer knows).
fn release_user_code() -> UniqueClaim {
    UniqueClaim::ReleaseAll {
        scope: USER_CODE_SCOPE.into(),
    }
}

/// The one answer for a user code that matches nothing usable: it never says whether
/// the code exists.
fn invalid_user_code() -> Failure {
    Failure::new(
        FailureKind::NotFound,
        DevicesFailure::InvalidUserCode,
        "this code is not valid: check it, or start the login on the device again",
    )
}

fn poll_refusal(refusal: PollRefusal) -> Failure {
    let (code, message) = match refusal {
        PollRefusal::AuthorizationPending => (
            DevicesFailure::AuthorizationPending,
            "the authorization is still pending",
        ),
        PollRefusal::AccessDenied => (DevicesFailure::AccessDenied, "the authorization was denied"),
        PollRefusal::ExpiredToken => (DevicesFailure::ExpiredToken, "the device code has expired"),
        PollRefusal::InvalidGrant => (
            DevicesFailure::InvalidGrant,
            "the device code is invalid or was already used",
        ),
    };
    Failure::new(FailureKind::Invalid, code, message)
}

/// The devices service.
#[derive(Clone)]
pub struct DevicesService {
    writer: CommandWriter,
    sealer: Arc<BusSealer>,
    codes: Arc<DeviceCodes>,
    settings: DeviceSettings,
    user_codes: UserCodeGenerator,
}

impl std::fmt::Debug for DevicesService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevicesService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl DevicesService {
    /// A service over `store`; code keys are derived from `master`.
    pub fn new(
        store: Arc<dyn EventStore>,
        master: &MasterKey,
        clock: Arc<dyn Clock>,
        settings: DeviceSettings,
    ) -> Self {
        Self {
            writer: CommandWriter::new(store, clock),
            sealer: Arc::new(BusSealer::new(master)),
            codes: Arc::new(DeviceCodes::new(master)),
            settings,
            user_codes: Arc::new(generate_user_code),
        }
    }

    /// The same service drawing user codes from `generator` (tests: collisions).
    pub fn with_user_code_generator(mut self, generator: UserCodeGenerator) -> Self {
        self.user_codes = generator;
        self
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &DeviceSettings {
        &self.settings
    }

    /// The bus router for every devices command.
    pub fn router(&self) -> CommandRouter {
        CommandRouter::new()
            .route::<RequestDeviceAuthorization, _, _, _>(self, |s, env| async move {
                s.request(env).await
            })
            .route::<FindPendingDevice, _, _, _>(
                self,
                |s, env| async move { s.find_pending(env).await },
            )
            .route::<DecideDevice, _, _, _>(self, |s, env| async move { s.decide(env).await })
            .route::<RedeemDeviceCode, _, _, _>(self, |s, env| async move { s.redeem(env).await })
            .route::<SetDeviceLock, _, _, _>(self, |s, env| async move { s.set_lock(env).await })
            .route::<DeleteDevice, _, _, _>(self, |s, env| async move { s.delete(env).await })
    }

    /// Starts an authorization: a device code (sealed for the gateway, hashed in the
    /// event) and a user code (claimed, as a keyed hash, until a person decides).
    #[tracing::instrument(skip_all)]
    pub async fn request(
        &self,
        env: CommandEnvelope<RequestDeviceAuthorization>,
    ) -> Result<Accepted<DeviceAuthorizationIssued>, Failure> {
        let c = &env.command;
        let id = DeviceId::new();
        let code = DEVICE_CODE_FORMAT.generate(id.as_uuid());
        let hash = self.codes.device_code_hash(id.as_uuid(), &code.secret);
        let sealed = self.seal(
            &code.full,
            &RequestDeviceAuthorization::seal_context("device_code"),
        )?;
        let now = self.writer.clock().now();
        let flow = self.settings.flow();
        let events = domain::request(
            &DeviceState::Absent,
            &c.client_id,
            c.scope.clone(),
            c.metadata.clone(),
            hash,
            flow,
            now,
        )?;
        for _ in 0..USER_CODE_ATTEMPTS {
            let user_code = (self.user_codes)();
            // A generator must only produce codes a person can type back.
            if normalize_user_code(&user_code).as_deref() != Some(user_code.as_str()) {
                tracing::error!("the user-code generator produced an invalid code");
                return Err(Failure::new(
                    FailureKind::Internal,
                    DevicesFailure::InvalidUserCodeGenerated,
                    "a user code cannot be issued",
                ));
            }
            let extras = Extras {
                claims: vec![UniqueClaim::Claim {
                    scope: USER_CODE_SCOPE.into(),
                    value: self.codes.user_code_claim(&user_code),
                }],
                secrets: vec![],
            };
            let output = DeviceAuthorizationIssued {
                device_id: id,
                device_code: sealed.clone(),
                user_code,
                expires_at: now + flow.authorization_ttl,
                interval_seconds: flow.interval_seconds,
            };
            let created = self
                .writer
                .create(
                    device_stream(id),
                    events.clone(),
                    extras,
                    &env.metadata,
                    None,
                    output,
                    || {
                        Failure::new(
                            FailureKind::Conflict,
                            DevicesFailure::UserCodeTaken,
                            "user code taken",
                        )
                    },
                )
                .await;
            match created {
                Err(f) if f.is(&DevicesFailure::UserCodeTaken) => {
                    tracing::debug!("user code collision; drawing another");
                    continue;
                }
                other => return other,
            }
        }
        Err(Failure::new(
            FailureKind::Unavailable,
            DevicesFailure::UserCodesExhausted,
            "no free user code was found; try again",
        ))
    }

    /// The stream whose pending authorization holds `typed`, if any.
    async fn pending_stream(&self, typed: &str) -> Result<(StreamId, String), Failure> {
        let normalized = normalize_user_code(typed).ok_or_else(invalid_user_code)?;
        let claim = self.codes.user_code_claim(&normalized);
        let holder = self
            .writer
            .store()
            .claim_holder(USER_CODE_SCOPE, &claim)
            .await
            .map_err(|e| store_failure(&e))?
            .ok_or_else(invalid_user_code)?;
        Ok((holder, claim))
    }

    /// Finds the pending authorization a person typed the code of.
    #[tracing::instrument(skip_all)]
    pub async fn find_pending(
        &self,
        env: CommandEnvelope<FindPendingDevice>,
    ) -> Result<Accepted<DeviceId>, Failure> {
        require_caller(env.caller.clone())?;
        let (stream_id, _) = self.pending_stream(&env.command.user_code).await?;
        let (state, _) = self.writer.load::<DeviceState>(&stream_id).await?;
        let now = self.writer.clock().now();
        match (state.device(), stream_id.id()) {
            (Some(device), Some(id))
                if device.status(now) == gatehouse_contracts::devices::DeviceStatus::Pending =>
            {
                Ok(Accepted {
                    written: None,
                    output: DeviceId::from_uuid(id),
                })
            }
            _ => Err(invalid_user_code()),
        }
    }

    /// A person approves or denies; the user code is released with the decision.
    #[tracing::instrument(skip_all)]
    pub async fn decide(
        &self,
        env: CommandEnvelope<DecideDevice>,
    ) -> Result<Accepted<DeviceId>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let Some(user) = caller.user_id() else {
            return Err(Failure::new(
                FailureKind::Forbidden,
                CommonFailure::Forbidden,
                "only a person can approve a device",
            ));
        };
        let (stream_id, claim) = self.pending_stream(&env.command.user_code).await?;
        let id = stream_id
            .id()
            .map(DeviceId::from_uuid)
            .ok_or_else(invalid_user_code)?;
        let now = self.writer.clock().now();
        let decision = env.command.decision;
        self.writer
            .update_with_retry::<DeviceState, _, _, _>(stream_id, &env.metadata, |state| {
                let events = match decision {
                    DeviceDecision::Approve { trusted } => {
                        domain::verify(state, user, trusted, now)
                    }
                    DeviceDecision::Deny => domain::deny(state, user, now),
                }
                .map_err(|_| invalid_user_code())?;
                let claims = vec![UniqueClaim::Release {
                    scope: USER_CODE_SCOPE.into(),
                    value: claim.clone(),
                }];
                Ok::<_, Failure>((
                    events,
                    Extras {
                        claims,
                        secrets: vec![],
                    },
                    id,
                ))
            })
            .await
    }

    /// The device redeems its code once a person approved it.
    #[tracing::instrument(skip_all)]
    pub async fn redeem(
        &self,
        env: CommandEnvelope<RedeemDeviceCode>,
    ) -> Result<Accepted<DeviceRedeemed>, Failure> {
        let code = self
            .sealer
            .open(
                &env.command.device_code,
                &RedeemDeviceCode::seal_context("device_code"),
            )
            .map_err(|_| poll_refusal(PollRefusal::InvalidGrant))?;
        let parsed = DEVICE_CODE_FORMAT
            .parse(code.expose_secret())
            .map_err(|_| poll_refusal(PollRefusal::InvalidGrant))?;
        let id = DeviceId::from_uuid(parsed.key_id);
        let now = self.writer.clock().now();
        let lifetimes = self.settings.lifetimes();
        let codes = self.codes.clone();
        self.writer
            .update_with_retry::<DeviceState, _, _, _>(device_stream(id), &env.metadata, |state| {
                let device = state
                    .device()
                    .filter(|d| codes.check_device_code(code.expose_secret(), &d.device_code_hash))
                    .ok_or_else(|| poll_refusal(PollRefusal::InvalidGrant))?;
                let events = domain::redeem(state, lifetimes, now).map_err(poll_refusal)?;
                let token_expires_at = match events.first() {
                    Some(gatehouse_contracts::devices::DeviceEvent::Activated(e)) => {
                        e.token_expires_at
                    }
                    _ => return Err(poll_refusal(PollRefusal::InvalidGrant)),
                };
                let owner = device
                    .facts
                    .owner
                    .ok_or_else(|| poll_refusal(PollRefusal::InvalidGrant))?;
                let output = DeviceRedeemed {
                    device_id: id,
                    owner,
                    trusted: device.facts.trusted,
                    token_expires_at,
                };
                Ok::<_, Failure>((events, Extras::default(), output))
            })
            .await
    }

    /// Locks or unlocks a device.
    #[tracing::instrument(skip_all, fields(id = %env.command.id))]
    pub async fn set_lock(
        &self,
        env: CommandEnvelope<SetDeviceLock>,
    ) -> Result<Accepted<()>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let actor = DeviceViewer::of(&caller);
        let now = self.writer.clock().now();
        let locked = env.command.locked;
        self.writer
            .update_with_retry::<DeviceState, _, _, _>(
                device_stream(env.command.id),
                &env.metadata,
                |state| {
                    let events = if locked {
                        domain::lock(state, &actor, now)
                    } else {
                        domain::unlock(state, &actor, now)
                    }?;
                    Ok::<_, Rejection>((events, Extras::default(), ()))
                },
            )
            .await
    }

    /// Deletes a device.
    #[tracing::instrument(skip_all, fields(id = %env.command.id))]
    pub async fn delete(
        &self,
        env: CommandEnvelope<DeleteDevice>,
    ) -> Result<Accepted<()>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let actor = DeviceViewer::of(&caller);
        self.writer
            .update_with_retry::<DeviceState, _, _, _>(
                device_stream(env.command.id),
                &env.metadata,
                |state| {
                    // A pending request still holds its user code: free it with the device.
                    let extras = Extras {
                        claims: vec![release_user_code()],
                        secrets: vec![],
                    };
                    Ok::<_, Rejection>((domain::delete(state, &actor)?, extras, ()))
                },
            )
            .await
    }

    /// Records the lapse of request `id` if nobody decided on it and the lapse grace has
    /// passed since its expiry, releasing its user code; writes nothing otherwise.
    pub async fn record_lapse(&self, id: DeviceId) -> Result<Accepted<()>, Failure> {
        let now = self.writer.clock().now();
        let grace = self.settings.lapse_grace();
        let metadata = gatehouse_contracts::EventMetadata {
            actor: Some(gatehouse_contracts::Actor::system()),
            ..Default::default()
        };
        self.writer
            .update_with_retry::<DeviceState, _, _, _>(device_stream(id), &metadata, |state| {
                let extras = Extras {
                    claims: vec![release_user_code()],
                    secrets: vec![],
                };
                Ok::<_, Failure>((domain::lapse(state, now, grace), extras, ()))
            })
            .await
    }

    /// How often [`Self::run_lapse_sweeper`] should sweep (from the settings).
    pub fn lapse_sweep_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.settings.device_lapse_sweep_seconds.clamp(1, 3600))
    }

    /// Records lapses every `interval` until `shutdown`. Requests lapse at their expiry
    /// regardless; this releases the user codes they hold and lets gateways forget them.
    /// Safe to run in several replicas: recording a lapse twice appends nothing.
    pub async fn run_lapse_sweeper(
        self,
        views: Arc<dyn ViewStore>,
        interval: std::time::Duration,
        shutdown: watch::Receiver<bool>,
    ) {
        run_every("device lapses", interval, shutdown, || {
            self.sweep(views.as_ref())
        })
        .await;
    }

    /// One sweep; returns how many lapses were recorded.
    pub async fn sweep(&self, views: &dyn ViewStore) -> anyhow::Result<usize> {
        let due_before = self.writer.clock().now() - self.settings.lapse_grace();
        let awaiting = vec![("awaiting_decision".into(), serde_json::Value::Bool(true))];
        let mut recorded = 0;
        for doc in list_all(views, DEVICE_VIEW, awaiting).await? {
            let view: DeviceView = serde_json::from_value(doc.doc)?;
            if view.facts.expires_at > due_before {
                continue;
            }
            match self.record_lapse(view.id).await {
                Ok(a) if a.written.is_some() => recorded += 1,
                Ok(_) => {}
                Err(f) => {
                    tracing::warn!(device = %view.id, failure = %f, "recording a lapse failed")
                }
            }
        }
        Ok(recorded)
    }

    fn seal(&self, code: &SecretString, context: &str) -> Result<SealedSecret, Failure> {
        self.sealer.seal(code, context).map_err(|e| {
            tracing::error!(error = %e, "sealing a device code failed");
            Failure::new(
                FailureKind::Internal,
                DevicesFailure::SealingFailed,
                "the code cannot be sent",
            )
        })
    }
}
