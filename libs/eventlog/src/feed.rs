//! Delivery of committed events to consumers.

use async_trait::async_trait;
use futures::stream::BoxStream;
use gatehouse_contracts::envelope::RecordedEvent;

/// Where a new subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// From the first event the feed holds.
    Beginning,
    /// From the first event after feed sequence `n` (a checkpoint).
    AfterSequence(u64),
    /// Only events published from now on.
    New,
}

/// A subscription request.
#[derive(Clone, Debug)]
pub struct SubscriptionSpec {
    /// A durable name: the feed remembers what was acknowledged and resumes there
    /// (`start` only applies when the durable consumer is first created). `None` for an
    /// ephemeral, in-memory subscription.
    pub durable_name: Option<String>,
    /// Subject filters, e.g. `gatehouse.events.service_account.>`; empty means everything.
    pub subjects: Vec<String>,
    /// Where to start.
    pub start: StartFrom,
}

/// One delivered event. Acknowledge it after its effects are committed; an event that is
/// not acknowledged is delivered again.
pub struct Delivery {
    /// The event.
    pub event: RecordedEvent,
    /// The feed's sequence number of this message (JetStream stream sequence, or the log
    /// position in memory). Increases in delivery order; used as a checkpoint.
    pub sequence: u64,
    acker: Option<Box<dyn Ack>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("event_type", &self.event.event_type)
            .field("stream_id", &self.event.stream_id)
            .field("version", &self.event.version)
            .field("sequence", &self.sequence)
            .finish()
    }
}

impl Delivery {
    /// A delivery that acknowledges through `acker` (or needs no acknowledgement).
    pub fn new(event: RecordedEvent, sequence: u64, acker: Option<Box<dyn Ack>>) -> Self {
        Self {
            event,
            sequence,
            acker,
        }
    }

    /// Acknowledges the delivery.
    pub async fn ack(self) -> Result<(), FeedError> {
        match self.acker {
            Some(acker) => acker.ack().await,
            None => Ok(()),
        }
    }
}

/// Acknowledges one delivery.
#[async_trait]
pub trait Ack: Send + Sync {
    /// Acknowledge.
    async fn ack(self: Box<Self>) -> Result<(), FeedError>;
}

/// The feed failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The bus could not be reached; the subscription should be re-created later.
    #[error("the event feed is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A message on the feed is not a valid event envelope.
    #[error("undecodable message on the feed: {0}")]
    Undecodable(String),
}

/// A stream of deliveries.
pub type Subscription = BoxStream<'static, Result<Delivery, FeedError>>;

/// Ordered, at-least-once delivery of committed events.
#[async_trait]
pub trait EventFeed: Send + Sync + 'static {
    /// Subscribes. Events of one stream arrive in version order.
    async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription, FeedError>;

    /// The feed's latest sequence number (0 when empty): a subscriber that has seen this
    /// sequence has caught up with everything published before the call.
    async fn last_sequence(&self) -> Result<u64, FeedError>;
}

/// Publishing failed; the relay will retry.
#[derive(Debug, thiserror::Error)]
#[error("publishing event {event_id} failed")]
pub struct PublishError {
    /// The event.
    pub event_id: uuid::Uuid,
    /// Why.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// What a publisher knows about its connection to the bus.
///
/// The outbox relay watches it ([`Publisher::link`]) to retry as soon as the connection is
/// back instead of sleeping out its back-off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusLink {
    /// Whether the connection is up now.
    pub up: bool,
    /// How many times the connection has been established: one more with every reconnect.
    pub connects: u64,
}

impl BusLink {
    /// Whether the connection is up and was (re)established after `earlier` was seen.
    pub fn back_since(&self, earlier: &BusLink) -> bool {
        self.up && self.connects > earlier.connects
    }
}

/// Resolves once `link` is up on a connection established after `earlier` was seen; never
/// when there is no link to watch (or nobody feeds it any more).
pub async fn reconnected(link: Option<tokio::sync::watch::Receiver<BusLink>>, earlier: BusLink) {
    if let Some(mut link) = link
        && link.wait_for(|now| now.back_since(&earlier)).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// The bus's answer to one event handed to [`Publisher::send`]: resolves once the bus has
/// durably accepted the event (`Ok`), or refused it, or is not going to answer.
pub type PendingAck = futures::future::BoxFuture<'static, Result<(), PublishError>>;

/// Where the outbox relay publishes committed events.
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Publishes one event and returns once the bus has durably accepted it. Publishing
    /// the same event twice must not deliver it twice (de-duplication by event id).
    async fn publish(&self, event: &RecordedEvent) -> Result<(), PublishError>;

    /// Hands `event` to the bus and returns its acknowledgement, to be awaited later: the
    /// relay sends further events before earlier acknowledgements are back.
    ///
    /// `after` is the id of the event sent just before this one whose acknowledgement the
    /// caller has not seen yet (`None` when every earlier event is acknowledged). The bus
    /// must store `event` only if that event is the last one it stored, and refuse it
    /// otherwise; a re-sent event the bus already holds is acknowledged as before,
    /// whatever `after` says. That is what keeps a failure midway from storing a later
    /// event before an earlier one (see [`crate::relay`]).
    ///
    /// The default publishes at once ([`publish`](Self::publish)) and returns a settled
    /// acknowledgement: every earlier event is then stored before this one is sent, so
    /// `after` holds by itself. A bus that can check `after` should override this.
    async fn send(
        &self,
        event: &RecordedEvent,
        after: Option<uuid::Uuid>,
    ) -> Result<PendingAck, PublishError> {
        let _ = after;
        self.publish(event).await?;
        Ok(Box::pin(std::future::ready(Ok(()))))
    }

    /// The state of the connection to the bus, when the publisher can tell: after a failed
    /// publish the relay then retries as soon as the connection is (re)established, rather
    /// than when its back-off ends. `None` (the default): the relay relies on back-off.
    fn link(&self) -> Option<tokio::sync::watch::Receiver<BusLink>> {
        None
    }
}

/// Whether a NATS subject matches a filter (`*` is one token, `>` the rest).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether a subject passes a list of filters (an empty list passes everything).
pub fn subject_passes(filters: &[String], subject: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| subject_matches(f, subject))
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches(
            "gatehouse.events.>",
            "gatehouse.events.user.created"
        ));
        assert!(subject_matches(
            "gatehouse.events.*.created",
            "gatehouse.events.user.created"
        ));
        assert!(!subject_matches(
            "gatehouse.events.*.created",
            "gatehouse.events.user.deleted"
        ));
        assert!(!subject_matches(
            "gatehouse.events.user.>",
            "gatehouse.events.user"
        ));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
    }
}
