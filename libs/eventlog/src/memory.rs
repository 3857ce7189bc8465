//! In-memory event log, feed and view store: the same traits as Postgres + JetStream, for
//! `gatehouse dev` and for fast tests. Nothing persists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use gatehouse_contracts::envelope::{RecordedEvent, StreamId};
use tokio::sync::watch;
use uuid::Uuid;

use crate::feed::{
    Ack, Delivery, EventFeed, FeedError, StartFrom, Subscription, SubscriptionSpec, subject_passes,
};
use crate::store::{
    AppendError, AppendRequest, Appended, EventStore, SecretOp, StoreError, StoredOutcome,
    UniqueClaim,
};
use crate::views::{
    BatchWrite, ListQuery, Page, SkippedEvent, StreamState, ViewDoc, ViewSnapshot, ViewStore,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
struct LogState {
    events: Vec<RecordedEvent>,
    /// Index into `events` by event id (projection runners look every delivery up).
    by_event_id: HashMap<Uuid, usize>,
    versions: HashMap<StreamId, i64>,
    claims: HashMap<(String, String), StreamId>,
    secrets: HashMap<(StreamId, String), Vec<u8>>,
    idempotency: HashMap<String, StoredOutcome>,
    durable_acks: HashMap<String, u64>,
}

/// The in-memory event log. It is also its own [`EventFeed`]: the feed sequence of an
/// event is its position.
#[derive(Clone)]
pub struct MemoryEventStore {
    state: Arc<Mutex<LogState>>,
    committed: watch::Sender<u64>,
}

impl std::fmt::Debug for MemoryEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryEventStore")
            .field("events", &lock(&self.state).events.len())
            .finish()
    }
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEventStore {
    /// An empty log.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(LogState::default())),
            committed: watch::Sender::new(0),
        }
    }
}

