//! The projection runner's retries.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use gatehouse_eventlog::feed::Subscription;
use gatehouse_eventlog::memory::{MemoryEventStore, MemoryViewStore};
use gatehouse_eventlog::{EventFeed, FeedError, ProjectionRunner, SubscriptionSpec};
use tokio::sync::watch;

use crate::support::{CountingProjection, wait_until};

/// The in-memory feed, except that its first `failures` subscribes fail at once, and the
/// subscriptions it does give end (as a NATS restart ends one) after `lasting`. Records
/// when each subscribe was asked for.
struct Interrupted {
    inner: MemoryEventStore,
    failures: Mutex<usize>,
    lasting: Duration,
    asked: Mutex<Vec<Instant>>,
}

impl Interrupted {
    fn asked(&self) -> Vec<Instant> {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl EventFeed for Interrupted {
    async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription, FeedError> {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Instant::now());
        {
            let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            if *failures > 0 {
                *failures -= 1;
                return Err(FeedError::Unavailable("down (test)".into()));
            }
        }
        let live = self.inner.subscribe(spec).await?;
        let ends = tokio::time::sleep(self.lasting);
        let end = futures::stream::once(async move {
            ends.await;
            Err(FeedError::Unavailable("interrupted (test)".into()))
        });
        Ok(futures::stream::select(live, end).boxed())
    }

    async fn last_sequence(&self) -> Result<u64, FeedError> {
        self.inner.last_sequence().await
    }
}

/// Three failures in a row push the back-off to 800 ms; a subscription that then worked
/// for longer than that and ended is retried after the first back-off again.
#[tokio::test]
async fn a_subscription_that_lasted_is_retried_after_the_first_back_off_again() -> anyhow::Result<()>
{
    let log = MemoryEventStore::new();
    let lasting = Duration::from_millis(1500);
    let feed = Arc::new(Interrupted {
        inner: log.clone(),
        failures: Mutex::new(3),
        lasting,
        asked: Mutex::new(Vec::new()),
    });
    let runner = ProjectionRunner::new(
        "test-projector",
        Arc::new(MemoryViewStore::new()),
        Arc::new(log),
    )
    .with(Arc::new(CountingProjection));
    let (stop, shutdown) = watch::channel(false);
    let running = {
        let feed: Arc<dyn EventFeed> = feed.clone();
        tokio::spawn(async move { runner.run(feed, true, shutdown).await })
    };
    wait_until(Duration::from_secs(10), || async {
        Ok(feed.asked().len() >= 5)
    })
    .await?;
    stop.send_replace(true);
    running.await?;

    let asked = feed.asked();
    let after_it_ended = asked[4] - asked[3] - lasting;
    assert!(
        after_it_ended < Duration::from_millis(500),
        "re-subscribed {after_it_ended:?} after the lasting subscription ended (the back-off \
         those early failures left is 800 ms)"
    );
    Ok(())
}
