//! Events on JetStream: the outbox relay's [`JetStreamPublisher`] and the consumers'
//! [`JetStreamFeed`].
//!
//! One stream, [`STREAM_NAME`], holds every subject `gatehouse.events.<aggregate>.<event>`.
//! The relay publishes each committed event with `Nats-Msg-Id` = event id, so a re-publish
//! after a crash between "published" and "marked sent" is dropped by the server's
//! duplicate window. Consumers are pull consumers: durable ones (explicit acks, position
//! kept by the server) for the shared read models, ordered ephemeral ones for in-memory
//! state such as a gateway's revocation set.
//!
//! Needs nats-server 2.10 or newer: multi-subject consumer filters (`filter_subjects`) are
//! silently ignored by older servers, which would then deliver every subject.

use std::time::Duration;

use async_nats::header::{HeaderMap, NATS_EXPECTED_LAST_MESSAGE_ID, NATS_MESSAGE_ID};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::message::{AckKind, Acker};
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use gatehouse_contracts::envelope::RecordedEvent;
use gatehouse_eventlog::feed::{
    Ack, BusLink, Delivery, EventFeed, FeedError, PendingAck, PublishError, Publisher, StartFrom,
    Subscription, SubscriptionSpec, reconnected,
};
use tokio::sync::watch;

use crate::BusError;

/// The JetStream stream holding every event.
pub const STREAM_NAME: &str = "GATEHOUSE_EVENTS";
/// The subjects of [`STREAM_NAME`].
pub const STREAM_SUBJECTS: &str = "gatehouse.events.>";
/// How long the server remembers a `Nats-Msg-Id` to drop a re-publish. The relay retries
/// well within it.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Header: the event's stream id (`api_key-<uuid>`).
pub const HEADER_STREAM_ID: &str = "Gatehouse-Stream-Id";
/// Header: the event's version within its stream.
pub const HEADER_VERSION: &str = "Gatehouse-Version";
/// Header: the event type (`api_key.rotated`).
pub const HEADER_EVENT_TYPE: &str = "Gatehouse-Event-Type";
/// Header: W3C trace context of the request that caused the event.
pub const HEADER_TRACEPARENT: &str = "traceparent";

/// How long a durable consumer waits for an ack before redelivering.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// How many unacknowledged deliveries a durable consumer allows.
pub const MAX_ACK_PENDING: i64 = 1024;

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> BusError {
    BusError::Unavailable(Box::new(e))
}

fn wanted_stream_config() -> StreamConfig {
    StreamConfig {
        name: STREAM_NAME.to_owned(),
        subjects: vec![STREAM_SUBJECTS.to_owned()],
        storage: StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        allow_direct: true,
        ..Default::default()
    }
}

/// Creates [`STREAM_NAME`] or brings an existing one to the settings above (subjects,
/// duplicate window, direct get). Refuses a stream with memory storage: events must
/// survive a server restart, and storage cannot be changed in place.
pub async fn ensure_stream(js: &Context) -> Result<jetstream::stream::Stream, BusError> {
    let wanted = wanted_stream_config();
    let mut stream = js.get_or_create_stream(wanted.clone()).await.map_err(|e| {
        BusError::Unavailable(
            format!(
                "cannot find or create the event stream {STREAM_NAME} ({e}); only the \
                     services' NATS users may create it (deploy/nats/accounts.conf): start a \
                     service before the gateway"
            )
            .into(),
        )
    })?;
    let current = stream.info().await.map_err(unavailable)?.config.clone();
    if current.storage != StorageType::File {
        return Err(BusError::Unavailable(
            format!(
                "stream {STREAM_NAME} exists with {:?} storage; it must be file storage",
                current.storage
            )
            .into(),
        ));
    }
    if current.subjects != wanted.subjects
        || current.duplicate_window != wanted.duplicate_window
        || current.allow_direct != wanted.allow_direct
    {
        tracing::info!(
            stream = STREAM_NAME,
            "updating the event stream's configuration"
        );
        let updated = StreamConfig {
            subjects: wanted.subjects,
            duplicate_window: wanted.duplicate_window,
            allow_direct: wanted.allow_direct,
            ..current
        };
        js.update_stream(updated).await.map_err(unavailable)?;
        stream = js.get_stream(STREAM_NAME).await.map_err(unavailable)?;
    }
    Ok(stream)
}

