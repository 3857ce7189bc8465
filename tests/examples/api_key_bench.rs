//! API-key benchmark (issue 3): a program that prints figures, not a test that asserts them.
//!
//! Starts the real `gatehouse serve` (release build: run
//! `cargo build --release -p gatehouse -p gatehouse-gateway --bins && cargo run --release -p gatehouse-e2e --example api_key_bench`)
//! against a fresh Postgres database and its own nats-server, then measures:
//! - the API-key grant (`POST /oauth/token`) at 1 and 64 concurrent clients, warm (the same
//!   key again and again: the gateway remembers a verified key's digest) and cold (every
//!   login a key this gateway has never verified: a round trip to the keys service);
//! - `GET /api/v1/current-user` with the API key itself as the bearer credential, at 64
//!   connections (with `wrk` when it is installed, otherwise with this program's own
//!   client), and the same with a token obtained from that key, for comparison;
//! - revocation across two gateway replicas: per trial a fresh key and token, accepted by
//!   both, then `PATCH .../api_keys/{key} {"active": false}` on the first; the time from
//!   the PATCH returning until the last of the two refuses the token, while both are
//!   polled in a tight loop; and the PATCH's own latency.
//!
//! Every load phase is bounded in time (`GATEHOUSE_BENCH_SECONDS`, default 10), the
//! revocation phase by its trial count (`GATEHOUSE_BENCH_TRIALS`, default 200, each trial
//! bounded by a timeout), and the program stops by itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gatehouse_e2e::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const API_KEY_GRANT: &str = "urn:gatehouse:params:oauth:grant-type:api-key";
const ACCOUNT: &str = "bench-sa";
/// Keys created up front for the cold logins (fewer if their creation hits the time bound).
const COLD_POOL: usize = 6_000;
/// Of those, at most this many go to the single-client cold phase.
const COLD_SINGLE: usize = 1_000;
/// How long one revocation trial may wait for a gateway to accept or refuse a token.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(5);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or_else(|| "?".into(), |kib| format!("{} GiB", kib / 1024 / 1024));
    format!(
        "machine: {cores} cores, {cpu}, {memory}, kernel {kernel}, load average {}",
        load_average()
    )
}

/// What a load phase measured.
#[derive(Debug, Default)]
struct Stats {
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// Responses other than the expected status, by status (0: transport error).
    unexpected: BTreeMap<u16, usize>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.latencies.extend(other.latencies);
        for (status, n) in other.unexpected {
            *self.unexpected.entry(status).or_default() += n;
        }
    }

    fn line(&mut self, what: &str) -> String {
        self.latencies.sort();
        let n = self.latencies.len();
        let rate = n as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let unexpected = if self.unexpected.is_empty() {
            "none".to_owned()
        } else {
            self.unexpected
                .iter()
                .map(|(status, n)| format!("{n} × {status}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{what}: {rate:>7.0}/s, p50 {:?}, p99 {:?}, max {:?} ({n} ok in {:.1} s; other answers: {unexpected})",
            percentile(&self.latencies, 0.5),
            percentile(&self.latencies, 0.99),
            self.latencies.last().copied().unwrap_or_default(),
            self.elapsed.as_secs_f64(),
        )
    }
}

/// Which key each login uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pick {
    /// Always the first key (warm: verified once, then remembered).
    Same,
    /// Each key once, until they run out (cold: never verified on this gateway).
    EachOnce,
}

/// API-key grants from `clients` concurrent clients until `seconds` pass (or, with
/// [`Pick::EachOnce`], the keys run out).
async fn login_load(
    app: &TestApp,
    keys: Arc<Vec<String>>,
    pick: Pick,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Stats> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let http = app.http.clone();
        let url = app.at("/oauth/token");
        let keys = keys.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            while Instant::now() < deadline {
                let key = match pick {
                    Pick::Same => &keys[0],
                    Pick::EachOnce => match keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                        Some(key) => key,
                        None => break,
                    },
                };
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .form(&[("grant_type", API_KEY_GRANT), ("api_key", key.as_str())])
                    .send()
                    .await;
                let status = match response {
                    Ok(response) => {
                        let status = response.status();
                        let body = response.bytes().await;
                        if body.is_err() { 0 } else { status.as_u16() }
                    }
                    Err(_) => 0,
                };
                if status == 200 {
                    stats.latencies.push(sent.elapsed());
                } else {
                    *stats.unexpected.entry(status).or_default() += 1;
                }
            }
            stats
        }));
    }
    let mut all = Stats::default();
    for task in tasks {
        all.merge(task.await?);
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

/// Creates a key on the bench account; returns its id and key string.
async fn create_key(app: &TestApp, admin: &str, name: &str) -> anyhow::Result<(String, String)> {
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/service_accounts/{ACCOUNT}/api_keys"),
            Some(admin),
            Some(json!({ "name": name })),
        )
        .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "creating key {name}: {status} {body}"
    );
    let id = body["id"].as_str().context("no id")?.to_owned();
    let key = body["key"].as_str().context("no key")?.to_owned();
    Ok((id, key))
}

