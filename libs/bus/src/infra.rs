//! Production wiring shared by `gatehouse serve` and the per-service binaries: connect to
//! Postgres and NATS once and hand out the trait objects the services run on.

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_eventlog::feed::BusLink;
use gatehouse_eventlog::postgres::{PgDatabase, PostgresEventStore, PostgresViewStore};
use gatehouse_eventlog::relay::OutboxRelay;
use tokio::sync::watch;

use gatehouse_eventlog::EventFeed;
use gatehouse_secrets::MasterKey;

use crate::jetstream::{JetStreamFeed, JetStreamPublisher, ensure_stream};
use crate::nats::{NatsArgs, NatsCommandBus, connect_watched};
use crate::proof::CommandProofs;

/// A readiness check of one dependency.
#[async_trait]
pub trait Probe: Send + Sync {
    /// The dependency's name.
    fn name(&self) -> &'static str;
    /// `Ok` when usable, otherwise what is wrong.
    async fn check(&self) -> Result<(), String>;
}

/// Connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    /// Postgres.
    #[error("cannot use the database: {0}")]
    Database(#[source] gatehouse_eventlog::StoreError),
    /// NATS.
    #[error("cannot use NATS at {url}: {source}")]
    Nats {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: crate::BusError,
    },
}

/// Connections of the read-model projector's own pool ([`Infra::projector_stores`]): its
/// check of a batch against the log and its load of the batch's streams go out at once.
pub const PROJECTOR_CONNECTIONS: usize = 2;

/// Postgres and NATS, connected.
#[derive(Clone)]
pub struct Infra {
    /// The database (pool + config).
    pub database: PgDatabase,
    /// The event log.
    pub log: Arc<PostgresEventStore>,
    /// The read models.
    pub views: Arc<PostgresViewStore>,
    /// The NATS connection.
    pub nats: async_nats::Client,
    /// The event feed (JetStream). Its consumers, projection runners, check each
    /// delivery against the log ([`gatehouse_eventlog::checked`]).
    pub feed: Arc<dyn EventFeed>,
    /// The command bus.
    pub bus: Arc<NatsCommandBus>,
    /// The state of the NATS connection, for the relay's publisher and the feed.
    link: watch::Receiver<BusLink>,
}

impl std::fmt::Debug for Infra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Infra").finish_non_exhaustive()
    }
}

impl Infra {
    /// Connects, creates the schema and the JetStream stream when missing. Commands are
    /// signed and checked with proofs derived from `master` ([`crate::proof`]).
    pub async fn connect(
        database_url: &str,
        nats: &NatsArgs,
        master: &MasterKey,
        client_name: &str,
    ) -> Result<Self, InfraError> {
        let nats_url = nats.redacted_url();
        let database = PgDatabase::connect(database_url, 16)
            .await
            .map_err(InfraError::Database)?;
        gatehouse_eventlog::postgres::migrate(database.pool())
            .await
            .map_err(InfraError::Database)?;
        let (nats, link) =
            connect_watched(nats, client_name)
                .await
                .map_err(|source| InfraError::Nats {
                    url: nats_url.clone(),
                    source,
                })?;
        let js = async_nats::jetstream::new(nats.clone());
        ensure_stream(&js)
            .await
            .map_err(|source| InfraError::Nats {
                url: nats_url.clone(),
                source,
            })?;
        let log = Arc::new(PostgresEventStore::new(database.pool().clone()));
        Ok(Self {
            feed: Arc::new(JetStreamFeed::new(js).with_link(link.clone())),
            log,
            views: Arc::new(PostgresViewStore::new(&database)),
            bus: Arc::new(NatsCommandBus::new(
                nats.clone(),
                Arc::new(CommandProofs::new(master)),
            )),
            nats,
            link,
            database,
        })
    }

    /// The read-model projector's stores (read models, and the log it checks deliveries
    /// against), on a pool of their own of [`PROJECTOR_CONNECTIONS`]. Every request that
    /// waits for its write to be projected waits on the projector; sharing the requests'
    /// pool, it queued behind them for a connection at every batch under load.
    pub fn projector_stores(
        &self,
    ) -> Result<(Arc<PostgresViewStore>, Arc<PostgresEventStore>), InfraError> {
        let database = self
            .database
            .sibling(PROJECTOR_CONNECTIONS)
            .map_err(InfraError::Database)?;
        Ok((
            Arc::new(PostgresViewStore::new(&database)),
            Arc::new(PostgresEventStore::new(database.pool().clone())),
        ))
    }

    /// The outbox relay publishing this database's events to JetStream.
    pub fn relay(&self) -> OutboxRelay {
        let publisher = JetStreamPublisher::new(async_nats::jetstream::new(self.nats.clone()))
            .with_link(self.link.clone());
        OutboxRelay::new(self.database.clone(), Arc::new(publisher))
    }