/// Publishes committed events for the outbox relay.
///
/// An event's acknowledgement resolves once the stream has stored it (the publish ack); the
/// relay marks the outbox row sent after that, and sends further events meanwhile, each
/// stored only right after the one before it (`Nats-Expected-Last-Msg-Id`, see
/// [`Publisher::send`]). A re-publish of the same event id within [`DUPLICATE_WINDOW`] is
/// acknowledged as a duplicate and counts as success.
///
/// Given the connection's [`BusLink`] ([`with_link`](Self::with_link)), it fails at once
/// instead of waiting out its timeout when the connection is down, or is lost before the
/// acks came back (they never will; the relay publishes again and the server drops what
/// it already stored), and it tells the relay when the connection is back.
#[derive(Clone, Debug)]
pub struct JetStreamPublisher {
    js: Context,
    timeout: Duration,
    link: Option<watch::Receiver<BusLink>>,
}

impl JetStreamPublisher {
    /// Default bound on sending one event, and on waiting for its ack.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A publisher on `js`.
    pub fn new(js: Context) -> Self {
        Self {
            js,
            timeout: Self::DEFAULT_TIMEOUT,
            link: None,
        }
    }

    /// Bounds the send, and then the wait for its ack, each by `timeout`. The context's own
    /// timeout also bounds the wait for the ack.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Follows the state of `js`'s connection, as [`connect_watched`](crate::nats::connect_watched)
    /// reports it.
    pub fn with_link(mut self, link: watch::Receiver<BusLink>) -> Self {
        self.link = Some(link);
        self
    }

    /// Sends one event, stored only after `after` when given; the future resolves to its
    /// ack.
    async fn send_one(
        &self,
        event: &RecordedEvent,
        after: Option<uuid::Uuid>,
    ) -> Result<async_nats::jetstream::context::PublishAckFuture, BoxError> {
        let body = serde_json::to_vec(event)?;
        let mut headers = event_headers(event);
        if let Some(after) = after {
            headers.insert(NATS_EXPECTED_LAST_MESSAGE_ID, after.to_string());
        }
        let sent = tokio::time::timeout(
            self.timeout,
            self.js
                .publish_with_headers(event.subject(), headers, Bytes::from(body)),
        )
        .await;
        match sent {
            Ok(sent) => Ok(sent?),
            Err(_) => Err(Box::new(PublishFailure::TimedOut(self.timeout))),
        }
    }
}

/// Resolves once the connection `sent_on` is down or replaced by another; never without a
/// link.
async fn lost(link: Option<watch::Receiver<BusLink>>, sent_on: BusLink) {
    if let Some(mut link) = link {
        let gone = link.wait_for(|now| !now.up || now.connects != sent_on.connects);
        if gone.await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a publish failed on the client's side.
#[derive(Debug, thiserror::Error)]
pub enum PublishFailure {
    /// No ack within the publisher's timeout.
    #[error("no publish ack within {0:?}")]
    TimedOut(Duration),
    /// The connection to NATS is down: nothing was sent.
    #[error("not connected to NATS")]
    Disconnected,
    /// The connection was lost (or replaced) before the ack arrived.
    #[error("the connection to NATS was lost before the publish ack")]
    ConnectionLost,
}

/// The headers an event is published with.
pub fn event_headers(event: &RecordedEvent) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, event.event_id.to_string());
    headers.insert(HEADER_STREAM_ID, event.stream_id.as_str());
    headers.insert(HEADER_VERSION, event.version.to_string());
    headers.insert(HEADER_EVENT_TYPE, event.event_type.as_str());
    if let Some(traceparent) = &event.metadata.traceparent {
        headers.insert(HEADER_TRACEPARENT, traceparent.as_str());
    }
    headers
}

#[async_trait]
impl Publisher for JetStreamPublisher {
    async fn publish(&self, event: &RecordedEvent) -> Result<(), PublishError> {
        self.send(event, None).await?.await
    }

