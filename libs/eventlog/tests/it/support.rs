//! Building blocks shared by the suites: the stores under test, events, a recording
//! publisher and a tiny counting projection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gatehouse_contracts::envelope::{Actor, EventMetadata, RecordedEvent, StreamId};
use gatehouse_contracts::events::EventDecodeError;
use gatehouse_eventlog::memory::{MemoryEventStore, MemoryViewStore};
use gatehouse_eventlog::postgres::{PgDatabase, PostgresEventStore, PostgresViewStore};
use gatehouse_eventlog::relay::OutboxRelay;
use gatehouse_eventlog::{
    AppendRequest, EventStore, ExpectedVersion, NewEvent, ProjectionError, PublishError, Publisher,
    ViewChange, ViewProjection, ViewStore,
};
use gatehouse_testsupport::TestDatabase;
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

/// The stores a contract test runs against.
pub struct Stores {
    pub log: Arc<dyn EventStore>,
    pub views: Arc<dyn ViewStore>,
    /// Keeps the Postgres database alive for the test (`None` in memory).
    pub _pg: Option<PgTest>,
}

impl Stores {
    pub fn memory() -> Self {
        Self {
            log: Arc::new(MemoryEventStore::new()),
            views: Arc::new(MemoryViewStore::new()),
            _pg: None,
        }
    }

    pub async fn postgres() -> anyhow::Result<Self> {
        let pg = PgTest::new().await?;
        Ok(Self {
            log: Arc::new(pg.store()),
            views: Arc::new(PostgresViewStore::new(&pg.database)),
            _pg: Some(pg),
        })
    }
}

/// A fresh, migrated database.
pub struct PgTest {
    // Declared first so that the pool closes before the database is dropped.
    pub database: PgDatabase,
    pub _test_database: TestDatabase,
}

impl PgTest {
    pub async fn new() -> anyhow::Result<Self> {
        let test_database = TestDatabase::create().await?;
        let database = PgDatabase::connect(test_database.url(), 20).await?;
        Ok(Self {
            database,
            _test_database: test_database,
        })
    }

    pub fn store(&self) -> PostgresEventStore {
        PostgresEventStore::new(self.database.pool().clone())
    }

    /// Runs the outbox relay until the returned sender says stop.
    pub fn spawn_relay(
        &self,
        publisher: Arc<RecordingPublisher>,
    ) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        self.spawn_configured_relay(publisher, |relay| relay)
    }

    /// [`Self::spawn_relay`] with settings of its own.
    pub fn spawn_configured_relay(
        &self,
        publisher: Arc<RecordingPublisher>,
        configure: impl FnOnce(OutboxRelay) -> OutboxRelay,
    ) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (stop, shutdown) = watch::channel(false);
        let relay = configure(OutboxRelay::new(self.database.clone(), publisher));
        (stop, tokio::spawn(relay.run(shutdown)))
    }

    /// How many outbox rows are not marked published.
    pub async fn unpublished(&self) -> anyhow::Result<i64> {
        let client = self.database.pool().get().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                &[],
            )
            .await?;
        Ok(row.try_get(0)?)
    }
}

pub const AGGREGATE: &str = "counter";

pub fn new_stream() -> StreamId {
    StreamId::new(AGGREGATE, Uuid::new_v4())
}

/// Now, at the microsecond precision Postgres keeps.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap_or_default()
}

/// A `counter.<name>` event with a label.
pub fn event(name: &str, label: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: format!("{AGGREGATE}.{name}"),
        schema_version: 1,
        payload: json!({ "label": label }),
        metadata: EventMetadata {
            actor: Some(Actor::system()),
            request_id: Some(format!("req-{}", Uuid::new_v4())),
            client_ip: Some("127.0.0.1".into()),
            traceparent: None,
            causation_id: Some(Uuid::new_v4()),
            correlation_id: None,
        },
        recorded_at: now(),
    }
}

/// `count` bumps of a stream.
/// The events as a feed delivers them, each sequence its log position, needing no ack.
pub fn deliveries(events: &[RecordedEvent]) -> Vec<gatehouse_eventlog::Delivery> {
    events
        .iter()
        .map(|e| gatehouse_eventlog::Delivery::new(e.clone(), e.position as u64, None))
        .collect()
}

