//! The write side shared by every service: load an aggregate, decide, append with
//! optimistic concurrency (retrying lost races), make creating commands idempotent, and
//! turn store errors into the typed failures commands reply with.

use std::sync::Arc;

use gatehouse_contracts::clock::Clock;
use gatehouse_contracts::commands::{Accepted, Caller, Failure, FailureKind, Written};
use gatehouse_contracts::envelope::{EventMetadata, StreamId};
use gatehouse_contracts::events::DomainEvent;
use gatehouse_contracts::failures::CommonFailure;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::aggregate::{Aggregate, LoadError, load};
use crate::store::{
    AppendError, AppendRequest, EventStore, ExpectedVersion, IdempotencyRecord, NewEvent, SecretOp,
    StoreError, UniqueClaim,
};
use crate::views::{ViewProjection, fold_into};

/// How often an update is retried after losing an optimistic-concurrency race.
const MAX_ATTEMPTS: usize = 5;

/// What one append should do besides the events.
#[derive(Debug, Default)]
pub struct Extras {
    /// Unique claims taken or released in the same transaction.
    pub claims: Vec<UniqueClaim>,
    /// Secret slots written or deleted in the same transaction.
    pub secrets: Vec<SecretOp>,
}

/// An idempotency key scoped to its caller, with the fingerprint of the request it was
/// first used for, and how long the first outcome is kept (for good unless
/// [`Idempotency::kept_for`] says otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    key: String,
    fingerprint: String,
    retention: Option<chrono::Duration>,
}

impl Idempotency {
    /// The scoped key of `key` for `command` by `caller`, or `None` without a key.
    pub fn of<C: Serialize>(
        caller: Option<&Caller>,
        key: Option<&String>,
        command: &str,
        fingerprint: &C,
    ) -> Option<Self> {
        let key = key?;
        let scope = caller.map_or_else(|| "anonymous".to_owned(), |c| c.id.to_string());
        Some(Self {
            key: format!("{scope}:{key}"),
            fingerprint: format!(
                "{command}:{}",
                serde_json::to_string(fingerprint).unwrap_or_default()
            ),
            retention: None,
        })
    }

    /// Keeps the first outcome for `retention` only (an outcome holding a sealed secret
    /// must not be kept for good): after that a retry is a new request.
    pub fn kept_for(self, retention: chrono::Duration) -> Self {
        Self {
            retention: Some(retention),
            ..self
        }
    }
}

/// Logs a store failure and turns it into the reply a caller sees (503).
pub fn store_failure(error: &dyn std::error::Error) -> Failure {
    tracing::error!(error = %error, cause = ?error.source(), "event store failure");
    Failure::new(
        FailureKind::Unavailable,
        CommonFailure::StoreUnavailable,
        "the event store is unavailable",
    )
}

/// Turns a failed load into the reply a caller sees.
pub fn load_failure(error: LoadError) -> Failure {
    match error {
        LoadError::Store(e) => store_failure(&e),
        LoadError::Decode(e) => {
            tracing::error!(error = %e, "undecodable event in a stream");
            Failure::new(
                FailureKind::Internal,
                CommonFailure::CorruptStream,
                "a stored event cannot be read",
            )
        }
    }
}

/// The caller of a command that needs one.
pub fn require_caller(caller: Option<Caller>) -> Result<Caller, Failure> {
    caller.ok_or_else(|| {
        Failure::new(
            FailureKind::Unauthenticated,
            CommonFailure::Unauthenticated,
            "this command needs a signed-in caller",
        )
    })
}

/// The failure of a creating append: `describe_conflict` says what a unique-claim
/// violation means for this command (`name_taken`, ...).
pub fn create_failure(error: AppendError, describe_conflict: impl FnOnce() -> Failure) -> Failure {
    match error {
        AppendError::UniqueViolation { .. } => describe_conflict(),
        AppendError::WrongExpectedVersion { .. } => Failure::new(
            FailureKind::Conflict,
            CommonFailure::Conflict,
            "the resource was created concurrently",
        ),
        AppendError::IdempotencyKeyTaken => Failure::new(
            FailureKind::Conflict,
            CommonFailure::IdempotencyInProgress,
            "a request with this idempotency key is in progress",
        ),
        AppendError::Invalid(m) => {
            Failure::new(FailureKind::Internal, CommonFailure::InvalidAppend, m)
        }
        AppendError::Store(e) => store_failure(&e),
    }
}