    /// Sends the event with `Nats-Expected-Last-Msg-Id: <after>` when `after` is given: the
    /// server then stores it only if the stream's last message is `after`, and refuses it
    /// otherwise (`wrong last msg ID`). The server looks for a duplicate first, so a
    /// re-sent event that the stream already holds is acknowledged as a duplicate
    /// whatever it expects.
    async fn send(
        &self,
        event: &RecordedEvent,
        after: Option<uuid::Uuid>,
    ) -> Result<PendingAck, PublishError> {
        let failed = |source: BoxError| PublishError {
            event_id: event.event_id,
            source,
        };
        let sent_on = self.link.as_ref().map(|link| *link.borrow());
        if sent_on.is_some_and(|link| !link.up) {
            // Sending now would only fill the client's buffer until it reconnects.
            return Err(failed(Box::new(PublishFailure::Disconnected)));
        }
        let sent_on = sent_on.unwrap_or_default();
        let ack = tokio::select! {
            biased;
            sent = self.send_one(event, after) => sent.map_err(failed)?,
            () = lost(self.link.clone(), sent_on) => {
                return Err(failed(Box::new(PublishFailure::ConnectionLost)));
            }
        };
        let (event_id, timeout, link) = (event.event_id, self.timeout, self.link.clone());
        Ok(Box::pin(async move {
            let acked = tokio::select! {
                biased;
                acked = tokio::time::timeout(timeout, ack.into_future()) => match acked {
                    Ok(Ok(ack)) => Ok(ack),
                    Ok(Err(e)) => Err(Box::new(e) as BoxError),
                    Err(_) => Err(Box::new(PublishFailure::TimedOut(timeout)) as BoxError),
                },
                () = lost(link, sent_on) => Err(Box::new(PublishFailure::ConnectionLost) as BoxError),
            };
            match acked {
                Ok(ack) => {
                    if ack.duplicate {
                        tracing::debug!(%event_id, sequence = ack.sequence, "event was already published");
                    }
                    Ok(())
                }
                Err(source) => Err(PublishError { event_id, source }),
            }
        }))
    }

    fn link(&self) -> Option<watch::Receiver<BusLink>> {
        self.link.clone()
    }
}

/// [`EventFeed`] over JetStream.
///
/// - A durable spec gets a durable pull consumer named `durable_name`, with explicit acks
///   ([`ACK_WAIT`], [`MAX_ACK_PENDING`]); `start` only applies when it is first created,
///   afterwards the server's ack state decides where it resumes. Its filters, ack wait and
///   pending limit are brought up to date on every subscribe.
/// - An ephemeral spec gets an ordered consumer: in stream order, no acks, re-created by
///   the client (from the last sequence seen) after a gap or a lost connection. But a
///   restarted server has lost it, and the client then takes ~15 s to give up on it; so
///   with a [`BusLink`] ([`with_link`](Self::with_link)) the subscription ends with
///   [`FeedError::Unavailable`] as soon as the connection is re-established, and the
///   subscriber subscribes again after its checkpoint.
///
/// **One active subscriber per durable name.** A single pull consumer delivers in stream
/// order, so events of one aggregate stream arrive in version order. Two processes pulling
/// from the same durable would split the events between them and break that order; the
/// projector therefore runs under a leader lock.
///
/// When a durable subscription is dropped, the deliveries it handed out and that were
/// dropped without [`Delivery::ack`], and the messages the client had already received, are
/// given back (`-NAK`) in stream order: the next subscriber gets them at once, first and in
/// order, rather than after [`ACK_WAIT`]. That matches the in-memory feed, which resumes
/// after the last ack. On a subscription that stays live, an unacknowledged delivery comes
/// back after [`ACK_WAIT`]. Redelivery can put an event after later ones of the same
/// stream; the projector's version guard and gap filling absorb that.
#[derive(Clone, Debug)]
pub struct JetStreamFeed {
    js: Context,
    ack_wait: Duration,
    link: Option<watch::Receiver<BusLink>>,
}

impl JetStreamFeed {
    /// A feed on `js`. The stream must exist ([`ensure_stream`]).
    pub fn new(js: Context) -> Self {
        Self {
            js,
            ack_wait: ACK_WAIT,
            link: None,
        }
    }

    /// Follows the state of `js`'s connection, as [`connect_watched`](crate::nats::connect_watched)
    /// reports it: ephemeral subscriptions then end when it is re-established.
    pub fn with_link(mut self, link: watch::Receiver<BusLink>) -> Self {
        self.link = Some(link);
        self
    }