    /// Readiness probes: the database, NATS, and the durable projector consumer
    /// `projector` being caught up (at most [`MAX_PROJECTION_BACKLOG`] events behind).
    pub fn probes(&self, projector: &str) -> Vec<Arc<dyn Probe>> {
        vec![
            Arc::new(DatabaseProbe(self.database.clone())),
            Arc::new(NatsProbe(self.nats.clone())),
            Arc::new(ProjectionProbe {
                js: async_nats::jetstream::new(self.nats.clone()),
                consumer: projector.to_owned(),
            }),
        ]
    }
}

/// How far behind the read-model projector may be while the gateway still reports ready:
/// a backlog that a busy projector clears in well under a second, so readiness does not
/// flap under write load but does catch a projector that is stuck or not running.
pub const MAX_PROJECTION_BACKLOG: u64 = 1000;

struct ProjectionProbe {
    js: async_nats::jetstream::Context,
    consumer: String,
}

#[async_trait]
impl Probe for ProjectionProbe {
    fn name(&self) -> &'static str {
        "projections"
    }
    async fn check(&self) -> Result<(), String> {
        let stream = self
            .js
            .get_stream(crate::jetstream::STREAM_NAME)
            .await
            .map_err(|e| format!("no event stream: {e}"))?;
        let info = stream
            .consumer_info(&self.consumer)
            .await
            .map_err(|_| "the read-model projector has not started yet".to_owned())?;
        let behind = info.num_pending + info.num_ack_pending as u64;
        if behind > MAX_PROJECTION_BACKLOG {
            return Err(format!("{behind} events behind"));
        }
        Ok(())
    }
}

struct DatabaseProbe(PgDatabase);

#[async_trait]
impl Probe for DatabaseProbe {
    fn name(&self) -> &'static str {
        "database"
    }
    async fn check(&self) -> Result<(), String> {
        let client = self
            .0
            .pool()
            .get()
            .await
            .map_err(|e| format!("unreachable: {e}"))?;
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| format!("failing: {e}"))
    }
}

struct NatsProbe(async_nats::Client);

#[async_trait]
impl Probe for NatsProbe {
    fn name(&self) -> &'static str {
        "nats"
    }
    async fn check(&self) -> Result<(), String> {
        match self.0.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            other => Err(format!("{other:?}").to_lowercase()),
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// What every service process is started with: its database, NATS, master key and logging,
/// as flags and `GATEHOUSE_*` environment variables (`#[command(flatten)]` it).
#[derive(Debug, Clone, clap::Args)]
pub struct ProcessArgs {
    /// Postgres URL of the event log and read models.
    #[arg(long, env = "GATEHOUSE_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// NATS: URL, credentials, TLS.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Base64 of 32 random bytes, the same in every Gatehouse process.
    #[arg(long, env = "GATEHOUSE_MASTER_KEY", hide_env_values = true)]
    pub master_key: secrecy::SecretString,
    /// Log filter.
    #[arg(long, env = "GATEHOUSE_LOG", default_value = "info")]
    pub log: String,
    /// Log format: json or pretty.
    #[arg(long, env = "GATEHOUSE_LOG_FORMAT", default_value = "pretty")]
    pub log_format: gatehouse_telemetry::LogFormat,
}

impl ProcessArgs {
    /// Starts logging, reads the master key, and connects to Postgres and NATS (creating the
    /// schema and the stream when missing) as `client_name`.
    pub async fn start(
        &self,
        client_name: &str,
    ) -> anyhow::Result<(gatehouse_secrets::MasterKey, Infra)> {
        use anyhow::Context as _;
        use secrecy::ExposeSecret as _;
        gatehouse_telemetry::init(&self.log, self.log_format);
        let master = gatehouse_secrets::MasterKey::from_base64(self.master_key.expose_secret())
            .context("GATEHOUSE_MASTER_KEY")?;
        let infra = Infra::connect(&self.database_url, &self.nats, &master, client_name).await?;
        Ok((master, infra))
    }
}

/// Runs one or more services' write sides as a process: starts logging, connects (as
/// `client_name`), builds the sides from the [`ServiceContext`](crate::host::ServiceContext),
/// serves them with the outbox relay beside them, and stops on a signal or on the first
/// failed task (returning its report, so the process exits non-zero).
pub async fn run_services(
    client_name: &str,
    args: &ProcessArgs,
    build: impl FnOnce(&crate::host::ServiceContext<'_>) -> Vec<crate::host::WriteSide>,
) -> anyhow::Result<()> {
    let (master, infra) = args.start(client_name).await?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let ctx = crate::host::ServiceContext {
        log: infra.log.clone(),
        views: infra.views.clone(),
        master: &master,
        clock: Arc::new(gatehouse_contracts::clock::SystemClock),
        shutdown: shutdown.clone(),
    };
    let mut hosted = crate::host::Hosted::start(infra.bus.as_ref(), build(&ctx)).await?;
    let relay = infra.relay();
    hosted.spawn("outbox relay".into(), async move {
        relay.run(shutdown).await;
        Ok(())
    });
    tracing::info!("{client_name} ready");
    let outcome = hosted.wait(shutdown_signal()).await;
    tracing::info!("shutting down");
    stop.send_replace(true);
    hosted.stop().await;
    outcome
}
