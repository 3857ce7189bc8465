//! Read models: one JSON document per aggregate instance and view kind, folded from that
//! aggregate's events by a pure [`ViewProjection`], stored under a per-stream version
//! guard so that redelivery changes nothing and a replay of the log gives the same rows.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_contracts::envelope::{RecordedEvent, StreamId};
use gatehouse_contracts::events::{DomainEvent, EventDecodeError};
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

/// What kind of failure a [`ProjectionError`] is: it decides whether the runner skips the
/// event or stops the batch (`docs/decisions/0012-unknown-event-types.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The event's type or schema version is one this build does not know (a newer build
    /// wrote it). The runner skips it, records it, and folds the stream again after an
    /// upgrade ([`crate::ProjectionRunner::catch_up`]).
    UnknownEvent,
    /// Anything else: a malformed payload of a known type, a document that does not decode.
    /// A bug: the batch stops and is retried, nothing is skipped.
    Bug,
}

/// A projection failed to fold an event: a bug, or an event this build cannot read (see
/// [`FailureKind`]). A bug is logged with its cause and retried; it never skips silently.
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
    /// Skip (an unknown event) or stop (a bug).
    pub failure: FailureKind,
}

impl ProjectionError {
    /// The failure of projecting `event` into a `kind` view: a bug.
    pub fn new(kind: &'static str, event: &RecordedEvent, reason: impl ToString) -> Self {
        Self {
            kind,
            event_type: event.event_type.clone(),
            stream_id: event.stream_id.clone(),
            version: event.version,
            reason: reason.to_string(),
            failure: FailureKind::Bug,
        }
    }

    /// `event` could not be decoded: an unknown event when `error` says this build does not
    /// know its type or schema version, a bug otherwise.
    pub fn undecodable(kind: &'static str, event: &RecordedEvent, error: EventDecodeError) -> Self {
        let failure = if error.is_unknown() {
            FailureKind::UnknownEvent
        } else {
            FailureKind::Bug
        };
        Self {
            failure,
            ..Self::new(kind, event, error)
        }
    }
}

/// Decodes `event` for a projection of `kind` (projection helper): an event of a type or
/// schema version this build does not know fails as [`FailureKind::UnknownEvent`].
pub fn decode_event<E: DomainEvent>(
    kind: &'static str,
    event: &RecordedEvent,
) -> Result<E, ProjectionError> {
    E::from_recorded(event).map_err(|e| ProjectionError::undecodable(kind, event, e))
}

/// An event a projector skipped because this build does not know its type or schema version.
/// Kept with the projector's checkpoint until a build that knows it folds the stream again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedEvent {
    /// Its stream.
    pub stream_id: StreamId,
    /// Its version in the stream.
    pub version: i64,
    /// Its position in the log.
    pub position: i64,
    /// Its type.
    pub event_type: String,
    /// Its schema version.
    pub schema_version: i32,
}

impl SkippedEvent {
    /// The record of skipping `event`.
    pub fn of(event: &RecordedEvent) -> Self {
        Self {
            stream_id: event.stream_id.clone(),
            version: event.version,
            position: event.position,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
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

/// A listing request: equality filters and time bounds on top-level document fields, in
/// creation order (or newest first).
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Field → required value.
    pub filters: Vec<(String, serde_json::Value)>,
    /// Bounds on top-level timestamp fields (RFC 3339 strings, as serde writes
    /// `DateTime<Utc>`); a document without the field, or with something else in it,
    /// matches no bound.
    pub time_bounds: Vec<TimeBound>,
    /// Newest first: the reverse of creation order.
    pub newest_first: bool,
    /// Rows to skip.
    pub offset: u64,
    /// Rows to return at most.
    pub limit: u64,
}

/// A bound on a top-level timestamp field of a view document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeBound {
    /// The field is at or before the time.
    AtOrBefore(String, chrono::DateTime<chrono::Utc>),
    /// The field is after the time.
    After(String, chrono::DateTime<chrono::Utc>),
}

impl TimeBound {
    /// The field bounded.
    pub fn field(&self) -> &str {
        match self {
            TimeBound::AtOrBefore(field, _) | TimeBound::After(field, _) => field,
        }
    }

