//! The outbox relay's publisher: stored once per event id, with its headers.

use gatehouse_bus::jetstream::STREAM_NAME;
use gatehouse_contracts::envelope::RecordedEvent;
use gatehouse_eventlog::feed::Publisher;
use uuid::Uuid;

use crate::support::{Events, event};

#[tokio::test]
async fn publishing_the_same_event_twice_stores_it_once() -> anyhow::Result<()> {
    let events = Events::start().await?;
    let created = event("api_key", Uuid::new_v4(), 1, "created");

    events.publisher.publish(&created).await?;
    events.publisher.publish(&created).await?; // the relay crashed before marking it sent
    assert_eq!(events.stored().await?, 1, "the duplicate was stored");

    let other = event("api_key", Uuid::new_v4(), 1, "created");
    events.publisher.publish(&other).await?;
    assert_eq!(events.stored().await?, 2);
    Ok(())
}

#[tokio::test]
async fn an_event_is_stored_on_its_subject_as_json_with_its_headers() -> anyhow::Result<()> {
    let events = Events::start().await?;
    let rotated = event("api_key", Uuid::new_v4(), 3, "rotated");
    events.publisher.publish(&rotated).await?;

    let stream = events.js.get_stream(STREAM_NAME).await?;
    let stored = stream.direct_get(1).await?;
    assert_eq!(stored.subject.as_str(), "gatehouse.events.api_key.rotated");
    let body: RecordedEvent = serde_json::from_slice(&stored.payload)?;
    assert_eq!(body, rotated);
    let header = |name: &str| stored.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header("Nats-Msg-Id"), Some(rotated.event_id.to_string()));
    assert_eq!(
        header("Gatehouse-Stream-Id"),
        Some(rotated.stream_id.to_string())
    );
    assert_eq!(header("Gatehouse-Version"), Some("3".to_owned()));
    assert_eq!(
        header("Gatehouse-Event-Type"),
        Some("api_key.rotated".to_owned())
    );
    assert_eq!(header("traceparent"), rotated.metadata.traceparent.clone());
    Ok(())
}
