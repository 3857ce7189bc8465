//! Command bus round trips over a real nats-server on this machine.
//!
//! Starts its own nats-server (needs `GATEHOUSE_NATS_SERVER_BIN`, see `scripts/test-deps`),
//! serves an echo handler and measures request/reply round trips per second and latency
//! percentiles with 1 and with 64 concurrent requesters, for a bounded time each. Prints
//! figures; asserts nothing.
//!
//! ```text
//! eval "$(scripts/test-deps)"
//! cargo run --release -p gatehouse-bus --example command_bus_bench [-- SECONDS]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use gatehouse_bus::nats::{NatsArgs, NatsCommandBus, connect};
use gatehouse_bus::proof::CommandProofs;
use gatehouse_bus::{CommandBus, CommandHandler, Headers};
use gatehouse_secrets::MasterKey;
use gatehouse_testsupport::{NatsServer, NatsUser};

struct Echo;

#[async_trait]
impl CommandHandler for Echo {
    async fn handle(&self, _command: &str, payload: Bytes, _headers: Headers) -> Bytes {
        payload
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn run(bus: &NatsCommandBus, concurrency: usize, duration: Duration) -> anyhow::Result<()> {
    // A typical command envelope is a few hundred bytes of JSON.
    let payload = Bytes::from(vec![b'x'; 300]);
    let headers = vec![(
        "traceparent".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    )];
    // Warm up connections and the server's subject cache.
    for _ in 0..200 {
        bus.request(
            "gatehouse.cmd.identity.echo",
            payload.clone(),
            headers.clone(),
            Duration::from_secs(5),
        )
        .await?;
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let bus = bus.clone();
        let payload = payload.clone();
        let headers = headers.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match bus
                    .request(
                        "gatehouse.cmd.identity.echo",
                        payload.clone(),
                        headers.clone(),
                        Duration::from_secs(5),
                    )
                    .await
                {
                    Ok(_) => latencies.push(sent.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(done) = workers.join_next().await {
        let (mut l, e) = done?;
        latencies.append(&mut l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    println!(
        "concurrency {concurrency:>3}: {:>8} round trips in {:.1} s = {:>8.0}/s  p50 {:>7.1} µs  p99 {:>7.1} µs  max {:>8.1} µs  errors {errors}",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5);
    let mut server = NatsServer::start().await?;
    // Service and caller on separate connections, as in production.
    // Each side proves itself as in production: its own NATS user, TLS, command proofs.
    let proofs = Arc::new(CommandProofs::new(&MasterKey::generate()));
    let as_user = |user: NatsUser| {
        NatsArgs::open(server.url())
            .with_user(user.name(), server.password(user))
            .with_tls_ca(server.tls_ca())
    };
    let service = NatsCommandBus::new(
        connect(&as_user(NatsUser::Identity), "bench-service").await?,
        proofs.clone(),
    );
    let caller = NatsCommandBus::new(
        connect(&as_user(NatsUser::Gateway), "bench-caller").await?,
        proofs,
    );
    let serving = service.serve("identity", Arc::new(Echo)).await?;

    println!(
        "echo over nats-server at {}, 300-byte payload, {seconds} s per run",
        server.url()
    );
    for concurrency in [1, 64] {
        run(&caller, concurrency, Duration::from_secs(seconds)).await?;
    }

    serving.stop().await;
    server.stop().await?;
    Ok(())
}
