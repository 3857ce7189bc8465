//! Read models: one JSON document per aggregate instance and view kind, folded from that
//! aggregate's events by a pure [`ViewProjection`], stored under a per-stream version
//! guard so that redelivery changes nothing and a replay of the log gives the same rows.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_contracts::envelope::{RecordedEvent, StreamId};
use uuid::Uuid;

use crate::store::StoreError;

/// One stored view document.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewDoc {
    /// The view kind (`service_account`).
    pub kind: String,
    /// The aggregate id.
    pub id: Uuid,
    /// The stream version folded into it.
    pub version: i64,
    /// The document.
    pub doc: serde_json::Value,
}

/// What a projection does with one event.
#[derive(Clone, Debug, PartialEq)]
pub enum ViewChange {
    /// The document now reads like this.
    Upsert(serde_json::Value),
    /// The document is gone (the aggregate was deleted).
    Delete,
    /// The event does not change this view.
    Unchanged,
}

/// A projection failed to fold an event: a bug or an event this build cannot read. The
/// runner logs it with its cause and retries; it never skips silently.
#[derive(Debug, thiserror::Error)]
#[error("projection {kind} cannot apply {event_type} (stream {stream_id} v{version}): {reason}")]
pub struct ProjectionError {
    /// The view kind.
    pub kind: &'static str,
    /// The event.
    pub event_type: String,
    /// The stream.
    pub stream_id: StreamId,
    /// The version.
    pub version: i64,
    /// Why.
    pub reason: String,
}

impl ProjectionError {
    /// The failure of projecting `event` into a `kind` view.
    pub fn new(kind: &'static str, event: &RecordedEvent, reason: impl ToString) -> Self {
        Self {
            kind,
            event_type: event.event_type.clone(),
            stream_id: event.stream_id.clone(),
            version: event.version,
            reason: reason.to_string(),
        }
    }
}

/// Decodes the current document of a typed view (projection helper).
pub fn current_view<V: serde::de::DeserializeOwned>(
    kind: &'static str,
    doc: Option<&serde_json::Value>,
    event: &RecordedEvent,
) -> Result<Option<V>, ProjectionError> {
    doc.map(|d| serde_json::from_value(d.clone()).map_err(|e| ProjectionError::new(kind, event, e)))
        .transpose()
}

/// Encodes a typed view as the document to store (projection helper).
pub fn upsert_view<V: serde::Serialize>(
    kind: &'static str,
    view: &V,
    event: &RecordedEvent,
) -> Result<ViewChange, ProjectionError> {
    serde_json::to_value(view)
        .map(ViewChange::Upsert)
        .map_err(|e| ProjectionError::new(kind, event, e))
}

/// Folds one event into a stream's document with `projection`: the step the projector
/// takes for the read models and a command writer takes to answer from the log.
pub fn fold_into(
    projection: &dyn ViewProjection,
    doc: &mut Option<serde_json::Value>,
    event: &RecordedEvent,
) -> Result<(), ProjectionError> {
    match projection.apply(doc.as_ref(), event)? {
        ViewChange::Upsert(next) => *doc = Some(next),
        ViewChange::Delete => *doc = None,
        ViewChange::Unchanged => {}
    }
    Ok(())
}

/// A pure fold from one aggregate's events to one view document per aggregate instance.
/// No I/O and no clock: everything it needs is in the event.
pub trait ViewProjection: Send + Sync + 'static {
    /// The view kind it maintains.
    fn kind(&self) -> &'static str;
    /// The aggregate whose streams it folds.
    fn aggregate(&self) -> &'static str;
    /// Folds one event into the current document.
    fn apply(
        &self,
        current: Option<&serde_json::Value>,
        event: &RecordedEvent,
    ) -> Result<ViewChange, ProjectionError>;
}

/// A listing request: equality filters on top-level document fields, in creation order.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Field → required value.
    pub filters: Vec<(String, serde_json::Value)>,
    /// Rows to skip.
    pub offset: u64,
    /// Rows to return at most.
    pub limit: u64,
}

