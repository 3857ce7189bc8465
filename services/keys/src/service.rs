//! The keys service's command handlers.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_bus::CommandRouter;
use gatehouse_bus::host::{ServiceContext, Task, WriteSide};
use gatehouse_contracts::clock::Clock;
use gatehouse_contracts::commands::{
    Accepted, Caller, Command, CommandEnvelope, Failure, FailureKind,
};
use gatehouse_contracts::envelope::StreamId;
use gatehouse_contracts::events::DomainEvent as _;
use gatehouse_contracts::failures::{CommonFailure, KeysFailure};
use gatehouse_contracts::identity::{AccountOwner, ServiceAccountEvent};
use gatehouse_contracts::ids::ApiKeyId;
use gatehouse_contracts::ids::ServiceAccountId;
use gatehouse_contracts::keys::{
    API_KEY_NAME_SCOPE, API_KEY_VIEW, ApiKeyView, AuthenticateApiKey, AuthenticatedKey,
    CreateApiKey, DeleteApiKey, ExpireApiKey, IssuedKey, KeyRefusal, KeyWithSecret, RotateApiKey,
    UpdateApiKey, api_key_name_claim, api_key_stream,
};
use gatehouse_eventlog::sweep::{list_all, run_every};
use gatehouse_eventlog::writer::{create_failure, require_caller, store_failure};
use gatehouse_eventlog::{
    Aggregate, AppendError, CommandWriter, EventStore, Extras, Idempotency, SecretOp, UniqueClaim,
    ViewStore,
};
use gatehouse_secrets::{BusSealer, MasterKey, SealedSecret};
use gatehouse_tokens::{ApiKeyHash, ApiKeyHasher, generate_api_key, parse_api_key};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::domain::{self, ApiKey, KeyChanges, Rejection};
use gatehouse_readmodels::keys::ApiKeyProjection;

/// The secret slot holding the hashes of a key's live generations.
const HASHES_SLOT: &str = "secret_hashes";
/// The master-key purpose the hashing pepper is derived for.
const PEPPER_PURPOSE: &str = "gatehouse/api-key-pepper/v1";
/// Rotations of one key race each other; each retry reloads the stream and the slot.
const MAX_ROTATE_ATTEMPTS: usize = 50;
/// The longest a sealed answer may be kept (seconds): a week.
const MAX_REPLAY_SECONDS: u64 = 7 * 86_400;

/// How long a kept API-key answer is replayed by default (a day).
const DEFAULT_REPLAY_SECONDS: u64 = 86_400;

/// Settings of the keys service, as flags and environment variables. Flatten it into a
/// command line (`#[command(flatten)]`) to offer the same options everywhere.
#[derive(Clone, Debug, clap::Args)]
pub struct KeySettings {
    /// Seconds the sealed answer to creating an API key with an `Idempotency-Key` is
    /// kept, so that a retry gets the same key again (at most a week).
    #[arg(
        long,
        env = "GATEHOUSE_API_KEY_REPLAY_SECONDS",
        default_value_t = DEFAULT_REPLAY_SECONDS,
        value_parser = clap::value_parser!(u64).range(1..=MAX_REPLAY_SECONDS)
    )]
    pub api_key_replay_seconds: u64,
    /// Seconds between sweeps that record reached API key expiries as events.
    #[arg(long, env = "GATEHOUSE_KEY_EXPIRY_SWEEP_SECONDS", default_value_t = 5)]
    pub expiry_sweep_seconds: u64,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            api_key_replay_seconds: DEFAULT_REPLAY_SECONDS,
            expiry_sweep_seconds: 5,
        }
    }
}

/// The keys service's write side: its commands, and the sweeper that records expiries.
pub fn write_side(ctx: &ServiceContext<'_>, settings: &KeySettings) -> WriteSide {
    let service =
        KeysService::new(ctx.log.clone(), ctx.master, ctx.clock.clone()).with_settings(settings);
    let sweeper = service.clone().run_expiry_sweeper(
        ctx.views.clone(),
        Duration::from_secs(settings.expiry_sweep_seconds.max(1)),
        ctx.shutdown.clone(),
    );
    WriteSide {
        service: "keys",
        router: service.router(),
        tasks: vec![Task::infallible("expiry sweeper", sweeper)],
    }
}

/// How many retired secrets' hashes a key keeps beside its live ones. A retired secret's
/// keyed hash is what tells "this secret was rotated away" (401 `api_key_rotated`, with the
/// fix) from "no such secret" (`invalid`), also when it was retired at once (`retain 0`).
/// Keeping it is safe: an HMAC, under a server-side pepper, of 256 random bits.
const RETIRED_HASHES_KEPT: usize = 8;