/// A random pause before retry `attempt` of a lost race, up to 2^attempt ms: writers that
/// collided (replicas running the same schedule, clients updating one key) spread out
/// instead of colliding again in lockstep.
fn retry_jitter(attempt: usize) -> std::time::Duration {
    let ceiling = 1u64 << attempt.min(6);
    // The low bits of a fresh v4 uuid are random: no RNG dependency for a pause.
    let random = Uuid::new_v4().as_u128() as u64;
    std::time::Duration::from_micros(random % (ceiling * 1000))
}

/// Appends decided events to the log on behalf of a service.
#[derive(Clone)]
pub struct CommandWriter {
    store: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for CommandWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandWriter").finish_non_exhaustive()
    }
}

impl CommandWriter {
    /// A writer over `store`, stamping events with `clock`.
    pub fn new(store: Arc<dyn EventStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// The event store.
    pub fn store(&self) -> &dyn EventStore {
        self.store.as_ref()
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Loads an aggregate and its version, as a failure callers understand.
    pub async fn load<A: Aggregate>(&self, stream_id: &StreamId) -> Result<(A, i64), Failure> {
        load::<A>(self.store.as_ref(), stream_id)
            .await
            .map_err(load_failure)
    }

    /// Appends `events` to `stream_id` at `expected` (0: a new stream) with claims,
    /// secrets and an optional idempotency record of `output`. Nothing to append is
    /// `Ok(None)`.
    #[allow(clippy::too_many_arguments)]
    pub async fn append<E: DomainEvent, O: Serialize>(
        &self,
        stream_id: StreamId,
        expected: i64,
        events: Vec<E>,
        extras: Extras,
        metadata: &EventMetadata,
        idempotency: Option<&Idempotency>,
        output: &O,
    ) -> Result<Option<Written>, AppendError> {
        if events.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now();
        let correlation = metadata.correlation_id.or_else(|| Some(Uuid::new_v4()));
        let new_events = events
            .iter()
            .map(|e| {
                let mut m = metadata.clone();
                m.correlation_id = correlation;
                NewEvent::from_domain(e, m, now)
            })
            .collect();
        let mut request = AppendRequest::new(
            stream_id,
            if expected == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exactly(expected)
            },
            new_events,
        );
        request.claims = extras.claims;
        request.secrets = extras.secrets;
        request.idempotency = idempotency.map(|i| IdempotencyRecord {
            key: i.key.clone(),
            fingerprint: i.fingerprint.clone(),
            response: serde_json::to_value(output).unwrap_or(serde_json::Value::Null),
            taken_at: now,
            expires_at: i.retention.and_then(|r| now.checked_add_signed(r)),
        });
        let appended = self.store.append(request).await?;
        Ok(Some(Written {
            stream_id: appended.stream_id,
            version: appended.version,
            position: appended.position,
        }))
    }

    /// The stored outcome of an idempotent retry, or `None` to go ahead.
    pub async fn replay<O: DeserializeOwned>(
        &self,
        idempotency: Option<&Idempotency>,
    ) -> Result<Option<Accepted<O>>, Failure> {
        let Some(idempotency) = idempotency else {
            return Ok(None);
        };
        let Some(stored) = self
            .store
            .idempotent_outcome(&idempotency.key)
            .await
            .map_err(|e| store_failure(&e))?
            .filter(|stored| stored.live_at(self.clock.now()))
        else {
            return Ok(None);
        };
        if stored.fingerprint != idempotency.fingerprint {
            return Err(Failure::new(
                FailureKind::Invalid,
                CommonFailure::IdempotencyKeyReused,
                "this idempotency key was used for a different request",
            ));
        }
        let output = serde_json::from_value(stored.response).map_err(|_| {
            Failure::new(
                FailureKind::Internal,
                CommonFailure::CorruptIdempotency,
                "the stored outcome cannot be read",
            )
        })?;
        Ok(Some(Accepted {
            written: Some(Written {
                stream_id: stored.stream_id,
                version: stored.version,
                position: stored.position,
            }),
            output,
        }))
    }

    /// The read model of `stream_id` as of `version` (the latest with `None`), folded from
    /// the log with the projection the read side runs. A command answers with it, so its
    /// answer is what it wrote, however far the read models have got and whatever
    /// happened to the stream since.
    pub async fn view_at<V: DeserializeOwned>(
        &self,
        projection: &dyn ViewProjection,
        stream_id: &StreamId,
        version: Option<i64>,
    ) -> Result<V, Failure> {
        let events = self
            .store
            .read_stream(stream_id, 0)
            .await
            .map_err(|e| store_failure(&e))?;
        let mut doc = None;
        for event in events
            .iter()
            .filter(|e| version.is_none_or(|v| e.version <= v))
        {
            fold_into(projection, &mut doc, event).map_err(|e| {
                tracing::error!(error = %e, "a stream cannot be folded into its view");
                Failure::new(
                    FailureKind::Internal,
                    CommonFailure::CorruptStream,
                    "a stored event cannot be read",
                )
            })?;
        }
        let no_view = || {
            Failure::new(
                FailureKind::Internal,
                CommonFailure::NoView,
                format!("{stream_id} has no {} view", projection.kind()),
            )
        };
        serde_json::from_value(doc.ok_or_else(no_view)?).map_err(|_| no_view())
    }

    /// Completes an accepted command's answer with the view of `stream_id` as the command
    /// left it ([`CommandWriter::view_at`] the written version; the latest when it wrote
    /// nothing): `combine` puts the command's output and the view together.
    pub async fn answer<O, V: DeserializeOwned, T>(
        &self,
        projection: &dyn ViewProjection,
        stream_id: &StreamId,
        accepted: Accepted<O>,
        combine: impl FnOnce(O, V) -> T,
    ) -> Result<Accepted<T>, Failure> {
        let version = accepted.written.as_ref().map(|w| w.version);
        let view = self.view_at(projection, stream_id, version).await?;
        Ok(Accepted {
            written: accepted.written,
            output: combine(accepted.output, view),
        })
    }

    /// Deletes the idempotency outcomes that have expired; returns how many.
    pub async fn purge_idempotency(&self) -> Result<u64, StoreError> {
        self.store.purge_idempotency(self.clock.now()).await
    }

    /// Creates a new stream: appends with an idempotency record, and answers a retry
    /// racing the first attempt with the first attempt's outcome.
    #[allow(clippy::too_many_arguments)]
    pub async fn create<E: DomainEvent, O: Serialize + DeserializeOwned>(
        &self,
        stream_id: StreamId,
        events: Vec<E>,
        extras: Extras,
        metadata: &EventMetadata,
        idempotency: Option<&Idempotency>,
        output: O,
        describe_conflict: impl FnOnce() -> Failure,
    ) -> Result<Accepted<O>, Failure> {
        match self
            .append(stream_id, 0, events, extras, metadata, idempotency, &output)
            .await
        {
            Ok(written) => Ok(Accepted { written, output }),
            Err(AppendError::IdempotencyKeyTaken) => self
                .replay(idempotency)
                .await?
                .ok_or_else(|| create_failure(AppendError::IdempotencyKeyTaken, describe_conflict)),
            Err(e) => Err(create_failure(e, describe_conflict)),
        }
    }

    /// Loads, decides and appends, retrying (after a short random pause) when another
    /// writer got there first: every read-decide-append of every service, the keyring's
    /// included, goes through this one loop. `decide` returns the events, what else to
    /// write, and the command's output.
    pub async fn update_with_retry<A, R, O, F>(
        &self,
        stream_id: StreamId,
        metadata: &EventMetadata,
        decide: F,
    ) -> Result<Accepted<O>, Failure>
    where
        A: Aggregate,
        R: Into<Failure>,
        O: Serialize,
        F: Fn(&A) -> Result<(Vec<A::Event>, Extras, O), R>,
    {
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(retry_jitter(attempt)).await;
            }
            let (state, version) = self.load::<A>(&stream_id).await?;
            let (events, extras, output) = decide(&state).map_err(Into::into)?;
            match self
                .append(
                    stream_id.clone(),
                    version,
                    events,
                    extras,
                    metadata,
                    None,
                    &(),
                )
                .await
            {
                Ok(written) => return Ok(Accepted { written, output }),
                Err(AppendError::WrongExpectedVersion { .. }) => continue,
                Err(AppendError::Store(e)) => return Err(store_failure(&e)),
                Err(other) => {
                    return Err(Failure::new(
                        FailureKind::Internal,
                        CommonFailure::AppendFailed,
                        other.to_string(),
                    ));
                }
            }
        }
        Err(Failure::new(
            FailureKind::Conflict,
            CommonFailure::Conflict,
            "the resource is being changed concurrently; try again",
        ))
    }
}
