//! The projection runner: written once, for every read model.
//!
//! It takes batches of deliveries from the feed, folds them into the views with the pure
//! projections, commits documents + applied versions + checkpoint in one transaction, and
//! only then acknowledges. Redelivered events are skipped by the per-stream version guard;
//! a stream whose next event is missing (a gap) is filled from the log itself, so a
//! projection never applies version N+2 on top of N.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use gatehouse_contracts::envelope::{RecordedEvent, StreamId};
use tokio::sync::watch;

use crate::feed::{Delivery, EventFeed, FeedError, StartFrom, SubscriptionSpec};
use crate::store::{EventStore, StoreError};
use crate::views::{
    BatchWrite, ProjectionError, StreamWrite, ViewProjection, ViewStore, fold_into,
};

/// Why a batch could not be projected. Nothing was acknowledged; it will be redelivered.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// The read store or the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The feed failed.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// A projection refused an event.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

/// Folds events into read models.
#[derive(Clone)]
pub struct ProjectionRunner {
    name: String,
    views: Arc<dyn ViewStore>,
    log: Arc<dyn EventStore>,
    projections: HashMap<&'static str, Arc<dyn ViewProjection>>,
    max_batch: usize,
}

impl std::fmt::Debug for ProjectionRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("name", &self.name)
            .field("projections", &self.projections.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ProjectionRunner {
    /// A runner named `name` (its durable consumer and checkpoint key).
    pub fn new(name: &str, views: Arc<dyn ViewStore>, log: Arc<dyn EventStore>) -> Self {
        Self {
            name: name.to_owned(),
            views,
            log,
            projections: HashMap::new(),
            max_batch: 256,
        }
    }

    /// Registers a projection (one per aggregate).
    pub fn with(mut self, projection: Arc<dyn ViewProjection>) -> Self {
        self.projections.insert(projection.aggregate(), projection);
        self
    }

    /// The runner's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The view store it writes.
    pub fn views(&self) -> &Arc<dyn ViewStore> {
        &self.views
    }

    /// The subjects it consumes.
    pub fn subjects(&self) -> Vec<String> {
        let mut subjects: Vec<String> = self
            .projections
            .keys()
            .map(|aggregate| format!("gatehouse.events.{aggregate}.>"))
            .collect();
        subjects.sort();
        subjects
    }

    /// Applies a batch of deliveries and acknowledges them once committed.
    pub async fn apply_deliveries(&self, deliveries: Vec<Delivery>) -> Result<(), ProjectorError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let checkpoint = deliveries.iter().map(|d| d.sequence).max().unwrap_or(0);
        let events: Vec<&RecordedEvent> = deliveries.iter().map(|d| &d.event).collect();
        let batch = self.fold(&events, checkpoint).await?;
        self.views.commit(batch).await?;
        for delivery in deliveries {
            // A lost ack only means a redelivery, which the version guard absorbs.
            if let Err(error) = delivery.ack().await {
                tracing::warn!(error = %error, "acknowledging a projected event failed; it will be redelivered and skipped");
            }
        }
        Ok(())
    }

    /// Folds `events` (in delivery order) onto the stored state, filling gaps from the log.
    async fn fold(
        &self,
        events: &[&RecordedEvent],
        checkpoint: u64,
    ) -> Result<BatchWrite, ProjectorError> {
        let mut wanted: Vec<(StreamId, Option<&'static str>)> = Vec::new();
        for event in events {
            if !wanted.iter().any(|(s, _)| s == &event.stream_id) {
                let kind = self
                    .projections
                    .get(event.stream_id.aggregate())
                    .map(|p| p.kind());
                wanted.push((event.stream_id.clone(), kind));
            }
        }
        let mut states = self.views.load_streams(&wanted).await?;
        let mut writes: HashMap<StreamId, StreamWrite> = HashMap::new();

        for event in events {
            let projection = self.projections.get(event.stream_id.aggregate());
            let state = states.entry(event.stream_id.clone()).or_default();
            if event.version <= state.applied {
                continue; // already applied: a redelivery
            }
            let mut pending: Vec<RecordedEvent> = Vec::new();
            if event.version > state.applied + 1 {
                // A gap: fetch the missing versions from the log, the source of truth.
                let missing = self
                    .log
                    .read_stream(&event.stream_id, state.applied)
                    .await?;
                pending.extend(missing.into_iter().filter(|e| e.version < event.version));
                tracing::info!(stream_id = %event.stream_id, from = state.applied + 1, to = event.version - 1, "filled a projection gap from the log");
            }
            pending.push((*event).clone());
            for e in &pending {
                let write = writes
                    .entry(e.stream_id.clone())
                    .or_insert_with(|| StreamWrite {
                        stream_id: e.stream_id.clone(),
                        kind: projection.map(|p| p.kind()),
                        applied: state.applied,
                        position: e.position,
                        doc: state.doc.clone(),
                        created_position: None,
                    });
                if let Some(projection) = projection {
                    fold_into(projection.as_ref(), &mut state.doc, e)?;
                }
                state.applied = e.version;
                if e.version == 1 {
                    write.created_position = Some(e.position);
                }
                write.applied = e.version;
                write.position = e.position;
                write.doc = state.doc.clone();
            }
        }
        Ok(BatchWrite {
            projector: self.name.clone(),
            streams: writes.into_values().collect(),
            checkpoint,
        })
    }

    /// Follows the feed until `shutdown` turns true. Errors are logged with their cause
    /// and retried with back-off; nothing is skipped.
    ///
    /// A `durable` runner (the shared read models) resumes from the feed's durable
    /// consumer; an ephemeral one (a gateway's in-memory directory) resumes after the
    /// checkpoint stored in its own view store.
    pub async fn run(
        &self,
        feed: Arc<dyn EventFeed>,
        durable: bool,
        mut shutdown: watch::Receiver<bool>,
    ) {
        const FIRST_BACKOFF: Duration = Duration::from_millis(100);
        let mut backoff = FIRST_BACKOFF;
        while !*shutdown.borrow() {
            let started = tokio::time::Instant::now();
            match self.follow(feed.as_ref(), durable, &mut shutdown).await {
                Ok(()) => return,
                Err(error) => {
                    // A subscription that outlived the back-off failed anew (e.g. ended by a
                    // NATS restart): start over, not from where earlier failures left it.
                    if started.elapsed() > backoff {
                        backoff = FIRST_BACKOFF;
                    }
                    tracing::error!(projector = %self.name, error = %error, cause = ?std::error::Error::source(&error), "projection failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn follow(
        &self,
        feed: &dyn EventFeed,
        durable: bool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ProjectorError> {
        let spec = if durable {
            SubscriptionSpec {
                durable_name: Some(self.name.clone()),
                subjects: self.subjects(),
                start: StartFrom::Beginning,
            }
        } else {
            let after = self.views.checkpoint(&self.name).await?.unwrap_or(0);
            SubscriptionSpec {
                durable_name: None,
                subjects: self.subjects(),
                start: StartFrom::AfterSequence(after),
            }
        };
        let mut subscription = feed.subscribe(spec).await?;
        loop {
            let first = tokio::select! {
                next = subscription.next() => next,
                _ = shutdown.changed() => return Ok(()),
            };
            let Some(first) = first else {
                return Err(FeedError::Unavailable("the subscription ended".into()).into());
            };
            let mut batch = vec![first?];
            while batch.len() < self.max_batch {
                match subscription.next().now_or_never() {
                    Some(Some(next)) => batch.push(next?),
                    _ => break,
                }
            }
            self.apply_deliveries(batch).await?;
        }
    }

    /// Drops every view and folds the whole log again, in position order. Run it with the
    /// live runner stopped; afterwards the runner resumes from its durable position and
    /// the version guard skips what the replay already applied.
    pub async fn rebuild(&self) -> Result<u64, ProjectorError> {
        let checkpoint = self.views.checkpoint(&self.name).await?.unwrap_or(0);
        self.views.reset().await?;
        let mut after = 0;
        let mut replayed = 0u64;
        loop {
            let events = self.log.read_all(after, 1000).await?;
            let Some(last) = events.last() else { break };
            after = last.position;
            replayed += events.len() as u64;
            let refs: Vec<&RecordedEvent> = events.iter().collect();
            let batch = self.fold(&refs, checkpoint).await?;
            self.views.commit(batch).await?;
        }
        Ok(replayed)
    }
}
