//! Gateway benchmark: a program that prints figures, not a test that asserts them.
//!
//! Starts the real `gatehouse serve` (release build: run
//! `cargo build --release -p gatehouse && cargo run --release -p gatehouse-e2e --example gateway_bench`)
//! against a fresh Postgres database and its own nats-server, then measures:
//! - create-service-account end to end at 1 and 32 concurrent clients (requests/s, p50/p99)
//!   and the projection lag of those writes (event recorded → read model applied, split at
//!   the outbox); at 32 clients also the CPU per create of each process and the Postgres
//!   transactions per create, which do not depend on how fast this machine is that day;
//! - the same creates offered at a fixed rate (an open loop), by default half of what the
//!   32 clients achieved, and their projection lag. 32 clients that each send their next
//!   create as soon as the last is answered keep the machine saturated, so their lag is
//!   mostly queueing for the two cores and moves with how fast the machine is that day; at
//!   a rate below saturation the lag is the pipeline's own (`GATEHOUSE_BENCH_OFFERED_RATE`
//!   sets the rate in creates/s);
//! - authenticated `GET /api/v1/current-user` at 64 connections (with `wrk` when it is
//!   installed, otherwise with this program's own client);
//! - resident memory of the server idle and after the load.
//!
//! Every phase is bounded in time (`GATEHOUSE_BENCH_SECONDS`, default 10) and the program
//! stops by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gatehouse_e2e::TestApp;
use gatehouse_e2e::bench::{
    PG_STATS_FLUSH, cpu, current_user_load, load_average, machine, percentile, processes, rss_kib,
    transactions,
};
use reqwest::StatusCode;

/// Latencies of the creates, sorted, and the requests/s achieved.
struct Load {
    rate: f64,
    latencies: Vec<Duration>,
}

impl Load {
    /// One line: `what`, the rate, p50 and p99, and how many were created, then `more`.
    fn report(&self, what: &str, more: &str) -> String {
        format!(
            "create service account, {what}: {:>7.0} requests/s, p50 {:?}, p99 {:?} ({} created{more})",
            self.rate,
            percentile(&self.latencies, 0.5),
            percentile(&self.latencies, 0.99),
            self.latencies.len()
        )
    }
}

async fn create(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    name: String,
) -> anyhow::Result<()> {
    let response = http
        .post(url)
        .bearer_auth(token)
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == StatusCode::CREATED,
        "create failed: {}",
        response.status()
    );
    Ok(())
}

