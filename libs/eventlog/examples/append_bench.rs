//! Event append throughput and commit latency through the library, on Postgres: a program
//! that prints figures, not a test. Each append is one event to a new stream (a creating
//! command), with 1 and then 16 concurrent writers, for a bounded time each.
//!
//!     eval "$(scripts/test-deps)"
//!     cargo run --release -p gatehouse-eventlog --example append_bench
//!
//! `GATEHOUSE_BENCH_DATABASE_URL` benchmarks an existing (migrated or empty) database;
//! otherwise a fresh one is created and dropped. `GATEHOUSE_BENCH_SECONDS` (default 10).
//!
//! The outbox relay runs meanwhile, as in production, publishing to a publisher that only
//! counts (an infinitely fast bus): appends notify the relay only while it sleeps, so
//! whether it keeps up changes the append figures. `GATEHOUSE_BENCH_RELAY=0` runs without.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gatehouse_contracts::envelope::RecordedEvent;
use gatehouse_eventlog::relay::OutboxRelay;
use gatehouse_eventlog::{PublishError, Publisher};

use chrono::Utc;
use gatehouse_contracts::envelope::{EventMetadata, StreamId};
use gatehouse_eventlog::postgres::{PgDatabase, PostgresEventStore, migrate};
use gatehouse_eventlog::{AppendRequest, EventStore, ExpectedVersion, NewEvent};
use uuid::Uuid;

/// A bus that accepts everything at once.
#[derive(Default)]
struct CountingPublisher(AtomicU64);

#[async_trait]
impl Publisher for CountingPublisher {
    async fn publish(&self, _event: &RecordedEvent) -> Result<(), PublishError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len().saturating_sub(1)) as f64 * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

async fn run(store: Arc<PostgresEventStore>, writers: usize, seconds: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let event = NewEvent {
                    event_id: Uuid::new_v4(),
                    event_type: "bench.appended".into(),
                    schema_version: 1,
                    payload: serde_json::json!({"name": "bench", "description": "an event of realistic size"}),
                    metadata: EventMetadata { request_id: Some(Uuid::new_v4().to_string()), ..EventMetadata::default() },
                    recorded_at: Utc::now(),
                };
                let request = AppendRequest::new(StreamId::new("bench", Uuid::new_v4()), ExpectedVersion::NoStream, vec![event]);
                let t = Instant::now();
                store.append(request).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    println!(
        "{writers:>2} writers: {:>7.0} events/s, commit latency p50 {:?}, p99 {:?} ({} appends)",
        all.len() as f64 / elapsed,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.len()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = std::env::var("GATEHOUSE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let fresh;
    let url = match std::env::var("GATEHOUSE_BENCH_DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            fresh = gatehouse_testsupport::TestDatabase::create().await?;
            fresh.url().to_owned()
        }
    };
    let database = PgDatabase::connect(&url, 20).await?;
    migrate(database.pool()).await?;
    let store = Arc::new(PostgresEventStore::new(database.pool().clone()));
    let with_relay = std::env::var("GATEHOUSE_BENCH_RELAY").map_or(true, |v| v != "0");
    let published = Arc::new(CountingPublisher::default());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let relay = with_relay
        .then(|| tokio::spawn(OutboxRelay::new(database.clone(), published.clone()).run(shutdown)));
    println!(
        "append one event to a new stream, {seconds} s per run, outbox relay {}",
        if with_relay { "running" } else { "stopped" }
    );
    for writers in [1, 16] {
        run(store.clone(), writers, seconds).await?;
    }
    if let Some(relay) = relay {
        let client = database.pool().get().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                &[],
            )
            .await?;
        let backlog: i64 = row.try_get(0)?;
        println!(
            "relay: {} events published, {backlog} still in the outbox at the end",
            published.0.load(Ordering::Relaxed)
        );
        stop.send_replace(true);
        relay.await?;
    }
    Ok(())
}
