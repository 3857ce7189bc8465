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

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gatehouse_e2e::TestApp;
use gatehouse_e2e::bench::{
    Propagation, Stats, TwoGateways, current_user_load, env_number, load_average, machine,
    memory_line, poller, rss_kib, run_clients, summary, until_accepted, until_refused, whoami,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const API_KEY_GRANT: &str = "urn:gatehouse:params:oauth:grant-type:api-key";
const ACCOUNT: &str = "bench-sa";
/// Keys created up front for the cold logins (fewer if their creation hits the time bound).
const COLD_POOL: usize = 6_000;
/// Of those, at most this many go to the single-client cold phase.
const COLD_SINGLE: usize = 1_000;

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
    run_clients(clients, seconds, |deadline| {
        let http = app.http.clone();
        let url = app.at("/oauth/token");
        let keys = keys.clone();
        let next = next.clone();
        async move {
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
                    stats.other(status.to_string());
                }
            }
            stats
        }
    })
    .await
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
    let to_app = poller()?;
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
    let gateways = TwoGateways::new(&app.url, &replica.url)?;
    let mut propagation = Propagation::default();
    let started = Instant::now();
    for trial in 0..trials {
        let (id, key) = create_key(app, admin, &format!("revoke-{trial}")).await?;
        let token = exchange(&app.http, &app.url, &key).await?;
        gateways.accept(&token).await?;
        let (returned, took) = deactivate(app, admin, &id).await?;
        let (on_app, on_replica) = gateways.refusals(&token, returned).await?;
        propagation.record(took, on_app, on_replica);
    }
    println!(
        "revocation across 2 gateways (PATCH on `gatehouse serve`, second: gatehouse-gateway replica), {trials} trials in {:.1} s:",
        started.elapsed().as_secs_f64()
    );
    print!(
        "{}",
        propagation.report("PATCH {\"active\": false}", &app.log())
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
    println!("{}", memory_line(pid, "logins"));

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
    println!("{}", memory_line(pid, "reads"));

    // 3. Revocation across two replicas.
    revocation(&app, &admin, trials).await?;
    println!("load average at the end {}", load_average());
    Ok(())
}
