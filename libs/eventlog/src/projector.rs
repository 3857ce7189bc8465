//! The projection runner: written once, for every read model.
//!
//! It takes batches of deliveries from the feed, checks them against the log (the bus is
//! not trusted: [`crate::checked`]; on Postgres the check is part of the commit), folds
//! them into the views with the pure projections, commits documents + applied versions +
//! checkpoint in one transaction, and only then acknowledges. Redelivered events are
//! skipped by the per-stream version guard; a stream whose next event is missing (a gap)
//! is filled from the log itself, so a projection never applies version N+2 on top of N.
//!
//! An event of a type (or schema version) this build does not know was written by a newer
//! build: it is skipped, logged once per type at warn, and recorded with the checkpoint;
//! after an upgrade that knows it, [`ProjectionRunner::catch_up`] folds the streams that
//! hold such events again from the log. A malformed payload of a known type is a bug and
//! stops the batch (`docs/decisions/0012-unknown-event-types.md`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use gatehouse_contracts::envelope::{RecordedEvent, StreamId};
use tokio::sync::watch;

use crate::checked;
use crate::feed::{Delivery, EventFeed, FeedError, StartFrom, SubscriptionSpec};
use crate::store::{EventStore, StoreError};
use crate::views::{
    BatchWrite, FailureKind, ProjectionError, SkippedEvent, StreamState, StreamWrite,
    ViewProjection, ViewStore, fold_into,
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
    /// The unknown `(event type, schema version)`s already logged at warn.
    warned: Arc<Mutex<HashSet<(String, i32)>>>,
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
            warned: Arc::default(),
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

    /// Checks a batch of deliveries against the log ([`crate::checked`]), applies what
    /// the log holds and acknowledges it once committed.
    pub async fn apply_deliveries(&self, deliveries: Vec<Delivery>) -> Result<(), ProjectorError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let checkpoint = deliveries.iter().map(|d| d.sequence).max().unwrap_or(0);
        if self.views.sees_log() && self.commit_as_delivered(&deliveries, checkpoint).await? {
            acknowledge(deliveries).await;
            return Ok(());
        }
        // The check and the load of the streams' states go out together: on Postgres they
        // are two queries in flight at once, not two round trips one after the other.
        let loaded = self.wanted(deliveries.iter().map(|d| &d.event));
        let (checked, states) = tokio::join!(
            checked::against_log(self.log.as_ref(), deliveries),
            self.views.load_streams(&loaded),
        );
        let deliveries = checked?;
        let mut states = states?;
        if deliveries.is_empty() {
            return Ok(()); // all refused
        }
        let events: Vec<&RecordedEvent> = deliveries.iter().map(|d| &d.event).collect();
        // The states were loaded for the bus copies. A log copy that differs (only a forgery
        // does) may name a stream not loaded, or a version past the first of a stream whose
        // document was not loaded: load what the fold needs before folding.
        let loaded: HashMap<StreamId, Option<&'static str>> = loaded.into_iter().collect();
        let missing: Vec<(StreamId, Option<&'static str>)> = self
            .wanted(events.iter().copied())
            .into_iter()
            .filter(|(stream_id, kind)| match loaded.get(stream_id) {
                Some(loaded_kind) => kind.is_some() && loaded_kind.is_none(),
                None => true,
            })
            .collect();
        if !missing.is_empty() {
            states.extend(self.views.load_streams(&missing).await?);
        }
        let batch = self.fold(&events, checkpoint, states).await?;
        self.views.commit(batch).await?;
        acknowledge(deliveries).await;
        Ok(())
    }

    /// The one-round-trip path, for a store that [sees the log](ViewStore::sees_log): folds
    /// the bus's copies and commits them on condition that the log holds them as delivered
    /// ([`ViewStore::commit_if_logged`]). A stream whose only event here is its first needs
    /// no state (the store's version guard refuses a redelivered one), so a batch of new
    /// streams is that one statement. `false`: nothing was written, because a copy differs
    /// from the log's, does not fold, or the commit failed; the checked path decides then.
    async fn commit_as_delivered(
        &self,
        deliveries: &[Delivery],
        checkpoint: u64,
    ) -> Result<bool, ProjectorError> {
        let events: Vec<&RecordedEvent> = deliveries.iter().map(|d| &d.event).collect();
        let wanted: Vec<(StreamId, Option<&'static str>)> = self
            .streams(events.iter().copied())
            .into_iter()
            .filter_map(|(stream_id, kind, first_only)| (!first_only).then_some((stream_id, kind)))
            .collect();
        let states = if wanted.is_empty() {
            HashMap::new()
        } else {
            self.views.load_streams(&wanted).await?
        };
        let batch = match self.fold(&events, checkpoint, states).await {
            Ok(batch) => batch,
            // Perhaps the bus's copy only: the log's copy decides.
            Err(ProjectorError::Projection(_)) => return Ok(false),
            Err(other) => return Err(other),
        };
        match self.views.commit_if_logged(batch, &events).await {
            Ok(committed) => Ok(committed),
            Err(error) => {
                tracing::debug!(projector = %self.name, error = %error, "committing the delivered copies failed; checking them against the log first");
                Ok(false)
            }
        }
    }

    /// The streams of `events`, each once, with the view kind of its projection (`None`
    /// when none handles it) and whether its only event here is its first (version 1).
    fn streams<'a>(
        &self,
        events: impl Iterator<Item = &'a RecordedEvent>,
    ) -> Vec<(StreamId, Option<&'static str>, bool)> {
        let mut streams: HashMap<&StreamId, (Option<&'static str>, bool)> = HashMap::new();
        for event in events {
            streams
                .entry(&event.stream_id)
                .and_modify(|(_, first_only)| *first_only = false)
                .or_insert_with(|| {
                    let kind = self
                        .projections
                        .get(event.stream_id.aggregate())
                        .map(|p| p.kind());
                    (kind, event.version == 1)
                });
        }
        streams
            .into_iter()
            .map(|(stream_id, (kind, first_only))| (stream_id.clone(), kind, first_only))
            .collect()
    }

    /// The streams of `events` to load, with the view kind whose document to load: `None`
    /// when no projection handles the stream, and when its only event here is its first.
    /// That event folds onto no document: the stream is new, or it has moved on and its
    /// loaded version skips the event as a redelivery. Creations are most of a busy feed,
    /// and their documents, never there, were the costliest part of the load.
    fn wanted<'a>(
        &self,
        events: impl Iterator<Item = &'a RecordedEvent>,
    ) -> Vec<(StreamId, Option<&'static str>)> {
        self.streams(events)
            .into_iter()
            .map(|(stream_id, kind, first_only)| (stream_id, kind.filter(|_| !first_only)))
            .collect()
    }

    /// Folds `events` (in delivery order) onto `states` (loaded for their streams),
    /// filling gaps from the log.
    async fn fold(
        &self,
        events: &[&RecordedEvent],
        checkpoint: u64,
        mut states: HashMap<StreamId, StreamState>,
    ) -> Result<BatchWrite, ProjectorError> {
        let mut writes: HashMap<StreamId, StreamWrite> = HashMap::new();
        let mut skipped = Vec::new();

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
                    self.fold_one(projection.as_ref(), &mut state.doc, e, &mut skipped)?;
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
            skipped,
            refolded: Vec::new(),
        })
    }

    /// Folds `event` into `doc`. An event this build does not know leaves `doc` as it was
    /// and is added to `skipped`; any other failure is returned.
    fn fold_one(
        &self,
        projection: &dyn ViewProjection,
        doc: &mut Option<serde_json::Value>,
        event: &RecordedEvent,
        skipped: &mut Vec<SkippedEvent>,
    ) -> Result<(), ProjectionError> {
        match fold_into(projection, doc, event) {
            Err(error) if error.failure == FailureKind::UnknownEvent => {
                let first = self
                    .warned
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert((event.event_type.clone(), event.schema_version));
                if first {
                    tracing::warn!(projector = %self.name, event_type = %event.event_type, schema_version = event.schema_version, stream_id = %event.stream_id, position = event.position, "this build does not know this event type; skipping it and the others of its type (recorded, folded again after an upgrade)");
                } else {
                    tracing::debug!(projector = %self.name, event_type = %event.event_type, stream_id = %event.stream_id, position = event.position, "skipped an unknown event");
                }
                skipped.push(SkippedEvent::of(event));
                Ok(())
            }
            other => other,
        }
    }

    /// Folds again, from the log, every stream holding an event this runner skipped before
    /// and knows now (after an upgrade), and returns how many streams it folded. Events it
    /// still does not know stay recorded. [`ProjectionRunner::run`] calls it before it
    /// follows the feed; without skip records it costs one query.
    pub async fn catch_up(&self) -> Result<usize, ProjectorError> {
        let records = self.views.skipped(&self.name).await?;
        let mut known: HashMap<(&str, i32), bool> = HashMap::new();
        let mut streams: Vec<StreamId> = Vec::new();
        for record in &records {
            let key = (record.event_type.as_str(), record.schema_version);
            let knows = match known.get(&key) {
                Some(knows) => *knows,
                None => {
                    let knows = self.knows(record).await?;
                    known.insert(key, knows);
                    knows
                }
            };
            if knows && !streams.contains(&record.stream_id) {
                streams.push(record.stream_id.clone());
            }
        }
        if streams.is_empty() {
            return Ok(0);
        }
        let mut writes = Vec::with_capacity(streams.len());
        let mut still_unknown = Vec::new();
        for stream_id in &streams {
            let events = self.log.read_stream(stream_id, 0).await?;
            let (Some(first), Some(last)) = (events.first(), events.last()) else {
                continue;
            };
            let projection = self.projections.get(stream_id.aggregate());
            let mut doc = None;
            if let Some(projection) = projection {
                for event in &events {
                    self.fold_one(projection.as_ref(), &mut doc, event, &mut still_unknown)?;
                }
            }
            writes.push(StreamWrite {
                stream_id: stream_id.clone(),
                kind: projection.map(|p| p.kind()),
                applied: last.version,
                position: last.position,
                doc,
                created_position: Some(first.position),
            });
        }
        let checkpoint = self.views.checkpoint(&self.name).await?.unwrap_or(0);
        self.views
            .commit(BatchWrite {
                projector: self.name.clone(),
                streams: writes,
                checkpoint,
                skipped: still_unknown,
                refolded: streams.clone(),
            })
            .await?;
        tracing::info!(projector = %self.name, streams = streams.len(), "folded again the streams holding events this build did not know before");
        Ok(streams.len())
    }

    /// Whether this build's projection folds the skipped event now (tried on one copy of
    /// it from the log, onto no document).
    async fn knows(&self, record: &SkippedEvent) -> Result<bool, ProjectorError> {
        let Some(projection) = self.projections.get(record.stream_id.aggregate()) else {
            return Ok(false);
        };
        let events = self
            .log
            .read_stream(&record.stream_id, record.version - 1)
            .await?;
        let Some(event) = events.iter().find(|e| e.version == record.version) else {
            return Ok(false);
        };
        Ok(!matches!(
            projection.apply(None, event),
            Err(error) if error.failure == FailureKind::UnknownEvent
        ))
    }

    /// Follows the feed until `shutdown` turns true, after [`ProjectionRunner::catch_up`].
    /// Errors are logged with their cause and retried with back-off; nothing is skipped
    /// but events this build does not know (recorded, see the module docs).
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
        self.catch_up().await?;
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
            let states = self
                .views
                .load_streams(&self.wanted(refs.iter().copied()))
                .await?;
            let batch = self.fold(&refs, checkpoint, states).await?;
            self.views.commit(batch).await?;
        }
        Ok(replayed)
    }
}

/// Acknowledges projected deliveries. A lost ack only means a redelivery, which the version
/// guard absorbs.
async fn acknowledge(deliveries: Vec<Delivery>) {
    for delivery in deliveries {
        if let Err(error) = delivery.ack().await {
            tracing::warn!(error = %error, "acknowledging a projected event failed; it will be redelivered and skipped");
        }
    }
}
