//! Start-up chores shared by `gatehouse dev`, `gatehouse serve` and `gatehouse-gateway`.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_bus::CommandBus;
use gatehouse_contracts::commands::{Command, CommandEnvelope, FailureKind, Written};
use gatehouse_contracts::envelope::{Actor, EventMetadata};
use gatehouse_contracts::identity::BootstrapAdmin;
use gatehouse_contracts::names::Name;
use gatehouse_eventlog::{EventStore, ProjectionRunner, ViewStore};
use gatehouse_identity::projections::{ServiceAccountProjection, UserProjection};
use gatehouse_secrets::BusSealer;
use secrecy::SecretString;

use crate::directory::READ_MODEL_PROJECTOR;
use crate::state::AppState;

/// The projector of the shared read models, with every projection registered.
pub fn read_model_projector(
    views: Arc<dyn ViewStore>,
    log: Arc<dyn EventStore>,
) -> ProjectionRunner {
    ProjectionRunner::new(READ_MODEL_PROJECTOR, views, log)
        .with(Arc::new(UserProjection))
        .with(Arc::new(ServiceAccountProjection))
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
    let envelope = CommandEnvelope {
        command: BootstrapAdmin { name, password },
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
            Ok(accepted) => return Ok((accepted.output.created, accepted.written)),
            Err(f) if f.kind == FailureKind::Unavailable => {
                last = f.message;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(f) => anyhow::bail!("bootstrapping the admin user failed: {}", f.message),
        }
    }
    anyhow::bail!("bootstrapping the admin user failed: {last}")
}
