//! The service host: what runs a service's write side, alone (`gatehouse-<service>`) or
//! beside every other one (`gatehouse dev`, `gatehouse serve`).
//!
//! A service crate describes its write side once, as a [`WriteSide`]: the command router
//! and the background tasks (sweepers, schedules). The host serves each router on the bus
//! (queue group `<service>`), spawns the tasks, and then waits for a shutdown signal or for
//! the first task that fails, whichever comes first: a failed task stops the whole process
//! with a report naming the service and the task, rather than leaving a process that looks
//! alive and does half its job. A task that returns `Ok` has simply finished (a schedule
//! that is switched off, say).

use std::sync::Arc;

use anyhow::Context as _;
use futures::future::BoxFuture;
use gatehouse_contracts::clock::Clock;
use gatehouse_eventlog::{EventStore, ViewStore};
use gatehouse_secrets::MasterKey;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::router::CommandRouter;
use crate::{CommandBus, Serving};

/// What a service's write side is built from.
pub struct ServiceContext<'a> {
    /// The event log.
    pub log: Arc<dyn EventStore>,
    /// The shared read models (for sweeps over many aggregates).
    pub views: Arc<dyn ViewStore>,
    /// The master key (keys derived for sealing and hashing).
    pub master: &'a MasterKey,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Turns true when the process stops: background tasks end then.
    pub shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for ServiceContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceContext").finish_non_exhaustive()
    }
}

/// A background task of a service: runs until shutdown; an error stops the process.
pub struct Task {
    /// What it does, for the report (`expiry sweeper`).
    pub name: &'static str,
    /// The task.
    pub run: BoxFuture<'static, anyhow::Result<()>>,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Task {
    /// A task that cannot fail (it logs and retries what goes wrong).
    pub fn infallible(
        name: &'static str,
        run: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        Self {
            name,
            run: Box::pin(async move {
                run.await;
                Ok(())
            }),
        }
    }
}

/// The write half of a service's registry entry (the read half is
/// `gatehouse_readmodels::ReadSide`, with the same name).
pub struct WriteSide {
    /// The service's name: it serves `gatehouse.cmd.<service>.*`.
    pub service: &'static str,
    /// Its commands.
    pub router: CommandRouter,
    /// Its background tasks.
    pub tasks: Vec<Task>,
}

impl std::fmt::Debug for WriteSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteSide")
            .field("service", &self.service)
            .field(
                "tasks",
                &self.tasks.iter().map(|t| t.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Services being served and their tasks running.
pub struct Hosted {
    serving: Vec<Box<dyn Serving>>,
    tasks: JoinSet<(String, anyhow::Result<()>)>,
}

impl std::fmt::Debug for Hosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosted")
            .field("services", &self.serving.len())
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

impl Hosted {
    /// Serves every side's commands on `bus` and spawns its tasks.
    pub async fn start(bus: &dyn CommandBus, sides: Vec<WriteSide>) -> anyhow::Result<Self> {
        let mut hosted = Self {
            serving: Vec::new(),
            tasks: JoinSet::new(),
        };
        for side in sides {
            let serving = bus
                .serve(side.service, Arc::new(side.router))
                .await
                .with_context(|| format!("serving {} commands", side.service))?;
            hosted.serving.push(serving);
            for task in side.tasks {
                hosted.spawn(format!("{}: {}", side.service, task.name), task.run);
            }
        }
        Ok(hosted)
    }

    /// Runs one more task under the same rule (the outbox relay, the projector).
    pub fn spawn(
        &mut self,
        name: String,
        run: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        self.tasks.spawn(async move { (name, run.await) });
    }

    /// Waits until `signal` completes or a task fails (an error or a panic); returns the
    /// failure, if that is what ended the wait. Call [`Hosted::stop`] after it either way.
    pub async fn wait(
        &mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let mut signal = std::pin::pin!(signal);
        loop {
            tokio::select! {
                () = &mut signal => return Ok(()),
                joined = self.tasks.join_next(), if !self.tasks.is_empty() => match joined {
                    Some(Ok((_, Ok(())))) | None => {}
                    Some(Ok((name, Err(error)))) => {
                        tracing::error!(task = %name, error = %format!("{error:#}"), "a background task failed; stopping");
                        return Err(error.context(format!("{name} failed")));
                    }
                    Some(Err(panic)) => {
                        tracing::error!(error = %panic, "a background task panicked; stopping");
                        return Err(anyhow::anyhow!("a background task panicked: {panic}"));
                    }
                },
            }
        }
    }

    /// Stops serving (in-flight commands finish) and waits for the tasks, which end on
    /// the shutdown signal their service was given.
    pub async fn stop(mut self) {
        for serving in self.serving.drain(..) {
            serving.stop().await;
        }
        while self.tasks.join_next().await.is_some() {}
    }
}
