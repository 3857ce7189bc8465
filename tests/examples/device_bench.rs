//! Device-login benchmark (issue 4): a program that prints figures, not a test that asserts them.
//!
//! Starts the real `gatehouse serve` (release build: run
//! `cargo build --release -p gatehouse -p gatehouse-gateway --bins && cargo run --release -p gatehouse-e2e --example device_bench`)
//! against a fresh Postgres database and its own nats-server, then measures:
//! - starting device authorizations (`POST /oauth/device_authorization`, one event each) at
//!   32 concurrent clients: that fills the server with pending authorizations;
//! - token-endpoint polls of those pending authorizations (`POST /oauth/token`, device-code
//!   grant) at 1 and 64 connections: first each authorization's first poll (answered
//!   `authorization_pending`), then a sustained hammering of all of them, which RFC 8628
//!   §3.5 answers mostly with `slow_down` because every device polls far faster than its
//!   interval. Both are answers from memory; neither appends an event;
//! - lock propagation to two gateway replicas: per trial, `POST /api/v1/devices/{id}/lock`
//!   on the first, then the time from that call returning until the last of the two refuses
//!   the device's token (both polled in a tight loop), then unlock.
//!
//! Every load phase is bounded in time (`GATEHOUSE_BENCH_SECONDS`, default 10), the lock
//! phase by its trial count (`GATEHOUSE_BENCH_TRIALS`, default 200, each trial bounded by a
//! timeout), the pending pool by `GATEHOUSE_BENCH_DEVICES` (default 10,000), and the program
//! stops by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gatehouse_e2e::TestApp;
use gatehouse_e2e::bench::{
    Propagation, Stats, TwoGateways, env_number, load_average, machine, memory_line, rss_kib,
    run_clients, summary,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CLIENT: &str = "gatehouse-bench";
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The device code and user code of a new authorization.
async fn authorize(http: &reqwest::Client, base: &str) -> anyhow::Result<(String, String)> {
    let response = http
        .post(format!("{base}/oauth/device_authorization"))
        .form(&[
            ("client_id", CLIENT),
            ("hostname", "bench-box"),
            ("os", "linux x86_64"),
        ])
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "device authorization: {status} {body}"
    );
    Ok((
        body["device_code"]
            .as_str()
            .context("no device_code")?
            .to_owned(),
        body["user_code"]
            .as_str()
            .context("no user_code")?
            .to_owned(),
    ))
}

/// Starts up to `count` authorizations with 32 concurrent clients within `seconds`.
async fn pending_pool(
    app: &TestApp,
    count: usize,
    seconds: u64,
) -> anyhow::Result<(Vec<String>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let http = app.http.clone();
        let base = app.url.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            while Instant::now() < deadline && next.fetch_add(1, Ordering::Relaxed) < count {
                codes.push(authorize(&http, &base).await?.0);
            }
            anyhow::Ok(codes)
        }));
    }
    let mut codes = Vec::new();
    for task in tasks {
        codes.extend(task.await??);
    }
    Ok((codes, started.elapsed()))
}

/// How a poll phase picks the device code of each poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rounds {
    /// Each code once, until they run out: every poll is that device's first.
    FirstPolls,
    /// Round and round the pool until the time is up.
    Sustained,
}

/// Device-code grants from `clients` concurrent clients over `codes`. An RFC answer to a
/// pending authorization (`authorization_pending` or `slow_down`) counts as served; the
/// split is returned alongside.
async fn poll_load(
    app: &TestApp,
    codes: Arc<Vec<String>>,
    rounds: Rounds,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<(Stats, usize, usize)> {
    let next = Arc::new(AtomicUsize::new(0));
    let pending = Arc::new(AtomicUsize::new(0));
    let slow_down = Arc::new(AtomicUsize::new(0));
    let stats = run_clients(clients, seconds, |deadline| {
        let http = app.http.clone();
        let url = app.at("/oauth/token");
        let (codes, next) = (codes.clone(), next.clone());
        let (pending, slow_down) = (pending.clone(), slow_down.clone());
        async move {
            let mut stats = Stats::default();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let code = match rounds {
                    Rounds::FirstPolls if n >= codes.len() => break,
                    _ => &codes[n % codes.len()],
                };
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .form(&[
                        ("grant_type", DEVICE_GRANT),
                        ("device_code", code.as_str()),
                        ("client_id", CLIENT),
                    ])
                    .send()
                    .await;
                let answer = match response {
                    Ok(response) => {
                        let status = response.status();
                        match response.text().await {
                            Ok(body) if body.contains("\"authorization_pending\"") => Ok(&pending),
                            Ok(body) if body.contains("\"slow_down\"") => Ok(&slow_down),
                            Ok(_) => Err(status.to_string()),
                            Err(_) => Err("0".to_owned()),
                        }
                    }
                    Err(_) => Err("0".to_owned()),
                };
                match answer {
                    Ok(count) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        stats.latencies.push(sent.elapsed());
                    }
                    Err(label) => stats.other(label),
                }
            }
            stats
        }
    })
    .await?;
    let (pending, slow_down) = (
        pending.load(Ordering::Relaxed),
        slow_down.load(Ordering::Relaxed),
    );
    Ok((stats, pending, slow_down))
}

