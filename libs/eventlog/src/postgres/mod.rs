//! The Postgres event log and view store.
//!
//! - [`PostgresEventStore`]: the write side. One transaction per append writes the events,
//!   their outbox rows, unique claims, secret slots and the idempotency record.
//! - [`PostgresViewStore`]: read models in schema `read`.
//! - [`migrate`]: the embedded schema migrations (`libs/eventlog/migrations/*.sql`).
//! - [`PgDatabase`]: a connection pool plus the settings it was built from, for the few
//!   components that need a dedicated connection of their own (`LISTEN`, session-level
//!   advisory locks): the view store's wake-ups and the [outbox relay](crate::relay).

pub mod leader;
mod migrate;
mod store;
pub mod tls;
mod views;
mod waiters;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{AsyncMessage, Notification};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

pub use migrate::{MIGRATIONS, migrate};
pub use store::PostgresEventStore;
pub(crate) use store::{EVENT_COLUMNS, event_from_row};
pub use views::PostgresViewStore;

/// The channel an append notifies (from a trigger on `outbox`) when it commits.
pub const OUTBOX_CHANNEL: &str = "gatehouse_outbox";

/// The channel a view-store commit notifies.
pub const PROJECTED_CHANNEL: &str = "gatehouse_projected";

/// A connection pool and the configuration it connects with.
#[derive(Clone)]
pub struct PgDatabase {
    pool: Pool,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configuration holds the password: show only where it points.
        f.debug_struct("PgDatabase")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PgDatabase {
    /// Connects to `url` (a `postgres://` URL or a `key=value` string, with libpq's
    /// `sslmode` and `sslrootcert`: see [`tls`]) with a pool of at most
    /// `max_connections`, and brings the schema up to date.
    pub async fn connect(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let database = Self::new(url, max_connections)?;
        migrate(database.pool()).await?;
        Ok(database)
    }

    /// A pool over `url`, without touching the database yet (no migration).
    pub fn new(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let (config, tls, mode) = tls::connect_settings(url)?;
        if mode == tls::SslMode::Require {
            tracing::debug!(
                "sslmode=require encrypts but does not authenticate the database server unless \
                 sslrootcert is set; verify-full does both"
            );
        }
        Self::pooled(config, tls, max_connections)
    }

    /// Another pool of at most `max_connections` over the same database, for work that must
    /// not queue behind this pool's (the read-model projector's).
    pub fn sibling(&self, max_connections: usize) -> Result<Self, StoreError> {
        Self::pooled(self.config.clone(), self.tls.clone(), max_connections)
    }

    fn pooled(
        config: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        max_connections: usize,
    ) -> Result<Self, StoreError> {
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .build()
            .map_err(unavailable)?;
        Ok(Self { pool, config, tls })
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The connection settings.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Opens a connection outside the pool (for `LISTEN` and session-level advisory
    /// locks) and calls `on_notify` for every notification it receives. The connection
    /// closes when the returned [`Listener`] is dropped.
    pub(crate) async fn connect_dedicated<F>(&self, on_notify: F) -> Result<Listener, StoreError>
    where
        F: Fn(Notification) + Send + 'static,
    {
        let (client, mut connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(unavailable)?;
        // tokio-postgres hands notifications out of `Connection::poll_message`; whoever
        // drives the connection (this task) has to read them.
        let driver = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(notification))) => on_notify(notification),
                    Some(Ok(_notice)) => {}
                    Some(Err(error)) => return Err(error),
                    None => return Ok(()),
                }
            }
        });
        Ok(Listener { client, driver })
    }
}

/// A dedicated connection that listens for notifications.
pub(crate) struct Listener {
    /// The connection's client: queries on it run on the listening session.
    pub(crate) client: tokio_postgres::Client,
    /// Drives the connection; finishes when it closes.
    pub(crate) driver: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Listener {
    /// Subscribes the session to `channel` (one of ours: a constant identifier).
    pub(crate) async fn listen(&self, channel: &str) -> Result<(), StoreError> {
        self.client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .map_err(unavailable)
    }
}

/// Why a [`Listener`]'s driver finished, for a log line or an error.
pub(crate) fn why_ended(
    ended: Result<Result<(), tokio_postgres::Error>, tokio::task::JoinError>,
) -> String {
    match ended {
        Ok(Ok(())) => "the connection closed".to_owned(),
        Ok(Err(error)) => error_chain(&error),
        Err(join) => error_chain(&join),
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Dropping the client already closes the connection; do not leave the task behind
        // if the server never answers.
        self.driver.abort();
    }
}

/// Wraps a database or pool failure.
pub(crate) fn unavailable<E>(error: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::Unavailable(Box::new(error))
}

/// `error: cause: cause…`, for log lines.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Converts a non-negative count or sequence to SQL `bigint`, saturating.
pub(crate) fn to_bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
