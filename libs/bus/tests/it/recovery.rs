//! Recovery when nats-server comes back: the connection's [`BusLink`] follows it, the
//! outbox relay publishes as soon as it is back (not when its back-off ends), the
//! publisher fails at once while it is down, and an ephemeral subscription, whose consumer
//! the restarted server has lost, ends so that its subscriber subscribes again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gatehouse_bus::jetstream::{
    JetStreamFeed, JetStreamPublisher, PublishFailure, STREAM_NAME, ensure_stream,
};
use gatehouse_bus::nats::{RECONNECT_DELAY_MAX, connect_watched, reconnect_delay};
use gatehouse_contracts::envelope::{EventMetadata, StreamId};
use gatehouse_eventlog::feed::{
    BusLink, EventFeed, FeedError, Publisher, StartFrom, SubscriptionSpec,
};
use gatehouse_eventlog::postgres::{PgDatabase, PostgresEventStore, migrate};
use gatehouse_eventlog::relay::OutboxRelay;
use gatehouse_eventlog::{AppendRequest, EventStore, ExpectedVersion, NewEvent};
use gatehouse_testsupport::{NatsServer, NatsUser, TestDatabase};
use tokio::sync::watch;
use uuid::Uuid;

use crate::support::{WAIT, event, jetstream, settings};

/// A server, a client on it with its link, and the event stream.
async fn watched() -> anyhow::Result<(
    NatsServer,
    async_nats::jetstream::Context,
    watch::Receiver<BusLink>,
)> {
    let server = NatsServer::start().await?;
    let (client, link) =
        connect_watched(&settings(&server, NatsUser::Gatehouse), "recovery-tests").await?;
    let js = jetstream(&client, Duration::from_secs(2));
    ensure_stream(&js).await?;
    Ok((server, js, link))
}

/// Waits (bounded by [`WAIT`]) until the link says `wanted`.
async fn link_until(
    link: &mut watch::Receiver<BusLink>,
    wanted: impl FnMut(&BusLink) -> bool,
) -> anyhow::Result<BusLink> {
    let now = tokio::time::timeout(WAIT, link.wait_for(wanted)).await??;
    Ok(*now)
}

async fn stored(js: &async_nats::jetstream::Context) -> anyhow::Result<u64> {
    Ok(js
        .get_stream(STREAM_NAME)
        .await?
        .info()
        .await?
        .state
        .messages)
}

fn new_event() -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "recovery_test.happened".into(),
        schema_version: 1,
        payload: serde_json::json!({}),
        metadata: EventMetadata::default(),
        recorded_at: chrono::Utc::now(),
    }
}

#[tokio::test]
async fn the_link_follows_the_connection_through_a_server_restart() -> anyhow::Result<()> {
    let (mut server, _js, mut link) = watched().await?;
    let first = link_until(&mut link, |now| now.up).await?;
    assert_eq!(first.connects, 1);

    server.stop().await?;
    link_until(&mut link, |now| !now.up).await?;
    server.restart().await?;
    let back = link_until(&mut link, |now| now.up).await?;
    assert!(back.back_since(&first), "{back:?} after {first:?}");
    assert_eq!(back.connects, 2);
    Ok(())
}

#[tokio::test]
async fn the_client_tries_to_reconnect_at_least_four_times_a_second() {
    assert_eq!(reconnect_delay(1), Duration::ZERO);
    assert_eq!(reconnect_delay(2), Duration::from_millis(10));
    assert_eq!(reconnect_delay(3), Duration::from_millis(20));
    for attempts in 0..10_000 {
        assert!(reconnect_delay(attempts) <= RECONNECT_DELAY_MAX);
    }
    assert_eq!(reconnect_delay(usize::MAX), RECONNECT_DELAY_MAX);
    assert_eq!(RECONNECT_DELAY_MAX, Duration::from_millis(250));
}

