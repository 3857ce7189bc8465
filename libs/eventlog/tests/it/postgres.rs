//! Postgres-only: the outbox relay, the version guard under a real race, migrations.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gatehouse_contracts::envelope::StreamId;
use gatehouse_eventlog::postgres::{PostgresEventStore, migrate};
use gatehouse_eventlog::{AppendError, EventStore, ExpectedVersion, UniqueClaim};

use crate::support::{
    PgTest, RecordingPublisher, append, assert_per_stream_order, bumps, deliveries, new_stream,
    now, wait_until,
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
    // The relay marks rows once their acks are in, which may be a moment after the publish.
    wait_until(Duration::from_secs(10), || async {
        Ok(pg.unpublished().await? == 0)
    })
    .await?;
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
    // `published_at` is when each acknowledgement came back: after the event was queued,
    // before the test saw every row marked, and in the order the bus stored the events.
    let seen_marked = now();
    let client = pg.database.pool().get().await?;
    let rows = client
        .query(
            "SELECT event_id, queued_at, published_at FROM outbox JOIN events USING (position)",
            &[],
        )
        .await?;
    let mut published_at = std::collections::HashMap::new();
    for row in rows {
        let (queued, published): (DateTime<Utc>, DateTime<Utc>) = (row.get(1), row.get(2));
        assert!(queued <= published && published <= seen_marked);
        published_at.insert(row.get::<_, uuid::Uuid>(0), published);
    }
    let in_store_order: Vec<_> = published
        .iter()
        .map(|e| published_at[&e.event_id])
        .collect();
    assert!(in_store_order.is_sorted(), "{in_store_order:?}");
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

/// The append opens its transaction by hand, so that `BEGIN` shares the statements' round
/// trip. An append dropped after its statements went out (a request timed out, a client
/// went away) must not hand the pool a connection still inside its transaction: the next
/// append on that connection would run in it, and its `COMMIT` would commit both.
#[tokio::test]
async fn an_append_dropped_mid_way_leaves_no_open_transaction_in_the_pool() -> anyhow::Result<()> {
    let pg = PgTest::new().await?;
    migrate(pg.database.pool()).await?;
    // One connection, so that the next append would get the dropped one's.
    let single = pg.database.sibling(1)?;
    let store = PostgresEventStore::new(single.pool().clone());
    // Prepares the append's statements on the connection: the next append sends `BEGIN`
    // and its statements at its first poll.
    store
        .append(append(&new_stream(), ExpectedVersion::NoStream, bumps(1)))
        .await?;

    let dropped = new_stream();
    {
        let mut pending =
            Box::pin(store.append(append(&dropped, ExpectedVersion::NoStream, bumps(1))));
        assert!(
            futures::poll!(pending.as_mut()).is_pending(),
            "the append waits for the server's answers"
        );
    }
    let next = new_stream();
    store
        .append(append(&next, ExpectedVersion::NoStream, bumps(1)))
        .await?;

    // Read on another connection: the next append committed, and did not commit the
    // dropped one's events with it (uncommitted, they are invisible until the server has
    // rolled them back).
    let other = pg.store();
    assert_eq!(other.read_stream(&next, 0).await?.len(), 1);
    assert!(
        other.read_stream(&dropped, 0).await?.is_empty(),
        "the dropped append's events were not committed"
    );
    Ok(())
}

/// The claim goes out in one round trip with the append's other statements, so the ways a
/// held value is settled afterwards (by whom, after waiting for whom) are checked here.
#[tokio::test]
async fn a_claim_waits_for_an_open_claimer_and_only_its_own_holder_may_claim_again()
-> anyhow::Result<()> {
    let pg = PgTest::new().await?;
    let store = pg.store();
    let claim = || UniqueClaim::Claim {
        scope: "principal_name".into(),
        value: "ci-bot".into(),
    };
    let claiming = |stream: &StreamId, expected| {
        let mut request = append(stream, expected, bumps(1));
        request.claims.push(claim());
        request
    };
    let (first, second) = (new_stream(), new_stream());

    // A claimer that rolls back leaves the value to the one waiting behind it.
    let mut open_client = pg.database.pool().get().await?;
    let open_tx = open_client.transaction().await?;
    PostgresEventStore::append_in(&open_tx, claiming(&first, ExpectedVersion::NoStream)).await?;
    let waiting = {
        let (store, request) = (store.clone(), claiming(&second, ExpectedVersion::NoStream));
        tokio::spawn(async move { store.append(request).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "the second claimer waits for the first"
    );
    drop(open_tx);
    waiting.await??;
    assert_eq!(
        store.claim_holder("principal_name", "ci-bot").await?,
        Some(second.clone())
    );

    // The holder may claim its value again; anyone else is refused and writes nothing.
    store
        .append(claiming(&second, ExpectedVersion::Exactly(1)))
        .await?;
    let refused = store
        .append(claiming(&first, ExpectedVersion::NoStream))
        .await;
    assert!(
        matches!(&refused, Err(AppendError::UniqueViolation { scope, value })
            if scope == "principal_name" && value == "ci-bot"),
        "got {refused:?}"
    );
    assert!(store.read_stream(&first, 0).await?.is_empty());
    assert_eq!(store.read_stream(&second, 0).await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_writer_that_loses_the_race_after_its_version_check_gets_a_conflict() -> anyhow::Result<()>
{
    let pg = PgTest::new().await?;
    let store = pg.store();
    let stream = new_stream();
    store
        .append(append(&stream, ExpectedVersion::NoStream, bumps(1)))
        .await?;

    // The first writer has inserted version 2 but not committed...
    let mut first_client = pg.database.pool().get().await?;
    let first_tx = first_client.transaction().await?;
    PostgresEventStore::append_in(
        &first_tx,
        append(&stream, ExpectedVersion::Exactly(1), bumps(1)),
    )
    .await?;
    // ...so the second one's version check still reads 1, and its insert waits on the
    // unique index until the first commits.
    let second = {
        let store = store.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            store
                .append(append(&stream, ExpectedVersion::Exactly(1), bumps(2)))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !second.is_finished(),
        "the second writer waits for the first"
    );
    first_tx.commit().await?;

    match second.await? {
        Err(AppendError::WrongExpectedVersion {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (1, 2)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let versions: Vec<i64> = store
        .read_stream(&stream, 0)
        .await?
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, vec![1, 2]);
    assert_eq!(pg.unpublished().await?, 2, "the loser queued nothing");
    Ok(())
}

/// Appends notify the relay only while it sleeps; a lost wake-up would cost the 1 s idle
/// tick. Writers that trickle in while the relay keeps falling asleep and waking up must
/// each be published well within that.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_wakes_for_every_append_while_it_sleeps_and_works() -> anyhow::Result<()> {
    let pg = PgTest::new().await?;
    let store = pg.store();
    let publisher = RecordingPublisher::new();
    // No linger: the relay flags itself asleep in every gap between appends, so the
    // handshake is exercised as often as it can be.
    let (stop, relay) =
        pg.spawn_configured_relay(publisher.clone(), |relay| relay.with_linger(Duration::ZERO));

    // Long idle first: the relay is asleep when the first append comes.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut writers = Vec::new();
    for writer in 0..4u64 {
        let store = store.clone();
        let publisher = publisher.clone();
        writers.push(tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            for i in 0..30u64 {
                tokio::time::sleep(Duration::from_millis((writer * 7 + i * 3) % 13)).await;
                let events = bumps(1);
                let id = events[0].event_id;
                store
                    .append(append(&new_stream(), ExpectedVersion::NoStream, events))
                    .await?;
                let committed = Instant::now();
                wait_until(Duration::from_secs(5), || async {
                    Ok(publisher.published_ids().contains(&id))
                })
                .await?;
                slowest = slowest.max(committed.elapsed());
            }
            anyhow::Ok(slowest)
        }));
    }
    let mut slowest = Duration::ZERO;
    for writer in writers {
        slowest = slowest.max(writer.await??);
    }
    assert!(
        slowest < Duration::from_millis(700),
        "an append waited {slowest:?} to be published: a wake-up was lost"
    );
    assert_eq!(publisher.published().len(), 120);
    stop.send_replace(true);
    relay.await?;
    Ok(())
}

/// Flagging itself asleep makes the appends in flight wait for the relay, so a relay whose
/// looks were crowded keeps looking by itself for a while before it does; one that sees
/// events one at a time sleeps at once, since a notification wakes it sooner than a look.
#[tokio::test]
async fn a_relay_lingers_after_crowded_looks_and_sleeps_at_once_after_single_events()
-> anyhow::Result<()> {
    const LINGER: Duration = Duration::from_secs(2);
    let pg = PgTest::new().await?;
    let store = pg.store();
    let publisher = RecordingPublisher::new();
    let (stop, relay) =
        pg.spawn_configured_relay(publisher.clone(), |relay| relay.with_linger(LINGER));
    let sleeping = || async {
        let client = pg.database.pool().get().await?;
        let row = client
            .query_one("SELECT sleeping FROM outbox_relay", &[])
            .await?;
        anyhow::Ok(row.try_get::<_, bool>(0)?)
    };
    let append_and_publish = |count: usize| {
        let (store, publisher) = (store.clone(), publisher.clone());
        async move {
            let events = bumps(count);
            let id = events[count - 1].event_id;
            store
                .append(append(&new_stream(), ExpectedVersion::NoStream, events))
                .await?;
            wait_until(Duration::from_secs(5), || async {
                Ok(publisher.published_ids().contains(&id))
            })
            .await
        }
    };

    // One event at a time: asleep again well within the linger, after each.
    for _ in 0..5 {
        append_and_publish(1).await?;
        wait_until(LINGER / 2, || async { sleeping().await }).await?;
    }

    // Two at a time (one look finds both), with gaps in which the relay finds nothing.
    let mut flags = Vec::new();
    for _ in 0..20 {
        append_and_publish(2).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        flags.push(sleeping().await?);
    }
    assert_eq!(
        flags,
        vec![false; 20],
        "the relay flagged itself asleep between crowded looks"
    );

    // Once the linger is over with nothing new, it sleeps, and an append wakes it.
    wait_until(LINGER * 3, || async { sleeping().await }).await?;
    let woken = Instant::now();
    append_and_publish(1).await?;
    assert!(
        woken.elapsed() < Duration::from_millis(700),
        "the sleeping relay was not woken"
    );
    stop.send_replace(true);
    relay.await?;
    Ok(())
}

/// A leader killed while busy leaves the flag saying "awake", so appends would not wake
/// its successor, and each would wait for the idle tick. A new leader asks for wake-ups
/// before it first sleeps, whatever the flag says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_asks_for_wake_ups_even_when_a_killed_one_left_the_flag_awake()
-> anyhow::Result<()> {
    let pg = PgTest::new().await?;
    let client = pg.database.pool().get().await?;
    client
        .execute("UPDATE outbox_relay SET sleeping = false", &[])
        .await?;
    let publisher = RecordingPublisher::new();
    let (stop, relay) = pg.spawn_relay(publisher.clone());
    wait_until(Duration::from_secs(5), || async {
        let row = client
            .query_one("SELECT sleeping FROM outbox_relay", &[])
            .await?;
        Ok(row.try_get::<_, bool>(0)?)
    })
    .await?;
    stop.send_replace(true);
    relay.await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leading_relay_stops_another_takes_over() -> anyhow::Result<()> {
    let pg = PgTest::new().await?;
    let store = pg.store();
    let publisher = RecordingPublisher::new();
    let (stop_first, first) = pg.spawn_relay(publisher.clone());
    store
        .append(append(&new_stream(), ExpectedVersion::NoStream, bumps(1)))
        .await?;
    wait_until(Duration::from_secs(5), || async {
        Ok(publisher.published().len() == 1)
    })
    .await?;

    // The first relay leads; the second waits for the lock.
    let (stop_second, second) = pg.spawn_relay(publisher.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_first.send_replace(true);
    first.await?;
    store
        .append(append(&new_stream(), ExpectedVersion::NoStream, bumps(3)))
        .await?;
    wait_until(Duration::from_secs(5), || async {
        Ok(publisher.published().len() == 4)
    })
    .await?;
    let unique: HashSet<_> = publisher.published_ids().into_iter().collect();
    assert_eq!(unique.len(), 4);
    assert_per_stream_order(&publisher.published());
    stop_second.send_replace(true);
    second.await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// TLS to Postgres (libpq's sslmode and sslrootcert; scripts/test-deps serves TLS with a
// certificate for "localhost" and exports it as GATEHOUSE_TEST_PG_CA)
// ---------------------------------------------------------------------------------------

/// The test database's URL on `host`, with `params` added.
fn tls_url(
    test_database: &gatehouse_testsupport::TestDatabase,
    host: &str,
    params: &str,
) -> String {
    let url = test_database
        .url()
        .replacen("@127.0.0.1:", &format!("@{host}:"), 1);
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

fn test_ca() -> anyhow::Result<String> {
    std::env::var("GATEHOUSE_TEST_PG_CA").map_err(|_| {
        anyhow::anyhow!(
            "GATEHOUSE_TEST_PG_CA is not set: run the tests through scripts/test (or eval \
             \"$(scripts/test-deps)\"), which serves TLS from the test Postgres and names its \
             certificate; with your own GATEHOUSE_TEST_DATABASE_URL, point it at that server's \
             CA certificate (issued for localhost)"
        )
    })
}

/// Whether the pool's session runs over TLS, as the server sees it.
async fn encrypted(url: &str) -> anyhow::Result<bool> {
    let database = gatehouse_eventlog::postgres::PgDatabase::connect(url, 2).await?;
    let client = database.pool().get().await?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn verify_full_connects_over_tls_only_to_the_server_its_ca_names() -> anyhow::Result<()> {
    let ca = test_ca()?;
    let db = gatehouse_testsupport::TestDatabase::create().await?;
    let full = format!("sslmode=verify-full&sslrootcert={ca}");
    assert!(encrypted(&tls_url(&db, "localhost", &full)).await?);

    // The certificate names localhost, not 127.0.0.1: verify-full refuses, verify-ca (the
    // chain alone) accepts.
    let refused = encrypted(&tls_url(&db, "127.0.0.1", &full)).await;
    assert!(refused.is_err(), "a name mismatch must not connect");
    let ca_only = format!("sslmode=verify-ca&sslrootcert={ca}");
    assert!(encrypted(&tls_url(&db, "127.0.0.1", &ca_only)).await?);

    // The system's roots do not include the test CA: the server is not trusted.
    let refused = encrypted(&tls_url(&db, "localhost", "sslmode=verify-full")).await;
    assert!(refused.is_err(), "an unknown CA must not connect");
    Ok(())
}

#[tokio::test]
async fn require_and_prefer_encrypt_and_disable_does_not() -> anyhow::Result<()> {
    test_ca()?; // the server serves TLS
    let db = gatehouse_testsupport::TestDatabase::create().await?;
    // libpq's meaning: encrypted, the certificate not checked (self-signed here).
    assert!(encrypted(&tls_url(&db, "127.0.0.1", "sslmode=require")).await?);
    assert!(encrypted(db.url()).await?, "prefer is the default");
    assert!(!encrypted(&tls_url(&db, "127.0.0.1", "sslmode=disable")).await?);
    Ok(())
}

/// Listens on `channel` with a connection of its own; yields each notification's payload.
async fn listen(
    url: &str,
    channel: &str,
) -> anyhow::Result<(
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
)> {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let (payloads, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(notification) = message {
                let _ = payloads.send(notification.payload().to_owned());
            }
        }
    });
    client.batch_execute(&format!("LISTEN {channel}")).await?;
    Ok((client, received))
}

#[tokio::test]
async fn a_view_commit_notifies_the_streams_it_moved_and_waiters_believe_it() -> anyhow::Result<()>
{
    use std::sync::Arc;

    use gatehouse_eventlog::postgres::{PROJECTED_CHANNEL, PostgresViewStore};
    use gatehouse_eventlog::{ProjectionRunner, ViewStore};

    let pg = PgTest::new().await?;
    migrate(pg.database.pool()).await?;
    let log = Arc::new(pg.store());
    let views = Arc::new(PostgresViewStore::new(&pg.database));
    let runner = ProjectionRunner::new("test-projector", views.clone(), log.clone())
        .with(Arc::new(crate::support::CountingProjection));
    let (client, mut payloads) = listen(pg._test_database.url(), PROJECTED_CHANNEL).await?;
    let apply = |from: i64| {
        let (log, runner) = (log.clone(), runner.clone());
        async move {
            let events = log.read_all(from, 100).await?;
            runner.apply_deliveries(deliveries(&events)).await?;
            anyhow::Ok(())
        }
    };

    let (a, b) = (new_stream(), new_stream());
    store_append(&log, &a, ExpectedVersion::NoStream, 2).await?;
    store_append(&log, &b, ExpectedVersion::NoStream, 1).await?;
    apply(0).await?;
    let mut expected = vec![format!("{a} 2"), format!("{b} 1")];
    expected.sort();
    assert_eq!(next_payload(&mut payloads).await?, expected);

    // A redelivery moves nothing and notifies nothing: the next notification is the next
    // commit's.
    apply(0).await?;
    store_append(&log, &a, ExpectedVersion::Exactly(2), 1).await?;
    apply(3).await?;
    assert_eq!(next_payload(&mut payloads).await?, vec![format!("{a} 3")]);

    // A waiter believes a notification naming its stream, without looking: this stream
    // was never applied, so only the notification can end the wait with `true`.
    let never_applied = new_stream();
    let waiter = {
        let (views, stream) = (views.clone(), never_applied.clone());
        tokio::spawn(async move { views.wait_applied(&stream, 4, Duration::from_secs(3)).await })
    };
    // Until the waiter has registered a notification is lost on it: repeat it.
    let notify = format!("{never_applied} 4");
    while !waiter.is_finished() {
        client
            .execute("SELECT pg_notify($1, $2)", &[&PROJECTED_CHANNEL, &notify])
            .await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        waiter.await??,
        "the wait ended by the notification, not at its timeout"
    );
    Ok(())
}

async fn store_append(
    log: &PostgresEventStore,
    stream: &gatehouse_contracts::envelope::StreamId,
    expected: ExpectedVersion,
    count: usize,
) -> anyhow::Result<()> {
    log.append(append(stream, expected, bumps(count))).await?;
    Ok(())
}

/// The next notification's lines, sorted.
async fn next_payload(
    payloads: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> anyhow::Result<Vec<String>> {
    let payload = tokio::time::timeout(Duration::from_secs(10), payloads.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the listener stopped"))?;
    let mut lines: Vec<String> = payload.lines().map(str::to_owned).collect();
    lines.sort();
    Ok(lines)
}

#[tokio::test]
async fn a_commit_on_condition_writes_only_when_the_log_holds_every_event_as_delivered()
-> anyhow::Result<()> {
    use gatehouse_eventlog::ViewStore;
    use gatehouse_eventlog::postgres::PostgresViewStore;
    use gatehouse_eventlog::views::{BatchWrite, StreamWrite};

    let pg = PgTest::new().await?;
    migrate(pg.database.pool()).await?;
    let log = pg.store();
    let views = PostgresViewStore::new(&pg.database);
    let (stream, other) = (new_stream(), new_stream());
    store_append(&log, &stream, ExpectedVersion::NoStream, 1).await?;
    store_append(&log, &other, ExpectedVersion::NoStream, 1).await?;
    // As the bus carries them: the JSON envelope, decoded again.
    let delivered: Vec<gatehouse_contracts::envelope::RecordedEvent> = log
        .read_all(0, 10)
        .await?
        .iter()
        .map(|e| serde_json::from_slice(&serde_json::to_vec(e)?))
        .collect::<Result<_, _>>()?;
    let batch = BatchWrite {
        projector: "test-projector".into(),
        streams: vec![StreamWrite {
            stream_id: stream.clone(),
            kind: Some(crate::support::VIEW_KIND),
            applied: 1,
            position: delivered[0].position,
            doc: Some(serde_json::json!({ "count": 1 })),
            created_position: Some(delivered[0].position),
        }],
        checkpoint: 7,
        skipped: vec![],
        refolded: vec![],
    };
    let nothing_written = || async {
        anyhow::Ok((
            views.applied_version(&stream).await?,
            views.checkpoint("test-projector").await?,
            views
                .get(crate::support::VIEW_KIND, stream.id().unwrap_or_default())
                .await?,
        ))
    };

    let mut edited = delivered[1].clone();
    edited.payload = serde_json::json!({ "label": "edited on the bus" });
    let mut invented = delivered[1].clone();
    invented.event_id = uuid::Uuid::new_v4();
    let mut renumbered = delivered[1].clone();
    renumbered.version = 2;
    for (what, wrong) in [
        ("an edited payload", edited),
        ("an event the log does not hold", invented),
        ("another version", renumbered),
    ] {
        assert!(
            !views
                .commit_if_logged(batch.clone(), &[&delivered[0], &wrong])
                .await?,
            "{what} is refused"
        );
        assert_eq!(
            nothing_written().await?,
            (None, None, None),
            "{what}: nothing is written"
        );
    }

    assert!(
        views
            .commit_if_logged(batch, &[&delivered[0], &delivered[1]])
            .await?
    );
    let (applied, checkpoint, doc) = nothing_written().await?;
    assert_eq!((applied, checkpoint), (Some(1), Some(7)));
    assert_eq!(doc.map(|d| d.doc), Some(serde_json::json!({ "count": 1 })));
    Ok(())
}
