//! A tiny embedded migrator.
//!
//! The SQL files under `libs/eventlog/migrations/` are compiled into the binary and applied
//! in version order, all in one transaction that first takes a transaction-level advisory
//! lock: when several processes start at once, one migrates and the others wait, then find
//! nothing left to do. Each applied version is recorded in `gatehouse_schema_migrations`.
//! Migrations are append-only: never edit one that has been released, add a new file.

use deadpool_postgres::Pool;

use super::unavailable;
use crate::store::StoreError;

/// Serialises migrations across processes (an arbitrary constant, the same everywhere).
const MIGRATION_LOCK: i64 = 0x6761_7465_6d69_6772; // "gatemigr"

/// One embedded migration.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Its version (the file's `NNNN` prefix); applied in increasing order.
    pub version: i32,
    /// Its name (the rest of the file name).
    pub name: &'static str,
    /// The SQL, run with the simple-query protocol (several statements allowed).
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "event_log",
        sql: include_str!("../../migrations/0001_event_log.sql"),
    },
    Migration {
        version: 2,
        name: "read_models",
        sql: include_str!("../../migrations/0002_read_models.sql"),
    },
    Migration {
        version: 3,
        name: "outbox_wakeups",
        sql: include_str!("../../migrations/0003_outbox_wakeups.sql"),
    },
    Migration {
        version: 4,
        name: "last_used",
        sql: include_str!("../../migrations/0004_last_used.sql"),
    },
    Migration {
        version: 5,
        name: "claims_by_stream",
        sql: include_str!("../../migrations/0005_claims_by_stream.sql"),
    },
    Migration {
        version: 6,
        name: "idempotency_expiry",
        sql: include_str!("../../migrations/0006_idempotency_expiry.sql"),
    },
    Migration {
        version: 7,
        name: "skipped_events",
        sql: include_str!("../../migrations/0007_skipped_events.sql"),
    },
    Migration {
        version: 8,
        name: "outbox_queued_at",
        sql: include_str!("../../migrations/0008_outbox_queued_at.sql"),
    },
];

/// Brings the schema up to date. Idempotent, and safe to call from several processes at
/// the same time.
#[tracing::instrument(skip_all, err)]
pub async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(unavailable)?;
    let tx = client.transaction().await.map_err(unavailable)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(unavailable)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS gatehouse_schema_migrations (
             version    int PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(unavailable)?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM gatehouse_schema_migrations", &[])
        .await
        .map_err(unavailable)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applying migration"
        );
        tx.batch_execute(migration.sql).await.map_err(unavailable)?;
        tx.execute(
            "INSERT INTO gatehouse_schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(unavailable)?;
    }
    tx.commit().await.map_err(unavailable)?;
    Ok(())
}
