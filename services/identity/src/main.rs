//! `gatehouse-identity`: the identity service as its own process (one of several replicas
//! in the `identity` queue group), with the signing-key schedule and the outbox relay (one
//! active relay across all processes).

use clap::Parser;
use gatehouse_bus::infra::{ProcessArgs, run_services};
use gatehouse_identity::KeyringSettings;

/// The identity service: users, service accounts, token-signing keys.
#[derive(Debug, Parser)]
#[command(name = "gatehouse-identity", version)]
struct Args {
    #[command(flatten)]
    process: ProcessArgs,
    #[command(flatten)]
    keyring: KeyringSettings,
    /// The gateways' token lifetimes (seconds): superseded signing keys must outlive them.
    /// Read from the gateways' own settings; only checked here.
    #[arg(
        long,
        env = "GATEHOUSE_API_KEY_TOKEN_TTL",
        default_value_t = 3600,
        hide = true
    )]
    api_key_token_ttl: u64,
    #[arg(long, env = "GATEHOUSE_PASSWORD_TOKEN_TTL", default_value_t = 24 * 3600, hide = true)]
    password_token_ttl: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.keyring
        .check(args.api_key_token_ttl.max(args.password_token_ttl))?;
    run_services("gatehouse-identity", &args.process, |ctx| {
        vec![gatehouse_identity::write_side(ctx, &args.keyring)]
    })
    .await
}