    /// Whether `doc` meets the bound.
    pub fn admits(&self, doc: &serde_json::Value) -> bool {
        let Some(at) = doc
            .get(self.field())
            .and_then(serde_json::Value::as_str)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        else {
            return false;
        };
        match self {
            TimeBound::AtOrBefore(_, bound) => at <= *bound,
            TimeBound::After(_, bound) => at > *bound,
        }
    }
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
    /// The events the projector skipped (unknown to its build), for a consumer that starts
    /// from the snapshot to fold again if it knows them.
    pub skipped: Vec<SkippedEvent>,
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
    /// Events skipped as unknown to this build, recorded with the checkpoint.
    pub skipped: Vec<SkippedEvent>,
    /// Streams folded again from their first event ([`crate::ProjectionRunner::catch_up`]):
    /// their skip records are dropped before `skipped` is recorded, and their writes
    /// replace the stored state even at the same version (never at an older one).
    pub refolded: Vec<StreamId>,
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
    /// Whether [`ViewStore::commit_if_logged`] checks events against the log: the store
    /// sees the log's table, and refuses every write at or below a stream's applied version
    /// (so a redelivered first event needs no state loaded to be refused). The runner then
    /// folds the bus's copies and commits them on that condition, in one round trip
    /// (`crate::checked`).
    fn sees_log(&self) -> bool {
        false
    }
    /// Commits `batch` as [`ViewStore::commit`] does, but only if the log holds each of
    /// `events` exactly as given (checked in the same statement); returns whether it
    /// committed. When it did not, nothing was written. A store that does not
    /// [see the log](ViewStore::sees_log) commits nothing.
    async fn commit_if_logged(
        &self,
        batch: BatchWrite,
        events: &[&RecordedEvent],
    ) -> Result<bool, StoreError> {
        let _ = (batch, events);
        Ok(false)
    }
    /// The projector's checkpoint.
    async fn checkpoint(&self, projector: &str) -> Result<Option<u64>, StoreError>;
    /// The events the projector skipped as unknown and has not folded since, in position
    /// order.
    async fn skipped(&self, projector: &str) -> Result<Vec<SkippedEvent>, StoreError>;
    /// A consistent snapshot of some view kinds.
    async fn snapshot(&self, kinds: &[&str], projector: &str) -> Result<ViewSnapshot, StoreError>;
    /// Forgets every view, applied version, checkpoint and skip record (before a rebuild).
    async fn reset(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use gatehouse_contracts::envelope::EventMetadata;
    use gatehouse_contracts::identity::ServiceAccountEvent;

    use super::*;

    fn recorded(
        event_type: &str,
        schema_version: i32,
        payload: serde_json::Value,
    ) -> RecordedEvent {
        RecordedEvent {
            position: 1,
            stream_id: StreamId::new("service_account", Uuid::new_v4()),
            version: 1,
            event_id: Uuid::new_v4(),
            event_type: event_type.into(),
            schema_version,
            payload,
            metadata: EventMetadata::default(),
            recorded_at: chrono::Utc::now(),
        }
    }

    fn failure(event: &RecordedEvent) -> Option<FailureKind> {
        decode_event::<ServiceAccountEvent>("service_account", event)
            .err()
            .map(|e| e.failure)
    }

    #[test]
    fn an_unknown_type_or_newer_schema_is_unknown_and_a_malformed_known_payload_a_bug() {
        let empty = serde_json::json!({});
        assert_eq!(
            failure(&recorded("service_account.deactivated", 1, empty.clone())),
            None
        );
        assert_eq!(
            failure(&recorded(
                "service_account.some_future_thing",
                1,
                empty.clone()
            )),
            Some(FailureKind::UnknownEvent)
        );
        assert_eq!(
            failure(&recorded("service_account.deactivated", 2, empty.clone())),
            Some(FailureKind::UnknownEvent)
        );
        assert_eq!(
            failure(&recorded("service_account.created", 1, empty)),
            Some(FailureKind::Bug)
        );
    }
}
