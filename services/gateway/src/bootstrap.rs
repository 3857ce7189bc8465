//! Start-up chores shared by `gatehouse dev`, `gatehouse serve` and `gatehouse-gateway`.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_bus::CommandBus;
use gatehouse_contracts::commands::{Accepted, Command, CommandEnvelope, FailureKind, Written};
use gatehouse_contracts::envelope::{Actor, EventMetadata};
use gatehouse_contracts::identity::BootstrapAdmin;
use gatehouse_contracts::keyring::EnsureSigningKey;
use gatehouse_contracts::names::Name;
use gatehouse_eventlog::postgres::PgDatabase;
use gatehouse_eventlog::postgres::leader::run_while_leader;
use gatehouse_eventlog::{EventFeed, EventStore, ProjectionRunner, ViewStore};
use gatehouse_secrets::BusSealer;
use secrecy::SecretString;
use tokio::sync::watch;

use crate::directory::READ_MODEL_PROJECTOR;
use crate::state::AppState;

/// The advisory lock electing the one read-model projector among all processes.
pub const PROJECTOR_LOCK: i64 = 0x6761_7465_7072_6f6a; // "gateproj"

/// Runs the read-model projector until `shutdown`: under leader election when the read
/// models are in Postgres (`database`), so that one process at a time consumes the
/// durable feed; directly in memory.
pub fn spawn_read_model_projector(
    views: Arc<dyn ViewStore>,
    log: Arc<dyn EventStore>,
    feed: Arc<dyn EventFeed>,
    database: Option<PgDatabase>,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let projector = read_model_projector(views, log);
    tokio::spawn(async move {
        match database {
            Some(database) => {
                run_while_leader(
                    database,
                    PROJECTOR_LOCK,
                    "read-model projector",
                    shutdown,
                    |stopped| {
                        let projector = projector.clone();
                        let feed = feed.clone();
                        async move { projector.run(feed, true, stopped).await }
                    },
                )
                .await
            }
            None => projector.run(feed, true, shutdown).await,
        }
    })
}

/// The projector of the shared read models, with every service's projections (from the
/// registry, `gatehouse_readmodels::SERVICES`).
pub fn read_model_projector(
    views: Arc<dyn ViewStore>,
    log: Arc<dyn EventStore>,
) -> ProjectionRunner {
    gatehouse_readmodels::projections().into_iter().fold(
        ProjectionRunner::new(READ_MODEL_PROJECTOR, views, log),
        |runner, p| runner.with(p),
    )
}

/// Creates the `admin` user unless a principal of that name exists, and waits until this
/// gateway's read models and directory know it (so a login right after start works).
/// Returns whether it was created (its password is never changed afterwards). Retries
/// while the identity service is not answering yet (it may start after the gateway).
pub async fn bootstrap_admin(state: &AppState, password: &SecretString) -> anyhow::Result<bool> {
    let (created, written) = send_bootstrap(state.bus.as_ref(), &state.sealer, password).await?;
    if let Some(written) = written {
        state.await_consistency(&written).await;
    }
    Ok(created)
}

async fn send_bootstrap(
    bus: &dyn CommandBus,
    sealer: &BusSealer,
    password: &SecretString,
) -> anyhow::Result<(bool, Option<Written>)> {
    let name = Name::parse("admin").map_err(|e| anyhow::anyhow!(e))?;
    let password = sealer.seal(password, &BootstrapAdmin::subject())?;
    let accepted = send_at_start(bus, BootstrapAdmin { name, password })
        .await
        .map_err(|e| e.context("bootstrapping the admin user failed"))?;
    Ok((accepted.output.created, accepted.written))
}

/// Asks the identity service to create the first token-signing key unless there is one
/// (the gateway cannot sign without it; replicas starting together create one between
/// them). Retries while the identity service is not answering yet.
pub async fn ensure_signing_key(bus: &dyn CommandBus) -> anyhow::Result<()> {
    send_at_start(bus, EnsureSigningKey::default())
        .await
        .map_err(|e| e.context("creating the first token signing key failed"))?;
    Ok(())
}

/// Sends a system command at start-up, retrying for up to 30 s while its service is not
/// answering (services may start after the gateway).
async fn send_at_start<C: Command>(
    bus: &dyn CommandBus,
    command: C,
) -> anyhow::Result<Accepted<C::Output>> {
    let envelope = CommandEnvelope {
        command,
        caller: None,
        metadata: EventMetadata {
            actor: Some(Actor::system()),
            ..EventMetadata::default()
        },
        idempotency_key: None,
    };
    let mut last = String::new();
    for _ in 0..150 {
        match gatehouse_bus::send(bus, &envelope, vec![]).await {
            Ok(accepted) => return Ok(accepted),
            Err(f) if f.kind == FailureKind::Unavailable => {
                last = f.message;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(f) => anyhow::bail!("{}", f.message),
        }
    }
    anyhow::bail!("{last}")
}
