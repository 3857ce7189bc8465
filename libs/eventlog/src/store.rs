//! Appending to and reading from the log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gatehouse_contracts::envelope::{EventMetadata, RecordedEvent, StreamId};
use gatehouse_contracts::events::DomainEvent;
use uuid::Uuid;

/// What the writer believes the stream's current version is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// The stream must not exist yet (creating commands).
    NoStream,
    /// The stream must be exactly at this version (`0` is the same as `NoStream`).
    Exactly(i64),
}

impl ExpectedVersion {
    /// The version number expected (0 for a new stream).
    pub fn as_i64(&self) -> i64 {
        match self {
            ExpectedVersion::NoStream => 0,
            ExpectedVersion::Exactly(v) => *v,
        }
    }
}

/// An event about to be appended.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Unique id (JetStream de-duplication id).
    pub event_id: Uuid,
    /// `<aggregate>.<event>`.
    pub event_type: String,
    /// Payload schema version.
    pub schema_version: i32,
    /// Payload.
    pub payload: serde_json::Value,
    /// Who, from where, which request.
    pub metadata: EventMetadata,
    /// The deciding service's clock.
    pub recorded_at: DateTime<Utc>,
}

impl NewEvent {
    /// Wraps a domain event with its metadata.
    pub fn from_domain<E: DomainEvent>(
        event: &E,
        metadata: EventMetadata,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            event_id: Uuid::new_v4(),
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            payload: event.to_payload(),
            metadata,
            recorded_at: now,
        }
    }
}

/// A claim on a unique value (a name within a scope), taken or released atomically with an
/// append. Taking a value that another stream holds fails the whole append with
/// [`AppendError::UniqueViolation`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UniqueClaim {
    /// Take `value` in `scope` for the appending stream.
    Claim {
        /// E.g. `principal_name`.
        scope: String,
        /// E.g. `ci-bot`.
        value: String,
    },
    /// Release `value` in `scope` (only if the appending stream holds it).
    Release {
        /// E.g. `principal_name`.
        scope: String,
        /// E.g. `ci-bot`.
        value: String,
    },
    /// Release every value in `scope` that the appending stream holds: for a holder that
    /// no longer knows its values (e.g. a keyed hash of a code nobody typed again).
    ReleaseAll {
        /// E.g. `device_user_code`.
        scope: String,
    },
}

/// A change to the appending stream's secret slots: credential material (password hashes,
/// wrapped data keys) that must never enter the immutable, published log but must change
/// atomically with it. Deleting a slot is how crypto-shredding forgets a key.
#[derive(Clone)]
pub enum SecretOp {
    /// Store `value` under `name` (replacing any previous value).
    Put {
        /// Slot name, e.g. `password_hash`.
        name: String,
        /// Opaque bytes (a hash, a wrapped key).
        value: Vec<u8>,
    },
    /// Forget `name`.
    Delete {
        /// Slot name.
        name: String,
    },
}

impl std::fmt::Debug for SecretOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretOp::Put { name, .. } => write!(f, "Put({name}, [HIDDEN])"),
            SecretOp::Delete { name } => write!(f, "Delete({name})"),
        }
    }
}

/// Makes a creating command safe to retry: the first outcome is stored under the key in
/// the same transaction as the events, and a retry gets it back instead of appending again.
/// An outcome may be kept for a bounded time only (one that holds a sealed secret is):
/// from `expires_at` on it is as if it had never been stored, and
/// [`EventStore::purge_idempotency`] deletes it.
#[derive(Clone, Debug)]
pub struct IdempotencyRecord {
    /// The key, already scoped by the caller (e.g. `<principal id>:<client key>`).
    pub key: String,
    /// A fingerprint of the request, to refuse the same key with a different request.
    pub fingerprint: String,
    /// The command's output, returned to retries.
    pub response: serde_json::Value,
    /// When the key is taken (the writer's clock): an outcome under the same key that
    /// expired by then no longer holds it and is replaced.
    pub taken_at: DateTime<Utc>,
    /// When the outcome stops being returned; `None`: kept for good.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What was stored for an idempotency key.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredOutcome {
    /// The fingerprint of the first request.
    pub fingerprint: String,
    /// The first request's output.
    pub response: serde_json::Value,
    /// The stream written.
    pub stream_id: StreamId,
    /// The stream version after the first write.
    pub version: i64,
    /// The position of the first write's last event.
    pub position: i64,
    /// When it stops being returned; `None`: kept for good.
    pub expires_at: Option<DateTime<Utc>>,
}