    /// Overrides [`ACK_WAIT`] for durable consumers created or updated by this feed.
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    async fn durable(
        &self,
        name: &str,
        spec: &SubscriptionSpec,
    ) -> Result<Subscription, FeedError> {
        let stream = self
            .js
            .get_stream(STREAM_NAME)
            .await
            .map_err(feed_unavailable)?;
        let (filter_subject, filter_subjects) = filters(&spec.subjects);
        let deliver_policy = match spec.start {
            StartFrom::Beginning => DeliverPolicy::All,
            StartFrom::AfterSequence(n) => DeliverPolicy::ByStartSequence {
                start_sequence: n + 1,
            },
            StartFrom::New => DeliverPolicy::New,
        };
        let wanted = pull::Config {
            durable_name: Some(name.to_owned()),
            filter_subject,
            filter_subjects,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_ack_pending: MAX_ACK_PENDING,
            deliver_policy,
            ..Default::default()
        };
        let mut consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(name, wanted.clone())
            .await
            .map_err(feed_unavailable)?;
        let current = consumer.cached_info().config.clone();
        let same_filters = sorted(current.filter_subjects.clone(), &current.filter_subject)
            == sorted(wanted.filter_subjects.clone(), &wanted.filter_subject);
        if !same_filters
            || current.ack_policy != AckPolicy::Explicit
            || current.ack_wait != wanted.ack_wait
            || current.max_ack_pending != wanted.max_ack_pending
        {
            tracing::info!(consumer = %name, subjects = ?spec.subjects, "updating a durable consumer's configuration");
            // The deliver policy cannot change on an existing consumer; keep its own.
            let updated = pull::Config {
                deliver_policy: current.deliver_policy,
                ..wanted
            };
            consumer = stream
                .update_consumer(updated)
                .await
                .map_err(feed_unavailable)?;
        }
        let messages = consumer.messages().await.map_err(feed_unavailable)?;
        let inner = messages.map(|m| m.map_err(feed_unavailable)).boxed();
        Ok(Deliveries {
            inner,
            returns: Some(spawn_returner(self.js.clone(), name.to_owned())),
            floor: 0,
            reconnected: None,
        }
        .boxed())
    }

    async fn ephemeral(&self, spec: &SubscriptionSpec) -> Result<Subscription, FeedError> {
        // Before creating the consumer: a reconnect from here on may have lost it.
        let created_on = self.link.as_ref().map(|link| *link.borrow());
        let stream = self
            .js
            .get_stream(STREAM_NAME)
            .await
            .map_err(feed_unavailable)?;
        // "New" is pinned to a sequence, not left to the server: the client re-creates an
        // ordered consumer that has not delivered anything yet from the start of the stream,
        // and `floor` then keeps the old events out.
        let floor = match spec.start {
            StartFrom::Beginning => 0,
            StartFrom::AfterSequence(n) => n,
            StartFrom::New => stream.cached_info().state.last_sequence,
        };
        let deliver_policy = if floor == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: floor + 1,
            }
        };
        let (filter_subject, filter_subjects) = filters(&spec.subjects);
        let config = pull::OrderedConfig {
            filter_subject,
            filter_subjects,
            deliver_policy,
            ..Default::default()
        };
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(feed_unavailable)?;
        let messages = consumer.messages().await.map_err(feed_unavailable)?;
        let inner = messages.map(|m| m.map_err(feed_unavailable)).boxed();
        let reconnected =
            created_on.map(|created_on| reconnected(self.link.clone(), created_on).boxed());
        Ok(Deliveries {
            inner,
            returns: None,
            floor,
            reconnected,
        }
        .boxed())
    }
}

fn feed_unavailable(e: impl std::error::Error + Send + Sync + 'static) -> FeedError {
    FeedError::Unavailable(Box::new(e))
}

/// One filter goes in `filter_subject` (understood by every server), several in
/// `filter_subjects` (2.10+); none means the whole stream.
fn filters(subjects: &[String]) -> (String, Vec<String>) {
    match subjects {
        [] => (String::new(), Vec::new()),
        [one] => (one.clone(), Vec::new()),
        many => (String::new(), many.to_vec()),
    }
}

fn sorted(mut subjects: Vec<String>, single: &str) -> Vec<String> {
    if !single.is_empty() {
        subjects.push(single.to_owned());
    }
    subjects.sort();
    subjects.dedup();
    subjects
}

