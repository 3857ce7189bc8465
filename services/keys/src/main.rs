//! `gatehouse-keys`: the keys service as its own process (one of several replicas in the
//! `keys` queue group), with the expiry sweeper and the outbox relay (one active relay
//! across all processes).

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gatehouse_bus::CommandBus;
use gatehouse_bus::infra::{ProcessArgs, shutdown_signal};
use gatehouse_contracts::clock::SystemClock;
use gatehouse_keys::KeysService;

/// The keys service: API keys of service accounts.
#[derive(Debug, Parser)]
#[command(name = "gatehouse-keys", version)]
struct Args {
    #[command(flatten)]
    process: ProcessArgs,
    /// Seconds between sweeps that record reached key expiries.
    #[arg(long, env = "GATEHOUSE_KEY_EXPIRY_SWEEP_SECONDS", default_value_t = 5)]
    expiry_sweep_seconds: u64,
    #[command(flatten)]
    keys: gatehouse_keys::KeySettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (master, infra) = args.process.start("gatehouse-keys").await?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);

    let service = KeysService::new(infra.log.clone(), &master, Arc::new(SystemClock))
        .with_settings(&args.keys);
    let serving = infra.bus.serve("keys", Arc::new(service.router())).await?;
    let sweeper = tokio::spawn(service.run_expiry_sweeper(
        infra.views.clone(),
        Duration::from_secs(args.expiry_sweep_seconds.max(1)),
        shutdown.clone(),
    ));
    let relay = tokio::spawn(infra.relay().run(shutdown.clone()));
    tracing::info!("keys service ready");

    shutdown_signal().await;
    tracing::info!("shutting down");
    stop.send_replace(true);
    serving.stop().await;
    let _ = sweeper.await;
    let _ = relay.await;
    Ok(())
}