/// The hashes a rotation keeps: every live generation's, and the newest
/// [`RETIRED_HASHES_KEPT`] retired ones.
fn kept_hashes(mut stored: Vec<StoredHash>, live: &[u32]) -> Vec<StoredHash> {
    stored.sort_by_key(|h| std::cmp::Reverse(h.generation));
    let mut retired = 0;
    stored.retain(|h| {
        live.contains(&h.generation) || {
            retired += 1;
            retired <= RETIRED_HASHES_KEPT
        }
    });
    stored
}

/// The hash of one generation's secret, as stored in [`HASHES_SLOT`].
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredHash {
    generation: u32,
    hash: ApiKeyHash,
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        let message = r.to_string();
        match r {
            Rejection::NotFound | Rejection::AccountNotFound => {
                Failure::new(FailureKind::NotFound, CommonFailure::NotFound, message)
            }
            Rejection::Invalid(_) => {
                Failure::new(FailureKind::Invalid, CommonFailure::Invalid, message)
            }
        }
    }
}

/// A service account's owner, folded from the identity service's events: what the keys
/// service needs to decide who may manage the account's keys ([`domain::authorize`]).
#[derive(Debug, Default)]
struct AccountAuthority(AccountOwner);

impl Aggregate for AccountAuthority {
    type Event = ServiceAccountEvent;
    fn evolve(self, event: &ServiceAccountEvent) -> Self {
        AccountAuthority(self.0.evolve(event))
    }
}

/// Why a presented key is refused; the code tells the client what to do.
fn refused(refusal: Option<KeyRefusal>) -> Failure {
    let (code, message) = match refusal {
        None | Some(KeyRefusal::Revoked) => (KeysFailure::InvalidKey, "invalid API key".to_owned()),
        Some(r @ KeyRefusal::Deactivated) => (KeysFailure::KeyDeactivated, r.to_string()),
        Some(r @ KeyRefusal::Expired) => (KeysFailure::KeyExpired, r.to_string()),
        Some(r @ KeyRefusal::Rotated) => (KeysFailure::KeyRotated, r.to_string()),
    };
    Failure::new(FailureKind::Unauthenticated, code, message)
}

/// The keys service.
#[derive(Clone)]
pub struct KeysService {
    writer: CommandWriter,
    sealer: Arc<BusSealer>,
    hasher: Arc<ApiKeyHasher>,
    replay_window: chrono::Duration,
}

impl std::fmt::Debug for KeysService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeysService").finish_non_exhaustive()
    }
}

impl KeysService {
    /// A service over `store`; the hashing pepper is derived from `master`.
    pub fn new(store: Arc<dyn EventStore>, master: &MasterKey, clock: Arc<dyn Clock>) -> Self {
        let pepper = *master.derive_key(PEPPER_PURPOSE).expose();
        Self {
            writer: CommandWriter::new(store, clock),
            sealer: Arc::new(BusSealer::new(master)),
            hasher: Arc::new(ApiKeyHasher::new(pepper)),
            replay_window: Self::replay_window(&KeySettings::default()),
        }
    }

    /// Applies `settings`: how long the sealed answer to a create with an idempotency key
    /// is kept (a retry within the window gets the same key again; a later one is a new
    /// request, 409 while the name is taken).
    pub fn with_settings(mut self, settings: &KeySettings) -> Self {
        self.replay_window = Self::replay_window(settings);
        self
    }

