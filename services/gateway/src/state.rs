//! Shared application state and settings, and the one way handlers send commands.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpResponseBuilder;
use gatehouse_bus::CommandBus;
use gatehouse_bus::infra::Probe;
use gatehouse_contracts::clock::Clock;
use gatehouse_contracts::commands::{
    Accepted, Caller, Command, CommandEnvelope, CommandFailure, Written,
};
use gatehouse_eventlog::{EventStore, ViewStore};
use gatehouse_replicas::{BarrierOutcome, Limits, Peers};
use gatehouse_secrets::BusSealer;

use crate::context::RequestContext;
use crate::directory::Directory;
use crate::errors::ApiError;
use crate::issuer::TokenIssuer;

/// Gateway settings (from flags and `GATEHOUSE_*` environment variables).
#[derive(Clone, Debug)]
pub struct GatewaySettings {
    /// Listen address.
    pub bind: SocketAddr,
    /// The token issuer (`iss`) and the base of advertised URLs.
    pub issuer: String,
    /// The token audience (`aud`).
    pub audience: String,
    /// Lifetime of password-grant tokens.
    pub password_token_ttl: Duration,
    /// Lifetime of tokens obtained with an API key (never past the key's expiry).
    pub api_key_token_ttl: Duration,
    /// Largest request body accepted.
    pub body_limit: usize,
    /// How long a write waits for the read models before answering.
    pub consistency_timeout: Duration,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// New device authorizations accepted from one address in any minute.
    pub device_authorizations_per_minute: usize,
}

impl GatewaySettings {
    /// Defaults for `bind`; the issuer is derived from it.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            issuer: format!("http://{bind}"),
            audience: "gatehouse".into(),
            password_token_ttl: Duration::from_secs(24 * 3600),
            api_key_token_ttl: Duration::from_secs(3600),
            body_limit: 64 * 1024,
            consistency_timeout: Duration::from_secs(5),
            trusted_proxies: Vec::new(),
            workers: 0,
            device_authorizations_per_minute: 30,
        }
    }
}

/// Token lifetimes and request limits, as flags and environment variables shared by every
/// binary that runs a gateway.
#[derive(Clone, Debug, clap::Args)]
pub struct GatewayOptions {
    /// Lifetime in seconds of tokens obtained with an API key (never past the key's expiry).
    #[arg(long, env = "GATEHOUSE_API_KEY_TOKEN_TTL", default_value_t = 3600)]
    pub api_key_token_ttl: u64,
    /// Lifetime in seconds of tokens obtained with a password.
    #[arg(long, env = "GATEHOUSE_PASSWORD_TOKEN_TTL", default_value_t = 24 * 3600)]
    pub password_token_ttl: u64,
    /// New device authorizations (`POST /oauth/device_authorization`, which needs no
    /// credentials) accepted from one address in any minute; more get 429.
    #[arg(
        long,
        env = "GATEHOUSE_DEVICE_AUTHORIZATIONS_PER_MINUTE",
        default_value_t = 30
    )]
    pub device_authorizations_per_minute: usize,
}

impl GatewayOptions {
    /// Applies the options to `settings`.
    pub fn apply(&self, settings: &mut GatewaySettings) {
        settings.api_key_token_ttl = Duration::from_secs(self.api_key_token_ttl.max(60));
        settings.password_token_ttl = Duration::from_secs(self.password_token_ttl.max(60));
        settings.device_authorizations_per_minute = self.device_authorizations_per_minute.max(1);
    }

    /// The longest lifetime (seconds) of the tokens this gateway issues with a password or
    /// an API key: superseded signing keys must outlive it (the identity service's
    /// `KeyringSettings::check`).
    pub fn longest_token_ttl(&self) -> u64 {
        self.api_key_token_ttl.max(self.password_token_ttl)
    }
}

/// The response header that says a committed write is not yet visible everywhere.
pub const CONSISTENCY_HEADER: &str = "gatehouse-consistency";

/// Whether the read models (and every live replica) reflected a write before it was
/// answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// They did: the caller's next request sees the write wherever it lands.
    Visible,
    /// They did not catch up within the consistency timeout: the write is committed and
    /// the answer describes it, but reads may not show it for a moment
    /// (`Gatehouse-Consistency: pending`).
    Pending,
}

impl Consistency {
    /// Marks a response to the write: `Gatehouse-Consistency: pending` when it is not
    /// visible yet, nothing otherwise.
    pub fn mark(self, mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
        if self == Consistency::Pending {
            builder.insert_header((CONSISTENCY_HEADER, "pending"));
        }
        builder
    }
}

