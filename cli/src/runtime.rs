//! `gatehouse dev` and `gatehouse serve`: every service in one process.
//!
//! `dev` wires the in-memory event log, feed and view store and the in-process bus;
//! `serve` wires Postgres and NATS. Past the wiring, both run the same code: every service
//! of the registry (`crate::services`) behind the command bus, the read-model projector,
//! the gateway.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use gatehouse_bus::CommandBus;
use gatehouse_bus::host::{Hosted, ServiceContext};
use gatehouse_bus::infra::{Infra, shutdown_signal};
use gatehouse_bus::local::LocalCommandBus;
use gatehouse_contracts::clock::{Clock, SystemClock};
use gatehouse_eventlog::memory::{MemoryEventStore, MemoryViewStore};
use gatehouse_eventlog::postgres::PgDatabase;
use gatehouse_eventlog::{EventFeed, EventStore, ViewStore};
use gatehouse_gateway::bootstrap::{bootstrap_admin, spawn_read_model_projector};
use gatehouse_gateway::{GatewayDeps, GatewaySettings, Probe, RunningGateway};
use gatehouse_secrets::MasterKey;
use rand::distributions::{Alphanumeric, DistString};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

/// Options shared by `dev` and `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address the gateway listens on, IP:PORT (e.g. 127.0.0.1:8081 when 8080 is taken).
    #[arg(long, env = "GATEHOUSE_BIND", default_value = "127.0.0.1:8080", value_parser = parse_bind)]
    pub bind: SocketAddr,
    /// Public URL of the gateway, used as the token issuer (default: http://<bind>).
    #[arg(long, env = "GATEHOUSE_ISSUER")]
    pub issuer: Option<String>,
    /// Password of the initial `admin` user (default: generated and printed once).
    #[arg(long, env = "GATEHOUSE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<SecretString>,
    /// Proxies whose X-Forwarded-For header is trusted (comma-separated IPs).
    #[arg(long, env = "GATEHOUSE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    #[command(flatten)]
    pub gateway: gatehouse_gateway::GatewayOptions,
    #[command(flatten)]
    pub services: crate::services::ServiceSettings,
}

/// Options of `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Postgres URL of the event log and read models.
    #[arg(long, env = "GATEHOUSE_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// NATS: URL, credentials (this process publishes events and commands: give it the
    /// `gatehouse` user of deploy/nats/accounts.conf), TLS.
    #[command(flatten)]
    pub nats: gatehouse_bus::nats::NatsArgs,
    /// Base64 of 32 random bytes: wraps the token signing keys and seals secrets on the
    /// bus. Keep it safe and stable: tokens and stored secrets depend on it.
    #[arg(long, env = "GATEHOUSE_MASTER_KEY", hide_env_values = true)]
    pub master_key: SecretString,
}

fn settings(args: &ServerArgs) -> anyhow::Result<GatewaySettings> {
    let mut settings = GatewaySettings::new(args.bind);
    if let Some(issuer) = &args.issuer {
        settings.issuer = issuer.clone();
    }
    settings.trusted_proxies = args.trusted_proxies.clone();
    args.services
        .keyring
        .check(args.gateway.longest_token_ttl())?;
    args.gateway.apply(&mut settings);
    Ok(settings)
}

fn generated_password() -> SecretString {
    SecretString::from(Alphanumeric.sample_string(&mut rand::rngs::OsRng, 24))
}

/// Everything both modes run, given the backends.
struct Backends {
    log: Arc<dyn EventStore>,
    feed: Arc<dyn EventFeed>,
    views: Arc<dyn ViewStore>,
    bus: Arc<dyn CommandBus>,
    /// The read-model projector's view store and log: on Postgres a pool of their own
    /// ([`gatehouse_bus::infra::Infra::projector_stores`]).
    projector: (Arc<dyn ViewStore>, Arc<dyn EventStore>),
    probes: Vec<Arc<dyn Probe>>,
    /// Postgres, when the backends are durable: the projector and relay then run under
    /// leader election, so several `serve` processes can share one database.
    database: Option<PgDatabase>,
    /// The outbox relay (durable backends only).
    relay: Option<gatehouse_eventlog::relay::OutboxRelay>,
    /// NATS (durable backends only): the gateway joins the replica set over it.
    nats: Option<async_nats::Client>,
}

