//! `gatehouse-gateway`: the HTTP gateway as its own process. Run as many replicas as you
//! like behind a load balancer; one of them at a time also runs the read-model projector
//! (Postgres advisory lock).

use std::sync::Arc;

use clap::Parser;
use gatehouse_bus::infra::{ProcessArgs, shutdown_signal};
use gatehouse_contracts::clock::SystemClock;
use gatehouse_gateway::bootstrap::{bootstrap_admin, spawn_read_model_projector};
use gatehouse_gateway::{GatewayDeps, GatewaySettings};
use secrecy::SecretString;

/// The Gatehouse HTTP gateway.
#[derive(Debug, Parser)]
#[command(name = "gatehouse-gateway", version)]
struct Args {
    /// Listen address.
    #[arg(long, env = "GATEHOUSE_BIND", default_value = "127.0.0.1:8080")]
    bind: std::net::SocketAddr,
    /// Public URL (token issuer).
    #[arg(long, env = "GATEHOUSE_ISSUER")]
    issuer: Option<String>,
    #[command(flatten)]
    process: ProcessArgs,
    /// Initial admin password (used only if `admin` does not exist yet).
    #[arg(long, env = "GATEHOUSE_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<SecretString>,
    /// Proxies whose X-Forwarded-For is trusted.
    #[arg(long, env = "GATEHOUSE_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<std::net::IpAddr>,
    #[command(flatten)]
    gateway: gatehouse_gateway::GatewayOptions,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (master, infra) = args.process.start("gatehouse-gateway").await?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);

    let (projector_views, projector_log) = infra.projector_stores()?;
    let projector_task = spawn_read_model_projector(
        projector_views,
        projector_log,
        infra.feed.clone(),
        Some(infra.database.clone()),
        shutdown.clone(),
    );

    let mut settings = GatewaySettings::new(args.bind);
    if let Some(issuer) = args.issuer {
        settings.issuer = issuer;
    }
    settings.trusted_proxies = args.trusted_proxies;
    args.gateway.apply(&mut settings);
    let deps = GatewayDeps {
        bus: infra.bus.clone(),
        views: infra.views.clone(),
        log: infra.log.clone(),
        feed: infra.feed.clone(),
        master,
        clock: Arc::new(SystemClock),
        probes: infra.probes(gatehouse_gateway::READ_MODEL_PROJECTOR),
        nats: Some(infra.nats.clone()),
    };
    let state = gatehouse_gateway::build(settings, deps, shutdown.clone()).await?;
    if let Some(password) = &args.admin_password {
        bootstrap_admin(&state, password).await?;
    }
    let running = gatehouse_gateway::serve(state, shutdown.clone())?;

    shutdown_signal().await;
    tracing::info!("shutting down");
    stop.send_replace(true);
    let _ = running.task.await;
    let _ = projector_task.await;
    Ok(())
}