/// An accepted command, answered from its own output.
#[derive(Clone, Debug)]
pub struct Committed<T> {
    /// Where its events landed; `None` when it appended nothing.
    pub written: Option<Written>,
    /// What the command returned: the answer is built from this, never from a re-read
    /// read model that may lag.
    pub output: T,
    /// Whether the write was visible everywhere before the answer.
    pub consistency: Consistency,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Settings.
    pub settings: GatewaySettings,
    /// Commands to services.
    pub bus: Arc<dyn CommandBus>,
    /// The shared read models.
    pub views: Arc<dyn ViewStore>,
    /// The event log (read only here: the event feed of `GET /api/v1/events`).
    pub log: Arc<dyn EventStore>,
    /// The in-memory principal directory.
    pub directory: Directory,
    /// The other gateway replicas, which confirm writes before they are answered.
    pub peers: Peers,
    /// Token signing and verification.
    pub issuer: Arc<TokenIssuer>,
    /// Seals secrets for the bus.
    pub sealer: Arc<BusSealer>,
    /// Failed logins and key attempts, wrong user codes, new device authorizations: counted
    /// alike on every replica.
    pub limits: Limits,
    /// Authenticates API keys (remembering those verified before).
    pub api_keys: Arc<crate::apikeys::ApiKeyAuthenticator>,
    /// Checks polled device codes against their stored hashes.
    pub device_codes: Arc<gatehouse_tokens::DeviceCodes>,
    /// Each device's polling pace.
    pub device_polls: Arc<crate::pacer::PollPacer>,
    /// Live leases this replica hands out again (`lease_cache`).
    pub leases: Arc<crate::lease_cache::LeaseCache>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Readiness checks of the dependencies (database, bus).
    pub probes: Vec<Arc<dyn Probe>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Sends a command on behalf of `caller` with the request's metadata and trace headers,
/// and waits for the service's answer (nothing else: [`AppState::command`] also waits for
/// the write to be visible).
pub async fn send<C: Command>(
    bus: &dyn CommandBus,
    ctx: &RequestContext,
    caller: Option<&Caller>,
    command: C,
    idempotency_key: Option<String>,
) -> Result<Accepted<C::Output>, CommandFailure<C::Code>> {
    let envelope = CommandEnvelope {
        command,
        caller: caller.cloned(),
        metadata: ctx.metadata(caller),
        idempotency_key,
    };
    let headers = vec![
        ("traceparent".to_owned(), ctx.traceparent.clone()),
        ("x-request-id".to_owned(), ctx.request_id.clone()),
    ];
    Ok(gatehouse_bus::send(bus, &envelope, headers).await?)
}

impl AppState {
    /// Seals a secret for a command on the bus.
    pub fn seal(
        &self,
        secret: &secrecy::SecretString,
        context: &str,
    ) -> Result<gatehouse_secrets::SealedSecret, ApiError> {
        self.sealer
            .seal(secret, context)
            .map_err(|e| ApiError::internal(&e))
    }

    /// Sends a command on behalf of `caller` and, once accepted, waits (bounded) until
    /// the read models and the directory of every live gateway replica reflect it, so
    /// that the caller's next request sees its own write wherever it lands and a
    /// revocation is already enforced everywhere. A command that committed is answered
    /// whether or not they caught up in time ([`Committed::consistency`] says which); a
    /// command whose outcome is unknown (the bus timed out) is a 503 with Retry-After.
    /// A failure comes with its code decoded as the service's enum ([`Command::Code`]).
    pub async fn command<C: Command>(
        &self,
        ctx: &RequestContext,
        caller: Option<&Caller>,
        command: C,
        idempotency_key: Option<String>,
    ) -> Result<Committed<C::Output>, CommandFailure<C::Code>> {
        let Accepted { written, output } =
            send(self.bus.as_ref(), ctx, caller, command, idempotency_key).await?;
        let consistency = match &written {
            Some(written) => self.await_consistency(written).await,
            None => Consistency::Visible,
        };
        Ok(Committed {
            written,
            output,
            consistency,
        })
    }

    /// Waits (bounded) until the read models, this gateway's directory and those of the
    /// other live replicas reflect `written`; says whether they did.
    pub async fn await_consistency(&self, written: &Written) -> Consistency {
        let timeout = self.settings.consistency_timeout;
        let (views, directory) = tokio::join!(
            self.views
                .wait_applied(&written.stream_id, written.version, timeout),
            self.directory
                .wait_applied(&written.stream_id, written.version, timeout),
        );
        let mut consistency = Consistency::Visible;
        if !matches!(views, Ok(true)) || !directory {
            tracing::warn!(stream_id = %written.stream_id, version = written.version, "the read models did not catch up in time; answering anyway");
            consistency = Consistency::Pending;
        }
        if self.directory.follows(&written.stream_id) {
            let outcome = self
                .peers
                .await_applied(&written.stream_id, written.version, timeout)
                .await;
            match outcome {
                BarrierOutcome::Confirmed { replicas } => {
                    tracing::debug!(stream_id = %written.stream_id, replicas, "the other gateway replicas confirmed the write");
                }
                BarrierOutcome::Incomplete { .. } => consistency = Consistency::Pending,
            }
        }
        consistency
    }
}
