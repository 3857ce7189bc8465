//! Shared helpers: a server per test, events, bounded waits on subscriptions.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::StreamExt;
use gatehouse_bus::jetstream::{JetStreamFeed, JetStreamPublisher, ensure_stream};
use gatehouse_bus::nats::NatsArgs;
use gatehouse_bus::proof::CommandProofs;
use gatehouse_contracts::envelope::{EventMetadata, RecordedEvent, StreamId};
use gatehouse_eventlog::feed::{Delivery, Publisher, Subscription};
use gatehouse_secrets::MasterKey;
use gatehouse_testsupport::{NatsServer, NatsUser};
use uuid::Uuid;

/// Upper bound on any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A fresh server and a client connected to it (as `gatehouse serve` would).
pub async fn nats() -> anyhow::Result<(NatsServer, async_nats::Client)> {
    let server = NatsServer::start().await?;
    let client = connect_as(&server, NatsUser::Gatehouse, "bus-tests").await?;
    Ok((server, client))
}

/// The settings of a Gatehouse process connecting to `server` as `user`.
pub fn settings(server: &NatsServer, user: NatsUser) -> NatsArgs {
    NatsArgs::open(server.url())
        .with_user(user.name(), server.password(user))
        .with_tls_ca(server.tls_ca())
}

/// A client connected through [`gatehouse_bus::nats::connect`] as `user`.
pub async fn connect_as(
    server: &NatsServer,
    user: NatsUser,
    name: &str,
) -> anyhow::Result<async_nats::Client> {
    Ok(gatehouse_bus::nats::connect(&settings(server, user), name).await?)
}

/// Command proofs under one master key shared by every bus of this test binary (as every
/// process of a deployment shares one).
pub fn proofs() -> Arc<CommandProofs> {
    static MASTER: std::sync::OnceLock<MasterKey> = std::sync::OnceLock::new();
    Arc::new(CommandProofs::new(MASTER.get_or_init(MasterKey::generate)))
}

/// A JetStream context whose API requests and acks give up after `timeout`.
pub fn jetstream(client: &async_nats::Client, timeout: Duration) -> async_nats::jetstream::Context {
    async_nats::jetstream::context::ContextBuilder::new()
        .timeout(timeout)
        .build(client.clone())
}

/// A server with the event stream, its publisher and its feed.
pub struct Events {
    pub server: NatsServer,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub publisher: JetStreamPublisher,
    pub feed: JetStreamFeed,
}

impl Events {
    pub async fn start() -> anyhow::Result<Self> {
        let (server, client) = nats().await?;
        let js = jetstream(&client, Duration::from_secs(2));
        ensure_stream(&js).await?;
        let publisher = JetStreamPublisher::new(js.clone()).with_timeout(Duration::from_secs(2));
        let feed = JetStreamFeed::new(js.clone());
        Ok(Self {
            server,
            client,
            js,
            publisher,
            feed,
        })
    }

    pub async fn publish_all(&self, events: &[RecordedEvent]) -> anyhow::Result<()> {
        for event in events {
            self.publisher.publish(event).await?;
        }
        Ok(())
    }

    /// How many messages the stream holds.
    pub async fn stored(&self) -> anyhow::Result<u64> {
        let mut stream = self
            .js
            .get_stream(gatehouse_bus::jetstream::STREAM_NAME)
            .await?;
        Ok(stream.info().await?.state.messages)
    }
}

/// One event of stream `<aggregate>-<id>` at `version`, of type `<aggregate>.<name>`.
pub fn event(aggregate: &str, id: Uuid, version: i64, name: &str) -> RecordedEvent {
    RecordedEvent {
        position: 0,
        stream_id: StreamId::new(aggregate, id),
        version,
        event_id: Uuid::new_v4(),
        event_type: format!("{aggregate}.{name}"),
        schema_version: 1,
        payload: serde_json::json!({ "n": version }),
        metadata: EventMetadata {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            ..EventMetadata::default()
        },
        recorded_at: chrono::Utc::now(),
    }
}

/// `per_stream` versions of each stream, interleaved: v1 of every stream, then v2, ...
pub fn interleaved(streams: &[(&str, Uuid)], per_stream: i64) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    for version in 1..=per_stream {
        for (aggregate, id) in streams {
            let name = if version == 1 { "created" } else { "changed" };
            events.push(event(aggregate, *id, version, name));
        }
    }
    events
}

/// The next delivery, or an error after [`WAIT`].
pub async fn next(subscription: &mut Subscription) -> anyhow::Result<Delivery> {
    match tokio::time::timeout(WAIT, subscription.next()).await {
        Ok(Some(Ok(delivery))) => Ok(delivery),
        Ok(Some(Err(e))) => Err(e).context("the subscription failed"),
        Ok(None) => bail!("the subscription ended"),
        Err(_) => bail!("no delivery within {WAIT:?}"),
    }
}

/// The next `n` deliveries.
pub async fn take(subscription: &mut Subscription, n: usize) -> anyhow::Result<Vec<Delivery>> {
    let mut deliveries = Vec::with_capacity(n);
    while deliveries.len() < n {
        let delivery = next(subscription)
            .await
            .with_context(|| format!("after {} of {n} deliveries", deliveries.len()))?;
        deliveries.push(delivery);
    }
    Ok(deliveries)
}

/// Deliveries up to and including the event `marker`. Stream order makes this exact: the
/// subscription has been offered everything published before the marker.
pub async fn until(subscription: &mut Subscription, marker: Uuid) -> anyhow::Result<Vec<Delivery>> {
    let mut deliveries = Vec::new();
    loop {
        let delivery = next(subscription).await.with_context(|| {
            format!(
                "after {} deliveries, waiting for the marker",
                deliveries.len()
            )
        })?;
        let done = delivery.event.event_id == marker;
        deliveries.push(delivery);
        if done {
            return Ok(deliveries);
        }
    }
}

/// Fails if anything arrives within `quiet`.
pub async fn nothing_within(
    subscription: &mut Subscription,
    quiet: Duration,
) -> anyhow::Result<()> {
    match tokio::time::timeout(quiet, subscription.next()).await {
        Err(_) => Ok(()),
        Ok(Some(Ok(delivery))) => bail!("unexpected delivery {delivery:?}"),
        Ok(Some(Err(e))) => Err(e).context("the subscription failed"),
        Ok(None) => bail!("the subscription ended"),
    }
}

/// Asserts that every stream's events arrive in version order.
pub fn assert_stream_order(deliveries: &[Delivery]) {
    let mut last: std::collections::HashMap<&StreamId, i64> = std::collections::HashMap::new();
    for delivery in deliveries {
        let previous = last
            .insert(&delivery.event.stream_id, delivery.event.version)
            .unwrap_or(0);
        assert!(
            delivery.event.version > previous,
            "{} version {} arrived after version {previous}",
            delivery.event.stream_id,
            delivery.event.version
        );
    }
}

pub fn ids(deliveries: &[Delivery]) -> Vec<Uuid> {
    deliveries.iter().map(|d| d.event.event_id).collect()
}

pub fn ids_of(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}
