//! `gatehouse-devices`: the devices service as its own process (one of several replicas in
//! the `devices` queue group), plus the outbox relay (one active relay across all
//! processes).

use std::sync::Arc;

use clap::Parser;
use gatehouse_bus::CommandBus;
use gatehouse_bus::infra::{ProcessArgs, shutdown_signal};
use gatehouse_contracts::clock::SystemClock;
use gatehouse_devices::{DeviceSettings, DevicesService};

/// The devices service: device authorizations (RFC 8628) and authorized devices.
#[derive(Debug, Parser)]
#[command(name = "gatehouse-devices", version)]
struct Args {
    #[command(flatten)]
    process: ProcessArgs,
    #[command(flatten)]
    devices: DeviceSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (master, infra) = args.process.start("gatehouse-devices").await?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);

    let service = DevicesService::new(
        infra.log.clone(),
        &master,
        Arc::new(SystemClock),
        args.devices,
    );
    let serving = infra
        .bus
        .serve("devices", Arc::new(service.router()))
        .await?;
    let sweeper = tokio::spawn(service.clone().run_lapse_sweeper(
        infra.views.clone(),
        service.lapse_sweep_interval(),
        shutdown.clone(),
    ));
    let relay = tokio::spawn(infra.relay().run(shutdown.clone()));
    tracing::info!(settings = ?service.settings(), "devices service ready");

    shutdown_signal().await;
    tracing::info!("shutting down");
    stop.send_replace(true);
    serving.stop().await;
    let _ = sweeper.await;
    let _ = relay.await;
    Ok(())
}