#[async_trait]
impl EventStore for MemoryEventStore {
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        if request.events.is_empty() {
            return Err(AppendError::Invalid("an append needs at least one event"));
        }
        let mut state = lock(&self.state);
        let actual = state.versions.get(&request.stream_id).copied().unwrap_or(0);
        let expected = request.expected_version.as_i64();
        if actual != expected {
            return Err(AppendError::WrongExpectedVersion {
                stream_id: request.stream_id,
                expected,
                actual,
            });
        }
        if let Some(record) = &request.idempotency {
            // An outcome that expired by the time the key is taken no longer holds it.
            if state
                .idempotency
                .get(&record.key)
                .is_some_and(|stored| stored.live_at(record.taken_at))
            {
                return Err(AppendError::IdempotencyKeyTaken);
            }
        }
        for claim in &request.claims {
            if let UniqueClaim::Claim { scope, value } = claim {
                match state.claims.get(&(scope.clone(), value.clone())) {
                    Some(holder) if holder != &request.stream_id => {
                        return Err(AppendError::UniqueViolation {
                            scope: scope.clone(),
                            value: value.clone(),
                        });
                    }
                    _ => {}
                }
            }
        }
        if request
            .events
            .iter()
            .any(|e| state.by_event_id.contains_key(&e.event_id))
        {
            // As the Postgres store's unique index on event ids answers.
            return Err(AppendError::Invalid(
                "an event with one of these event ids is already in the log",
            ));
        }
        // All checks passed: apply everything.
        for claim in request.claims {
            match claim {
                UniqueClaim::Claim { scope, value } => {
                    state
                        .claims
                        .insert((scope, value), request.stream_id.clone());
                }
                UniqueClaim::Release { scope, value } => {
                    let key = (scope, value);
                    if state.claims.get(&key) == Some(&request.stream_id) {
                        state.claims.remove(&key);
                    }
                }
                UniqueClaim::ReleaseAll { scope } => {
                    state.claims.retain(|(claim_scope, _), holder| {
                        *claim_scope != scope || *holder != request.stream_id
                    });
                }
            }
        }
        for op in request.secrets {
            match op {
                SecretOp::Put { name, value } => {
                    state
                        .secrets
                        .insert((request.stream_id.clone(), name), value);
                }
                SecretOp::Delete { name } => {
                    state.secrets.remove(&(request.stream_id.clone(), name));
                }
            }
        }
        let mut version = actual;
        let mut position = state.events.len() as i64;
        for event in request.events {
            version += 1;
            position += 1;
            let index = state.events.len();
            state.by_event_id.insert(event.event_id, index);
            state.events.push(RecordedEvent {
                position,
                stream_id: request.stream_id.clone(),
                version,
                event_id: event.event_id,
                event_type: event.event_type,
                schema_version: event.schema_version,
                payload: event.payload,
                metadata: event.metadata,
                recorded_at: event.recorded_at,
            });
        }
        state.versions.insert(request.stream_id.clone(), version);
        if let Some(record) = request.idempotency {
            state.idempotency.insert(
                record.key,
                StoredOutcome {
                    fingerprint: record.fingerprint,
                    response: record.response,
                    stream_id: request.stream_id.clone(),
                    version,
                    position,
                    expires_at: record.expires_at,
                },
            );
        }
        drop(state);
        self.committed.send_replace(position as u64);
        Ok(Appended {
            stream_id: request.stream_id,
            version,
            position,
        })
    }

    async fn read_stream(
        &self,
        stream_id: &StreamId,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = lock(&self.state);
        Ok(state
            .events
            .iter()
            .filter(|e| &e.stream_id == stream_id && e.version > after_version)
            .cloned()
            .collect())
    }

    async fn read_all(
        &self,
        after_position: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = lock(&self.state);
        let start = usize::try_from(after_position.max(0)).unwrap_or(usize::MAX);
        Ok(state
            .events
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn last_position(&self) -> Result<i64, StoreError> {
        Ok(lock(&self.state).events.last().map_or(0, |e| e.position))
    }

    async fn read_events(&self, event_ids: &[Uuid]) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = lock(&self.state);
        let mut indexes: Vec<usize> = event_ids
            .iter()
            .filter_map(|id| state.by_event_id.get(id).copied())
            .collect();
        // In position order, once each, as the Postgres store answers.
        indexes.sort_unstable();
        indexes.dedup();
        Ok(indexes.iter().map(|&i| state.events[i].clone()).collect())
    }

    async fn idempotent_outcome(&self, key: &str) -> Result<Option<StoredOutcome>, StoreError> {
        Ok(lock(&self.state).idempotency.get(key).cloned())
    }

    async fn purge_idempotency(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut state = lock(&self.state);
        let before = state.idempotency.len();
        state.idempotency.retain(|_, stored| stored.live_at(now));
        Ok((before - state.idempotency.len()) as u64)
    }

    async fn claim_holder(&self, scope: &str, value: &str) -> Result<Option<StreamId>, StoreError> {
        Ok(lock(&self.state)
            .claims
            .get(&(scope.to_owned(), value.to_owned()))
            .cloned())
    }

    async fn read_secret(
        &self,
        stream_id: &StreamId,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.state)
            .secrets
            .get(&(stream_id.clone(), name.to_owned()))
            .cloned())
    }
}

struct MemoryAck {
    state: Arc<Mutex<LogState>>,
    durable: String,
    sequence: u64,
}

#[async_trait]
impl Ack for MemoryAck {
    async fn ack(self: Box<Self>) -> Result<(), FeedError> {
        let mut state = lock(&self.state);
        let acked = state.durable_acks.entry(self.durable.clone()).or_insert(0);
        *acked = (*acked).max(self.sequence);
        Ok(())
    }
}

#[async_trait]
impl EventFeed for MemoryEventStore {
    async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription, FeedError> {
        let resume = spec
            .durable_name
            .as_ref()
            .and_then(|name| lock(&self.state).durable_acks.get(name).copied());
        let next_position = match (resume, spec.start) {
            (Some(acked), _) => acked,
            (None, StartFrom::Beginning) => 0,
            (None, StartFrom::AfterSequence(n)) => n,
            (None, StartFrom::New) => *self.committed.borrow(),
        };
        let state = self.state.clone();
        let committed = self.committed.subscribe();
        let stream = futures::stream::unfold(
            (next_position, committed, state, spec),
            |(mut next, mut committed, state, spec)| async move {
                loop {
                    if committed.wait_for(|&n| n > next).await.is_err() {
                        return None; // the store is gone
                    }
                    let event = {
                        let guard = lock(&state);
                        usize::try_from(next)
                            .ok()
                            .and_then(|i| guard.events.get(i).cloned())
                    };
                    next += 1;
                    let Some(event) = event else { continue };
                    if !subject_passes(&spec.subjects, &event.subject()) {
                        continue;
                    }
                    let acker: Option<Box<dyn Ack>> = spec.durable_name.as_ref().map(|name| {
                        Box::new(MemoryAck {
                            state: state.clone(),
                            durable: name.clone(),
                            sequence: next,
                        }) as Box<dyn Ack>
                    });
                    let delivery = Delivery::new(event, next, acker);
                    return Some((Ok(delivery), (next, committed, state, spec)));
                }
            },
        );
        Ok(stream.boxed())
    }

