//! Consumers believe only what the log holds.
//!
//! The bus carries events from the outbox relay to the read-model projector and to every
//! gateway's directory (revocations, locks, signing keys). NATS permissions let only the
//! services publish events, but one leaked bus credential must not be enough to invent a
//! service account or to unlock a device on every replica. So every delivered event is
//! looked up in the log by its id before a consumer folds it ([`against_log`]), and the
//! log's copy is what is folded:
//!
//! - an event the log does not hold is refused: logged, acknowledged (so that it is not
//!   delivered again) and skipped;
//! - an event whose bus copy differs from the log's (an edited payload under a real id) is
//!   logged and replaced by the log's copy.
//!
//! The look-up is one indexed query per batch of deliveries, and the
//! [`ProjectionRunner`](crate::ProjectionRunner) (every consumer of the feed is one) sends
//! it together with its load of the batch's streams, so it costs no round trip of its
//! own. If the log cannot be read, the batch fails without being acknowledged and is
//! delivered again.
//!
//! Where the read models live beside the log (Postgres,
//! [`ViewStore::sees_log`](crate::ViewStore::sees_log)), the runner first takes the other
//! order: it folds the bus's copies and commits on condition that the log holds every one
//! of them as delivered, checked inside the commit's own statement
//! ([`ViewStore::commit_if_logged`](crate::ViewStore::commit_if_logged)). That is the
//! batch's only round trip when its streams are new. If one copy differs or is missing,
//! nothing is written and the batch takes the path above, which logs and replaces or
//! refuses it. Either way, what is committed is what the log holds.

use std::collections::HashMap;

use gatehouse_contracts::envelope::RecordedEvent;
use uuid::Uuid;

use crate::feed::Delivery;
use crate::store::{EventStore, StoreError};

/// The deliveries of `batch` that the log holds, in delivery order, each carrying the
/// log's copy of its event; the others are acknowledged and dropped (see the module docs).
pub async fn against_log(
    log: &dyn EventStore,
    batch: Vec<Delivery>,
) -> Result<Vec<Delivery>, StoreError> {
    if batch.is_empty() {
        return Ok(batch);
    }
    let ids: Vec<Uuid> = batch.iter().map(|d| d.event.event_id).collect();
    let held: HashMap<Uuid, RecordedEvent> = log
        .read_events(&ids)
        .await?
        .into_iter()
        .map(|e| (e.event_id, e))
        .collect();
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
                checked.push(delivery);
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
    Ok(checked)
}
