//! The outbox relay on a real nats-server: sends overlap with acknowledgements, and still
//! every event is stored once, each stream's events in version order, also when a publish
//! fails midway or the server goes away mid-batch.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gatehouse_bus::jetstream::{JetStreamFeed, JetStreamPublisher, STREAM_NAME, ensure_stream};
use gatehouse_bus::nats::connect_watched;
use gatehouse_contracts::envelope::{EventMetadata, RecordedEvent, StreamId};
use gatehouse_eventlog::feed::{
    EventFeed, PendingAck, PublishError, Publisher, StartFrom, SubscriptionSpec,
};
use gatehouse_eventlog::postgres::{PgDatabase, PostgresEventStore, migrate};
use gatehouse_eventlog::relay::OutboxRelay;
use gatehouse_eventlog::{AppendRequest, EventStore, ExpectedVersion, NewEvent};
use gatehouse_testsupport::{NatsServer, NatsUser, TestDatabase};
use tokio::sync::watch;
use uuid::Uuid;

use crate::support::{Events, jetstream, nothing_within, settings, take};

const AGGREGATE: &str = "relay_test";

fn new_event() -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: format!("{AGGREGATE}.bumped"),
        schema_version: 1,
        payload: serde_json::json!({}),
        metadata: EventMetadata::default(),
        recorded_at: chrono::Utc::now(),
    }
}

/// A migrated database, a nats-server with the event stream, and a relay between them.
struct Setup {
    _db: TestDatabase,
    database: PgDatabase,
    store: PostgresEventStore,
    server: NatsServer,
    js: async_nats::jetstream::Context,
    publisher: JetStreamPublisher,
}

impl Setup {
    async fn start() -> anyhow::Result<Self> {
        let db = TestDatabase::create().await?;
        let database = PgDatabase::connect(db.url(), 8).await?;
        migrate(database.pool()).await?;
        let store = PostgresEventStore::new(database.pool().clone());
        let server = NatsServer::start().await?;
        let (client, link) =
            connect_watched(&settings(&server, NatsUser::Gatehouse), "relay-tests").await?;
        let js = jetstream(&client, Duration::from_secs(2));
        ensure_stream(&js).await?;
        let publisher = JetStreamPublisher::new(js.clone())
            .with_timeout(Duration::from_secs(2))
            .with_link(link);
        Ok(Self {
            _db: db,
            database,
            store,
            server,
            js,
            publisher,
        })
    }

    /// Runs a relay on `publisher` (short back-off) until the sender says stop.
    fn relay(&self, publisher: Arc<dyn Publisher>) -> Running {
        let (stop, shutdown) = watch::channel(false);
        let relay = OutboxRelay::new(self.database.clone(), publisher)
            .with_backoff(Duration::from_millis(20), Duration::from_millis(200));
        (stop, tokio::spawn(relay.run(shutdown)))
    }

    /// `rounds` appends of `per_append` events to each of `streams` new streams,
    /// interleaved: every stream's first append, then every stream's second, ... Returns
    /// the log in position order.
    async fn backlog(
        &self,
        streams: usize,
        rounds: i64,
        per_append: usize,
    ) -> anyhow::Result<Vec<RecordedEvent>> {
        let ids: Vec<_> = (0..streams)
            .map(|_| StreamId::new(AGGREGATE, Uuid::new_v4()))
            .collect();
        for round in 0..rounds {
            for stream in &ids {
                let expected = if round == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exactly(round * per_append as i64)
                };
                let events = (0..per_append).map(|_| new_event()).collect();
                self.store
                    .append(AppendRequest::new(stream.clone(), expected, events))
                    .await?;
            }
        }
        Ok(self.store.read_all(0, usize::MAX).await?)
    }

    async fn unpublished(&self) -> anyhow::Result<i64> {
        let client = self.database.pool().get().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                &[],
            )
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Waits until every outbox row is marked published.
    async fn all_published(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if self.unpublished().await? == 0 {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} events not published within {within:?}",
                self.unpublished().await?
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the JetStream stream holds, in stream order (exactly `expected` messages).
    async fn stored(&self, expected: usize) -> anyhow::Result<Vec<RecordedEvent>> {
        let info = self.js.get_stream(STREAM_NAME).await?.info().await?.clone();
        anyhow::ensure!(
            info.state.messages == expected as u64,
            "the stream holds {} messages, the log {expected} events",
            info.state.messages
        );
        let mut subscription = JetStreamFeed::new(self.js.clone())
            .subscribe(SubscriptionSpec {
                durable_name: None,
                subjects: Vec::new(),
                start: StartFrom::Beginning,
            })
            .await?;
        let deliveries = take(&mut subscription, expected).await?;
        nothing_within(&mut subscription, Duration::from_millis(200)).await?;
        Ok(deliveries.into_iter().map(|d| d.event).collect())
    }
}

type Running = (watch::Sender<bool>, tokio::task::JoinHandle<()>);