pub fn bumps(count: usize) -> Vec<NewEvent> {
    (0..count).map(|_| event("bumped", "x")).collect()
}

pub fn append(
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> AppendRequest {
    AppendRequest::new(stream.clone(), expected, events)
}

/// Polls `check` every 10 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A stand-in for the JetStream publisher: records what it publishes, can fail its first
/// calls, and measures how many publishes ever ran at the same time.
#[derive(Default)]
pub struct RecordingPublisher {
    published: Mutex<Vec<RecordedEvent>>,
    failures_left: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    delay: Duration,
}

impl RecordingPublisher {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Fails the first `failures` calls, and takes `delay` for each publish.
    pub fn flaky(failures: usize, delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            failures_left: AtomicUsize::new(failures),
            delay,
            ..Self::default()
        })
    }

    pub fn published(&self) -> Vec<RecordedEvent> {
        self.published.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn published_ids(&self) -> Vec<Uuid> {
        self.published().iter().map(|e| e.event_id).collect()
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Publisher for RecordingPublisher {
    async fn publish(&self, event: &RecordedEvent) -> Result<(), PublishError> {
        let failing = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(PublishError {
                event_id: event.event_id,
                source: "the bus is down (test)".into(),
            });
        }
        let now_in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight
            .fetch_max(now_in_flight, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if let Ok(mut published) = self.published.lock() {
            published.push(event.clone());
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Asserts that every stream's events appear in version order, without gaps.
pub fn assert_per_stream_order(events: &[RecordedEvent]) {
    let mut last: std::collections::HashMap<&StreamId, i64> = std::collections::HashMap::new();
    for event in events {
        let previous = last.insert(&event.stream_id, event.version).unwrap_or(0);
        assert_eq!(
            event.version,
            previous + 1,
            "stream {} published out of order",
            event.stream_id
        );
    }
}

/// Counts a stream's events into `{"count", "label", "last_version"}`; `counter.deleted`
/// deletes the document and `counter.noted` leaves it alone.
#[derive(Debug)]
pub struct CountingProjection;

pub const VIEW_KIND: &str = "counter";

impl ViewProjection for CountingProjection {
    fn kind(&self) -> &'static str {
        VIEW_KIND
    }

    fn aggregate(&self) -> &'static str {
        AGGREGATE
    }

    fn apply(
        &self,
        current: Option<&serde_json::Value>,
        event: &RecordedEvent,
    ) -> Result<ViewChange, ProjectionError> {
        let count = current
            .and_then(|doc| doc.get("count"))
            .and_then(|c| c.as_i64())
            .unwrap_or(0);
        Ok(match event.event_type.as_str() {
            "counter.deleted" => ViewChange::Delete,
            "counter.noted" => ViewChange::Unchanged,
            _ => ViewChange::Upsert(json!({
                "count": count + 1,
                "label": event.payload.get("label").cloned().unwrap_or_default(),
                "last_version": event.version,
            })),
        })
    }
}

/// [`CountingProjection`] as an older build runs it: it does not know the event types
/// `unknown` (a newer build writes it), and reads `counter.malformed` (a type it knows)
/// as a payload that does not match its schema.
#[derive(Debug)]
pub struct OlderBuild {
    pub unknown: &'static [&'static str],
}

impl ViewProjection for OlderBuild {
    fn kind(&self) -> &'static str {
        VIEW_KIND
    }

    fn aggregate(&self) -> &'static str {
        AGGREGATE
    }

    fn apply(
        &self,
        current: Option<&serde_json::Value>,
        event: &RecordedEvent,
    ) -> Result<ViewChange, ProjectionError> {
        if self.unknown.contains(&event.event_type.as_str()) {
            let error = EventDecodeError::UnknownType {
                event_type: event.event_type.clone(),
            };
            return Err(ProjectionError::undecodable(VIEW_KIND, event, error));
        }
        if event.event_type == "counter.malformed" {
            let error = EventDecodeError::Payload {
                event_type: event.event_type.clone(),
                source: serde::de::Error::custom("missing field `label`"),
            };
            return Err(ProjectionError::undecodable(VIEW_KIND, event, error));
        }
        CountingProjection.apply(current, event)
    }
}
