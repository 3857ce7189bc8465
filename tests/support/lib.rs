//! Test support for the end-to-end suite: spawns the real `gatehouse serve` binary against
//! a fresh Postgres database and a real nats-server ([`TestApp`]), or runs what `gatehouse
//! dev` runs in the test's own process ([`InProcApp`]), and drives either through REST
//! ([`Api`], a helper per endpoint) and the CLI.

pub mod api;
pub mod bench;
pub mod browser;
pub mod inproc;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
pub use gatehouse_testsupport::NatsUser;
use gatehouse_testsupport::{NatsServer, TestDatabase, free_port};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::process::{Child, Command};

pub use crate::api::{ADMIN_PASSWORD, Api, call};
pub use crate::inproc::InProcApp;

/// Path of a binary built from this workspace (next to the test executable's directory).
pub fn workspace_bin(name: &str) -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var(format!(
        "GATEHOUSE_{}_BIN",
        name.to_uppercase().replace('-', "_")
    )) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/e2e-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .context("unexpected test binary location")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build it first (`cargo build -p gatehouse`), or run the suite with scripts/test",
            path.display()
        );
    }
    Ok(path)
}

/// The example program `name` of this workspace (built by `cargo test`, which builds the
/// examples; or `cargo build --examples`).
pub fn workspace_example(name: &str) -> anyhow::Result<PathBuf> {
    let bin = workspace_bin("gatehouse")?;
    let path = bin
        .parent()
        .context("unexpected binary location")?
        .join("examples")
        .join(name);
    if !path.exists() {
        bail!(
            "{} not found: build it first (`cargo build -p gatehouse-e2e --examples`)",
            path.display()
        );
    }
    Ok(path)
}

/// A `gatehouse serve` process with its own database and nats-server. Dereferences to its
/// [`Api`] (`app.url`, `app.http`, a helper per endpoint).
#[allow(missing_debug_implementations)]
pub struct TestApp {
    api: Api,
    /// The database (dropped with the app).
    pub db: TestDatabase,
    /// The nats-server (killed with the app).
    pub nats: NatsServer,
    /// The master key the app was started with.
    pub master_key: String,
    port: u16,
    /// Settings added to every process this app starts (`GATEHOUSE_*=...`).
    extra_env: Vec<(String, String)>,
    /// What `start` runs: `gatehouse` (serve) or, split, `gatehouse-gateway`.
    binary: &'static str,
    child: Option<Child>,
    /// The services as their own processes, when split (killed with the app).
    services: Vec<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// Starts an app and waits until it is ready.
    pub async fn spawn() -> anyhow::Result<TestApp> {
        Self::spawn_with(&[]).await
    }

    /// Starts an app with extra settings (e.g. short device-flow intervals) for it and its
    /// replicas, and waits until it is ready.
    pub async fn spawn_with(env: &[(&str, &str)]) -> anyhow::Result<TestApp> {
        let mut app = Self::prepare(env, "gatehouse").await?;
        app.start().await?;
        Ok(app)
    }