/// `clients` clients, each sending its next create as soon as the last is answered.
async fn create_load(
    app: &TestApp,
    token: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Load> {
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let http = app.http.clone();
        let url = app.at("/api/v1/service_accounts");
        let token = token.to_owned();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                create(&http, &url, &token, format!("bench-{clients}-{n}")).await?;
                latencies.push(started.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    Ok(Load {
        rate: all.len() as f64 / elapsed,
        latencies: all,
    })
}

/// Creates offered at `rate` per second whatever the answers (an open loop), named
/// `bench-open-<n>`. Each latency counts from when its create was due, so a create that
/// could not go out on time (the machine stalled) is not flattered.
async fn offered_load(app: &TestApp, token: &str, rate: f64, seconds: u64) -> anyhow::Result<Load> {
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let url = app.at("/api/v1/service_accounts");
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0u32;
    loop {
        let due = started + interval * n;
        if due >= deadline {
            break;
        }
        tokio::time::sleep_until(due).await;
        let (http, url, token) = (app.http.clone(), url.clone(), token.to_owned());
        tasks.spawn(async move {
            create(&http, &url, &token, format!("bench-open-{n}")).await?;
            anyhow::Ok(due.elapsed())
        });
        n += 1;
    }
    let mut latencies = Vec::new();
    while let Some(latency) = tasks.join_next().await {
        latencies.push(latency??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    Ok(Load {
        rate: latencies.len() as f64 / elapsed,
        latencies,
    })
}

/// Projection lag of the creates named `<phase>-<n>` (event recorded → read model applied)
/// and its parts, in ms: p50, p99 and max of each, or `None` for a part that cannot be told
/// (`outbox.queued_at` is from migration 8, so a run of an older build prints the rest; the
/// split at the commit needs the server's `track_commit_timestamp`). The commit time is the
/// event row's transaction's: events are never updated, so its `xmin` is the append's.
async fn projection_lag(db: &tokio_postgres::Client, phase: &str) -> anyhow::Result<Vec<LagPart>> {
    let queued_at = db
        .query_opt(
            "SELECT 1 FROM information_schema.columns \
             WHERE table_name = 'outbox' AND column_name = 'queued_at'",
            &[],
        )
        .await?
        .is_some();
    // With `track_commit_timestamp = on` (a server setting, off by default) the relay's
    // part splits at the append's commit: waiting to commit, then waiting for the relay.
    let committed_at = db
        .query_one(
            "SELECT current_setting('track_commit_timestamp') = 'on'",
            &[],
        )
        .await?
        .get::<_, bool>(0);
    let parts = [
        (
            "projection lag (recorded → applied)",
            "a.applied_at - e.recorded_at",
            true,
        ),
        (
            "  of which recorded → published by the relay",
            "o.published_at - e.recorded_at",
            true,
        ),
        (
            "    recorded → queued in the outbox (the append)",
            "o.queued_at - e.recorded_at",
            queued_at,
        ),
        (
            "    queued → published (the relay)",
            "o.published_at - o.queued_at",
            queued_at,
        ),
        (
            "      queued → committed (the append's commit)",
            "pg_xact_commit_timestamp(e.xmin) - o.queued_at",
            queued_at && committed_at,
        ),
        (
            "      committed → published (the relay's read, send and ack)",
            "o.published_at - pg_xact_commit_timestamp(e.xmin)",
            queued_at && committed_at,
        ),
        (
            "  of which published → applied by the projector",
            "a.applied_at - o.published_at",
            true,
        ),
    ];
    let mut figures = Vec::new();
    for (what, expression, known) in parts {
        if !known {
            figures.push((what, None));
            continue;
        }
        let row = db
            .query_one(
                &format!(
                    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), \
                            percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), max(lag)::float8 \
                     FROM (SELECT (extract(epoch FROM ({expression})) * 1000)::float8 AS lag \
                           FROM read.applied a \
                           JOIN events e ON e.stream_id = a.stream_id AND e.version = a.version \
                           JOIN outbox o ON o.position = e.position \
                           WHERE e.event_type = 'service_account.created' \
                             AND e.payload->>'name' LIKE $1) l"
                ),
                &[&format!("{phase}-%")],
            )
            .await?;
        figures.push((
            what,
            Some((
                row.try_get::<_, f64>(0).unwrap_or(0.0),
                row.try_get::<_, f64>(1).unwrap_or(0.0),
                row.try_get::<_, f64>(2).unwrap_or(0.0),
            )),
        ));
    }
    Ok(figures)
}

/// A part of the lag and its p50, p99 and max in ms (`None`: this build cannot tell).
type LagPart = (&'static str, Option<(f64, f64, f64)>);

fn print_lag(parts: &[LagPart]) {
    for (what, figures) in parts {
        match figures {
            Some((p50, p99, max)) => {
                println!("  {what}: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms")
            }
            None => println!("  {what}: n/a (no outbox.queued_at, or track_commit_timestamp off)"),
        }
    }
}

async fn tokio_postgres_connect(
    url: &str,
) -> anyhow::Result<(
    tokio_postgres::Client,
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
)> {
    Ok(tokio_postgres::connect(url, tokio_postgres::NoTls).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("GATEHOUSE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let app = TestApp::spawn().await?;
    let pid = app.pid().unwrap_or(0);
    let token = app.admin_token().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("{}", machine());
    println!("gatehouse serve, pid {pid}, {} s per phase", seconds);
    println!("RSS idle: {} MiB", rss_kib(pid).unwrap_or(0) / 1024);

    let one = create_load(&app, &token, 1, seconds).await?;
    println!("{}", one.report(" 1 client", ""));
    // The 32-client phase is profiled: CPU of each process and Postgres transactions.
    let (db, connection) = tokio_postgres_connect(app.db.url()).await?;
    tokio::spawn(connection);
    tokio::time::sleep(PG_STATS_FLUSH).await;
    let groups = processes(&app, &db).await?;
    let (cpu_before, transactions_before) = (cpu(&groups), transactions(&db).await?);
    let saturated = create_load(&app, &token, 32, seconds).await?;
    let cpu_after = cpu(&groups);
    let n = saturated.latencies.len();
    let load = format!("; load average {}", load_average());
    println!("{}", saturated.report("32 clients", &load));
    tokio::time::sleep(PG_STATS_FLUSH).await;
    let per_create = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    let mut total = Duration::ZERO;
    for (label, before) in &cpu_before {
        let spent = cpu_after[label].saturating_sub(*before);
        total += spent;
        println!("  CPU per create, {label}: {:.0} µs", per_create(spent));
    }
    println!(
        "  CPU per create, all of these: {:.0} µs",
        per_create(total)
    );
    println!(
        "  Postgres transactions per create: {:.2}",
        (transactions(&db).await? - transactions_before) as f64 / n.max(1) as f64
    );
    println!("projection lag of the 32-client creates:");
    print_lag(&projection_lag(&db, "bench-32").await?);

    let rate = std::env::var("GATEHOUSE_BENCH_OFFERED_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(saturated.rate / 2.0);
    let offered = offered_load(&app, &token, rate, seconds).await?;
    let offered_rate = format!("; offered {rate:.0}/s");
    println!("{}", offered.report("open loop", &offered_rate));
    println!("projection lag of the open-loop creates:");
    print_lag(&projection_lag(&db, "bench-open").await?);
    println!("RSS after writes: {} MiB", rss_kib(pid).unwrap_or(0) / 1024);

    println!("{}", current_user_load(&app, &token, 64, seconds).await?);
    println!("RSS after reads: {} MiB", rss_kib(pid).unwrap_or(0) / 1024);
    Ok(())
}
