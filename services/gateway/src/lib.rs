//! The gateway: the HTTP face of Gatehouse.
//!
//! It authenticates callers (bearer tokens verified locally with the public key, checked
//! against an in-memory directory kept current from the event feed), sends commands to the
//! owning services over the bus, answers queries from the read models, and issues tokens.
//! It owns no domain state and never appends to the event log (every change is a command
//! to the service that owns it); it depends on libraries only, never on a service crate;
//! it can be replicated freely behind a load balancer.

pub mod apikeys;
pub mod auth;
pub mod bootstrap;
pub mod context;
pub mod directory;
pub mod errors;
pub mod issuer;
pub mod lease_cache;
pub mod openapi;
pub mod pacer;
pub mod routes;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::JsonPayloadError;
use actix_web::http::header;
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpServer, ResponseError, web};
use anyhow::Context;
use gatehouse_bus::CommandBus;
use gatehouse_contracts::clock::Clock;
use gatehouse_eventlog::{EventFeed, EventStore, ViewStore};
use gatehouse_secrets::{BusSealer, MasterKey};
use tokio::sync::watch;

use gatehouse_replicas::{Limits, Peers};

pub use directory::{Directory, READ_MODEL_PROJECTOR};
pub use errors::ApiError;
pub use gatehouse_bus::infra::Probe;
pub use issuer::TokenIssuer;
pub use state::{AppState, GatewayOptions, GatewaySettings};

/// What the gateway is built from.
pub struct GatewayDeps {
    /// Commands to services.
    pub bus: Arc<dyn CommandBus>,
    /// The shared read models.
    pub views: Arc<dyn ViewStore>,
    /// The event log (keyring, directory gap filling).
    pub log: Arc<dyn EventStore>,
    /// The event feed (directory).
    pub feed: Arc<dyn EventFeed>,
    /// The master key (signing keys, bus sealing).
    pub master: MasterKey,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// NATS, when other gateway replicas may run: writes then wait for all of them
    /// (see [`gatehouse_replicas::peers`]). `None` in the one-process dev mode.
    pub nats: Option<async_nats::Client>,
    /// Readiness checks.
    pub probes: Vec<Arc<dyn Probe>>,
}

impl std::fmt::Debug for GatewayDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayDeps").finish_non_exhaustive()
    }
}

/// Builds the application state: has the identity service create the first signing key if
/// there is none (waiting for it to answer), loads the keyring, and starts the directory
/// follower, which stops when `shutdown` turns true.
pub async fn build(
    settings: GatewaySettings,
    deps: GatewayDeps,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<AppState> {
    bootstrap::ensure_signing_key(deps.bus.as_ref()).await?;
    let issuer = TokenIssuer::load(
        deps.log.clone(),
        &deps.master,
        &settings.issuer,
        &settings.audience,
        deps.clock.as_ref(),
    )
    .await?;
    let issuer = Arc::new(issuer);
    let directory = Directory::new(deps.log.clone(), issuer.clone());
    let limits = Limits::alone(settings.device_authorizations_per_minute);
    let (peers, limits) = match deps.nats {
        Some(client) => {
            let peers = Peers::join(
                client.clone(),
                Arc::new(directory.clone()),
                shutdown.clone(),
            )
            .await
            .context("joining the gateway replica set over NATS")?;
            let replica = peers.replica().unwrap_or_else(uuid::Uuid::new_v4);
            let limits = limits
                .shared(client, replica, shutdown.clone())
                .await
                .context("sharing request limits with the other replicas over NATS")?;
            (peers, limits)
        }
        None => (Peers::alone(), limits),
    };
    tokio::spawn(
        directory
            .clone()
            .run(deps.views.clone(), deps.feed.clone(), shutdown),
    );
    let sealer = Arc::new(BusSealer::new(&deps.master));
    let api_keys = apikeys::ApiKeyAuthenticator::new(
        Arc::new(directory.clone()),
        Arc::new(apikeys::BusKeyChecker::new(
            deps.bus.clone(),
            sealer.clone(),
        )),
        limits.clone(),
        deps.views.clone(),
        deps.clock.clone(),
    );
    Ok(AppState {
        settings,
        log: deps.log,
        bus: deps.bus,
        views: deps.views,
        directory,
        peers,
        issuer,
        sealer,
        limits,
        api_keys: Arc::new(api_keys),
        device_codes: Arc::new(gatehouse_tokens::DeviceCodes::new(&deps.master)),
        device_polls: Arc::default(),
        leases: Arc::default(),
        clock: deps.clock,
        probes: deps.probes,
    })
}

fn json_error(err: JsonPayloadError) -> ApiError {
    match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::payload_too_large(err.to_string())
        }
        JsonPayloadError::ContentType => {
            ApiError::bad_request("Content-Type must be application/json")
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::invalid(e.to_string()),
        _ => ApiError::bad_request(err.to_string()),
    }
}

fn class_of(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("bad_request", "the request is malformed"),
        401 => ("unauthenticated", "authentication is required"),
        403 => ("forbidden", "not allowed"),
        404 => ("not_found", "no such resource"),
        405 => ("method_not_allowed", "method not allowed on this resource"),
        413 => ("payload_too_large", "the request body is too large"),
        415 => ("unsupported_media_type", "unsupported content type"),
        422 => ("invalid", "the request is invalid"),
        429 => ("rate_limited", "too many requests"),
        503 => ("unavailable", "a dependency is unavailable"),
        s if s >= 500 => ("internal", "an unexpected error occurred"),
        _ => ("bad_request", "the request was refused"),
    }
}

/// Turns every error that is not already JSON (actix's own: unknown route, wrong method,
/// oversize body, bad query string) into the one JSON error shape.
async fn json_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let status = res.status();
    // JSON error bodies are ours already; HTML is the device page's, which renders its own
    // errors for people.
    let own_body = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || own_body {
        return Ok(res.map_into_left_body());
    }
    let (class, message) = class_of(status.as_u16());
    let error = ApiError {
        status,
        class,
        code: None,
        message: message.to_owned(),
        retry_after: None,
    };
    let (req, _) = res.into_parts();
    Ok(ServiceResponse::new(req, error.error_response()).map_into_right_body())
}

/// A running HTTP server.
#[derive(Debug)]
pub struct RunningGateway {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Completes when the server has stopped.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds and starts the HTTP server; it stops gracefully when `shutdown` turns true.
pub fn serve(
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<RunningGateway> {
    let settings = state.settings.clone();
    let body_limit = settings.body_limit;
    let trusted = web::Data::new(context::TrustedProxies(settings.trusted_proxies.clone()));
    let data = web::Data::new(state);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(trusted.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(body_limit)
                    .error_handler(|err, _| json_error(err).into()),
            )
            .app_data(web::PayloadConfig::default().limit(body_limit))
            .app_data(web::FormConfig::default().limit(body_limit))
            .configure(routes::configure)
            .default_service(web::to(|| async {
                ApiError::not_found("no such resource").error_response()
            }))
            .wrap(from_fn(json_errors))
            .wrap(from_fn(context::middleware))
    })
    .disable_signals()
    .shutdown_timeout(10)
    .bind(settings.bind)?;
    if settings.workers > 0 {
        server = server.workers(settings.workers);
    }
    let addr = server.addrs().first().copied().unwrap_or(settings.bind);
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        handle.stop(true).await;
    });
    tracing::info!(%addr, "gateway listening");
    Ok(RunningGateway {
        addr,
        task: tokio::spawn(server),
    })
}
