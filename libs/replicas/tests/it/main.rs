//! Two replicas talking over a real nats-server (as the `gateway` NATS user, with its
//! subject permissions): the barrier waits for the other replica's follower, and limits
//! counted on one replica hold on the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use gatehouse_contracts::envelope::StreamId;
use gatehouse_replicas::limits::COUNTS_SUBJECT;
use gatehouse_replicas::{BarrierOutcome, Follower, Limits, Peers};
use gatehouse_testsupport::{NatsServer, NatsUser};
use tokio::sync::watch;
use uuid::Uuid;

/// A follower that is ready and has applied every stream up to `applied`.
#[derive(Debug, Default)]
struct AppliedUpTo(AtomicI64);

#[async_trait]
impl Follower for AppliedUpTo {
    fn is_ready(&self) -> bool {
        true
    }

    async fn wait_ready(&self) {}

    async fn wait_applied(&self, _: &StreamId, version: i64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.0.load(Ordering::Acquire) < version {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    for _ in 0..500 {
        if done() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("timed out waiting until {what}")
}

#[tokio::test]
async fn a_write_waits_until_the_other_live_replica_has_applied_it() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let (_stop, shutdown) = watch::channel(false);
    let here = Peers::join(
        nats.connect_as(NatsUser::Gateway).await?,
        Arc::new(AppliedUpTo::default()),
        shutdown.clone(),
    )
    .await?;
    let behind = Arc::new(AppliedUpTo::default());
    let there = Peers::join(
        nats.connect_as(NatsUser::Gateway).await?,
        behind.clone(),
        shutdown.clone(),
    )
    .await?;
    let there_id = there.replica().ok_or_else(|| anyhow::anyhow!("joined"))?;
    until("each replica knows the other", || {
        here.live() == [there_id] && there.is_announced() && here.is_announced()
    })
    .await?;
    let stream = StreamId::new("api_key", Uuid::new_v4());

    // The other replica has not applied version 2: the barrier runs out and says who.
    let outcome = here
        .await_applied(&stream, 2, Duration::from_millis(300))
        .await;
    assert_eq!(
        outcome,
        BarrierOutcome::Incomplete {
            missing: vec![there_id]
        }
    );

    // It applies version 2 while the writer waits: confirmed by that one replica.
    let catch_up = {
        let behind = behind.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            behind.0.store(2, Ordering::Release);
        })
    };
    let outcome = here.await_applied(&stream, 2, Duration::from_secs(2)).await;
    assert_eq!(outcome, BarrierOutcome::Confirmed { replicas: 1 });
    catch_up.await?;

    // A replica alone confirms at once.
    let alone = Peers::alone()
        .await_applied(&stream, 9, Duration::ZERO)
        .await;
    assert_eq!(alone, BarrierOutcome::Confirmed { replicas: 0 });
    Ok(())
}

#[tokio::test]
async fn wrong_user_codes_counted_on_one_replica_are_refused_on_another() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let (_stop, shutdown) = watch::channel(false);
    let here_client = nats.connect_as(NatsUser::Gateway).await?;
    let here = Limits::alone(30)
        .shared(here_client.clone(), Uuid::new_v4(), shutdown.clone())
        .await?;
    let there_client = nats.connect_as(NatsUser::Gateway).await?;
    let there = Limits::alone(30)
        .shared(there_client.clone(), Uuid::new_v4(), shutdown.clone())
        .await?;
    // A flush does not promise that the server routes this connection's publishes to a
    // subscription made a moment ago on another one: wait until a (malformed, so ignored)
    // message from here reaches there.
    let mut probe = there_client.subscribe(COUNTS_SUBJECT).await?;
    let routed = async {
        loop {
            here_client.publish(COUNTS_SUBJECT, "{}".into()).await?;
            here_client.flush().await?;
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(20), probe.next()).await
            {
                return anyhow::Ok(());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), routed).await??;

    let ip = Some(std::net::IpAddr::from([10, 0, 0, 7]));
    for _ in 0..5 {
        assert!(here.check_user_code(ip, "user-code:p").is_ok());
        here.user_code_failed(ip, "user-code:p");
    }
    until("the other replica heard the five wrong codes", || {
        there.check_user_code(ip, "user-code:p").is_err()
    })
    .await?;
    assert!(
        there.check_user_code(ip, "user-code:q").is_ok(),
        "another person"
    );
    Ok(())
}
