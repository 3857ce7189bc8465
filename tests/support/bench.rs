//! What the benchmark programs in `tests/examples/` share: percentiles, the machine's
//! description, resident memory, a load phase's statistics, and the revocation probes
//! (poll a gateway until it refuses a credential). Programs that print figures, never
//! tests that assert them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::TestApp;

/// How long one revocation trial may wait for a gateway to accept or refuse a credential.
pub const TRIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long Postgres may take to publish an idle backend's statistics
/// (`pg_stat_database`), plus a margin.
pub const PG_STATS_FLUSH: Duration = Duration::from_secs(11);

/// The `p` quantile (0..=1) of sorted latencies; zero when there are none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// A number from the environment, or `default` when unset or unreadable.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time (user + system) a process has spent so far, or `None` once it is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields 14 and 15 follow its `)`.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (user + system) as f64 / clock_ticks_per_second() as f64,
    ))
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux when unknown).
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// The first process whose command line holds `args` one after the other (e.g. `["-p",
/// "4222"]` for the server started on that port).
pub fn pid_with_args(args: &[&str]) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            words
                .windows(args.len())
                .any(|w| w.iter().zip(args).all(|(a, b)| *a == b.as_bytes()))
                .then_some(pid)
        })
}

/// The 1, 5 and 15 minute load averages, for judging how noisy a run was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// `RSS after <what>: N MiB; load average ...` for the process `pid`.
pub fn memory_line(pid: u32, after: &str) -> String {
    format!(
        "RSS after {after}: {} MiB; load average {}",
        rss_kib(pid).unwrap_or(0) / 1024,
        load_average()
    )
}