    fn replay_window(settings: &KeySettings) -> chrono::Duration {
        let seconds = settings.api_key_replay_seconds.clamp(1, MAX_REPLAY_SECONDS);
        chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(86_400))
    }

    /// The bus router for every keys command.
    pub fn router(&self) -> CommandRouter {
        CommandRouter::new()
            .route::<CreateApiKey, _, _, _>(
                self,
                |s, env| async move { s.create_api_key(env).await },
            )
            .route::<RotateApiKey, _, _, _>(
                self,
                |s, env| async move { s.rotate_api_key(env).await },
            )
            .route::<UpdateApiKey, _, _, _>(
                self,
                |s, env| async move { s.update_api_key(env).await },
            )
            .route::<DeleteApiKey, _, _, _>(
                self,
                |s, env| async move { s.delete_api_key(env).await },
            )
            .route::<ExpireApiKey, _, _, _>(
                self,
                |s, env| async move { s.expire_api_key(env).await },
            )
            .route::<AuthenticateApiKey, _, _, _>(self, |s, env| async move {
                s.authenticate_api_key(env).await
            })
    }

    fn seal_reply<C: Command>(&self, key: &SecretString) -> Result<SealedSecret, Failure> {
        self.sealer
            .seal(key, &C::seal_context("reply"))
            .map_err(|e| {
                tracing::error!(error = %e, "sealing a new key failed");
                Failure::new(
                    FailureKind::Internal,
                    KeysFailure::SealingFailed,
                    "the key cannot be sent",
                )
            })
    }

    async fn stored_hashes(&self, stream_id: &StreamId) -> Result<Vec<StoredHash>, Failure> {
        let bytes = self
            .writer
            .store()
            .read_secret(stream_id, HASHES_SLOT)
            .await
            .map_err(|e| store_failure(&e))?;
        Ok(bytes
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    /// The caller, when it may manage the keys of `account` ([`domain::authorize`]).
    async fn authorize(
        &self,
        caller: Option<Caller>,
        account: ServiceAccountId,
    ) -> Result<Caller, Failure> {
        let caller = require_caller(caller)?;
        let stream = StreamId::new(ServiceAccountEvent::AGGREGATE, account.as_uuid());
        let (AccountAuthority(owner), _) = self.writer.load::<AccountAuthority>(&stream).await?;
        domain::authorize(&caller, owner)?;
        Ok(caller)
    }

    fn hashes_slot(hashes: &[StoredHash]) -> SecretOp {
        SecretOp::Put {
            name: HASHES_SLOT.into(),
            value: serde_json::to_vec(hashes).unwrap_or_default(),
        }
    }

    /// Creates a key (generation 1) and returns it sealed. Without an idempotency key the
    /// secret is in this one answer only; with one, the sealed answer is kept (never in
    /// clear, never in an event) for the replay window, so that a retry whose first
    /// answer was lost gets the same key again.
    #[tracing::instrument(skip_all, fields(name = %env.command.name))]
    pub async fn create_api_key(
        &self,
        env: CommandEnvelope<CreateApiKey>,
    ) -> Result<Accepted<KeyWithSecret>, Failure> {
        let c = &env.command;
        self.authorize(env.caller.clone(), c.service_account_id)
            .await?;
        let idempotency = Idempotency::of(
            env.caller.as_ref(),
            env.idempotency_key.as_ref(),
            CreateApiKey::NAME,
            &(
                c.service_account_id,
                &c.name,
                &c.description,
                c.expires_in_seconds,
            ),
        )
        .map(|i| i.kept_for(self.replay_window));
        if let Some(done) = self
            .writer
            .replay::<IssuedKey>(idempotency.as_ref())
            .await?
        {
            return self.with_key(done).await;
        }
        let now = self.writer.clock().now();
        let events = domain::create(
            &ApiKey::Absent,
            c.service_account_id,
            c.name.clone(),
            c.description.clone(),
            c.expires_in_seconds,
            now,
        )?;
        let id = ApiKeyId::new();
        let generated = generate_api_key(id.as_uuid());
        let hash = self.hasher.hash(id.as_uuid(), &generated.secret);
        let extras = Extras {
            claims: vec![UniqueClaim::Claim {
                scope: API_KEY_NAME_SCOPE.into(),
                value: api_key_name_claim(c.service_account_id, c.name.as_ref()),
            }],
            secrets: vec![Self::hashes_slot(&[StoredHash {
                generation: 1,
                hash,
            }])],
        };
        let output = IssuedKey {
            id,
            key: self.seal_reply::<CreateApiKey>(&generated.full)?,
            generation: 1,
        };
        let name = c.name.to_string();
        let created = self
            .writer
            .create(
                api_key_stream(id),
                events,
                extras,
                &env.metadata,
                idempotency.as_ref(),
                output,
                move || {
                    Failure::new(
                        FailureKind::Conflict,
                        KeysFailure::NameTaken,
                        format!("the service account already has an API key named \"{name}\""),
                    )
                },
            )
            .await?;
        self.with_key(created).await
    }

    /// The answer to a command that hands out a secret: the key as the command left it,
    /// with the secret.
    async fn with_key(
        &self,
        accepted: Accepted<IssuedKey>,
    ) -> Result<Accepted<KeyWithSecret>, Failure> {
        let stream_id = api_key_stream(accepted.output.id);
        self.writer
            .answer(&ApiKeyProjection, &stream_id, accepted, |issued, key| {
                KeyWithSecret { key, issued }
            })
            .await
    }

    /// Rotates a key: a new secret, the previous one retained for the asked window. Each
    /// attempt reloads the stream and the hashes, so concurrent rotations never lose one.
    #[tracing::instrument(skip_all, fields(id = %env.command.id))]
    pub async fn rotate_api_key(
        &self,
        env: CommandEnvelope<RotateApiKey>,
    ) -> Result<Accepted<KeyWithSecret>, Failure> {
        let c = &env.command;
        self.authorize(env.caller.clone(), c.service_account_id)
            .await?;
        let stream_id = api_key_stream(c.id);
        let generated = generate_api_key(c.id.as_uuid());
        let hash = self.hasher.hash(c.id.as_uuid(), &generated.secret);
        let sealed = self.seal_reply::<RotateApiKey>(&generated.full)?;
        for attempt in 0..MAX_ROTATE_ATTEMPTS {
            let (state, version) = self.writer.load::<ApiKey>(&stream_id).await?;
            let now = self.writer.clock().now();
            let events = domain::rotate(&state, c.service_account_id, c.retain_seconds, now)?;
            let next = {
                let mut next = state.clone();
                for e in &events {
                    next = gatehouse_eventlog::Aggregate::evolve(next, e);
                }
                next
            };
            let ApiKey::Present(key) = &next else {
                return Err(Rejection::NotFound.into());
            };
            let generation = key.validity.generation;
            let live = key.validity.live_generations(now);
            let mut hashes = kept_hashes(self.stored_hashes(&stream_id).await?, &live);
            hashes.push(StoredHash { generation, hash });
            let extras = Extras {
                claims: vec![],
                secrets: vec![Self::hashes_slot(&hashes)],
            };
            match self
                .writer
                .append(
                    stream_id.clone(),
                    version,
                    events,
                    extras,
                    &env.metadata,
                    None,
                    &(),
                )
                .await
            {
                Ok(written) => {
                    let output = IssuedKey {
                        id: c.id,
                        key: sealed,
                        generation,
                    };
                    return self.with_key(Accepted { written, output }).await;
                }
                Err(AppendError::WrongExpectedVersion { .. }) => {
                    // Spread the racing writers out a little.
                    let pause = 1 + (attempt as u64 * 7 + u64::from(hash.as_bytes()[0])) % 10;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(e) => return Err(create_failure(e, || Rejection::NotFound.into())),
            }
        }
        Err(Failure::new(
            FailureKind::Conflict,
            CommonFailure::Conflict,
            "the API key is being rotated concurrently; try again",
        ))
    }

    /// Changes a key's active flag, description or expiry.
    #[tracing::instrument(skip_all, fields(id = %env.command.id))]
    pub async fn update_api_key(
        &self,
        env: CommandEnvelope<UpdateApiKey>,
    ) -> Result<Accepted<ApiKeyView>, Failure> {
        let c = &env.command;
        self.authorize(env.caller.clone(), c.service_account_id)
            .await?;
        let now = self.writer.clock().now();
        let changes = KeyChanges {
            active: c.active,
            description: c.description.clone(),
            expires_at: c.expires_at,
        };
        let stream_id = api_key_stream(c.id);
        let updated = self
            .writer
            .update_with_retry::<ApiKey, _, _, _>(stream_id.clone(), &env.metadata, |state| {
                domain::update(state, c.service_account_id, changes.clone(), now)
                    .map(|events| (events, Extras::default(), ()))
            })
            .await?;
        self.writer
            .answer(&ApiKeyProjection, &stream_id, updated, |(), key| key)
            .await
    }

    /// Deletes a key: its hashes are erased and its name freed in the same transaction.
    #[tracing::instrument(skip_all, fields(id = %env.command.id))]
    pub async fn delete_api_key(
        &self,
        env: CommandEnvelope<DeleteApiKey>,
    ) -> Result<Accepted<()>, Failure> {
        let c = &env.command;
        self.authorize(env.caller.clone(), c.service_account_id)
            .await?;
        self.writer
            .update_with_retry::<ApiKey, _, _, _>(api_key_stream(c.id), &env.metadata, |state| {
                let events = domain::delete(state, c.service_account_id)?;
                let claims = match state {
                    ApiKey::Present(key) => vec![UniqueClaim::Release {
                        scope: API_KEY_NAME_SCOPE.into(),
                        value: api_key_name_claim(c.service_account_id, key.name.as_ref()),
                    }],
                    _ => vec![],
                };
                let secrets = vec![SecretOp::Delete {
                    name: HASHES_SLOT.into(),
                }];
                Ok::<_, Rejection>((events, Extras { claims, secrets }, ()))
            })
            .await
    }

    /// Records a key's expiry once it has passed (the sweeper sends this).
    #[tracing::instrument(skip_all, fields(id = %env.command.id))]
    pub async fn expire_api_key(
        &self,
        env: CommandEnvelope<ExpireApiKey>,
    ) -> Result<Accepted<()>, Failure> {
        let now = self.writer.clock().now();
        self.writer
            .update_with_retry::<ApiKey, _, _, _>(
                api_key_stream(env.command.id),
                &env.metadata,
                |state| Ok::<_, Rejection>((domain::expire(state, now), Extras::default(), ())),
            )
            .await
    }

    /// Checks a presented key. The secret is verified (constant-time, against every live
    /// generation) before anything about the key's state is revealed.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate_api_key(
        &self,
        env: CommandEnvelope<AuthenticateApiKey>,
    ) -> Result<Accepted<AuthenticatedKey>, Failure> {
        let key = self
            .sealer
            .open(&env.command.key, &AuthenticateApiKey::subject())
            .map_err(|_| {
                Failure::new(
                    FailureKind::Invalid,
                    KeysFailure::UnsealableSecret,
                    "the sealed key cannot be opened",
                )
            })?;
        let parsed =
            parse_api_key(secrecy::ExposeSecret::expose_secret(&key)).map_err(|_| refused(None))?;
        let id = ApiKeyId::from_uuid(parsed.key_id);
        let stream_id = api_key_stream(id);
        let (state, _) = self.writer.load::<ApiKey>(&stream_id).await?;
        let hashes = self.stored_hashes(&stream_id).await?;
        let presented = self.hasher.hash(parsed.key_id, &parsed.secret);
        // Compare with every stored hash (no early exit) so timing says nothing.
        let matched = hashes.iter().fold(None, |found, h| {
            if h.hash == presented {
                Some(h.generation)
            } else {
                found
            }
        });
        let (Some(generation), ApiKey::Present(k)) = (matched, &state) else {
            return Err(refused(None));
        };
        let now = self.writer.clock().now();
        k.validity
            .check(generation, now)
            .map_err(|r| refused(Some(r)))?;
        Ok(Accepted {
            written: None,
            output: AuthenticatedKey {
                id,
                service_account_id: k.service_account_id,
                generation,
                epoch: k.validity.epoch,
                expires_at: k.validity.expires_at,
            },
        })
    }

    /// Records the expiry of every key whose expiry has passed, every `interval`, until
    /// `shutdown`. Keys stop working at their expiry regardless (every check compares
    /// with the clock); this only writes the `api_key.expired` audit event. Safe to run in
    /// several replicas: recording an expiry twice appends nothing. Each round also
    /// deletes the kept answers whose replay window is over.
    pub async fn run_expiry_sweeper(
        self,
        views: Arc<dyn ViewStore>,
        interval: Duration,
        shutdown: watch::Receiver<bool>,
    ) {
        run_every("API key expiries", interval, shutdown, || async {
            let recorded = self.sweep(views.as_ref()).await?;
            let purged = self.writer.purge_idempotency().await?;
            Ok::<_, anyhow::Error>(recorded + usize::try_from(purged).unwrap_or(usize::MAX))
        })
        .await;
    }

    /// One sweep; returns how many expiries were recorded.
    pub async fn sweep(&self, views: &dyn ViewStore) -> anyhow::Result<usize> {
        let now = self.writer.clock().now();
        let pending = vec![("expiry_pending".into(), serde_json::Value::Bool(true))];
        let mut due = Vec::new();
        for doc in list_all(views, API_KEY_VIEW, pending).await? {
            let view: ApiKeyView = serde_json::from_value(doc.doc)?;
            if view.validity.expires_at.is_some_and(|at| at <= now) {
                due.push(view.id);
            }
        }
        let mut recorded = 0;
        for id in due {
            let env = CommandEnvelope {
                command: ExpireApiKey { id },
                caller: None,
                metadata: gatehouse_contracts::EventMetadata {
                    actor: Some(gatehouse_contracts::Actor::system()),
                    ..Default::default()
                },
                idempotency_key: None,
            };
            match self.expire_api_key(env).await {
                Ok(a) if a.written.is_some() => recorded += 1,
                Ok(_) => {}
                Err(f) => tracing::warn!(key = %id, failure = %f, "recording an expiry failed"),
            }
        }
        Ok(recorded)
    }
}