    async fn last_sequence(&self) -> Result<u64, FeedError> {
        Ok(*self.committed.borrow())
    }
}

/// When each (view, id) was last used; kept apart so that `reset` leaves it alone.
type LastUsed = Arc<Mutex<HashMap<(String, Uuid), chrono::DateTime<chrono::Utc>>>>;

#[derive(Default)]
struct ViewState {
    docs: HashMap<(String, Uuid), (ViewDoc, i64)>,
    applied: HashMap<StreamId, i64>,
    checkpoints: HashMap<String, u64>,
    /// Per projector: the events it skipped as unknown, by (stream, version).
    skipped: HashMap<String, std::collections::BTreeMap<(StreamId, i64), SkippedEvent>>,
    /// Survives `reset`, like the Postgres table it stands for.
    last_used: LastUsed,
}

/// In-memory read models.
#[derive(Clone)]
pub struct MemoryViewStore {
    state: Arc<Mutex<ViewState>>,
    commits: watch::Sender<u64>,
}

impl std::fmt::Debug for MemoryViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryViewStore")
            .field("docs", &lock(&self.state).docs.len())
            .finish()
    }
}

impl Default for MemoryViewStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryViewStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(ViewState::default())),
            commits: watch::Sender::new(0),
        }
    }
}

fn skipped_of(state: &ViewState, projector: &str) -> Vec<SkippedEvent> {
    let mut records: Vec<SkippedEvent> = state
        .skipped
        .get(projector)
        .map(|records| records.values().cloned().collect())
        .unwrap_or_default();
    records.sort_by_key(|r| r.position);
    records
}

fn matches_filters(doc: &serde_json::Value, filters: &[(String, serde_json::Value)]) -> bool {
    filters
        .iter()
        .all(|(field, value)| doc.get(field) == Some(value))
}

#[async_trait]
impl ViewStore for MemoryViewStore {
    async fn get(&self, kind: &str, id: Uuid) -> Result<Option<ViewDoc>, StoreError> {
        Ok(lock(&self.state)
            .docs
            .get(&(kind.to_owned(), id))
            .map(|(d, _)| d.clone()))
    }

    async fn find(
        &self,
        kind: &str,
        field: &str,
        value: &serde_json::Value,
    ) -> Result<Option<ViewDoc>, StoreError> {
        let state = lock(&self.state);
        let mut hits: Vec<&(ViewDoc, i64)> = state
            .docs
            .values()
            .filter(|(d, _)| d.kind == kind && d.doc.get(field) == Some(value))
            .collect();
        hits.sort_by_key(|(d, created)| (*created, d.id));
        Ok(hits.first().map(|(d, _)| d.clone()))
    }

    async fn list(&self, kind: &str, query: &ListQuery) -> Result<Page, StoreError> {
        let state = lock(&self.state);
        let mut hits: Vec<&(ViewDoc, i64)> = state
            .docs
            .values()
            .filter(|(d, _)| d.kind == kind && matches_filters(&d.doc, &query.filters))
            .filter(|(d, _)| query.time_bounds.iter().all(|b| b.admits(&d.doc)))
            .collect();
        hits.sort_by_key(|(d, created)| (*created, d.id));
        if query.newest_first {
            hits.reverse();
        }
        let total = hits.len() as u64;
        let items = hits
            .into_iter()
            .skip(usize::try_from(query.offset).unwrap_or(usize::MAX))
            .take(usize::try_from(query.limit).unwrap_or(usize::MAX))
            .map(|(d, _)| d.clone())
            .collect();
        Ok(Page { items, total })
    }

    async fn applied_version(&self, stream_id: &StreamId) -> Result<Option<i64>, StoreError> {
        Ok(lock(&self.state).applied.get(stream_id).copied())
    }