/// Creates up to `count` keys with 32 concurrent creators within `seconds`.
async fn create_keys(
    app: &Arc<TestApp>,
    admin: &str,
    prefix: &str,
    count: usize,
    seconds: u64,
) -> anyhow::Result<(Vec<String>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let app = app.clone();
        let admin = admin.to_owned();
        let prefix = prefix.to_owned();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut keys = Vec::new();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                keys.push(create_key(&app, &admin, &format!("{prefix}-{n}")).await?.1);
            }
            anyhow::Ok(keys)
        }));
    }
    let mut keys = Vec::new();
    for task in tasks {
        keys.extend(task.await??);
    }
    Ok((keys, started.elapsed()))
}

/// An API-key grant; returns the access token.
async fn exchange(http: &reqwest::Client, base: &str, key: &str) -> anyhow::Result<String> {
    let response = http
        .post(format!("{base}/oauth/token"))
        .form(&[("grant_type", API_KEY_GRANT), ("api_key", key)])
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status == StatusCode::OK, "key grant: {status} {body}");
    Ok(body["access_token"]
        .as_str()
        .context("no access_token")?
        .to_owned())
}

async fn whoami(
    http: &reqwest::Client,
    base: &str,
    credential: &str,
) -> anyhow::Result<StatusCode> {
    let response = http
        .get(format!("{base}/api/v1/current-user"))
        .bearer_auth(credential)
        .send()
        .await?;
    let status = response.status();
    let _ = response.bytes().await?;
    Ok(status)
}

/// `GET /api/v1/current-user` with `credential` at `connections` connections.
async fn current_user_load(
    app: &TestApp,
    credential: &str,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<String> {
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
    {
        let output = tokio::process::Command::new("wrk")
            .args([
                "-t",
                "1",
                "-c",
                &connections.to_string(),
                "-d",
                &format!("{seconds}s"),
                "--latency",
            ])
            .args(["-H", &format!("Authorization: Bearer {credential}")])
            .arg(app.at("/api/v1/current-user"))
            .output()
            .await?;
        return Ok(format!(
            "wrk, 1 thread, {connections} connections:\n{}",
            String::from_utf8_lossy(&output.stdout).trim_end()
        ));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let http = app.http.clone();
        let url = app.at("/api/v1/current-user");
        let credential = credential.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let status = match http.get(&url).bearer_auth(&credential).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        if response.bytes().await.is_err() {
                            0
                        } else {
                            status
                        }
                    }
                    Err(_) => 0,
                };
                if status == 200 {
                    stats.latencies.push(sent.elapsed());
                } else {
                    *stats.unexpected.entry(status).or_default() += 1;
                }
            }
            stats
        }));
    }
    let mut all = Stats::default();
    for task in tasks {
        all.merge(task.await?);
    }
    all.elapsed = started.elapsed();
    Ok(all.line(&format!(
        "reqwest client in this process, {connections} concurrent requests"
    )))
}

/// What one gateway did after the PATCH returned.
#[derive(Debug)]
struct Refusal {
    /// From the PATCH returning to this gateway's first 401 (None: timed out).
    after: Option<Duration>,
    /// Whether the very first request after the PATCH was refused.
    first: bool,
    /// Requests sent until the refusal.
    requests: usize,
}

/// Polls `base` with `token` as fast as it answers until it refuses it (401).
async fn until_refused(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    since: Instant,
) -> anyhow::Result<Refusal> {
    let mut requests = 0;
    loop {
        let status = whoami(http, base, token).await?;
        requests += 1;
        if status == StatusCode::UNAUTHORIZED {
            return Ok(Refusal {
                after: Some(since.elapsed()),
                first: requests == 1,
                requests,
            });
        }
        if since.elapsed() > TRIAL_TIMEOUT {
            return Ok(Refusal {
                after: None,
                first: false,
                requests,
            });
        }
        tokio::task::yield_now().await;
    }
}

