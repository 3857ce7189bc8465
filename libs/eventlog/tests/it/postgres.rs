//! Postgres-only: the outbox relay.

use std::collections::HashSet;
use std::time::Duration;

use gatehouse_eventlog::postgres::{PostgresEventStore, migrate};
use gatehouse_eventlog::{EventStore, ExpectedVersion};

use crate::support::{
    PgTest, RecordingPublisher, append, assert_per_stream_order, bumps, new_stream, wait_until,
};

#[tokio::test]
async fn a_slow_transaction_that_commits_after_a_later_one_is_not_skipped() -> anyhow::Result<()> {
    let pg = PgTest::new().await?;
    migrate(pg.database.pool()).await?;
    let store = pg.store();
    let publisher = RecordingPublisher::new();
    let (stop, relay) = pg.spawn_relay(publisher.clone());

    // The slow writer takes its position first and holds its transaction open...
    let slow_stream = new_stream();
    let mut slow_client = pg.database.pool().get().await?;
    let slow_tx = slow_client.transaction().await?;
    let slow = PostgresEventStore::append_in(
        &slow_tx,
        append(&slow_stream, ExpectedVersion::NoStream, bumps(1)),
    )
    .await?;
    // ...while a fast writer takes a later position and commits.
    let fast_stream = new_stream();
    let fast = store
        .append(append(&fast_stream, ExpectedVersion::NoStream, bumps(1)))
        .await?;
    assert!(
        fast.position > slow.position,
        "the slow event has the earlier position"
    );
    wait_until(Duration::from_secs(10), || async {
        Ok(publisher.published().len() == 1)
    })
    .await?;
    slow_tx.commit().await?;

    // The relay does not skip the late commit.
    wait_until(Duration::from_secs(10), || async {
        Ok(publisher.published().len() == 2)
    })
    .await?;
    let streams: HashSet<_> = publisher
        .published()
        .iter()
        .map(|e| e.stream_id.clone())
        .collect();
    assert!(streams.contains(&slow_stream) && streams.contains(&fast_stream));
    assert_eq!(pg.unpublished().await?, 0);
    stop.send_replace(true);
    relay.await?;
    Ok(())
}

#[tokio::test]
async fn the_relay_survives_a_failing_bus_and_publishes_every_event_once_in_order()
-> anyhow::Result<()> {
    let pg = PgTest::new().await?;
    migrate(pg.database.pool()).await?;
    let store = pg.store();
    let streams: Vec<_> = (0..5).map(|_| new_stream()).collect();
    for round in 0..4 {
        for stream in &streams {
            let expected = if round == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exactly(round)
            };
            store.append(append(stream, expected, bumps(1))).await?;
        }
    }
    // Fails its first three calls; two relays compete for the leader lock.
    let publisher = RecordingPublisher::flaky(3, Duration::from_millis(2));
    let (stop_a, relay_a) = pg.spawn_relay(publisher.clone());
    let (stop_b, relay_b) = pg.spawn_relay(publisher.clone());
    wait_until(Duration::from_secs(30), || async {
        Ok(pg.unpublished().await? == 0)
    })
    .await?;

    let published = publisher.published();
    assert_eq!(published.len(), 20);
    let unique: HashSet<_> = publisher.published_ids().into_iter().collect();
    assert_eq!(unique.len(), 20, "each event published once");
    assert_per_stream_order(&published);
    assert_eq!(publisher.max_in_flight(), 1, "only the leader publishes");
    stop_a.send_replace(true);
    stop_b.send_replace(true);
    relay_a.await?;
    relay_b.await?;
    Ok(())
}

#[tokio::test]
async fn migrating_from_several_processes_at_once_is_safe() -> anyhow::Result<()> {
    let pg = PgTest::new().await?;
    let (a, b, c) = tokio::join!(
        migrate(pg.database.pool()),
        migrate(pg.database.pool()),
        migrate(pg.database.pool())
    );
    a?;
    b?;
    c?;
    migrate(pg.database.pool()).await?;
    pg.store()
        .append(append(&new_stream(), ExpectedVersion::NoStream, bumps(1)))
        .await?;
    Ok(())
}
