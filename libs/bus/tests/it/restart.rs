//! A nats-server restart loses nothing: stored events, durable positions, de-duplication.

use std::time::{Duration, Instant};

use futures::StreamExt;
use gatehouse_eventlog::feed::{
    Delivery, EventFeed, Publisher, StartFrom, Subscription, SubscriptionSpec,
};
use uuid::Uuid;

use gatehouse_bus::jetstream::JetStreamFeed;

use crate::support::{Events, WAIT, event, ids, ids_of, interleaved, next, nothing_within, take};

fn survivor() -> SubscriptionSpec {
    SubscriptionSpec {
        durable_name: Some("survivor".into()),
        subjects: Vec::new(),
        start: StartFrom::Beginning,
    }
}

/// Deliveries up to the event `marker`, passing over the errors an outage may report.
async fn until_through_outage(
    subscription: &mut Subscription,
    marker: Uuid,
) -> anyhow::Result<Vec<Delivery>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut deliveries = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, subscription.next()).await {
            Err(_) => anyhow::bail!("no marker within 30 s; got {deliveries:?}"),
            Ok(None) => anyhow::bail!("the subscription ended"),
            Ok(Some(Err(error))) => {
                eprintln!("subscription error during the outage (expected): {error}")
            }
            Ok(Some(Ok(delivery))) => {
                let done = delivery.event.event_id == marker;
                deliveries.push(delivery);
                if done {
                    return Ok(deliveries);
                }
            }
        }
    }
}

#[tokio::test]
async fn after_a_server_restart_nothing_published_is_lost_and_the_durable_keeps_its_position()
-> anyhow::Result<()> {
    let mut events = Events::start().await?;
    // The server keeps unacknowledged deliveries across a crash, but not the "give it back
    // now" it was told before: they come back after the ack wait, here a short one.
    let feed = JetStreamFeed::new(events.js.clone()).with_ack_wait(Duration::from_secs(2));
    let id = Uuid::new_v4();
    let before = interleaved(&[("test_a", id)], 5);
    events.publish_all(&before).await?;

    // A durable consumer acknowledges three of five, then goes away.
    let mut subscription = feed.subscribe(survivor()).await?;
    let mut got = take(&mut subscription, 5).await?.into_iter();
    for delivery in got.by_ref().take(3) {
        delivery.ack().await?;
    }
    drop(got);
    drop(subscription);
    // A live ephemeral subscription that should ride through the outage.
    let mut live = events
        .feed
        .subscribe(SubscriptionSpec {
            durable_name: None,
            subjects: Vec::new(),
            start: StartFrom::New,
        })
        .await?;
    events.client.flush().await?;
    tokio::time::sleep(Duration::from_millis(200)).await; // let the server apply the acks

    events.server.stop().await?;

    let during = event("test_a", id, 6, "changed");
    let started = Instant::now();
    let failed = events.publisher.publish(&during).await;
    let error = failed.expect_err("publishing with the server down must fail");
    assert_eq!(error.event_id, during.event_id);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failing took {:?}",
        started.elapsed()
    );

    events.server.restart().await?;

    // The relay retries the event until the bus takes it; the client reconnects by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match events.publisher.publish(&during).await {
            Ok(()) => break,
            Err(error) if Instant::now() < deadline => {
                eprintln!("retrying after the restart: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
    let after = event("test_a", id, 7, "changed");
    events.publisher.publish(&after).await?;

    // Everything is there, each event once (even if the failed attempt reached the server).
    assert_eq!(events.stored().await?, 7);
    assert_eq!(events.feed.last_sequence().await?, 7);

    // The durable consumer resumes after its acknowledged three: the two it left
    // unacknowledged (after the ack wait) and the two new ones, and nothing else.
    let mut resumed = feed.subscribe(survivor()).await?;
    let mut expected = ids_of(&before[3..]);
    expected.extend([during.event_id, after.event_id]);
    let mut got = Vec::new();
    for _ in 0..4 {
        let delivery = next(&mut resumed).await?;
        got.push((delivery.sequence, delivery.event.event_id));
        delivery.ack().await?; // before its own ack wait runs out
    }
    nothing_within(&mut resumed, Duration::from_secs(3)).await?;
    got.sort();
    assert_eq!(got.iter().map(|(_, id)| *id).collect::<Vec<_>>(), expected);
    assert_eq!(
        got.iter()
            .map(|(sequence, _)| *sequence)
            .collect::<Vec<_>>(),
        vec![4, 5, 6, 7]
    );

    // The ephemeral subscription from before the outage carries on, without replaying.
    let got =
        tokio::time::timeout(WAIT * 3, until_through_outage(&mut live, after.event_id)).await??;
    assert_eq!(ids(&got), vec![during.event_id, after.event_id]);
    Ok(())
}