/// One line describing the machine a run happened on.
pub fn machine() -> String {
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
pub struct Stats {
    /// Latencies of the answers counted as expected.
    pub latencies: Vec<Duration>,
    /// Wall time of the phase.
    pub elapsed: Duration,
    /// Other answers, by a label (a status code, an error code; "0": transport error).
    pub unexpected: BTreeMap<String, usize>,
}

impl Stats {
    /// Adds another client's figures (the elapsed time is the caller's to set).
    pub fn merge(&mut self, other: Stats) {
        self.latencies.extend(other.latencies);
        for (label, n) in other.unexpected {
            *self.unexpected.entry(label).or_default() += n;
        }
    }

    /// Counts an answer that was not the expected one.
    pub fn other(&mut self, label: impl Into<String>) {
        *self.unexpected.entry(label.into()).or_default() += 1;
    }

    /// Rate, p50, p99 and max of the expected answers, and what else came back.
    pub fn line(&mut self, what: &str) -> String {
        self.latencies.sort();
        let n = self.latencies.len();
        let rate = n as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let unexpected = if self.unexpected.is_empty() {
            "none".to_owned()
        } else {
            self.unexpected
                .iter()
                .map(|(label, n)| format!("{n} × {label}"))
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

/// Runs `clients` concurrent copies of a load client, each given the phase's deadline
/// (`seconds` from now), and merges what they measured.
pub async fn run_clients<C, F>(clients: usize, seconds: u64, client: C) -> anyhow::Result<Stats>
where
    C: Fn(Instant) -> F,
    F: std::future::Future<Output = Stats> + Send + 'static,
{
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(client(deadline)))
        .collect();
    let mut all = Stats::default();
    for task in tasks {
        all.merge(task.await?);
    }
    all.elapsed = started.elapsed();
    Ok(all)
}

/// p50, p99 and max of sorted durations.
pub fn summary(name: &str, sorted: &[Duration]) -> String {
    format!(
        "{name}: p50 {:?}, p99 {:?}, max {:?} (n = {})",
        percentile(sorted, 0.5),
        percentile(sorted, 0.99),
        sorted.last().copied().unwrap_or_default(),
        sorted.len()
    )
}

/// `GET /api/v1/current-user` on `base` with `credential`; the status.
pub async fn whoami(
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

/// `GET /api/v1/current-user` with `credential` at `connections` connections for
/// `seconds`: with `wrk` when it is installed, otherwise with this process's own client.
pub async fn current_user_load(
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
    let mut all = run_clients(connections, seconds, |deadline| {
        let http = app.http.clone();
        let base = app.url.clone();
        let credential = credential.to_owned();
        async move {
            let mut stats = Stats::default();
            while Instant::now() < deadline {
                let sent = Instant::now();
                match whoami(&http, &base, &credential).await {
                    Ok(StatusCode::OK) => stats.latencies.push(sent.elapsed()),
                    Ok(status) => stats.other(status.as_str()),
                    Err(_) => stats.other("0"),
                }
            }
            stats
        }
    })
    .await?;
    Ok(all.line(&format!(
        "reqwest client in this process, {connections} concurrent requests"
    )))
}

/// What one gateway did after a revoking call returned.
#[derive(Debug)]
pub struct Refusal {
    /// From the call returning to this gateway's first 401 (None: timed out).
    pub after: Option<Duration>,
    /// Whether the very first request after the call was refused.
    pub first: bool,
    /// Requests sent until the refusal.
    pub requests: usize,
}

/// Polls `base` with `credential` as fast as it answers until it refuses it (401).
pub async fn until_refused(
    http: &reqwest::Client,
    base: &str,
    credential: &str,
    since: Instant,
) -> anyhow::Result<Refusal> {
    let mut requests = 0;
    loop {
        let status = whoami(http, base, credential).await?;
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

/// Waits (before any measurement) until `base` accepts `credential`.
pub async fn until_accepted(
    http: &reqwest::Client,
    base: &str,
    credential: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + TRIAL_TIMEOUT;
    loop {
        let status = whoami(http, base, credential).await?;
        if status == StatusCode::OK {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{base} never accepted the credential ({status})"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A client with its own connection pool and a generous timeout (a poller per gateway keeps
/// its connection warm).
pub fn poller() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// The writer (`gatehouse serve`, where the revoking calls go) and a second gateway replica,
/// each with its own client.
#[derive(Debug)]
pub struct TwoGateways {
    writer: String,
    replica: String,
    to_writer: reqwest::Client,
    to_replica: reqwest::Client,
}

impl TwoGateways {
    /// Probes for the gateways at these base URLs.
    pub fn new(writer: &str, replica: &str) -> anyhow::Result<Self> {
        Ok(Self {
            writer: writer.to_owned(),
            replica: replica.to_owned(),
            to_writer: poller()?,
            to_replica: poller()?,
        })
    }

    /// Waits (before a trial's measurement) until both accept `credential`.
    pub async fn accept(&self, credential: &str) -> anyhow::Result<()> {
        until_accepted(&self.to_writer, &self.writer, credential).await?;
        until_accepted(&self.to_replica, &self.replica, credential).await
    }

    /// Polls both at once until each refuses `credential`; `since`: when the call returned.
    pub async fn refusals(
        &self,
        credential: &str,
        since: Instant,
    ) -> anyhow::Result<(Refusal, Refusal)> {
        let (writer, replica) = tokio::join!(
            until_refused(&self.to_writer, &self.writer, credential, since),
            until_refused(&self.to_replica, &self.replica, credential, since),
        );
        Ok((writer?, replica?))
    }
}

/// What revocation trials on [`TwoGateways`] measured.
#[derive(Debug, Default)]
pub struct Propagation {
    call: Vec<Duration>,
    last: Vec<Duration>,
    on_writer: Vec<Duration>,
    on_replica: Vec<Duration>,
    writer_first: usize,
    replica_first: usize,
    timeouts: usize,
    polls: usize,
    trials: usize,
}

impl Propagation {
    /// One trial: the revoking call's latency and what each gateway did after it returned.
    pub fn record(&mut self, call: Duration, writer: Refusal, replica: Refusal) {
        self.trials += 1;
        self.call.push(call);
        self.writer_first += usize::from(writer.first);
        self.replica_first += usize::from(replica.first);
        self.polls += writer.requests + replica.requests;
        match (writer.after, replica.after) {
            (Some(w), Some(r)) => {
                self.on_writer.push(w);
                self.on_replica.push(r);
                self.last.push(w.max(r));
            }
            _ => self.timeouts += 1,
        }
    }

    /// The figures, a line each; `call` names the revoking call, `log` is the writer's log.
    pub fn report(&mut self, call: &str, log: &str) -> String {
        for v in [
            &mut self.call,
            &mut self.last,
            &mut self.on_writer,
            &mut self.on_replica,
        ] {
            v.sort();
        }
        let trials = self.trials;
        [
            summary(&format!("{call} latency"), &self.call),
            summary(
                &format!("{call} returned → last gateway refuses"),
                &self.last,
            ),
            summary("  of which: serve (the writer) refuses", &self.on_writer),
            summary("  of which: the replica refuses", &self.on_replica),
            format!(
                "first request after the call already refused: replica {}/{trials}, serve {}/{trials}; \
                 polls sent {} ({:.2} per gateway per trial); timeouts (> {TRIAL_TIMEOUT:?}) {}",
                self.replica_first,
                self.writer_first,
                self.polls,
                self.polls as f64 / (2.0 * trials.max(1) as f64),
                self.timeouts,
            ),
            format!("serve's log: {}", barrier_report(log)),
        ]
        .iter()
        .map(|line| format!("  {line}\n"))
        .collect()
    }
}

/// The log lines of a writer that show the replica barrier falling short.
pub fn barrier_report(log: &str) -> String {
    let incomplete = log
        .lines()
        .filter(|l| l.contains("did not confirm a write in time"))
        .count();
    let unasked = log
        .lines()
        .filter(|l| l.contains("could not ask the other gateway replicas"))
        .count();
    format!(
        "{incomplete} barrier timeouts (\"did not confirm a write in time\"), {unasked} barriers not sent"
    )
}

/// The processes whose CPU a profiled phase accounts for, by label.
pub async fn processes(
    app: &TestApp,
    db: &tokio_postgres::Client,
) -> anyhow::Result<BTreeMap<&'static str, Vec<u32>>> {
    let mut all = BTreeMap::new();
    all.insert("gatehouse serve", app.pid().into_iter().collect());
    all.insert(
        "nats-server",
        pid_with_args(&["-p", &app.nats.port().to_string()])
            .into_iter()
            .collect(),
    );
    let backends = db
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await?;
    all.insert(
        "Postgres (the server's backends)",
        backends
            .iter()
            .map(|r| r.get::<_, i32>(0).unsigned_abs())
            .collect(),
    );
    all.insert("this program (load generator)", vec![std::process::id()]);
    Ok(all)
}

/// The committed transactions of the database so far (as published by its backends).
pub async fn transactions(db: &tokio_postgres::Client) -> anyhow::Result<i64> {
    let row = db
        .query_one(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database \
             WHERE datname = current_database()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// CPU time of each group of processes.
pub fn cpu(groups: &BTreeMap<&'static str, Vec<u32>>) -> BTreeMap<&'static str, Duration> {
    groups
        .iter()
        .map(|(label, pids)| (*label, pids.iter().filter_map(|p| cpu_time(*p)).sum()))
        .collect()
}
