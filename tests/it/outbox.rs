//! The outbox with real Postgres and a real nats-server that goes away: events appended
//! while NATS is down are published once it returns, none lost, none twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gatehouse_bus::jetstream::{JetStreamFeed, JetStreamPublisher, STREAM_NAME, ensure_stream};
use gatehouse_contracts::envelope::{EventMetadata, StreamId};
use gatehouse_eventlog::postgres::{PgDatabase, PostgresEventStore, migrate};
use gatehouse_eventlog::relay::OutboxRelay;
use gatehouse_eventlog::{
    AppendRequest, EventFeed, EventStore, ExpectedVersion, NewEvent, StartFrom, SubscriptionSpec,
};
use gatehouse_testsupport::{NatsServer, NatsUser, TestDatabase};
use uuid::Uuid;

fn event(n: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "outbox_test.happened".into(),
        schema_version: 1,
        payload: serde_json::json!({ "n": n }),
        metadata: EventMetadata::default(),
        recorded_at: chrono::Utc::now(),
    }
}

async fn append_round(
    store: &PostgresEventStore,
    streams: &[StreamId],
    versions: &mut HashMap<StreamId, i64>,
    n: &mut usize,
) -> anyhow::Result<()> {
    for stream in streams {
        let version = versions.entry(stream.clone()).or_insert(0);
        let expected = if *version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exactly(*version)
        };
        *n += 1;
        store
            .append(AppendRequest::new(
                stream.clone(),
                expected,
                vec![event(*n)],
            ))
            .await?;
        *version += 1;
    }
    Ok(())
}

#[tokio::test]
async fn events_appended_while_nats_is_down_are_published_once_it_returns() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let mut nats = NatsServer::start().await?;
    let database = PgDatabase::connect(db.url(), 4).await?;
    migrate(database.pool()).await?;
    let store = PostgresEventStore::new(database.pool().clone());
    // Relays and reads back: the all-in-one user of `gatehouse serve` may do both.
    let client = nats.connect_as(NatsUser::Gatehouse).await?;
    let js = async_nats::jetstream::new(client.clone());
    ensure_stream(&js).await?;

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let publisher = JetStreamPublisher::new(js.clone()).with_timeout(Duration::from_millis(500));
    let relay = tokio::spawn(OutboxRelay::new(database.clone(), Arc::new(publisher)).run(shutdown));

    let streams: Vec<StreamId> = (0..5)
        .map(|_| StreamId::new("outbox_test", Uuid::new_v4()))
        .collect();
    let mut versions = HashMap::new();
    let mut n = 0;
    append_round(&store, &streams, &mut versions, &mut n).await?;
    append_round(&store, &streams, &mut versions, &mut n).await?;

    nats.stop().await?;
    for _ in 0..4 {
        append_round(&store, &streams, &mut versions, &mut n).await?;
    }
    tokio::time::sleep(Duration::from_millis(700)).await; // the relay tries, and fails
    nats.restart().await?;

    // Everything arrives, each event once, each stream in version order.
    let feed = JetStreamFeed::new(js.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    let mut last_version: HashMap<StreamId, i64> = HashMap::new();
    let mut subscription = loop {
        match feed
            .subscribe(SubscriptionSpec {
                durable_name: None,
                subjects: vec![],
                start: StartFrom::Beginning,
            })
            .await
        {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("subscribing after the restart: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    while seen.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let delivery = tokio::time::timeout(left, subscription.next())
            .await
            .map_err(|_| anyhow::anyhow!("only {} of {n} events arrived", seen.len()))?;
        let Some(Ok(delivery)) = delivery else {
            continue;
        };
        *seen.entry(delivery.event.event_id).or_default() += 1;
        let last = last_version
            .entry(delivery.event.stream_id.clone())
            .or_insert(0);
        assert!(
            delivery.event.version > *last,
            "stream {} out of order",
            delivery.event.stream_id
        );
        *last = delivery.event.version;
    }
    assert_eq!(seen.len(), n);
    assert!(seen.values().all(|&c| c == 1));
    // The stream itself holds each event exactly once (publish is de-duplicated by id).
    let mut stream = js.get_stream(STREAM_NAME).await?;
    assert_eq!(stream.info().await?.state.messages, n as u64);
    // The relay marks rows after the acks; consumers may see the events a moment earlier.
    let client_pg = database.pool().get().await?;
    let marked_by = Instant::now() + Duration::from_secs(10);
    loop {
        let unpublished: i64 = client_pg
            .query_one(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                &[],
            )
            .await?
            .get(0);
        if unpublished == 0 {
            break;
        }
        assert!(
            Instant::now() < marked_by,
            "{unpublished} outbox rows never marked published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop.send_replace(true);
    relay.await?;
    Ok(())
}
