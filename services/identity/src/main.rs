//! `gatehouse-identity`: the identity service as its own process (one of several replicas
//! in the `identity` queue group), plus the outbox relay (one active across all processes).

use std::sync::Arc;

use clap::Parser;
use gatehouse_bus::CommandBus;
use gatehouse_bus::infra::{ProcessArgs, shutdown_signal};
use gatehouse_contracts::clock::SystemClock;
use gatehouse_identity::IdentityService;
use gatehouse_secrets::BusSealer;

/// The identity service: users and service accounts.
#[derive(Debug, Parser)]
#[command(name = "gatehouse-identity", version)]
struct Args {
    #[command(flatten)]
    process: ProcessArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (master, infra) = args.process.start("gatehouse-identity").await?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);

    let service = IdentityService::new(
        infra.log.clone(),
        Arc::new(BusSealer::new(&master)),
        Arc::new(SystemClock),
    );
    let serving = infra
        .bus
        .serve("identity", Arc::new(service.router()))
        .await?;
    let relay = tokio::spawn(infra.relay().run(shutdown.clone()));
    tracing::info!("identity service ready");

    shutdown_signal().await;
    tracing::info!("shutting down");
    stop.send_replace(true);
    serving.stop().await;
    let _ = relay.await;
    Ok(())
}