impl Setup {
    /// Waits until `relay` has marked every event published, checks that the stream holds
    /// the log, each event once and in order ([`assert_once_in_log_order`]), and stops it.
    async fn assert_relayed(&self, relay: Running, within: Duration) -> anyhow::Result<()> {
        self.all_published(within).await?;
        let log = self.store.read_all(0, usize::MAX).await?;
        let stored = self.stored(log.len()).await?;
        assert_once_in_log_order(&log, &stored);
        let (stop, relay) = relay;
        stop.send_replace(true);
        relay.await?;
        Ok(())
    }
}

/// Every event of `log` stored exactly once, and each stream's events in version order
/// (which is log order within a stream).
fn assert_once_in_log_order(log: &[RecordedEvent], stored: &[RecordedEvent]) {
    let unique: HashSet<Uuid> = stored.iter().map(|e| e.event_id).collect();
    assert_eq!(unique.len(), stored.len(), "an event was stored twice");
    let logged: HashSet<Uuid> = log.iter().map(|e| e.event_id).collect();
    assert_eq!(unique, logged, "the stream does not hold the log's events");
    let mut last: HashMap<&StreamId, i64> = HashMap::new();
    for event in stored {
        let previous = last.insert(&event.stream_id, event.version).unwrap_or(0);
        assert_eq!(
            event.version,
            previous + 1,
            "{} version {} was stored after version {previous}",
            event.stream_id,
            event.version
        );
    }
}

