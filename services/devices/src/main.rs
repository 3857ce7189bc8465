//! `gatehouse-devices`: the devices service as its own process (one of several replicas in
//! the `devices` queue group), plus the outbox relay (one active relay across all
//! processes).

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use gatehouse_bus::CommandBus;
use gatehouse_bus::infra::{Infra, shutdown_signal};
use gatehouse_contracts::clock::SystemClock;
use gatehouse_devices::{DeviceSettings, DevicesService};
use gatehouse_secrets::MasterKey;
use secrecy::{ExposeSecret, SecretString};

/// The devices service: device authorizations (RFC 8628) and authorized devices.
#[derive(Debug, Parser)]
#[command(name = "gatehouse-devices", version)]
struct Args {
    /// Postgres URL of the event log.
    #[arg(long, env = "GATEHOUSE_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// NATS URL (JetStream enabled, nats-server 2.10 or newer).
    #[arg(
        long,
        env = "GATEHOUSE_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// Base64 of 32 random bytes, the same in every Gatehouse process.
    #[arg(long, env = "GATEHOUSE_MASTER_KEY", hide_env_values = true)]
    master_key: SecretString,
    #[command(flatten)]
    devices: DeviceSettings,
    /// Log filter.
    #[arg(long, env = "GATEHOUSE_LOG", default_value = "info")]
    log: String,
    /// Log format: json or pretty.
    #[arg(long, env = "GATEHOUSE_LOG_FORMAT", default_value = "pretty")]
    log_format: gatehouse_telemetry::LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    gatehouse_telemetry::init(&args.log, args.log_format);
    let master =
        MasterKey::from_base64(args.master_key.expose_secret()).context("GATEHOUSE_MASTER_KEY")?;
    let infra = Infra::connect(&args.database_url, &args.nats_url, "gatehouse-devices").await?;
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
    let relay = tokio::spawn(infra.relay().run(shutdown.clone()));
    tracing::info!(settings = ?service.settings(), "devices service ready");

    shutdown_signal().await;
    tracing::info!("shutting down");
    stop.send_replace(true);
    serving.stop().await;
    let _ = relay.await;
    Ok(())
}