/// Waits (briefly, before any measurement) until `base` accepts `token`.
async fn until_accepted(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + TRIAL_TIMEOUT;
    loop {
        let status = whoami(http, base, token).await?;
        if status == StatusCode::OK {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{base} never accepted a fresh token ({status})"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn summary(name: &str, sorted: &[Duration]) -> String {
    format!(
        "{name}: p50 {:?}, p99 {:?}, max {:?} (n = {})",
        percentile(sorted, 0.5),
        percentile(sorted, 0.99),
        sorted.last().copied().unwrap_or_default(),
        sorted.len()
    )
}

/// Deactivates key `id`; returns when the PATCH returned and how long it took.
async fn deactivate(app: &TestApp, admin: &str, id: &str) -> anyhow::Result<(Instant, Duration)> {
    let sent = Instant::now();
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/service_accounts/{ACCOUNT}/api_keys/{id}"),
            Some(admin),
            Some(json!({"active": false})),
        )
        .await?;
    let returned = Instant::now();
    anyhow::ensure!(status == StatusCode::OK, "deactivating: {status} {body}");
    Ok((returned, returned - sent))
}

async fn revocation(app: &TestApp, admin: &str, trials: u64) -> anyhow::Result<()> {
    // One client per gateway, so that each poller has its own warm connection.
    let to_app = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let to_replica = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    // Baseline: the same PATCH while `gatehouse serve` is the only gateway (no one to wait for).
    let alone = (trials / 4).max(10).min(trials);
    let mut patch_alone = Vec::new();
    let mut refused_alone = Vec::new();
    for trial in 0..alone {
        let (id, key) = create_key(app, admin, &format!("revoke-alone-{trial}")).await?;
        let token = exchange(&app.http, &app.url, &key).await?;
        until_accepted(&to_app, &app.url, &token).await?;
        let (returned, took) = deactivate(app, admin, &id).await?;
        patch_alone.push(took);
        if let Some(after) = until_refused(&to_app, &app.url, &token, returned)
            .await?
            .after
        {
            refused_alone.push(after);
        }
    }
    patch_alone.sort();
    refused_alone.sort();
    println!("revocation with one gateway (`gatehouse serve` alone), {alone} trials:");
    println!(
        "  {}",
        summary("PATCH {\"active\": false} latency", &patch_alone)
    );
    println!(
        "  {}",
        summary("PATCH returned → serve refuses the token", &refused_alone)
    );

    let replica = app.replica().await?;
    // Let the replicas hear of each other (presence announcements every second).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut patch = Vec::new();
    let mut last = Vec::new();
    let mut on_app = Vec::new();
    let mut on_replica = Vec::new();
    let (mut app_first, mut replica_first, mut timeouts, mut polls) = (0, 0, 0, 0);
    let started = Instant::now();
    for trial in 0..trials {
        let (id, key) = create_key(app, admin, &format!("revoke-{trial}")).await?;
        let token = exchange(&app.http, &app.url, &key).await?;
        until_accepted(&to_app, &app.url, &token).await?;
        until_accepted(&to_replica, &replica.url, &token).await?;

        let (returned, took) = deactivate(app, admin, &id).await?;
        patch.push(took);

        let (a, r) = tokio::join!(
            until_refused(&to_app, &app.url, &token, returned),
            until_refused(&to_replica, &replica.url, &token, returned),
        );
        let (a, r) = (a?, r?);
        app_first += usize::from(a.first);
        replica_first += usize::from(r.first);
        polls += a.requests + r.requests;
        match (a.after, r.after) {
            (Some(x), Some(y)) => {
                on_app.push(x);
                on_replica.push(y);
                last.push(x.max(y));
            }
            _ => timeouts += 1,
        }
    }
    let elapsed = started.elapsed();
    for v in [&mut patch, &mut last, &mut on_app, &mut on_replica] {
        v.sort();
    }
    println!(
        "revocation across 2 gateways (PATCH on `gatehouse serve`, second: gatehouse-gateway replica), {trials} trials in {:.1} s:",
        elapsed.as_secs_f64()
    );
    println!("  {}", summary("PATCH {\"active\": false} latency", &patch));
    println!(
        "  {}",
        summary("PATCH returned → last gateway refuses the token", &last)
    );
    println!(
        "  {}",
        summary("  of which: serve (the writer) refuses", &on_app)
    );
    println!(
        "  {}",
        summary("  of which: the replica refuses", &on_replica)
    );
    println!(
        "  first request after the PATCH already refused: replica {replica_first}/{trials}, serve {app_first}/{trials}; \
         polls sent {polls} ({:.2} per gateway per trial); timeouts (> {TRIAL_TIMEOUT:?}) {timeouts}",
        polls as f64 / (2.0 * trials.max(1) as f64)
    );
    let log = app.log();
    let incomplete = log
        .lines()
        .filter(|l| l.contains("did not confirm a write in time"))
        .count();
    let unasked = log
        .lines()
        .filter(|l| l.contains("could not ask the other gateway replicas"))
        .count();
    println!(
        "  serve's log: {incomplete} barrier timeouts (\"did not confirm a write in time\"), {unasked} barriers not sent"
    );
    drop(replica);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = env_number("GATEHOUSE_BENCH_SECONDS", 10);
    let trials = env_number("GATEHOUSE_BENCH_TRIALS", 200);
    println!("{}", machine());
    let app = Arc::new(TestApp::spawn().await?);
    let pid = app.pid().unwrap_or(0);
    let admin = app.admin_token().await?;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/service_accounts",
            Some(&admin),
            Some(json!({ "name": ACCOUNT })),
        )
        .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "creating the service account: {status} {body}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "gatehouse serve, pid {pid}, {seconds} s per phase, {trials} revocation trials; RSS idle {} MiB",
        rss_kib(pid).unwrap_or(0) / 1024
    );

    // 1. The API-key grant.
    let warm = Arc::new(vec![create_key(&app, &admin, "warm").await?.1]);
    exchange(&app.http, &app.url, &warm[0]).await?; // verified once: remembered from now on
    for clients in [1, 64] {
        let mut stats = login_load(&app, warm.clone(), Pick::Same, clients, seconds).await?;
        println!(
            "{}",
            stats.line(&format!(
                "key grant, warm (one key, remembered), {clients:>2} clients"
            ))
        );
    }
    let (pool, took) = create_keys(&app, &admin, "cold", COLD_POOL, seconds).await?;
    println!(
        "created {} keys for the cold logins in {:.1} s ({:.0} keys/s at 32 clients)",
        pool.len(),
        took.as_secs_f64(),
        pool.len() as f64 / took.as_secs_f64()
    );
    let single = pool.len().min(COLD_SINGLE).min(pool.len() / 2).max(1);
    let (first, rest) = pool.split_at(single.min(pool.len()));
    let mut stats = login_load(&app, Arc::new(first.to_vec()), Pick::EachOnce, 1, seconds).await?;
    println!(
        "{}",
        stats.line("key grant, cold (each key's first use),  1 client ")
    );
    let mut stats = login_load(&app, Arc::new(rest.to_vec()), Pick::EachOnce, 64, seconds).await?;
    println!(
        "{}",
        stats.line("key grant, cold (each key's first use), 64 clients")
    );
    println!(
        "RSS after logins: {} MiB; load average {}",
        rss_kib(pid).unwrap_or(0) / 1024,
        load_average()
    );

    // 2. The key itself as the bearer credential (and its token, for comparison).
    anyhow::ensure!(
        whoami(&app.http, &app.url, &warm[0]).await? == StatusCode::OK,
        "the warm key is refused as a bearer credential"
    );
    println!(
        "GET /api/v1/current-user, Authorization: Bearer <API key>: {}",
        current_user_load(&app, &warm[0], 64, seconds).await?
    );
    let token = exchange(&app.http, &app.url, &warm[0]).await?;
    println!(
        "GET /api/v1/current-user, Authorization: Bearer <token from that key>: {}",
        current_user_load(&app, &token, 64, seconds).await?
    );
    println!(
        "RSS after reads: {} MiB; load average {}",
        rss_kib(pid).unwrap_or(0) / 1024,
        load_average()
    );

    // 3. Revocation across two replicas.
    revocation(&app, &admin, trials).await?;
    println!("load average at the end {}", load_average());
    Ok(())
}