/// Runs the whole flow for the admin: authorize, approve, wait out the interval, redeem.
/// Returns the device's id and its access token.
async fn logged_in_device(app: &TestApp, admin: &str) -> anyhow::Result<(String, String)> {
    let (device_code, user_code) = authorize(&app.http, &app.url).await?;
    let (status, device) = app
        .call(
            Method::POST,
            "/api/v1/devices/verify",
            Some(admin),
            Some(json!({"user_code": user_code, "trusted_device": true})),
        )
        .await?;
    anyhow::ensure!(status == StatusCode::OK, "verify: {status} {device}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let response = app
            .http
            .post(app.at("/oauth/token"))
            .form(&[
                ("grant_type", DEVICE_GRANT),
                ("device_code", device_code.as_str()),
                ("client_id", CLIENT),
            ])
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status == StatusCode::OK {
            return Ok((
                device["id"].as_str().context("no device id")?.to_owned(),
                body["access_token"]
                    .as_str()
                    .context("no access_token")?
                    .to_owned(),
            ));
        }
        anyhow::ensure!(
            body["error"] == "slow_down" && Instant::now() < deadline,
            "redeeming: {status} {body}"
        );
    }
}

/// `POST /api/v1/devices/{id}/{action}`; when it returned and how long it took.
async fn device_action(
    app: &TestApp,
    admin: &str,
    id: &str,
    action: &str,
) -> anyhow::Result<(Instant, Duration)> {
    let sent = Instant::now();
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/{action}"),
            Some(admin),
            None,
        )
        .await?;
    let returned = Instant::now();
    anyhow::ensure!(status == StatusCode::OK, "{action}: {status} {body}");
    Ok((returned, returned - sent))
}

async fn lock_propagation(app: &TestApp, admin: &str, trials: u64) -> anyhow::Result<()> {
    let (id, token) = logged_in_device(app, admin).await?;
    let replica = app.replica().await?;
    // Let the replicas hear of each other (presence announcements every second).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gateways = TwoGateways::new(&app.url, &replica.url)?;
    let mut propagation = Propagation::default();
    let mut unlock = Vec::new();
    let started = Instant::now();
    for _ in 0..trials {
        gateways.accept(&token).await?;
        let (returned, took) = device_action(app, admin, &id, "lock").await?;
        let (on_app, on_replica) = gateways.refusals(&token, returned).await?;
        propagation.record(took, on_app, on_replica);
        unlock.push(device_action(app, admin, &id, "unlock").await?.1);
    }
    unlock.sort();
    println!(
        "device lock across 2 gateways (lock on `gatehouse serve`, second: gatehouse-gateway replica), {trials} trials in {:.1} s:",
        started.elapsed().as_secs_f64()
    );
    print!("{}", propagation.report("POST .../lock", &app.log()));
    println!("  {}", summary("POST .../unlock latency", &unlock));
    drop(replica);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = env_number("GATEHOUSE_BENCH_SECONDS", 10);
    let trials = env_number("GATEHOUSE_BENCH_TRIALS", 200);
    let devices = usize::try_from(env_number("GATEHOUSE_BENCH_DEVICES", 10_000))?;
    println!("{}", machine());
    // A one-second interval (the smallest allowed) keeps the lock phase's login short; the
    // polls are answered the same way whatever the interval.
    // The pool comes from one address: lift the per-address limit on new authorizations.
    let app = TestApp::spawn_with(&[
        ("GATEHOUSE_DEVICE_POLL_INTERVAL", "1"),
        ("GATEHOUSE_DEVICE_AUTHORIZATIONS_PER_MINUTE", "1000000"),
    ])
    .await?;
    let pid = app.pid().unwrap_or(0);
    let admin = app.admin_token().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "gatehouse serve, pid {pid}, {seconds} s per phase, {trials} lock trials; RSS idle {} MiB",
        rss_kib(pid).unwrap_or(0) / 1024
    );

    // 1. Fill the server with pending authorizations.
    let (codes, took) = pending_pool(&app, devices, seconds).await?;
    anyhow::ensure!(!codes.is_empty(), "no device authorization was started");
    println!(
        "started {} device authorizations in {:.1} s ({:.0}/s at 32 clients); RSS {} MiB",
        codes.len(),
        took.as_secs_f64(),
        codes.len() as f64 / took.as_secs_f64(),
        rss_kib(pid).unwrap_or(0) / 1024
    );
    let codes = Arc::new(codes);

    // 2. Polls: each device's first (authorization_pending), then sustained (mostly slow_down).
    // The pool is split so that the 64-connection first polls meet devices never polled.
    let half = codes.len() / 2;
    let (single, many) = (
        Arc::new(codes[..half.min(2_000)].to_vec()),
        Arc::new(codes[half..].to_vec()),
    );
    for (clients, pool) in [(1, single), (64, many)] {
        let (mut stats, pending, slow_down) =
            poll_load(&app, pool, Rounds::FirstPolls, clients, seconds).await?;
        println!(
            "{} [authorization_pending {pending}, slow_down {slow_down}]",
            stats.line(&format!(
                "first poll of a pending authorization, {clients:>2} connections"
            ))
        );
    }
    for clients in [1, 64] {
        let (mut stats, pending, slow_down) =
            poll_load(&app, codes.clone(), Rounds::Sustained, clients, seconds).await?;
        println!(
            "{} [authorization_pending {pending}, slow_down {slow_down}]",
            stats.line(&format!(
                "sustained polls over {} pending authorizations, {clients:>2} connections",
                codes.len()
            ))
        );
    }
    println!("{}", memory_line(pid, "polls"));

    // 3. Lock propagation across two replicas.
    lock_propagation(&app, &admin, trials).await?;
    println!("load average at the end {}", load_average());
    Ok(())
}