impl StoredOutcome {
    /// Whether it may still be returned at `now`.
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// One atomic write.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    /// The stream.
    pub stream_id: StreamId,
    /// The optimistic-concurrency guard.
    pub expected_version: ExpectedVersion,
    /// At least one event.
    pub events: Vec<NewEvent>,
    /// Unique-value claims to take or release.
    pub claims: Vec<UniqueClaim>,
    /// Secret-slot changes.
    pub secrets: Vec<SecretOp>,
    /// Store the outcome under this key.
    pub idempotency: Option<IdempotencyRecord>,
}

impl AppendRequest {
    /// A plain append of `events` at `expected_version`.
    pub fn new(
        stream_id: StreamId,
        expected_version: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        Self {
            stream_id,
            expected_version,
            events,
            claims: Vec::new(),
            secrets: Vec::new(),
            idempotency: None,
        }
    }
}

/// A successful append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The stream written.
    pub stream_id: StreamId,
    /// The stream's version after the append.
    pub version: i64,
    /// The global position of the last event appended.
    pub position: i64,
}

/// The store itself failed (as opposed to refusing the write).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or failed; retrying later may work.
    #[error("the event store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The connection settings are unusable (a bad URL, an unreadable certificate file).
    #[error("invalid database settings: {0}")]
    Config(String),
}

/// Why an append was not made. Nothing was written in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer got there first: the stream is not at the expected version.
    #[error("stream {stream_id} is at version {actual}, expected {expected}")]
    WrongExpectedVersion {
        /// The stream.
        stream_id: StreamId,
        /// What the writer expected.
        expected: i64,
        /// What the stream is at.
        actual: i64,
    },
    /// A claimed unique value belongs to another stream.
    #[error("{value:?} is already taken in {scope}")]
    UniqueViolation {
        /// The scope.
        scope: String,
        /// The value.
        value: String,
    },
    /// The idempotency key was stored by a concurrent request; read it back.
    #[error("idempotency key already used")]
    IdempotencyKeyTaken,
    /// The request itself is unusable (no events).
    #[error("invalid append: {0}")]
    Invalid(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The event log.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends atomically: events, claims, secret slots and idempotency record, or nothing.
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError>;

    /// The events of one stream with `version > after_version`, in version order.
    async fn read_stream(
        &self,
        stream_id: &StreamId,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` committed events with `position > after_position`, in position order.
    /// Only for rebuilds and audits: while writers are active, a later position may
    /// become visible before an earlier one.
    async fn read_all(
        &self,
        after_position: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The highest position committed so far (0 for an empty log).
    async fn last_position(&self) -> Result<i64, StoreError>;

    /// The committed events with these ids, in position order (ids the log does not hold
    /// are left out). How a consumer checks that an event it was handed is in the log.
    async fn read_events(&self, event_ids: &[Uuid]) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The outcome stored under an idempotency key, expired or not (see
    /// [`StoredOutcome::live_at`]).
    async fn idempotent_outcome(&self, key: &str) -> Result<Option<StoredOutcome>, StoreError>;

    /// Deletes every idempotency outcome that expired at or before `now`; returns how many.
    async fn purge_idempotency(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// The stream holding `value` in `scope`.
    async fn claim_holder(&self, scope: &str, value: &str) -> Result<Option<StreamId>, StoreError>;

    /// A secret slot of a stream.
    async fn read_secret(
        &self,
        stream_id: &StreamId,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError>;
}
