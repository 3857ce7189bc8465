//! `gatehouse-keys`: the keys service as its own process (one of several replicas in the
//! `keys` queue group), with the expiry sweeper and the outbox relay (one active relay
//! across all processes).

use clap::Parser;
use gatehouse_bus::infra::{ProcessArgs, run_services};

/// The keys service: API keys of service accounts.
#[derive(Debug, Parser)]
#[command(name = "gatehouse-keys", version)]
struct Args {
    #[command(flatten)]
    process: ProcessArgs,
    #[command(flatten)]
    keys: gatehouse_keys::KeySettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    run_services("gatehouse-keys", &args.process, |ctx| {
        vec![gatehouse_keys::write_side(ctx, &args.keys)]
    })
    .await
}
