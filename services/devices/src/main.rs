//! `gatehouse-devices`: the devices service as its own process (one of several replicas in
//! the `devices` queue group), with the lapse sweeper and the outbox relay (one active
//! relay across all processes).

use clap::Parser;
use gatehouse_bus::infra::{ProcessArgs, run_services};
use gatehouse_devices::DeviceSettings;

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
    run_services("gatehouse-devices", &args.process, |ctx| {
        vec![gatehouse_devices::write_side(ctx, &args.devices)]
    })
    .await
}