/// A running Gatehouse, started by [`start_dev`] (or inside `dev` and `serve`): every
/// service of the registry, the read-model projector and the gateway, ready to answer.
pub struct Started {
    /// Where the gateway listens.
    pub addr: SocketAddr,
    /// The event log the services append to (tests read what a request recorded).
    pub log: Arc<dyn EventStore>,
    /// The admin's password, when this start created the admin with a generated one.
    generated_password: Option<SecretString>,
    stop: watch::Sender<bool>,
    hosted: Hosted,
    gateway: RunningGateway,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("addr", &self.addr)
            .field("hosted", &self.hosted)
            .finish_non_exhaustive()
    }
}

impl Started {
    /// Waits until `signal` completes or a background task fails (see [`Hosted::wait`]).
    pub async fn wait(
        &mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        self.hosted.wait(signal).await
    }

    /// Stops the gateway, the services and their tasks gracefully, and waits for them.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.gateway.task.await;
        self.hosted.stop().await;
    }
}

/// Starts every service of the registry behind the command bus, the read-model projector
/// and the gateway on `backends`; returns once the gateway listens and the admin exists.
async fn start(
    args: &ServerArgs,
    master: MasterKey,
    backends: Backends,
) -> anyhow::Result<Started> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (stop, shutdown) = watch::channel(false);

    let ctx = ServiceContext {
        log: backends.log.clone(),
        views: backends.views.clone(),
        master: &master,
        clock: clock.clone(),
        shutdown: shutdown.clone(),
    };
    let sides = crate::services::write_sides(&ctx, &args.services);
    let mut hosted = Hosted::start(backends.bus.as_ref(), sides).await?;
    let projector = spawn_read_model_projector(
        backends.projector.0.clone(),
        backends.projector.1.clone(),
        backends.feed.clone(),
        backends.database.clone(),
        shutdown.clone(),
    );
    hosted.spawn("read-model projector".into(), async move {
        projector.await.context("the read-model projector panicked")
    });
    if let Some(relay) = backends.relay {
        let shutdown = shutdown.clone();
        hosted.spawn("outbox relay".into(), async move {
            relay.run(shutdown).await;
            Ok(())
        });
    }

    let deps = GatewayDeps {
        bus: backends.bus.clone(),
        views: backends.views.clone(),
        log: backends.log.clone(),
        feed: backends.feed.clone(),
        master,
        clock,
        probes: backends.probes,
        nats: backends.nats,
    };
    let state = gatehouse_gateway::build(settings(args)?, deps, shutdown.clone()).await?;
    let (password, generated) = match &args.admin_password {
        Some(p) => (p.clone(), false),
        None => (generated_password(), true),
    };
    let created = bootstrap_admin(&state, &password).await?;
    let gateway = gatehouse_gateway::serve(state, shutdown.clone())
        .map_err(|e| anyhow::anyhow!(bind_failed(args.bind, &e)))?;
    Ok(Started {
        addr: gateway.addr,
        log: backends.log,
        generated_password: (created && generated).then_some(password),
        stop,
        hosted,
        gateway,
    })
}

/// Runs until a signal (or a failed task); returns after a graceful stop.
async fn run_all(
    args: &ServerArgs,
    master: MasterKey,
    backends: Backends,
    banner: impl FnOnce(SocketAddr, Option<&SecretString>),
) -> anyhow::Result<()> {
    let mut started = start(args, master, backends).await?;
    banner(started.addr, started.generated_password.as_ref());
    let outcome = started.wait(shutdown_signal()).await;
    tracing::info!("shutting down");
    started.stop().await;
    outcome
}

