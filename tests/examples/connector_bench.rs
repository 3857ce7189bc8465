//! Service-connector benchmark (issue 12): a program that prints figures, not a test that
//! asserts them.
//!
//! Starts the real `gatehouse serve` (release build: `cargo build --release -p gatehouse
//! -p gatehouse-e2e --bins --examples`, then run `target/release/examples/connector_bench`)
//! against a fresh Postgres database, its own nats-server and a moto server that checks
//! signatures and IAM policies. The connector is an `iam-role` one: its keys belong to a
//! user who may only assume a role, and the role may use one bucket. Then it measures:
//! 1. **reused lease**: `POST /api/v1/service_connectors/{c}/credentials` for the same
//!    bucket again and again (after the first issue every answer is that lease again), at
//!    1 and 64 concurrent clients; and, to show where such a request's time goes, the CPU
//!    each process spent per request (`gatehouse serve`, its Postgres backends,
//!    nats-server, this program) and the Postgres transactions per request, beside
//!    `GET /api/v1/service_connectors/{c}` (the same gateway lookup, no command);
//! 2. **fresh leases**: the same request with `expiration_seconds` set, which skips reuse,
//!    so each is an AssumeRole at moto, a `lease.issued` event and its read model, at 1 and
//!    8 clients; beside it, moto's own share: as many AssumeRole calls (same role, session
//!    policy and lifetime) sent directly to moto with the AWS SDK at the same concurrency;
//! 3. **register and verify**: `POST /api/v1/service_connectors` with verification (an
//!    AssumeRole and a GetCallerIdentity at moto) and `POST .../{c}/verify`, sequentially,
//!    beside the same two calls made directly;
//! 4. resident memory of the server idle and after each load.
//!
//! Every load phase is bounded in time (`GATEHOUSE_BENCH_SECONDS`, default 10), the
//! sequential phase also by its call count (`GATEHOUSE_BENCH_CALLS`, default 200), and the
//! program stops by itself. The process-CPU figures wait 11 s before and after their phase
//! so that Postgres has published its statistics (an idle backend flushes them within
//! 10 s). With `GATEHOUSE_BENCH_PERF=1` it also records `perf` samples of the server during
//! that phase and prints where the file is.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gatehouse_e2e::TestApp;
use gatehouse_e2e::bench::{
    PG_STATS_FLUSH, Stats, cpu, env_number, load_average, machine, percentile, processes, rss_kib,
    run_clients, transactions,
};
use gatehouse_testsupport::aws::{AccessKey, Admin, REGION, allow, sdk_config, sdk_config_with};
use gatehouse_testsupport::moto::MOTO_ACCOUNT;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const BUCKET: &str = "bench-data";
const ROLE: &str = "bench-writer";
const USER: &str = "bench-connector";
const CONNECTOR: &str = "bench-s3";
/// The lifetime asked for in the fresh-lease phase (any value skips reuse).
const FRESH_LIFETIME: u64 = 3600;
/// The session name the service gives AssumeRole: the caller's name.
const SESSION_NAME: &str = "admin";
/// The session name and lifetime of the service's verification AssumeRole.
const INSPECT_SESSION: &str = "gatehouse-verify";
const INSPECT_LIFETIME: i32 = 900;

/// One row of the summary table.
struct Row {
    what: String,
    clients: usize,
    rate: f64,
    p50: Duration,
    p99: Duration,
    n: usize,
    note: String,
}

