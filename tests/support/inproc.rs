//! The in-process test app: what `gatehouse dev` runs (every service's write side, the
//! read-model projector and the gateway, over the in-memory event log and view store and
//! the in-process command bus), started in the test's own runtime by the same code
//! (`gatehouse::runtime::start_dev`), the gateway listening on a free port of 127.0.0.1.
//!
//! Starting one takes milliseconds, so a test of the gateway's handlers (status codes,
//! bodies, authorization, the OAuth grants) runs here. The in-memory backends are
//! implementations of the same traits as Postgres and NATS and pass the same contract suite
//! (`libs/eventlog/tests/it/contract.rs`): not mocks. What is about the infrastructure
//! itself (restarts, replicas, NATS, Postgres, the relay, faults, the browser, the CLI as a
//! process) stays on [`crate::TestApp`], which spawns the real binaries.

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser as _};
use gatehouse::runtime::{ServerArgs, Started};
use gatehouse_contracts::envelope::StreamId;
use gatehouse_testsupport::free_port;
use serde_json::Value;

use crate::api::{ADMIN_PASSWORD, Api};

/// `gatehouse dev`'s options, parsed as the binary parses them.
#[derive(Debug, clap::Parser)]
#[command(name = "gatehouse-dev")]
struct DevArgs {
    #[command(flatten)]
    server: ServerArgs,
}

/// Every service and the gateway in this process, in memory. Dereferences to its [`Api`].
#[derive(Debug)]
pub struct InProcApp {
    api: Api,
    started: Option<Started>,
}

impl std::ops::Deref for InProcApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl InProcApp {
    /// Starts an app (admin password [`ADMIN_PASSWORD`]) and waits until it is ready.
    pub async fn spawn() -> anyhow::Result<InProcApp> {
        Self::spawn_with(&[]).await
    }

    /// Starts an app with settings given by their environment variables, as
    /// [`crate::TestApp::spawn_with`] takes them (e.g. `GATEHOUSE_DEVICE_POLL_INTERVAL`),
    /// and waits until it is ready. Nothing is read from this process's environment.
    pub async fn spawn_with(env: &[(&str, &str)]) -> anyhow::Result<InProcApp> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port()?;
        let mut argv = vec![
            "gatehouse-dev".to_owned(),
            format!("--bind=127.0.0.1:{port}"),
            format!("--admin-password={ADMIN_PASSWORD}"),
        ];
        for (name, value) in env {
            argv.push(format!("--{}={value}", flag_of(name)?));
        }
        let args = DevArgs::try_parse_from(argv)?.server;
        let started = gatehouse::runtime::start_dev(&args).await?;
        let app = InProcApp {
            api: Api::new(format!("http://{}", started.addr))?,
            started: Some(started),
        };
        // As with the binaries: a gateway answers once it has loaded what it must enforce.
        anyhow::ensure!(
            crate::answers_ok(&app.http, &app.url, "/readyz").await,
            "the in-process gateway was not ready in 30 s"
        );
        Ok(app)
    }

    /// The highest position in the event log (it moves with every event recorded).
    pub async fn last_position(&self) -> anyhow::Result<i64> {
        Ok(self.started()?.log.last_position().await?)
    }

    /// The events of stream `stream` (e.g. `api_key-<id>`) in version order: (version,
    /// type, payload).
    pub async fn events_of(&self, stream: &str) -> anyhow::Result<Vec<(i64, String, Value)>> {
        let stream = StreamId::parse(stream).with_context(|| format!("no stream id: {stream}"))?;
        Ok(self
            .started()?
            .log
            .read_stream(&stream, 0)
            .await?
            .into_iter()
            .map(|e| (e.version, e.event_type, e.payload))
            .collect())
    }

    fn started(&self) -> anyhow::Result<&Started> {
        self.started.as_ref().context("the app was stopped")
    }

    /// Stops the services, the projector and the gateway, and waits for them.
    pub async fn stop(mut self) {
        if let Some(started) = self.started.take() {
            started.stop().await;
        }
    }
}

/// The long flag of `gatehouse dev` that environment variable `env` sets.
fn flag_of(env: &str) -> anyhow::Result<String> {
    DevArgs::command()
        .get_arguments()
        .find(|arg| arg.get_env().is_some_and(|e| e == env))
        .and_then(|arg| arg.get_long())
        .map(str::to_owned)
        .with_context(|| format!("`gatehouse dev` has no setting {env}"))
}