/// The backends of `gatehouse dev`: the in-memory log, feed and view store and the
/// in-process bus.
fn in_memory() -> Backends {
    let log = MemoryEventStore::new();
    let views = Arc::new(MemoryViewStore::new());
    Backends {
        log: Arc::new(log.clone()),
        feed: Arc::new(log.clone()),
        views: views.clone(),
        bus: Arc::new(LocalCommandBus::new()),
        projector: (views, Arc::new(log)),
        probes: vec![],
        database: None,
        relay: None,
        nats: None,
    }
}

/// What `gatehouse dev` runs, started and ready, without its banner and without waiting
/// for a signal: the end-to-end suite's in-process test app (`tests/support/inproc.rs`).
pub async fn start_dev(args: &ServerArgs) -> anyhow::Result<Started> {
    start(args, MasterKey::generate(), in_memory()).await
}

/// `gatehouse dev`: everything in memory.
pub async fn dev(args: ServerArgs) -> anyhow::Result<()> {
    run_all(
        &args,
        MasterKey::generate(),
        in_memory(),
        |addr, password| {
            println!("Gatehouse dev server (in memory: nothing persists)");
            println!("  URL:      http://{addr}");
            println!("  Username: admin");
            match password {
                Some(p) => println!("  Password: {}   (shown once)", p.expose_secret()),
                None => println!("  Password: from GATEHOUSE_ADMIN_PASSWORD"),
            }
            println!();
            println!("  gatehouse login --url http://{addr} --username admin");
            println!();
            println!("Press Ctrl-C to stop.");
        },
    )
    .await
}

/// `gatehouse serve`: everything in one process on Postgres and NATS.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let master =
        MasterKey::from_base64(args.master_key.expose_secret()).context("GATEHOUSE_MASTER_KEY")?;
    let infra = Infra::connect(&args.database_url, &args.nats, &master, "gatehouse-serve").await?;
    let (projector_views, projector_log) = infra.projector_stores()?;
    let backends = Backends {
        log: infra.log.clone(),
        feed: infra.feed.clone(),
        views: infra.views.clone(),
        bus: infra.bus.clone(),
        projector: (projector_views, projector_log),
        probes: infra.probes(gatehouse_gateway::READ_MODEL_PROJECTOR),
        database: Some(infra.database.clone()),
        relay: Some(infra.relay()),
        nats: Some(infra.nats.clone()),
    };
    run_all(&args.server, master, backends, |addr, password| {
        tracing::info!(url = %format!("http://{addr}"), "gatehouse serve is ready");
        if let Some(p) = password {
            println!(
                "Created the admin user; its password (shown once): {}",
                p.expose_secret()
            );
        }
    })
    .await
}

/// `--bind`: an IP address and a port, with an example when it is neither.
fn parse_bind(input: &str) -> Result<SocketAddr, String> {
    input.trim().parse().map_err(|_| {
        format!(
            "{input:?} is not an address to listen on: give an IP and a port, e.g. --bind \
             127.0.0.1:8081 (0.0.0.0:8081 listens on every interface)"
        )
    })
}

/// Why the gateway cannot listen on `bind`, and how to choose another address.
fn bind_failed(bind: SocketAddr, e: &std::io::Error) -> String {
    let next = SocketAddr::new(bind.ip(), bind.port().wrapping_add(1).max(1));
    let why = match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "the port is already in use (another Gatehouse?)".to_owned()
        }
        std::io::ErrorKind::AddrNotAvailable => "this machine has no such address".to_owned(),
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".to_owned()
        }
        _ => e.to_string(),
    };
    format!("cannot listen on {bind}: {why}: choose another with --bind {next} (or GATEHOUSE_BIND)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_bind_or_a_busy_port_says_how_to_choose_another() -> std::io::Result<()> {
        let error = parse_bind("localhost").expect_err("not an IP");
        assert!(error.contains("--bind 127.0.0.1:8081"), "{error}");
        let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = busy.local_addr()?;
        let taken = std::net::TcpListener::bind(addr).expect_err("the port is busy");
        let text = bind_failed(addr, &taken);
        assert!(text.contains("already in use"), "{text}");
        assert!(
            text.contains(&format!("--bind 127.0.0.1:{}", addr.port() + 1)),
            "{text}"
        );
        Ok(())
    }
}
