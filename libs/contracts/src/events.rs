//! The machinery shared by every aggregate's events: encoding to and from the log,
//! upcasting, and JSON Schema generation.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::envelope::RecordedEvent;

/// Why a stored event could not be turned back into a domain event.
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    /// The stream holds an event type this build does not know.
    #[error("unknown event type {event_type:?}")]
    UnknownType {
        /// The stored type.
        event_type: String,
    },
    /// The schema version is newer than this build understands.
    #[error("{event_type} schema version {version} is not supported")]
    UnsupportedVersion {
        /// The stored type.
        event_type: String,
        /// The stored schema version.
        version: i32,
    },
    /// The payload does not match the schema.
    #[error("{event_type} payload does not match its schema")]
    Payload {
        /// The stored type.
        event_type: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

impl EventDecodeError {
    /// Whether the event is one this build does not know (its type, or a schema version
    /// newer than it reads): written by a newer build, not malformed. Consumers skip and
    /// record such events instead of stalling (`docs/decisions/0012-unknown-event-types.md`);
    /// a payload that does not match a known type's schema is a bug.
    pub fn is_unknown(&self) -> bool {
        matches!(
            self,
            Self::UnknownType { .. } | Self::UnsupportedVersion { .. }
        )
    }
}

/// The events of one aggregate.
pub trait DomainEvent: Sized + Clone + Send + Sync + 'static {
    /// The stable aggregate name (`service_account`); never changes.
    const AGGREGATE: &'static str;
    /// The fully qualified type, `<aggregate>.<event>`.
    fn event_type(&self) -> &'static str;
    /// The payload schema version this build writes.
    fn schema_version(&self) -> i32 {
        1
    }
    /// The payload as stored.
    fn to_payload(&self) -> serde_json::Value;
    /// Decodes (and upcasts) a stored payload.
    fn decode(
        event_type: &str,
        schema_version: i32,
        payload: &serde_json::Value,
    ) -> Result<Self, EventDecodeError>;
    /// Decodes a recorded event.
    fn from_recorded(event: &RecordedEvent) -> Result<Self, EventDecodeError> {
        Self::decode(&event.event_type, event.schema_version, &event.payload)
    }
    /// `(event_type, schema_version, JSON Schema)` for every event of the aggregate.
    fn schemas() -> Vec<(&'static str, i32, schemars::Schema)>;
}

/// Decodes a payload of schema version 1 (the only version so far).
pub fn decode_v1<T: DeserializeOwned>(
    event_type: &str,
    schema_version: i32,
    payload: &serde_json::Value,
) -> Result<T, EventDecodeError> {
    if schema_version != 1 {
        return Err(EventDecodeError::UnsupportedVersion {
            event_type: event_type.to_owned(),
            version: schema_version,
        });
    }
    T::deserialize(payload).map_err(|source| EventDecodeError::Payload {
        event_type: event_type.to_owned(),
        source,
    })
}

/// Serializes a payload struct; these are plain data and cannot fail to serialize.
pub fn encode<T: Serialize>(payload: &T) -> serde_json::Value {
    serde_json::to_value(payload).unwrap_or(serde_json::Value::Null)
}

/// Declares an aggregate's event enum, one payload struct per variant, and implements
/// [`DomainEvent`] for it.
#[macro_export]
macro_rules! aggregate_events {
    (
        $(#[$doc:meta])*
        pub enum $enum:ident : $aggregate:literal {
            $( $(#[$vdoc:meta])* $variant:ident ( $payload:ty ) = $short:literal ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq)]
        pub enum $enum {
            $( $(#[$vdoc])* $variant($payload) ),+
        }

        impl $crate::events::DomainEvent for $enum {
            const AGGREGATE: &'static str = $aggregate;

            fn event_type(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => concat!($aggregate, ".", $short) ),+
                }
            }

            fn to_payload(&self) -> serde_json::Value {
                match self {
                    $( Self::$variant(p) => $crate::events::encode(p) ),+
                }
            }

            fn decode(
                event_type: &str,
                schema_version: i32,
                payload: &serde_json::Value,
            ) -> Result<Self, $crate::events::EventDecodeError> {
                match event_type {
                    $( concat!($aggregate, ".", $short) => {
                        $crate::events::decode_v1::<$payload>(event_type, schema_version, payload).map(Self::$variant)
                    } )+
                    other => Err($crate::events::EventDecodeError::UnknownType { event_type: other.to_owned() }),
                }
            }

            fn schemas() -> Vec<(&'static str, i32, schemars::Schema)> {
                vec![ $( (concat!($aggregate, ".", $short), 1, schemars::schema_for!($payload)) ),+ ]
            }
        }
    };
}
