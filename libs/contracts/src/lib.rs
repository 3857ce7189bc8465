//! The shared language of Gatehouse: identifiers, validated names, the event envelope,
//! the events of every aggregate, and the commands that services accept over the bus.
//!
//! Everything in here crosses a process boundary (NATS, the Postgres event log, the public
//! audit feed), so the serialized form is a contract: event types and field names never
//! change once released; new fields are optional; old versions are upcast on read.

pub mod catalogue;
pub mod clock;
pub mod commands;
pub mod connectors;
pub mod devices;
pub mod envelope;
pub mod events;
pub mod failures;
pub mod identity;
pub mod ids;
pub mod keyring;
pub mod keys;
pub mod names;
pub mod nullable;

pub use envelope::{Actor, EventMetadata, RecordedEvent, StreamId};
pub use ids::{
    ApiKeyId, ComponentId, ConnectorId, DeviceId, EventId, LeaseId, PrincipalId, PrincipalKind,
    ServiceAccountId, UserId,
};
pub use names::{Description, Name, NameError};