#[async_trait]
impl EventFeed for JetStreamFeed {
    async fn subscribe(&self, spec: SubscriptionSpec) -> Result<Subscription, FeedError> {
        match &spec.durable_name {
            Some(name) => self.durable(name, &spec).await,
            None => self.ephemeral(&spec).await,
        }
    }

    async fn last_sequence(&self) -> Result<u64, FeedError> {
        let stream = self
            .js
            .get_stream(STREAM_NAME)
            .await
            .map_err(feed_unavailable)?;
        Ok(stream.cached_info().state.last_sequence)
    }
}

/// What goes back to the server unprocessed.
enum Returned {
    /// A delivery dropped without an ack: its stream sequence and acker.
    One(u64, Box<Acker>),
    /// The subscription was dropped: the messages the client already holds.
    Rest(BoxStream<'static, Result<jetstream::Message, FeedError>>),
}

/// Most unacknowledged deliveries a live subscription keeps to give back when it ends;
/// beyond that the oldest are left to the ack wait.
const MAX_HELD_BACK: usize = 4 * MAX_ACK_PENDING as usize;

/// Gives back (`-NAK`) what a durable subscription did not process, so that the server
/// redelivers it now rather than after the ack wait.
///
/// While the subscription is live, a nak would send the message straight back to it (its
/// pull request is still open), only to be lost with it a moment later when it is dropped.
/// So dropped deliveries are held until the subscription is dropped; then the pull is
/// stopped first (unsubscribed, which the server sees before the naks on this connection)
/// and everything is given back in stream order, which is the order the server
/// redelivers it in. Deliveries dropped after that are given back at once. What was still
/// on the wire when the pull stopped is redelivered after the ack wait.
fn spawn_returner(js: Context, consumer: String) -> tokio::sync::mpsc::UnboundedSender<Returned> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held: std::collections::VecDeque<(u64, Box<Acker>)> =
            std::collections::VecDeque::new();
        let mut live = true;
        while let Some(returned) = rx.recv().await {
            match returned {
                Returned::One(_, acker) if !live => nak(&acker).await,
                Returned::One(sequence, acker) => {
                    if held.len() >= MAX_HELD_BACK {
                        held.pop_front();
                    }
                    held.push_back((sequence, acker));
                }
                Returned::Rest(mut rest) => {
                    live = false;
                    while let Some(Some(message)) = rest.next().now_or_never() {
                        let Ok(message) = message else { continue };
                        let sequence = message
                            .info()
                            .map(|info| info.stream_sequence)
                            .unwrap_or(u64::MAX);
                        let (_, acker) = message.split();
                        held.push_back((sequence, Box::new(acker)));
                    }
                    drop(rest); // unsubscribes: no redelivery can go to it any more
                    // The server keeps the dead subscription's pull request until it tries to
                    // deliver to it, and the message it tried goes to the back of the
                    // redelivery queue. Asking for the consumer's info makes it drop the
                    // request first (checked against nats-server 2.15).
                    let info = async {
                        js.get_stream_no_info(STREAM_NAME)
                            .await
                            .ok()?
                            .consumer_info(&consumer)
                            .await
                            .ok()
                    };
                    if info.await.is_none() {
                        tracing::debug!(consumer = %consumer, "consumer info failed before giving messages back");
                    }
                    let mut held = std::mem::take(&mut held);
                    held.make_contiguous()
                        .sort_by_key(|(sequence, _)| *sequence);
                    for (_, acker) in held {
                        nak(&acker).await;
                    }
                }
            }
        }
    });
    tx
}

async fn nak(acker: &Acker) {
    if let Err(error) = acker.ack_with(AckKind::Nak(None)).await {
        tracing::debug!(error = %error, "cannot give back an unprocessed message; it is redelivered after the ack wait");
    }
}

