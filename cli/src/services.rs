//! The one list of services that `gatehouse dev` and `gatehouse serve` run in one process.
//!
//! Each service is described once, in two halves: its read side in
//! `gatehouse_readmodels::SERVICES` (projections, event schemas, what the gateway's
//! directory follows), and its write side here (the command router and background tasks
//! its crate builds, hosted by `gatehouse_bus::host`). The test below keeps the two lists in
//! step. Adding a service: `docs/adding-a-service.md`.

use gatehouse_bus::host::{ServiceContext, WriteSide};

/// The settings of every service, as flags and environment variables.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServiceSettings {
    #[command(flatten)]
    pub keyring: gatehouse_identity::KeyringSettings,
    #[command(flatten)]
    pub keys: gatehouse_keys::KeySettings,
    #[command(flatten)]
    pub devices: gatehouse_devices::DeviceSettings,
    #[command(flatten)]
    pub connectors: gatehouse_connectors::ConnectorSettings,
}

/// Every service's write side, in the order of `gatehouse_readmodels::SERVICES`.
pub fn write_sides(ctx: &ServiceContext<'_>, settings: &ServiceSettings) -> Vec<WriteSide> {
    vec![
        gatehouse_identity::write_side(ctx, &settings.keyring),
        gatehouse_keys::write_side(ctx, &settings.keys),
        gatehouse_devices::write_side(ctx, &settings.devices),
        gatehouse_connectors::write_side(ctx, &settings.connectors),
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gatehouse_contracts::clock::SystemClock;
    use gatehouse_eventlog::memory::{MemoryEventStore, MemoryViewStore};
    use gatehouse_secrets::MasterKey;

    use super::*;

    #[tokio::test]
    async fn every_service_has_a_read_side_and_a_write_side() {
        let master = MasterKey::generate();
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let ctx = ServiceContext {
            log: Arc::new(MemoryEventStore::new()),
            views: Arc::new(MemoryViewStore::new()),
            master: &master,
            clock: Arc::new(SystemClock),
            shutdown,
        };
        let written: Vec<&str> = write_sides(&ctx, &ServiceSettings::default())
            .iter()
            .map(|side| side.service)
            .collect();
        let read: Vec<&str> = gatehouse_readmodels::SERVICES
            .iter()
            .map(|side| side.service)
            .collect();
        assert_eq!(written, read);
    }
}
