//! Test support shared by the workspace's integration tests: a fresh Postgres database per
//! test and a real nats-server (2.10 or newer, JetStream on) on a free port per test run.
//! Nothing here mocks our own infrastructure: these are the real servers.
//!
//! Run `eval "$(scripts/test-deps)"` (or just `scripts/test`) first: it makes sure Postgres
//! runs and a current nats-server is installed, and exports where to find them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The admin URL new test databases are created from.
pub fn admin_database_url() -> String {
    std::env::var("GATEHOUSE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://gatehouse_test:gatehouse_test@127.0.0.1:5432/postgres".to_owned())
}

fn with_database(url: &str, name: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, rest)) => {
            let query = rest.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
            format!("{base}/{name}{query}")
        }
        None => format!("{url}/{name}"),
    }
}

async fn admin_client() -> anyhow::Result<tokio_postgres::Client> {
    let url = admin_database_url();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.with_context(|| {
        format!("cannot connect to the test Postgres at {url}: run `scripts/test` (or `eval \"$(scripts/test-deps)\"`) first, or set GATEHOUSE_TEST_DATABASE_URL")
    })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A fresh, empty database for one test, dropped (`DROP DATABASE ... WITH (FORCE)`) when
/// this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `gh_test_<uuid>`.
    pub async fn create() -> anyhow::Result<TestDatabase> {
        let name = format!("gh_test_{}", uuid::Uuid::new_v4().simple());
        let client = admin_client().await?;
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.with_context(|| format!("creating database {name}"))?;
        Ok(TestDatabase { url: with_database(&admin_database_url(), &name), name })
    }

    /// The `postgres://` URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside or outside a runtime: use a thread with its own.
        let handle = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async move {
                if let Ok(client) = admin_client().await {
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn version_ok(bin: &std::path::Path) -> anyhow::Result<bool> {
    let output = std::process::Command::new(bin).arg("--version").output().with_context(|| format!("running {}", bin.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "nats-server: v2.10.22"
    let version = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix('v').filter(|v| v.starts_with(|c: char| c.is_ascii_digit())))
        .unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    Ok(major > 2 || (major == 2 && minor >= 10))
}

/// The nats-server binary: `$GATEHOUSE_NATS_SERVER_BIN`, the one `scripts/test-deps`
/// installs, or `nats-server` on the PATH, whichever is found first and is 2.10 or newer.
pub fn nats_server_bin() -> anyhow::Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(path) = std::env::var("GATEHOUSE_NATS_SERVER_BIN") {
        candidates.push(PathBuf::from(path));
    }
    if let Ok(home) = std::env::var("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/gatehouse/tools/venv/bin/nats-server"));
    }
    if let Ok(path) = std::env::var("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|p| p.join("nats-server")));
    }
    for candidate in candidates {
        if candidate.is_file() && version_ok(&candidate).unwrap_or(false) {
            return Ok(candidate);
        }
    }
    bail!("no nats-server 2.10 or newer found: run `scripts/test-deps` (it installs one) or set GATEHOUSE_NATS_SERVER_BIN")
}

/// A real nats-server with JetStream on a free 127.0.0.1 port and its own store
/// directory; killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    monitor_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts one and waits until JetStream is up.
    pub async fn start() -> anyhow::Result<NatsServer> {
        let mut server = NatsServer { port: free_port()?, monitor_port: free_port()?, dir: tempfile::tempdir()?, child: None };
        server.spawn().await?;
        Ok(server)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = nats_server_bin()?;
        let log = self.dir.path().join("nats.log");
        let store = self.dir.path().join("store");
        let mut last_error = None;
        // The port may linger in TIME_WAIT right after a stop: retry a few times.
        for _ in 0..20 {
            let child = Command::new(&bin)
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-m", &self.monitor_port.to_string(), "-js"])
                .arg("-sd")
                .arg(&store)
                .arg("-l")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            self.child = Some(child);
            match self.wait_healthy(Duration::from_secs(10)).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if let Some(mut child) = self.child.take() {
                        let _ = child.kill().await;
                    }
                    last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: String = tail.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("nats-server did not start")).context(format!("nats-server log:\n{tail}")))
    }

    async fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("nats-server exited with {status}");
                }
            }
            if healthz(self.monitor_port).await.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nats-server on port {} not healthy within {timeout:?}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server and waits for it; the port and store stay reserved for `restart`.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts the server again on the same port with the same store (JetStream data survives).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.spawn().await
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

async fn healthz(port: u16) -> anyhow::Result<bool> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200"))
}
