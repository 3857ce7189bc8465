//! The event envelope: what the log stores and what the public feed carries.
//!
//! Request metadata (who, from where, which request, which trace) lives in the envelope,
//! never in an event's payload.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of one aggregate's stream: `<aggregate>-<uuid>`, e.g.
/// `service_account-6f1c2b9e-2a55-4d0e-9d8e-0c1a5e9f7b21`.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct StreamId(String);

impl StreamId {
    /// The stream of aggregate `aggregate` with id `id`.
    pub fn new(aggregate: &str, id: Uuid) -> Self {
        Self(format!("{aggregate}-{id}"))
    }

    /// Parses a stored stream id; `None` when it has no `<aggregate>-` prefix.
    pub fn parse(raw: &str) -> Option<Self> {
        let (aggregate, rest) = raw.split_once('-')?;
        (!aggregate.is_empty() && !rest.is_empty()).then(|| Self(raw.to_owned()))
    }

    /// The aggregate name (`service_account`).
    pub fn aggregate(&self) -> &str {
        self.0.split_once('-').map_or("", |(a, _)| a)
    }

    /// The aggregate id, when the part after the prefix is a UUID.
    pub fn id(&self) -> Option<Uuid> {
        self.0
            .split_once('-')
            .and_then(|(_, id)| Uuid::parse_str(id).ok())
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who caused an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Actor {
    /// The principal's id (user or service account), or `None` for the system itself.
    pub id: Option<Uuid>,
    /// `user`, `service_account` or `system`.
    pub kind: String,
    /// The principal's name when the event was recorded.
    pub name: String,
}

impl Actor {
    /// Gatehouse itself (bootstrap, expiry sweeps).
    pub fn system() -> Self {
        Self {
            id: None,
            kind: "system".into(),
            name: "gatehouse".into(),
        }
    }
}

/// Context recorded with every event: who, from where, and which request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventMetadata {
    /// Who asked for the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// The gateway's request id (also returned to the client as `x-request-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The client's address as the gateway saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// W3C `traceparent` of the request that caused the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The event or command id that directly caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Groups every event caused by one original request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
}

/// An event as committed to the log and as published on
/// `gatehouse.events.<aggregate>.<event>`: the public, documented envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecordedEvent {
    /// Position in the global log. Increasing, but a later position can commit before an
    /// earlier one: consumers must not treat it as a gap-free cursor.
    pub position: i64,
    /// The aggregate stream the event belongs to.
    pub stream_id: StreamId,
    /// 1-based version within the stream; consumers see a stream's events in this order.
    pub version: i64,
    /// Unique id of the event (JetStream de-duplication id).
    pub event_id: Uuid,
    /// `<aggregate>.<event>`, e.g. `service_account.created`; the subject suffix.
    pub event_type: String,
    /// Version of the payload schema (`schemas/events/<event_type>.v<N>.json`).
    pub schema_version: i32,
    /// The event's data.
    pub payload: serde_json::Value,
    /// Who, from where, which request.
    pub metadata: EventMetadata,
    /// When the deciding service recorded it.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// The NATS subject this event is published on.
    pub fn subject(&self) -> String {
        format!("{}{}", SUBJECT_PREFIX, self.event_type)
    }
}

/// Every event subject starts with this.
pub const SUBJECT_PREFIX: &str = "gatehouse.events.";