// ---------------------------------------------------------------------------------------
// What the relay's proof rests on: nats-server's expectations and de-duplication
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_server_refuses_an_event_whose_predecessor_is_not_last_but_acks_a_stored_one_as_a_duplicate()
-> anyhow::Result<()> {
    let events = Events::start().await?;
    let stream = Uuid::new_v4();
    let first = crate::support::event(AGGREGATE, stream, 1, "bumped");
    let second = crate::support::event(AGGREGATE, stream, 2, "bumped");
    let third = crate::support::event(AGGREGATE, stream, 3, "bumped");
    let publisher = &events.publisher;

    publisher.send(&first, None).await?.await?;
    publisher.send(&second, Some(first.event_id)).await?.await?;
    // `third` expects an event that was never stored: refused.
    let refused = publisher.send(&third, Some(Uuid::new_v4())).await?.await;
    assert!(
        refused.is_err(),
        "stored after a predecessor that is not last"
    );
    // Also when it expects an event that is stored, but not last.
    let refused = publisher.send(&third, Some(first.event_id)).await?.await;
    assert!(
        refused.is_err(),
        "stored after a predecessor that is not last"
    );
    assert_eq!(events.stored().await?, 2);

    // A re-send of a stored event is a duplicate, whatever it expects.
    publisher.send(&first, Some(Uuid::new_v4())).await?.await?;
    publisher.send(&second, Some(third.event_id)).await?.await?;
    assert_eq!(events.stored().await?, 2, "a duplicate was stored");

    publisher.send(&third, Some(second.event_id)).await?.await?;
    assert_eq!(events.stored().await?, 3);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The relay
// ---------------------------------------------------------------------------------------

/// JetStream behind a test hook: counts sends, holds acks until released, runs a hook on
/// a chosen send, and can lose a chosen send on the way (it never reaches the server and
/// its ack fails a moment later, like a timeout).
struct Hooked {
    inner: JetStreamPublisher,
    sends: AtomicUsize,
    /// The 1-based send to lose, 0 for none.
    lose: usize,
    /// Called (once) on this 1-based send, before it is sent.
    hook_at: usize,
    hook: Mutex<Option<futures::future::BoxFuture<'static, ()>>>,
    /// While it says true, acks are held back.
    hold: watch::Sender<bool>,
    /// The ids sent, and at each send how many acks were outstanding (sent, not resolved).
    log: Arc<Mutex<Vec<(Uuid, usize)>>>,
    outstanding: Arc<AtomicUsize>,
}

impl Hooked {
    fn new(inner: JetStreamPublisher) -> Self {
        Self {
            inner,
            sends: AtomicUsize::new(0),
            lose: 0,
            hook_at: 0,
            hook: Mutex::new(None),
            hold: watch::Sender::new(false),
            log: Arc::default(),
            outstanding: Arc::default(),
        }
    }

    fn sent(&self) -> Vec<(Uuid, usize)> {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Publisher for Hooked {
    async fn publish(&self, event: &RecordedEvent) -> Result<(), PublishError> {
        self.send(event, None).await?.await
    }

    async fn send(
        &self,
        event: &RecordedEvent,
        after: Option<Uuid>,
    ) -> Result<PendingAck, PublishError> {
        let n = self.sends.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.hook_at {
            let hook = self.hook.lock().ok().and_then(|mut hook| hook.take());
            if let Some(hook) = hook {
                hook.await;
            }
        }
        let outstanding = self.outstanding.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut log) = self.log.lock() {
            log.push((event.event_id, outstanding));
        }
        let ack: PendingAck = if n == self.lose {
            let event_id = event.event_id;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(PublishError {
                    event_id,
                    source: "lost on the way (test)".into(),
                })
            })
        } else {
            self.inner.send(event, after).await?
        };
        let mut hold = self.hold.subscribe();
        let outstanding = self.outstanding.clone();
        Ok(Box::pin(async move {
            let _ = hold.wait_for(|hold| !*hold).await;
            let answer = ack.await;
            outstanding.fetch_sub(1, Ordering::SeqCst);
            answer
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_reads_and_sends_the_next_events_while_earlier_acks_are_outstanding()
-> anyhow::Result<()> {
    let setup = Setup::start().await?;
    let stream = StreamId::new(AGGREGATE, Uuid::new_v4());
    let mut hooked = Hooked::new(setup.publisher.clone());
    // While the first event is being sent, the second is committed: the relay's next read
    // finds it while the first one's ack is held back.
    hooked.hook_at = 1;
    let store = setup.store.clone();
    let next = stream.clone();
    *hooked
        .hook
        .get_mut()
        .map_err(|_| anyhow::anyhow!("poisoned"))? = Some(Box::pin(async move {
        let appended = store
            .append(AppendRequest::new(
                next,
                ExpectedVersion::Exactly(1),
                vec![new_event()],
            ))
            .await;
        assert!(appended.is_ok(), "{appended:?}");
    }));
    hooked.hold.send_replace(true);
    let hooked = Arc::new(hooked);
    setup
        .store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::NoStream,
            vec![new_event()],
        ))
        .await?;
    let relay = setup.relay(hooked.clone());

    let deadline = Instant::now() + Duration::from_secs(10);
    while hooked.sent().len() < 2 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the second event was not sent while the first one's ack was outstanding: sent {:?}",
            hooked.sent()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = hooked.sent();
    assert_eq!(
        sent[1].1, 1,
        "the first ack was outstanding when the second was sent"
    );

    hooked.hold.send_replace(false);
    setup.assert_relayed(relay, Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_concurrent_writers_the_pipelined_relay_stores_every_event_once_in_log_order()
-> anyhow::Result<()> {
    let setup = Setup::start().await?;
    let relay = setup.relay(Arc::new(setup.publisher.clone()));
    let mut writers = Vec::new();
    for _ in 0..8 {
        let store = setup.store.clone();
        writers.push(tokio::spawn(async move {
            let streams: Vec<_> = (0..4)
                .map(|_| StreamId::new(AGGREGATE, Uuid::new_v4()))
                .collect();
            for version in 0..50 {
                for stream in &streams {
                    let expected = if version == 0 {
                        ExpectedVersion::NoStream
                    } else {
                        ExpectedVersion::Exactly(version)
                    };
                    store
                        .append(AppendRequest::new(
                            stream.clone(),
                            expected,
                            vec![new_event()],
                        ))
                        .await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    setup.assert_relayed(relay, Duration::from_secs(30)).await?;
    assert_eq!(setup.store.read_all(0, usize::MAX).await?.len(), 8 * 4 * 50);
    Ok(())
}

/// The third event is lost on the way while the ones after it (of the same streams too)
/// are sent behind it: they must not be stored before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_lost_midway_leaves_the_stream_in_log_order_with_each_event_once()
-> anyhow::Result<()> {
    let setup = Setup::start().await?;
    // 5 streams, 4 rounds: the third event's stream has its second version 5 events later.
    let log = setup.backlog(5, 4, 1).await?;
    let mut hooked = Hooked::new(setup.publisher.clone());
    hooked.lose = 3;
    let hooked = Arc::new(hooked);
    let relay = setup.relay(hooked.clone());
    setup.assert_relayed(relay, Duration::from_secs(10)).await?;

    let sent = hooked.sent();
    assert!(
        sent.iter().filter(|(id, _)| *id == log[2].event_id).count() >= 2,
        "the lost event was sent again"
    );
    let first_send = |id: Uuid| sent.iter().position(|(sent, _)| *sent == id);
    assert!(
        first_send(log[7].event_id) < sent.iter().rposition(|(id, _)| *id == log[2].event_id),
        "the events behind the lost one were not sent before it failed: {sent:?}"
    );
    Ok(())
}

/// nats-server is killed while the relay works through a backlog, and started again: every
/// event ends up stored once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_batch_leaves_the_stream_in_log_order_with_each_event_once()
-> anyhow::Result<()> {
    let mut setup = Setup::start().await?;
    let log = setup.backlog(20, 50, 4).await?;
    assert_eq!(log.len(), 4000);
    let relay = setup.relay(Arc::new(setup.publisher.clone()));
    // Kill it as soon as the stream holds something.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let published = 4000 - setup.unpublished().await?;
        if published > 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "nothing published");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    setup.server.stop().await?;
    let published_before = 4000 - setup.unpublished().await?;
    setup.server.restart().await?;
    eprintln!("{published_before} of 4000 were marked published when the server was killed");
    assert!(published_before < 4000, "the server was killed too late");
    setup.assert_relayed(relay, Duration::from_secs(30)).await
}
