//! Consumers believe only what the log holds.
//!
//! The bus carries events from the outbox relay to the read-model projector and to every
//! gateway's directory (revocations, locks, signing keys). NATS permissions let only the
//! services publish events, but one leaked bus credential must not be enough to invent a
//! service account or to unlock a device on every replica. So [`LogCheckedFeed`] looks up
//! every delivered event in the log by its id before a consumer sees it, and hands on the
//! log's copy:
//!
//! - an event the log does not hold is refused: logged, acknowledged (so that it is not
//!   delivered again) and skipped;
//! - an event whose bus copy differs from the log's (an edited payload under a real id) is
//!   logged and replaced by the log's copy.
//!
//! The look-up is one indexed query per batch of deliveries that arrived together, so a
//! busy consumer pays one round trip per batch, not per event. If the log cannot be read,
//! the batch fails as [`FeedError::Unavailable`] without being acknowledged: consumers
//! already re-subscribe and get such deliveries again.
//!
//! The in-memory feed of `gatehouse dev` reads the log itself and needs no check.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use gatehouse_contracts::envelope::RecordedEvent;
use uuid::Uuid;

use crate::feed::{Delivery, EventFeed, FeedError, Subscription, SubscriptionSpec};
use crate::store::EventStore;

/// Most deliveries checked with one query.
const MAX_BATCH: usize = 256;

/// An [`EventFeed`] whose deliveries are checked against the log (see the module docs).
pub struct LogCheckedFeed {
    inner: Arc<dyn EventFeed>,
    log: Arc<dyn EventStore>,
}

impl std::fmt::Debug for LogCheckedFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCheckedFeed").finish_non_exhaustive()
    }
}

impl LogCheckedFeed {
    /// Checks what `inner` delivers against `log`.
    pub fn new(inner: Arc<dyn EventFeed>, log: Arc<dyn EventStore>) -> Self {
        Self { inner, log }
    }
}

#[async_trait]
impl EventFeed for LogCheckedFeed {
    async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription, FeedError> {
        let deliveries = self.inner.subscribe(spec).await?;
        let log = self.log.clone();
        Ok(deliveries
            .ready_chunks(MAX_BATCH)
            .then(move |chunk| check_chunk(log.clone(), chunk))
            .flat_map(futures::stream::iter)
            .boxed())
    }

    async fn last_sequence(&self) -> Result<u64, FeedError> {
        self.inner.last_sequence().await
    }
}

/// Checks the deliveries of one chunk, keeping errors where they were in the sequence.
async fn check_chunk(
    log: Arc<dyn EventStore>,
    chunk: Vec<Result<Delivery, FeedError>>,
) -> Vec<Result<Delivery, FeedError>> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut batch = Vec::new();
    for item in chunk {
        match item {
            Ok(delivery) => batch.push(delivery),
            Err(error) => {
                out.extend(check_batch(log.as_ref(), std::mem::take(&mut batch)).await);
                out.push(Err(error));
            }
        }
    }
    out.extend(check_batch(log.as_ref(), batch).await);
    out
}

async fn check_batch(
    log: &dyn EventStore,
    batch: Vec<Delivery>,
) -> Vec<Result<Delivery, FeedError>> {
    if batch.is_empty() {
        return Vec::new();
    }
    let ids: Vec<Uuid> = batch.iter().map(|d| d.event.event_id).collect();
    let held: HashMap<Uuid, RecordedEvent> = match log.read_events(&ids).await {
        Ok(events) => events.into_iter().map(|e| (e.event_id, e)).collect(),
        Err(error) => {
            tracing::warn!(error = %error, "cannot check delivered events against the log; they come again");
            return vec![Err(FeedError::Unavailable(Box::new(error)))];
        }
    };
    let mut checked = Vec::with_capacity(batch.len());
    for mut delivery in batch {
        match held.get(&delivery.event.event_id) {
            Some(logged) => {
                if *logged != delivery.event {
                    tracing::warn!(
                        event_id = %logged.event_id,
                        event_type = %logged.event_type,
                        "an event on the bus differs from the log's copy; using the log's"
                    );
                    delivery.event = logged.clone();
                }
                checked.push(Ok(delivery));
            }
            None => {
                tracing::warn!(
                    event_id = %delivery.event.event_id,
                    event_type = %delivery.event.event_type,
                    stream_id = %delivery.event.stream_id,
                    sequence = delivery.sequence,
                    "refused an event that the log does not hold (forged on the bus?); skipping it"
                );
                if let Err(error) = delivery.ack().await {
                    tracing::debug!(error = %error, "cannot acknowledge a refused event");
                }
            }
        }
    }
    checked
}