/// One page of a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The rows.
    pub items: Vec<ViewDoc>,
    /// How many rows match in all.
    pub total: u64,
}

/// Every view of some kinds plus the projector checkpoint they reflect, read consistently:
/// a consumer that loads it and then follows the feed from `checkpoint` misses nothing.
#[derive(Clone, Debug, Default)]
pub struct ViewSnapshot {
    /// The documents.
    pub docs: Vec<ViewDoc>,
    /// Stream versions applied, for every stream the projector has seen.
    pub applied: HashMap<StreamId, i64>,
    /// The feed sequence the snapshot reflects.
    pub checkpoint: u64,
}

/// What the projector knows about one stream before a batch.
#[derive(Clone, Debug, Default)]
pub struct StreamState {
    /// The last version applied (0 for none).
    pub applied: i64,
    /// The current document of the stream's view, if any.
    pub doc: Option<serde_json::Value>,
}

/// One stream's new state after a batch.
#[derive(Clone, Debug)]
pub struct StreamWrite {
    /// The stream.
    pub stream_id: StreamId,
    /// The view kind (`None` when no projection handles the stream).
    pub kind: Option<&'static str>,
    /// The last version applied.
    pub applied: i64,
    /// The position of that version.
    pub position: i64,
    /// The document now, or `None` when it was deleted or never existed.
    pub doc: Option<serde_json::Value>,
    /// The position of the stream's first event (listing order), when this batch created it.
    pub created_position: Option<i64>,
}

/// A projector batch, committed atomically.
#[derive(Clone, Debug)]
pub struct BatchWrite {
    /// The projector's name (checkpoint key).
    pub projector: String,
    /// Changed streams.
    pub streams: Vec<StreamWrite>,
    /// The feed sequence reached.
    pub checkpoint: u64,
}

/// Storage for read models.
#[async_trait]
pub trait ViewStore: Send + Sync + 'static {
    /// One document.
    async fn get(&self, kind: &str, id: Uuid) -> Result<Option<ViewDoc>, StoreError>;
    /// The first document whose top-level `field` equals `value`.
    async fn find(
        &self,
        kind: &str,
        field: &str,
        value: &serde_json::Value,
    ) -> Result<Option<ViewDoc>, StoreError>;
    /// A page of documents in creation order.
    async fn list(&self, kind: &str, query: &ListQuery) -> Result<Page, StoreError>;
    /// Records that `(kind, id)` was used at `at`; an earlier time never overwrites a
    /// later one. Uses are not events: this is kept beside the read models, not in them.
    async fn record_use(
        &self,
        kind: &str,
        id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError>;
    /// The last recorded use of each of `ids` that has one.
    async fn last_used(
        &self,
        kind: &str,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, chrono::DateTime<chrono::Utc>>, StoreError>;
    /// The last version of `stream_id` applied, if any.
    async fn applied_version(&self, stream_id: &StreamId) -> Result<Option<i64>, StoreError>;

    /// Waits until `stream_id` has been applied up to `version`, for at most `timeout`.
    /// Returns whether it got there (read-your-writes for the caller of a command).
    async fn wait_applied(
        &self,
        stream_id: &StreamId,
        version: i64,
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_micros(500);
        loop {
            if self.applied_version(stream_id).await?.unwrap_or(0) >= version {
                return Ok(true);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// The projector's side: the state of these streams (absent streams are new).
    async fn load_streams(
        &self,
        streams: &[(StreamId, Option<&'static str>)],
    ) -> Result<HashMap<StreamId, StreamState>, StoreError>;
    /// Commits a batch (documents, versions and checkpoint) atomically.
    async fn commit(&self, batch: BatchWrite) -> Result<(), StoreError>;
    /// The projector's checkpoint.
    async fn checkpoint(&self, projector: &str) -> Result<Option<u64>, StoreError>;
    /// A consistent snapshot of some view kinds.
    async fn snapshot(&self, kinds: &[&str], projector: &str) -> Result<ViewSnapshot, StoreError>;
    /// Forgets every view, applied version and checkpoint (before a rebuild).
    async fn reset(&self) -> Result<(), StoreError>;
}
