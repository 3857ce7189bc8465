//! `gatehouse-connectors`: the connector broker as its own process (one of several
//! replicas in the `connectors` queue group), with the lease expiry sweeper and the outbox
//! relay (one active relay across all processes).

use clap::Parser;
use gatehouse_bus::infra::{ProcessArgs, run_services};
use gatehouse_connectors::ConnectorSettings;

/// The connectors service: service connectors, leases and stack components.
#[derive(Debug, Parser)]
#[command(name = "gatehouse-connectors", version)]
struct Args {
    #[command(flatten)]
    process: ProcessArgs,
    #[command(flatten)]
    connectors: ConnectorSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    run_services("gatehouse-connectors", &args.process, |ctx| {
        vec![gatehouse_connectors::write_side(ctx, &args.connectors)]
    })
    .await
}
