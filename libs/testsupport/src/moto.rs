//! moto's server, the AWS stand-in of the AWS connector tests: a real HTTP server that
//! speaks STS, IAM, S3, ECR and EKS.
//!
//! [`Moto::start`] runs `moto_server -H 127.0.0.1 -p <free port>` and waits until it
//! answers; the process is killed on drop. By default moto checks no credentials.
//! [`Moto::start_enforcing_auth`] sets `INITIAL_NO_AUTH_ACTION_COUNT=N`: the first `N` AWS
//! calls go unchecked (enough to create an admin user and its access key), every later
//! call must be signed by a known key and is allowed by IAM policies (identity policies
//! and role policies; moto does not evaluate session policies). `/moto-api/` calls,
//! such as the readiness probe here, do not count.
//!
//! The binary comes from `GATEHOUSE_MOTO_SERVER_BIN` (printed by `scripts/test-deps`,
//! which installs `moto[server]` into the tools virtualenv), else the tools virtualenv,
//! else `PATH`.

use std::fmt;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::{find_on_path, free_port, read_log_tail, tools_dir_candidates};

/// Environment variable holding the path of the `moto_server` binary.
pub const MOTO_SERVER_BIN_ENV: &str = "GATEHOUSE_MOTO_SERVER_BIN";

/// How long [`Moto::start`] waits for the server to answer (it imports a lot of Python).
const MOTO_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The account moto puts everything in.
pub const MOTO_ACCOUNT: &str = "123456789012";

/// A running `moto_server` on a free 127.0.0.1 port; killed on drop.
pub struct Moto {
    port: u16,
    /// Holds the log file; deleted on drop.
    dir: tempfile::TempDir,
    child: Child,
}

impl fmt::Debug for Moto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Moto")
            .field("url", &self.url())
            .field("log", &self.log_path())
            .finish()
    }
}

/// The `moto_server` binary: `$GATEHOUSE_MOTO_SERVER_BIN`, the tools virtualenv's, or the
/// one on `PATH`.
pub fn moto_server_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(MOTO_SERVER_BIN_ENV).filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!(
            "{MOTO_SERVER_BIN_ENV}={} does not exist; run `scripts/test-deps`",
            bin.display()
        );
    }
    tools_dir_candidates()
        .into_iter()
        .map(|dir| dir.join("venv/bin/moto_server"))
        .find(|path| path.is_file())
        .or_else(|| find_on_path("moto_server"))
        .with_context(|| {
            format!(
                "no moto_server found ({MOTO_SERVER_BIN_ENV} unset, none in the tools dir or on \
                 PATH); run `scripts/test-deps`: it installs moto[server] from PyPI"
            )
        })
}

impl Moto {
    /// Starts moto without any auth checks.
    pub async fn start() -> anyhow::Result<Moto> {
        Self::spawn(None).await
    }

    /// Starts moto checking credentials and IAM policies after the first `unchecked` AWS
    /// calls.
    pub async fn start_enforcing_auth(unchecked: u32) -> anyhow::Result<Moto> {
        Self::spawn(Some(unchecked)).await
    }

    async fn spawn(unchecked: Option<u32>) -> anyhow::Result<Moto> {
        let bin = moto_server_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-moto-")
            .tempdir()
            .context("creating a temporary directory for moto")?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = free_port()?;
            let log_path = dir.path().join(format!("moto-{port}.log"));
            let log = File::create(&log_path)
                .with_context(|| format!("creating {}", log_path.display()))?;
            let log_err = log.try_clone().context("duplicating the log file handle")?;
            let mut command = Command::new(&bin);
            command
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log_err))
                .kill_on_drop(true);
            if let Some(n) = unchecked {
                command.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
            }
            let mut child = command
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            match wait_ready(&mut child, port).await {
                Ok(()) => return Ok(Moto { port, dir, child }),
                Err(err) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    let log = read_log_tail(&log_path, 0, 40)
                        .unwrap_or_else(|e| format!("(could not read the log: {e})"));
                    if attempts < 3 && log.contains("Address already in use") {
                        continue;
                    }
                    return Err(err.context(format!(
                        "moto_server ({}) on 127.0.0.1:{port} did not answer; its log says:\n{log}",
                        bin.display()
                    )));
                }
            }
        }
    }

    /// `http://127.0.0.1:PORT`: the endpoint URL of every AWS service.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("moto-{}.log", self.port))
    }

    /// Forgets every resource (`POST /moto-api/reset`). The unchecked-call count of
    /// auth enforcement is not reset.
    pub async fn reset(&self) -> anyhow::Result<()> {
        let status = http_status(self.port, "POST", "/moto-api/reset").await?;
        if status != 200 {
            bail!("POST /moto-api/reset answered {status}");
        }
        Ok(())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Best effort; kill_on_drop(true) also kills it, and tokio reaps it.
        let _ = self.child.start_kill();
    }
}

/// Waits until moto answers `GET /moto-api/` with 200, or fails when it exits or
/// [`MOTO_READY_TIMEOUT`] passes.
async fn wait_ready(child: &mut Child, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + MOTO_READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("checking moto_server")? {
            bail!("moto_server exited during startup ({status})");
        }
        if matches!(http_status(port, "GET", "/moto-api/").await, Ok(200)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("no answer after {MOTO_READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status code of `METHOD path` on 127.0.0.1:`port`, over a plain TCP stream.
async fn http_status(port: u16, method: &str, path: &str) -> anyhow::Result<u16> {
    let attempt = async {
        let mut stream = TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .context("moto did not answer within 5 s")??;
    let status_line = response.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(status_line)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("moto answered something that is not HTTP")
}