#[tokio::test]
async fn publishing_while_nats_is_down_fails_at_once_and_sends_nothing() -> anyhow::Result<()> {
    let (mut server, js, mut link) = watched().await?;
    let publisher = JetStreamPublisher::new(js.clone()).with_link(link.clone());
    server.stop().await?;
    link_until(&mut link, |now| !now.up).await?;

    let started = Instant::now();
    let error = publisher
        .publish(&event("api_key", Uuid::new_v4(), 1, "created"))
        .await
        .expect_err("NATS is down");
    assert!(
        matches!(
            error.source.downcast_ref::<PublishFailure>(),
            Some(PublishFailure::Disconnected)
        ),
        "{error:?}"
    );
    // Not the publish timeout (5 s): nothing was sent to wait for.
    assert!(started.elapsed() < Duration::from_secs(1));

    server.restart().await?;
    link_until(&mut link, |now| now.up).await?;
    assert_eq!(stored(&js).await?, 0, "nothing was buffered and sent later");
    Ok(())
}

/// The relay's back-off here is a minute: only the reconnect can make it publish within
/// the test's wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_as_soon_as_nats_is_back_not_when_its_back_off_ends()
-> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let database = PgDatabase::connect(db.url(), 4).await?;
    migrate(database.pool()).await?;
    let store = PostgresEventStore::new(database.pool().clone());
    let (mut server, js, mut link) = watched().await?;
    let publisher = JetStreamPublisher::new(js.clone()).with_link(link.clone());
    let relay = OutboxRelay::new(database.clone(), Arc::new(publisher))
        .with_backoff(Duration::from_secs(60), Duration::from_secs(60));
    let (stop, shutdown) = watch::channel(false);
    let relay = tokio::spawn(relay.run(shutdown));
    let stream = StreamId::new("recovery_test", Uuid::new_v4());
    store
        .append(AppendRequest::new(
            stream.clone(),
            ExpectedVersion::NoStream,
            vec![new_event()],
        ))
        .await?;
    wait_stored(&js, 1).await?;

    server.stop().await?;
    link_until(&mut link, |now| !now.up).await?;
    store
        .append(AppendRequest::new(
            stream,
            ExpectedVersion::Exactly(1),
            vec![new_event()],
        ))
        .await?;
    // The relay is woken by the append, fails, and backs off for a minute.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().await?;
    wait_stored(&js, 2).await?;
    // Published by the relay (which marks the row), not by a client buffer flushed later.
    let deadline = Instant::now() + WAIT;
    let client = database.pool().get().await?;
    loop {
        let unpublished: i64 = client
            .query_one(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                &[],
            )
            .await?
            .get(0);
        if unpublished == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the relay did not publish within {WAIT:?} of NATS returning"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    stop.send_replace(true);
    relay.await?;
    Ok(())
}

/// Waits (bounded by [`WAIT`]) until the stream holds `n` messages.
async fn wait_stored(js: &async_nats::jetstream::Context, n: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        // The server may still be starting: a failed look is not an answer.
        if stored(js).await.ok() == Some(n) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the stream did not hold {n} events within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_ephemeral_subscription_ends_once_a_restarted_server_is_back() -> anyhow::Result<()> {
    let (mut server, js, mut link) = watched().await?;
    let feed = JetStreamFeed::new(js.clone()).with_link(link.clone());
    let publisher = JetStreamPublisher::new(js.clone()).with_link(link.clone());
    let first = event("api_key", Uuid::new_v4(), 1, "created");
    publisher.publish(&first).await?;
    let mut subscription = feed
        .subscribe(SubscriptionSpec {
            durable_name: None,
            subjects: vec![],
            start: StartFrom::Beginning,
        })
        .await?;
    let delivered = tokio::time::timeout(WAIT, subscription.next()).await?;
    assert!(matches!(delivered, Some(Ok(ref d)) if d.event.event_id == first.event_id));

    // The restarted server no longer has the ordered consumer; the client alone would take
    // ~15 s to notice. The subscription says so once the connection is back, well before.
    server.stop().await?;
    server.restart().await?;
    link_until(&mut link, |now| now.up && now.connects == 2).await?;
    let next = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .map_err(|_| anyhow::anyhow!("the subscription went on silently after the restart"))?;
    assert!(
        matches!(next, Some(Err(FeedError::Unavailable(_)))),
        "{next:?}"
    );
    Ok(())
}