/// Turns JetStream messages into [`Delivery`]s.
///
/// A message that is not a [`RecordedEvent`] is logged (subject and stream sequence),
/// terminated (`+TERM`: never redelivered) on a durable consumer, and skipped. Only the
/// outbox relay publishes on these subjects and the Postgres log remains the source of
/// truth, so such a message is foreign or corrupt; yielding it as an error, or leaving it
/// unacknowledged, would make every consumer stop on it, or meet it again, forever.
struct Deliveries {
    inner: BoxStream<'static, Result<jetstream::Message, FeedError>>,
    /// Durable subscriptions only: where unprocessed messages are given back.
    returns: Option<tokio::sync::mpsc::UnboundedSender<Returned>>,
    /// Stream sequences up to this one are not delivered (see [`JetStreamFeed::ephemeral`]).
    floor: u64,
    /// Ephemeral subscriptions with a link: resolves when the connection was re-established,
    /// which ends the subscription (taken when it has fired).
    reconnected: Option<futures::future::BoxFuture<'static, ()>>,
}

impl Deliveries {
    /// Decodes one message; `None` when it is skipped.
    fn decode(&self, message: jetstream::Message) -> Option<Delivery> {
        let sequence = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(error) => {
                tracing::warn!(subject = %message.subject, error = %error, "skipping a feed message without JetStream metadata");
                return None;
            }
        };
        if sequence <= self.floor {
            return None;
        }
        let (message, acker) = message.split();
        match serde_json::from_slice::<RecordedEvent>(&message.payload) {
            Ok(event) => {
                let acker = self.returns.as_ref().map(|returns| {
                    Box::new(JetStreamAck {
                        sequence,
                        acker: Some(acker),
                        returns: returns.clone(),
                    }) as Box<dyn Ack>
                });
                Some(Delivery::new(event, sequence, acker))
            }
            Err(error) => {
                tracing::error!(
                    subject = %message.subject,
                    sequence,
                    error = %error,
                    "undecodable message on the event feed; terminating and skipping it"
                );
                if self.returns.is_some() {
                    tokio::spawn(async move {
                        if let Err(error) = acker.ack_with(AckKind::Term).await {
                            tracing::warn!(error = %error, "cannot terminate an undecodable message");
                        }
                    });
                }
                None
            }
        }
    }
}

impl Stream for Deliveries {
    type Item = Result<Delivery, FeedError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        loop {
            let next = match self.inner.poll_next_unpin(cx) {
                std::task::Poll::Ready(next) => next,
                std::task::Poll::Pending => {
                    // Nothing buffered: if the server may have lost the consumer, end here.
                    let Some(reconnected) = self.reconnected.as_mut() else {
                        return std::task::Poll::Pending;
                    };
                    futures::ready!(reconnected.poll_unpin(cx));
                    self.reconnected = None;
                    self.inner = futures::stream::empty().boxed();
                    return std::task::Poll::Ready(Some(Err(FeedError::Unavailable(
                        "the connection to NATS was re-established; subscribe again".into(),
                    ))));
                }
            };
            match next {
                None => return std::task::Poll::Ready(None),
                Some(Err(error)) => return std::task::Poll::Ready(Some(Err(error))),
                Some(Ok(message)) => {
                    if let Some(delivery) = self.decode(message) {
                        return std::task::Poll::Ready(Some(Ok(delivery)));
                    }
                }
            }
        }
    }
}

impl Drop for Deliveries {
    fn drop(&mut self) {
        if let Some(returns) = self.returns.take() {
            let rest = std::mem::replace(&mut self.inner, futures::stream::empty().boxed());
            // Fails only if the returner is gone (runtime shutting down): then the server
            // redelivers after the ack wait.
            let _ = returns.send(Returned::Rest(rest));
        }
    }
}

/// Acknowledges with a plain `+ACK` (no confirmation round trip): the projector acks after
/// its transaction committed, and a lost ack only means a redelivery that its version guard
/// skips, so waiting for the server's confirmation (`double_ack`) would add a round trip
/// per event for nothing. Dropped without acking, it gives the message back (`-NAK`).
struct JetStreamAck {
    sequence: u64,
    acker: Option<Acker>,
    returns: tokio::sync::mpsc::UnboundedSender<Returned>,
}

#[async_trait]
impl Ack for JetStreamAck {
    async fn ack(mut self: Box<Self>) -> Result<(), FeedError> {
        match self.acker.take() {
            Some(acker) => acker.ack().await.map_err(FeedError::Unavailable),
            None => Ok(()),
        }
    }
}

impl Drop for JetStreamAck {
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take() {
            let _ = self
                .returns
                .send(Returned::One(self.sequence, Box::new(acker)));
        }
    }
}