impl Row {
    fn new(what: &str, clients: usize, stats: &mut Stats, note: String) -> Row {
        stats.latencies.sort();
        let n = stats.latencies.len();
        Row {
            what: what.to_owned(),
            clients,
            rate: n as f64 / stats.elapsed.as_secs_f64().max(1e-9),
            p50: percentile(&stats.latencies, 0.5),
            p99: percentile(&stats.latencies, 0.99),
            n,
            note,
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The bucket, a user who may only assume the role, and the role, which may use the
/// bucket only. Returns the user's keys and the role's ARN.
async fn cloud(aws: &Admin) -> (AccessKey, String) {
    aws.create_bucket(BUCKET).await;
    let role_arn = format!("arn:aws:iam::{MOTO_ACCOUNT}:role/{ROLE}");
    let keys = aws
        .create_user(USER, allow(&["sts:AssumeRole"], &[&role_arn]))
        .await;
    let role = aws
        .create_role(
            ROLE,
            &format!("arn:aws:iam::{MOTO_ACCOUNT}:user/{USER}"),
            allow(
                &["s3:*"],
                &[
                    &format!("arn:aws:s3:::{BUCKET}"),
                    &format!("arn:aws:s3:::{BUCKET}/*"),
                ],
            ),
        )
        .await;
    (keys, role)
}

/// An `iam-role` connector for S3 buckets (verified at registration by default).
fn connector(name: &str, url: &str, keys: &AccessKey, role: &str) -> Value {
    json!({
        "name": name,
        "connector_type": "aws",
        "auth_method": "iam-role",
        "resource_types": ["s3-bucket"],
        "configuration": {"region": REGION, "role_arn": role, "endpoint_url": url},
        "secrets": {"aws_access_key_id": keys.id, "aws_secret_access_key": keys.secret},
    })
}

/// The session policy the service generates for the bucket (the service's own function),
/// so that the direct AssumeRole carries the same document.
fn bucket_policy() -> String {
    gatehouse_connectors::types::aws::policy::bucket_policy(REGION, BUCKET).to_string()
}

/// What an answer to a credentials request must be to count.
#[derive(Clone)]
enum Expect {
    /// This lease again (its `"lease_id":"..."` is in the body).
    Lease(Arc<String>),
    /// A lease never seen before (ids collected here).
    Fresh(Arc<Mutex<HashSet<String>>>),
}

/// `POST .../credentials` with `body` from `clients` concurrent clients for `seconds`.
async fn credentials_load(
    app: &TestApp,
    token: &str,
    body: Value,
    expect: Expect,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Stats> {
    let url = app.at(&format!(
        "/api/v1/service_connectors/{CONNECTOR}/credentials"
    ));
    let body = Arc::new(serde_json::to_vec(&body)?);
    run_clients(clients, seconds, |deadline| {
        let http = app.http.clone();
        let url = url.clone();
        let token = token.to_owned();
        let body = body.clone();
        let expect = expect.clone();
        async move {
            let needle = match &expect {
                Expect::Lease(id) => format!("\"lease_id\":\"{id}\"").into_bytes(),
                Expect::Fresh(_) => Vec::new(),
            };
            let mut stats = Stats::default();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.as_ref().clone())
                    .send()
                    .await;
                let (status, answer) = match response {
                    Ok(r) => (r.status(), r.bytes().await),
                    Err(_) => {
                        stats.other("0");
                        continue;
                    }
                };
                let elapsed = sent.elapsed();
                let Ok(answer) = answer else {
                    stats.other("0");
                    continue;
                };
                if status != StatusCode::OK {
                    stats.other(status.as_str());
                    continue;
                }
                let counts = match &expect {
                    Expect::Lease(_) => answer.windows(needle.len()).any(|w| w == needle),
                    Expect::Fresh(seen) => serde_json::from_slice::<Value>(&answer)
                        .ok()
                        .and_then(|v| v["lease_id"].as_str().map(str::to_owned))
                        .is_some_and(|id| seen.lock().is_ok_and(|mut s| s.insert(id))),
                };
                if counts {
                    stats.latencies.push(elapsed);
                } else {
                    stats.other("200 with another lease than expected");
                }
            }
            stats
        }
    })
    .await
}

/// `GET /api/v1/service_connectors/{c}` from `clients` concurrent clients for `seconds`.
async fn describe_load(
    app: &TestApp,
    token: &str,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Stats> {
    let url = app.at(&format!("/api/v1/service_connectors/{CONNECTOR}"));
    run_clients(clients, seconds, |deadline| {
        let http = app.http.clone();
        let url = url.clone();
        let token = token.to_owned();
        async move {
            let mut stats = Stats::default();
            while Instant::now() < deadline {
                let sent = Instant::now();
                match http.get(&url).bearer_auth(&token).send().await {
                    Ok(r) if r.status() == StatusCode::OK => {
                        if r.bytes().await.is_ok() {
                            stats.latencies.push(sent.elapsed());
                        } else {
                            stats.other("0");
                        }
                    }
                    Ok(r) => stats.other(r.status().as_str()),
                    Err(_) => stats.other("0"),
                }
            }
            stats
        }
    })
    .await
}

/// `count` AssumeRole calls straight to moto, from `clients` concurrent clients (bounded
/// by `seconds`): the same role, session name, lifetime and session policy as the
/// service's.
async fn assume_role_load(
    sts: &aws_sdk_sts::Client,
    role: &str,
    count: usize,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Stats> {
    let next = Arc::new(AtomicUsize::new(0));
    let policy = bucket_policy();
    run_clients(clients, seconds, |deadline| {
        let sts = sts.clone();
        let role = role.to_owned();
        let policy = policy.clone();
        let next = next.clone();
        async move {
            let mut stats = Stats::default();
            while Instant::now() < deadline && next.fetch_add(1, Ordering::Relaxed) < count {
                let sent = Instant::now();
                let out = sts
                    .assume_role()
                    .role_arn(&role)
                    .role_session_name(SESSION_NAME)
                    .duration_seconds(FRESH_LIFETIME as i32)
                    .policy(&policy)
                    .send()
                    .await;
                match out {
                    Ok(out) if out.credentials().is_some() => {
                        stats.latencies.push(sent.elapsed());
                    }
                    Ok(_) => stats.other("no credentials"),
                    Err(e) => stats.other(format!("error: {}", aws_error_code(&e))),
                }
            }
            stats
        }
    })
    .await
}

/// What the service's verification does at moto, straight: AssumeRole (no policy), then
/// GetCallerIdentity with the session's keys. One call's latency.
async fn direct_verify(
    sts: &aws_sdk_sts::Client,
    moto_url: &str,
    role: &str,
) -> anyhow::Result<Duration> {
    let sent = Instant::now();
    let out = sts
        .assume_role()
        .role_arn(role)
        .role_session_name(INSPECT_SESSION)
        .duration_seconds(INSPECT_LIFETIME)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("AssumeRole: {}", aws_error_code(&e)))?;
    let c = out.credentials().context("AssumeRole returned no keys")?;
    let session = aws_sdk_sts::Client::new(&sdk_config_with(
        moto_url,
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token()),
    ));
    session
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("GetCallerIdentity: {}", aws_error_code(&e)))?;
    Ok(sent.elapsed())
}

/// An SDK error's code (never its request, which carries signatures).
fn aws_error_code<E, R>(e: &aws_sdk_sts::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sts::error::ProvideErrorMetadata,
{
    match e {
        aws_sdk_sts::error::SdkError::ServiceError(s) => {
            s.err().code().unwrap_or("unknown").to_owned()
        }
        aws_sdk_sts::error::SdkError::TimeoutError(_) => "timeout".into(),
        aws_sdk_sts::error::SdkError::DispatchFailure(_) => "dispatch failure".into(),
        _ => "other".into(),
    }
}

/// `calls` sequential calls of `one` (each returning its latency), stopping at `seconds`.
async fn sequential<F, Fut>(calls: u64, seconds: u64, mut one: F) -> anyhow::Result<Stats>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Duration>>,
{
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut stats = Stats::default();
    for i in 0..calls {
        if Instant::now() >= deadline {
            break;
        }
        match one(i).await {
            Ok(latency) => stats.latencies.push(latency),
            Err(e) => stats.other(e.to_string()),
        }
    }
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// Runs `load` between two quiet spells and prints the CPU per request of each process
/// and the database's transactions per request.
async fn profile<F, Fut>(
    what: &str,
    app: &TestApp,
    db: &tokio_postgres::Client,
    load: F,
) -> anyhow::Result<Stats>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Stats>>,
{
    tokio::time::sleep(PG_STATS_FLUSH).await;
    let groups = processes(app, db).await?;
    let (cpu_before, tx_before) = (cpu(&groups), transactions(db).await?);
    let perf = perf_start(app.pid());
    let mut stats = load().await?;
    if let Some(mut perf) = perf {
        let _ = perf.0.wait().await;
        println!("  perf samples of gatehouse serve: {}", perf.1.display());
    }
    let cpu_after = cpu(&groups);
    tokio::time::sleep(PG_STATS_FLUSH).await;
    let tx_after = transactions(db).await?;
    let n = stats.latencies.len().max(1) as f64;
    println!(
        "{}",
        stats.line(&format!(
            "{what} (profiled; load average {})",
            load_average()
        ))
    );
    let mut total = Duration::ZERO;
    for (label, before) in &cpu_before {
        let spent = cpu_after[label].saturating_sub(*before);
        total += spent;
        println!(
            "  CPU per request, {label}: {:.0} µs ({:.2} s in all, {} processes)",
            spent.as_secs_f64() * 1e6 / n,
            spent.as_secs_f64(),
            groups[label].len()
        );
    }
    println!(
        "  CPU per request, all of these: {:.0} µs; the phase had {:.1} CPU-s of 2 cores × {:.1} s",
        total.as_secs_f64() * 1e6 / n,
        total.as_secs_f64(),
        stats.elapsed.as_secs_f64(),
    );
    println!(
        "  Postgres transactions per request: {:.2} ({} in all)",
        (tx_after - tx_before) as f64 / n,
        tx_after - tx_before
    );
    Ok(stats)
}

/// With `GATEHOUSE_BENCH_PERF=1`: `perf record` of `pid` for the phase's length; the
/// process and its output file.
fn perf_start(pid: Option<u32>) -> Option<(tokio::process::Child, std::path::PathBuf)> {
    if std::env::var("GATEHOUSE_BENCH_PERF").as_deref() != Ok("1") {
        return None;
    }
    let seconds = env_number("GATEHOUSE_BENCH_SECONDS", 10);
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let file = std::env::temp_dir().join(format!(
        "connector_bench-{}-{}.perf",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    let child = tokio::process::Command::new("perf")
        .args(["record", "-F", "499", "-o"])
        .arg(&file)
        .args(["-p", &pid?.to_string(), "--", "sleep", &seconds.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    Some((child, file))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = env_number("GATEHOUSE_BENCH_SECONDS", 10);
    let calls = env_number("GATEHOUSE_BENCH_CALLS", 200);
    println!("{}", machine());
    let aws = Admin::enforcing().await;
    let (keys, role) = cloud(&aws).await;
    let sts = aws_sdk_sts::Client::new(&sdk_config(&aws.url(), &keys));
    let app = TestApp::spawn().await?;
    let pid = app.pid().unwrap_or(0);
    let admin = app.admin_token().await?;
    let (db, connection) = tokio_postgres::connect(app.db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut memory = vec![("idle", rss_kib(pid).unwrap_or(0))];
    println!(
        "gatehouse serve, pid {pid}, {seconds} s per phase, {calls} sequential calls; moto (enforcing auth) at {}; RSS idle {} MiB",
        aws.url(),
        memory[0].1 / 1024
    );
    let mut rows = Vec::new();

    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors",
            Some(&admin),
            Some(connector(CONNECTOR, &aws.url(), &keys, &role)),
        )
        .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "registering {CONNECTOR}: {status} {body}"
    );

    // 1. The same lease handed out again.
    let ask = json!({"resource_type": "s3-bucket", "resource_id": BUCKET});
    let (status, first) = app
        .call(
            Method::POST,
            &format!("/api/v1/service_connectors/{CONNECTOR}/credentials"),
            Some(&admin),
            Some(ask.clone()),
        )
        .await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "the first lease: {status} {first}"
    );
    let lease = Arc::new(first["lease_id"].as_str().context("a lease id")?.to_owned());
    let reused = Expect::Lease(lease.clone());
    for clients in [1, 64] {
        let mut stats =
            credentials_load(&app, &admin, ask.clone(), reused.clone(), clients, seconds).await?;
        println!(
            "{}",
            stats.line(&format!("reused lease, {clients:>2} clients"))
        );
        rows.push(Row::new(
            "reused lease (`POST .../credentials`, same resource)",
            clients,
            &mut stats,
            String::new(),
        ));
    }
    memory.push(("reused-lease load", rss_kib(pid).unwrap_or(0)));

    // Where a reused lease's time goes.
    let mut stats = profile("reused lease, 64 clients", &app, &db, || {
        credentials_load(&app, &admin, ask.clone(), reused.clone(), 64, seconds)
    })
    .await?;
    rows.push(Row::new(
        "reused lease, profiled run (after 11 s idle)",
        64,
        &mut stats,
        String::new(),
    ));
    let mut stats = profile(
        "GET /api/v1/service_connectors/{c}, 64 clients",
        &app,
        &db,
        || describe_load(&app, &admin, 64, seconds),
    )
    .await?;
    rows.push(Row::new(
        "`GET /service_connectors/{c}` (the gateway's lookup, no command)",
        64,
        &mut stats,
        String::new(),
    ));

    // 2. A new lease each time: AssumeRole at moto, an event, a read model.
    let fresh = json!({
        "resource_type": "s3-bucket",
        "resource_id": BUCKET,
        "expiration_seconds": FRESH_LIFETIME,
    });
    let seen = Arc::new(Mutex::new(HashSet::from([lease.as_ref().clone()])));
    for clients in [1, 8] {
        let mut ours = credentials_load(
            &app,
            &admin,
            fresh.clone(),
            Expect::Fresh(seen.clone()),
            clients,
            seconds,
        )
        .await?;
        println!(
            "{}",
            ours.line(&format!("fresh lease (AssumeRole), {clients} clients"))
        );
        let count = ours.latencies.len().max(1);
        let mut direct = assume_role_load(&sts, &role, count, clients, 2 * seconds).await?;
        println!(
            "{}",
            direct.line(&format!(
                "  moto alone: AssumeRole from this program, {clients} clients"
            ))
        );
        let mut mine = Row::new(
            "fresh lease (AssumeRole each)",
            clients,
            &mut ours,
            String::new(),
        );
        let theirs = Row::new(
            "  moto alone: AssumeRole, same count",
            clients,
            &mut direct,
            String::new(),
        );
        mine.note = format!(
            "moto's p50 is {:.0} % of ours",
            100.0 * theirs.p50.as_secs_f64() / mine.p50.as_secs_f64().max(1e-9)
        );
        rows.push(mine);
        rows.push(theirs);
    }
    memory.push(("fresh-lease load", rss_kib(pid).unwrap_or(0)));

    // 3. Register (with verification) and verify, one call at a time.
    let moto_url = aws.url();
    let mut register = sequential(calls, seconds, |i| {
        let body = connector(&format!("bench-reg-{i}"), &moto_url, &keys, &role);
        let app = &app;
        let admin = &admin;
        async move {
            let sent = Instant::now();
            let (status, answer) = app
                .call(
                    Method::POST,
                    "/api/v1/service_connectors",
                    Some(admin),
                    Some(body),
                )
                .await?;
            let latency = sent.elapsed();
            anyhow::ensure!(status == StatusCode::CREATED, "{status} {}", answer["code"]);
            Ok(latency)
        }
    })
    .await?;
    println!(
        "{}",
        register.line("register with verification, sequential")
    );
    let mut verify = sequential(calls, seconds, |_| {
        let app = &app;
        let admin = &admin;
        async move {
            let sent = Instant::now();
            let (status, answer) = app
                .call(
                    Method::POST,
                    &format!("/api/v1/service_connectors/{CONNECTOR}/verify"),
                    Some(admin),
                    Some(json!({})),
                )
                .await?;
            let latency = sent.elapsed();
            anyhow::ensure!(status == StatusCode::OK, "{status} {}", answer["code"]);
            Ok(latency)
        }
    })
    .await?;
    println!("{}", verify.line("verify, sequential"));
    let mut direct = sequential(calls, seconds, |_| direct_verify(&sts, &moto_url, &role)).await?;
    println!(
        "{}",
        direct.line("  moto alone: AssumeRole + GetCallerIdentity, sequential")
    );
    let direct_row = Row::new(
        "  moto alone: AssumeRole + GetCallerIdentity",
        1,
        &mut direct,
        String::new(),
    );
    for (what, stats) in [
        (
            "register with verification (`POST /service_connectors`)",
            &mut register,
        ),
        (
            "verify (`POST /service_connectors/{c}/verify`)",
            &mut verify,
        ),
    ] {
        let mut row = Row::new(what, 1, stats, String::new());
        row.note = format!(
            "moto's p50 is {:.0} % of ours",
            100.0 * direct_row.p50.as_secs_f64() / row.p50.as_secs_f64().max(1e-9)
        );
        rows.push(row);
    }
    rows.push(direct_row);
    memory.push(("register/verify", rss_kib(pid).unwrap_or(0)));

    // The summary.
    println!();
    println!("| what | clients | per second | p50 | p99 | n | note |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} |",
            r.what,
            r.clients,
            r.rate,
            ms(r.p50),
            ms(r.p99),
            r.n,
            r.note
        );
    }
    println!(
        "| RSS of gatehouse serve | | | | | | {} |",
        memory
            .iter()
            .map(|(when, kib)| format!("{when} {} MiB", kib / 1024))
            .collect::<Vec<_>>()
            .join(", after ")
    );
    println!("load average at the end: {}", load_average());
    Ok(())
}