    /// Starts the deployment `docker compose up` runs: `gatehouse-identity`,
    /// `gatehouse-keys` and `gatehouse-devices` as their own processes (each as its own
    /// NATS user), then, once they are ready, one `gatehouse-gateway` in front; waits until
    /// it is ready.
    pub async fn spawn_split(env: &[(&str, &str)]) -> anyhow::Result<TestApp> {
        let mut app = Self::prepare(env, "gatehouse-gateway").await?;
        for binary in [
            "gatehouse-identity",
            "gatehouse-keys",
            "gatehouse-devices",
            "gatehouse-connectors",
        ] {
            let log = app._dir.path().join(format!("{binary}.log"));
            let child = app
                .command(binary, app.port, &log)?
                .spawn()
                .with_context(|| format!("spawning {binary}"))?;
            app.services.push(child);
        }
        // The services create the event stream (the gateway's NATS user may not), so the
        // gateway starts once they are ready, as an orchestrator's readiness order would.
        let deadline = Instant::now() + Duration::from_secs(60);
        for binary in [
            "gatehouse-identity",
            "gatehouse-keys",
            "gatehouse-devices",
            "gatehouse-connectors",
        ] {
            while !app.service_log(binary).contains(&format!("{binary} ready")) {
                if Instant::now() > deadline {
                    bail!(
                        "{binary} was not ready in 60 s; log:\n{}",
                        app.service_log(binary)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        app.start().await?;
        Ok(app)
    }

    /// The log of a split-off service (`gatehouse-identity`, ...).
    pub fn service_log(&self, binary: &str) -> String {
        std::fs::read_to_string(self._dir.path().join(format!("{binary}.log"))).unwrap_or_default()
    }

    async fn prepare(env: &[(&str, &str)], binary: &'static str) -> anyhow::Result<TestApp> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = TestDatabase::create().await?;
        let nats = NatsServer::start().await?;
        let port = free_port()?;
        let master_key = base64::engine::general_purpose::STANDARD.encode(rand_bytes());
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("gatehouse.log");
        let app = TestApp {
            api: Api::new(format!("http://127.0.0.1:{port}"))?,
            db,
            nats,
            master_key,
            port,
            extra_env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            binary,
            child: None,
            services: Vec::new(),
            log,
            _dir: dir,
        };
        Ok(app)
    }

    /// Another gateway process (a second replica) sharing this app's database and NATS.
    pub async fn replica(&self) -> anyhow::Result<Replica> {
        let replica = self.replica_listening().await?;
        replica.wait_ready(&self.http).await?;
        Ok(replica)
    }

    /// Another gateway process, as soon as it answers `/healthz` (it may not be ready).
    pub async fn replica_listening(&self) -> anyhow::Result<Replica> {
        let port = free_port()?;
        let log = self._dir.path().join(format!("replica-{port}.log"));
        let child = self
            .command("gatehouse-gateway", port, &log)?
            .spawn()
            .context("spawning a gateway replica")?;
        let url = format!("http://127.0.0.1:{port}");
        wait_for(&self.http, &url, "/healthz", &log).await?;
        Ok(Replica { url, child, log })
    }

    fn command(&self, binary: &str, port: u16, log: &std::path::Path) -> anyhow::Result<Command> {
        let bin = workspace_bin(binary)?;
        let mut cmd = Command::new(bin);
        if binary == "gatehouse" {
            cmd.arg("serve");
        }
        let logfile = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        // Each process connects as its own NATS user, over TLS, as deployed.
        let nats_user = match binary {
            "gatehouse" => NatsUser::Gatehouse,
            "gatehouse-identity" => NatsUser::Identity,
            "gatehouse-keys" => NatsUser::Keys,
            "gatehouse-devices" => NatsUser::Devices,
            "gatehouse-connectors" => NatsUser::Connectors,
            _ => NatsUser::Gateway,
        };
        cmd.env("GATEHOUSE_DATABASE_URL", self.db.url())
            .envs(self.nats.env(nats_user))
            .env("GATEHOUSE_BIND", format!("127.0.0.1:{port}"))
            .env("GATEHOUSE_MASTER_KEY", &self.master_key)
            .env("GATEHOUSE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env(
                "GATEHOUSE_ISSUER",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env("GATEHOUSE_LOG", "info")
            .env("GATEHOUSE_LOG_FORMAT", "json")
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(logfile.try_clone()?)
            .stderr(logfile)
            .kill_on_drop(true);
        Ok(cmd)
    }

    /// Starts the process (again).
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let child = self
            .command(self.binary, self.port, &self.log)?
            .spawn()
            .with_context(|| format!("spawning {}", self.binary))?;
        self.child = Some(child);
        wait_ready(&self.http, &self.url, &self.log).await
    }

    /// Stops the process gracefully (SIGTERM) and waits for it.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
            }
            match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
                Ok(status) => {
                    status?;
                }
                Err(_) => {
                    child.kill().await?;
                }
            }
        }
        Ok(())
    }

