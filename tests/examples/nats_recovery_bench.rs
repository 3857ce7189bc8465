//! NATS recovery benchmark: a program that prints figures, not a test that asserts them.
//!
//! Starts the real `gatehouse serve` against a fresh Postgres database and its own
//! nats-server, keeps `GATEHOUSE_BENCH_CLIENTS` (default 8) clients creating service
//! accounts, and then, `GATEHOUSE_BENCH_ROUNDS` times (default 3): stops nats-server
//! (SIGKILL) for `GATEHOUSE_BENCH_OUTAGE_MS` (default 4000), starts it again on the same
//! port and store, and watches how long the creates take to come back. For each round it
//! prints, counted from the moment nats-server is healthy again:
//! - the first create acknowledged (201) that was sent after that moment;
//! - when the rate of acknowledged creates, over 500 ms windows, is back to half the rate
//!   before the outage ("recovered");
//! - how many creates took the full consistency wait (≥ 5 s) after it;
//! - the acknowledged creates per second in 1 s buckets.
//!
//! Build the binaries first (`cargo build --release -p gatehouse`), then
//! `cargo run --release -p gatehouse-e2e --example nats_recovery_bench`. Every phase is
//! bounded and the program stops by itself.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_e2e::TestApp;
use gatehouse_e2e::bench::{env_number, load_average, machine, percentile};
use reqwest::StatusCode;

/// How long the gateway waits for the read models after a write (its consistency timeout).
const CONSISTENCY_WAIT: Duration = Duration::from_secs(5);
/// Steady load before each outage.
const BEFORE: Duration = Duration::from_secs(3);
/// How long each round watches after nats-server is back.
const AFTER: Duration = Duration::from_secs(20);
/// The window the rate is judged over.
const WINDOW: Duration = Duration::from_millis(500);

/// One create: when it was sent and when it was answered, and whether with 201.
#[derive(Clone, Copy, Debug)]
struct Create {
    sent: Instant,
    done: Instant,
    created: bool,
}

/// What one round measured, relative to nats-server being healthy again.
#[derive(Debug)]
struct Round {
    first_after: Option<Duration>,
    recovered: Option<Duration>,
    full_waits: usize,
    per_second: Vec<usize>,
    rate_before: f64,
}

fn judge(creates: &[Create], outage_start: Instant, back: Instant) -> Round {
    let before_start = outage_start - BEFORE;
    let acked_before = creates
        .iter()
        .filter(|c| c.created && c.done >= before_start && c.done < outage_start)
        .count();
    let rate_before = acked_before as f64 / BEFORE.as_secs_f64();
    let first_after = creates
        .iter()
        .filter(|c| c.created && c.sent >= back)
        .map(|c| c.done - back)
        .min();
    // The first 500 ms window (sliding by 50 ms) after `back` with at least half the rate.
    let wanted = (rate_before * WINDOW.as_secs_f64() / 2.0).max(1.0);
    let mut recovered = None;
    let mut offset = Duration::ZERO;
    while offset + WINDOW <= AFTER {
        let (from, to) = (back + offset, back + offset + WINDOW);
        let acked = creates
            .iter()
            .filter(|c| c.created && c.done >= from && c.done < to)
            .count();
        if acked as f64 >= wanted {
            recovered = Some(offset + WINDOW);
            break;
        }
        offset += Duration::from_millis(50);
    }
    let full_waits = creates
        .iter()
        .filter(|c| c.done >= back && c.done - c.sent >= CONSISTENCY_WAIT)
        .count();
    let per_second = (0..AFTER.as_secs())
        .map(|s| {
            let from = back + Duration::from_secs(s);
            let to = from + Duration::from_secs(1);
            creates
                .iter()
                .filter(|c| c.created && c.done >= from && c.done < to)
                .count()
        })
        .collect();
    Round {
        first_after,
        recovered,
        full_waits,
        per_second,
        rate_before,
    }
}

/// Clients creating service accounts until `stop`; every answer is recorded.
fn spawn_writers(
    app: &TestApp,
    token: &str,
    clients: usize,
    log: Arc<Mutex<Vec<Create>>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|client| {
            let http = app.http.clone();
            let url = app.at("/api/v1/service_accounts");
            let token = token.to_owned();
            let log = log.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while !*stop.borrow() {
                    n += 1;
                    let sent = Instant::now();
                    let answer = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&serde_json::json!({"name": format!("recovery-{client}-{n}")}))
                        .send()
                        .await;
                    let created = matches!(&answer, Ok(r) if r.status() == StatusCode::CREATED);
                    let done = Instant::now();
                    if let Ok(mut log) = log.lock() {
                        log.push(Create {
                            sent,
                            done,
                            created,
                        });
                    }
                    if !created {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect()
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "never".to_owned(), |d| format!("{} ms", d.as_millis()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let clients = env_number("GATEHOUSE_BENCH_CLIENTS", 8) as usize;
    let rounds = env_number("GATEHOUSE_BENCH_ROUNDS", 3);
    let outage = Duration::from_millis(env_number("GATEHOUSE_BENCH_OUTAGE_MS", 4000));
    let mut app = TestApp::spawn().await?;
    let token = app.admin_token().await?;
    println!("{}", machine());
    println!(
        "gatehouse serve, {clients} clients creating service accounts; {rounds} rounds of a {} ms nats-server outage",
        outage.as_millis()
    );

    let log = Arc::new(Mutex::new(Vec::new()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writers = spawn_writers(&app, &token, clients, log.clone(), stopped);
    let mut results = Vec::new();
    for round in 1..=rounds {
        tokio::time::sleep(BEFORE).await;
        let outage_start = Instant::now();
        app.nats.stop().await?;
        tokio::time::sleep(outage).await;
        app.nats.restart().await?;
        let back = Instant::now();
        tokio::time::sleep(AFTER).await;
        let creates = log.lock().map(|l| l.clone()).unwrap_or_default();
        let result = judge(&creates, outage_start, back);
        println!(
            "round {round}: before {:.0}/s; after nats-server is back: first create sent after it acknowledged in {}, \
             rate ≥ half of before after {}, {} creates waited ≥ {CONSISTENCY_WAIT:?}; load average {}",
            result.rate_before,
            ms(result.first_after),
            ms(result.recovered),
            result.full_waits,
            load_average(),
        );
        println!(
            "  acknowledged per second after it: {:?}",
            result.per_second
        );
        results.push(result);
    }
    stop.send_replace(true);
    for writer in writers {
        let _ = tokio::time::timeout(Duration::from_secs(30), writer).await;
    }

    let mut recovered: Vec<Duration> = results
        .iter()
        .map(|r| r.recovered.unwrap_or(AFTER))
        .collect();
    recovered.sort();
    let mut first: Vec<Duration> = results
        .iter()
        .map(|r| r.first_after.unwrap_or(AFTER))
        .collect();
    first.sort();
    println!(
        "median over {rounds} rounds: rate back to half in {} ms (min {} ms, max {} ms); first create sent after nats-server returned acknowledged in {} ms",
        percentile(&recovered, 0.5).as_millis(),
        recovered.first().copied().unwrap_or_default().as_millis(),
        recovered.last().copied().unwrap_or_default().as_millis(),
        percentile(&first, 0.5).as_millis(),
    );
    let warnings = app
        .log()
        .lines()
        .filter(|l| l.contains("did not catch up in time"))
        .count();
    println!("serve's log: {warnings} \"read models did not catch up in time\" warnings");
    Ok(())
}
