//! The event envelope: what the log stores and what the public feed carries.
//!
//! Request metadata (who, from where, which request, which trace) lives in the envelope,
//! never in an event's payload.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{PrincipalId, PrincipalKind};

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
    pub id: Option<PrincipalId>,
    /// `user`, `service_account` or `system`.
    #[schemars(with = "String")]
    pub kind: ActorKind,
    /// The principal's name when the event was recorded.
    pub name: String,
}

impl Actor {
    /// Gatehouse itself (bootstrap, expiry sweeps).
    pub fn system() -> Self {
        Self {
            id: None,
            kind: ActorKind::System,
            name: "gatehouse".into(),
        }
    }
}

/// What kind of actor caused an event: a principal, or Gatehouse itself. A string on the
/// wire (`user`, `service_account`, `system`); a kind this build does not know (recorded
/// by a newer version) is kept verbatim, so stored events decode and re-encode unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ActorKind {
    /// A principal of this kind.
    Principal(PrincipalKind),
    /// Gatehouse itself.
    System,
    /// A kind this build does not know.
    Unknown(String),
}

impl ActorKind {
    /// The kind as it travels.
    pub fn as_str(&self) -> &str {
        match self {
            ActorKind::Principal(kind) => kind.as_str(),
            ActorKind::System => "system",
            ActorKind::Unknown(kind) => kind,
        }
    }

    /// The kind a wire string means.
    pub fn from_wire(kind: &str) -> Self {
        match kind {
            "system" => ActorKind::System,
            other => [PrincipalKind::User, PrincipalKind::ServiceAccount]
                .into_iter()
                .find(|k| k.as_str() == other)
                .map_or_else(
                    || ActorKind::Unknown(other.to_owned()),
                    ActorKind::Principal,
                ),
        }
    }
}

impl From<PrincipalKind> for ActorKind {
    fn from(kind: PrincipalKind) -> Self {
        ActorKind::Principal(kind)
    }
}

impl std::fmt::Display for ActorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ActorKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ActorKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let kind = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(Self::from_wire(&kind))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_kinds_decode_and_encode_exactly_as_stored() {
        for (wire, kind) in [
            ("user", ActorKind::Principal(PrincipalKind::User)),
            (
                "service_account",
                ActorKind::Principal(PrincipalKind::ServiceAccount),
            ),
            ("system", ActorKind::System),
            (
                "robot_from_the_future",
                ActorKind::Unknown("robot_from_the_future".into()),
            ),
        ] {
            let json = format!("\"{wire}\"");
            assert_eq!(serde_json::from_str::<ActorKind>(&json).unwrap(), kind);
            assert_eq!(serde_json::to_string(&kind).unwrap(), json);
        }
        let stored = r#"{"id":null,"kind":"system","name":"gatehouse"}"#;
        let actor: Actor = serde_json::from_str(stored).unwrap();
        assert_eq!(actor, Actor::system());
        assert_eq!(serde_json::to_string(&actor).unwrap(), stored);
    }
}