    /// Kills the process (SIGKILL, like a crash) and waits for it to exit.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.context("killing gatehouse serve")?;
        }
        Ok(())
    }

    /// The server process id (for resource measurements).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the `gatehouse` CLI with an isolated config dir; returns (exit code, stdout, stderr).
    pub async fn cli(
        &self,
        config_dir: &std::path::Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<(i32, String, String)> {
        run_cli(config_dir, &self.url, args, stdin).await
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        for child in &mut self.services {
            let _ = child.start_kill();
        }
    }
}

/// A second gateway process.
#[derive(Debug)]
pub struct Replica {
    /// Its base URL.
    pub url: String,
    child: Child,
    log: PathBuf,
}

impl Replica {
    /// Waits until it is ready.
    pub async fn wait_ready(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        wait_ready(http, &self.url, &self.log).await
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id (to pause or kill it in fault tests).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Runs the CLI binary.
pub async fn run_cli(
    config_dir: &std::path::Path,
    url: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<(i32, String, String)> {
    let mut cmd = Command::new(workspace_bin("gatehouse")?);
    cmd.args(args)
        .env("GATEHOUSE_CONFIG_DIR", config_dir)
        .env("GATEHOUSE_URL", url)
        .env_remove("GATEHOUSE_API_KEY");
    run_to_end(cmd, stdin, Duration::from_secs(60))
        .await
        .context("the CLI hung")
}

/// Runs `cmd` with `stdin` as its input; returns (exit code, stdout, stderr), or fails
/// when it runs longer than `timeout`.
async fn run_to_end(
    mut cmd: Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(i32, String, String)> {
    use tokio::io::AsyncWriteExt;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).await?;
        drop(pipe);
    }
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .with_context(|| format!("still running after {timeout:?}"))??;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

async fn wait_ready(
    http: &reqwest::Client,
    url: &str,
    log: &std::path::Path,
) -> anyhow::Result<()> {
    wait_for(http, url, "/readyz", log).await
}

/// Waits (30 s at most) until `path` answers 200.
async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    log: &std::path::Path,
) -> anyhow::Result<()> {
    if answers_ok(http, url, path).await {
        return Ok(());
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    bail!("{url}{path} did not answer 200 in 30 s; log:\n{log}");
}

/// Whether `path` answers 200 within 30 s (asked every 10 ms).
pub(crate) async fn answers_ok(http: &reqwest::Client, url: &str, path: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = http.get(format!("{url}{path}")).send().await
            && response.status() == StatusCode::OK
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn rand_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    out[..16].copy_from_slice(a.as_bytes());
    out[16..].copy_from_slice(b.as_bytes());
    out
}

/// Decodes a JWT's payload without verifying it (tests inspect claims).
pub fn claims(token: &str) -> anyhow::Result<Value> {
    let payload = token.split('.').nth(1).context("not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Runs the CLI binary with exactly `env` as its environment (nothing inherited), as a CI
/// job would run it: e.g. only `HOME`, `GATEHOUSE_URL` and `GATEHOUSE_API_KEY`. Unlike
/// [`run_cli`] it sets no config dir or URL of its own and keeps `GATEHOUSE_API_KEY` when
/// given. Fails when the CLI runs longer than `timeout`; returns (exit code, stdout, stderr).
pub async fn run_cli_env(
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<(i32, String, String)> {
    let mut cmd = Command::new(workspace_bin("gatehouse")?);
    cmd.args(args).env_clear().envs(env.iter().copied());
    run_to_end(cmd, stdin, timeout)
        .await
        .with_context(|| format!("gatehouse {args:?}"))
}

/// Runs `program` (a tool, or the CLI under another name) with exactly `env` as its
/// environment, as [`run_cli_env`] runs the CLI. Fails when it runs longer than `timeout`;
/// returns (exit code, stdout, stderr).
pub async fn run_program_env(
    program: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<(i32, String, String)> {
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().envs(env.iter().copied());
    run_to_end(cmd, stdin, timeout)
        .await
        .with_context(|| format!("{} {args:?}", program.display()))
}