    async fn wait_applied(
        &self,
        stream_id: &StreamId,
        version: i64,
        timeout: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let mut commits = self.commits.subscribe();
        let reached = || {
            lock(&self.state)
                .applied
                .get(stream_id)
                .copied()
                .unwrap_or(0)
                >= version
        };
        let wait = async {
            loop {
                if reached() {
                    return true;
                }
                if commits.changed().await.is_err() {
                    return reached();
                }
            }
        };
        Ok(tokio::time::timeout(timeout, wait).await.unwrap_or(false))
    }

    async fn load_streams(
        &self,
        streams: &[(StreamId, Option<&'static str>)],
    ) -> Result<HashMap<StreamId, StreamState>, StoreError> {
        let state = lock(&self.state);
        Ok(streams
            .iter()
            .map(|(stream_id, kind)| {
                let doc = match (kind, stream_id.id()) {
                    (Some(kind), Some(id)) => state
                        .docs
                        .get(&((*kind).to_owned(), id))
                        .map(|(d, _)| d.doc.clone()),
                    _ => None,
                };
                let applied = state.applied.get(stream_id).copied().unwrap_or(0);
                (stream_id.clone(), StreamState { applied, doc })
            })
            .collect())
    }

    async fn commit(&self, batch: BatchWrite) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        let records = state.skipped.entry(batch.projector.clone()).or_default();
        records.retain(|(stream_id, _), _| !batch.refolded.contains(stream_id));
        for skipped in batch.skipped {
            records
                .entry((skipped.stream_id.clone(), skipped.version))
                .or_insert(skipped);
        }
        for write in batch.streams {
            let current = state.applied.get(&write.stream_id).copied().unwrap_or(0);
            let refolded = batch.refolded.contains(&write.stream_id);
            if write.applied < current || (write.applied == current && !refolded) {
                continue; // the version guard
            }
            state.applied.insert(write.stream_id.clone(), write.applied);
            let (Some(kind), Some(id)) = (write.kind, write.stream_id.id()) else {
                continue;
            };
            let key = (kind.to_owned(), id);
            match write.doc {
                Some(doc) => {
                    let created = write
                        .created_position
                        .or_else(|| state.docs.get(&key).map(|(_, c)| *c))
                        .unwrap_or(write.position);
                    let view = ViewDoc {
                        kind: kind.to_owned(),
                        id,
                        version: write.applied,
                        doc,
                    };
                    state.docs.insert(key, (view, created));
                }
                None => {
                    state.docs.remove(&key);
                }
            }
        }
        let checkpoint = state.checkpoints.entry(batch.projector).or_insert(0);
        *checkpoint = (*checkpoint).max(batch.checkpoint);
        drop(state);
        self.commits.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn checkpoint(&self, projector: &str) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.state).checkpoints.get(projector).copied())
    }

    async fn snapshot(&self, kinds: &[&str], projector: &str) -> Result<ViewSnapshot, StoreError> {
        let state = lock(&self.state);
        Ok(ViewSnapshot {
            docs: state
                .docs
                .values()
                .filter(|(d, _)| kinds.contains(&d.kind.as_str()))
                .map(|(d, _)| d.clone())
                .collect(),
            applied: state.applied.clone(),
            checkpoint: state.checkpoints.get(projector).copied().unwrap_or(0),
            skipped: skipped_of(&state, projector),
        })
    }

    async fn skipped(&self, projector: &str) -> Result<Vec<SkippedEvent>, StoreError> {
        Ok(skipped_of(&lock(&self.state), projector))
    }

    async fn reset(&self) -> Result<(), StoreError> {
        let mut state = lock(&self.state);
        let last_used = state.last_used.clone();
        *state = ViewState {
            last_used,
            ..ViewState::default()
        };
        Ok(())
    }

    async fn record_use(
        &self,
        kind: &str,
        id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let uses = lock(&self.state).last_used.clone();
        let mut uses = lock(&uses);
        let entry = uses.entry((kind.to_owned(), id)).or_insert(at);
        *entry = (*entry).max(at);
        Ok(())
    }

    async fn last_used(
        &self,
        kind: &str,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, chrono::DateTime<chrono::Utc>>, StoreError> {
        let uses = lock(&self.state).last_used.clone();
        let uses = lock(&uses);
        Ok(ids
            .iter()
            .filter_map(|id| uses.get(&(kind.to_owned(), *id)).map(|at| (*id, *at)))
            .collect())
    }
}
