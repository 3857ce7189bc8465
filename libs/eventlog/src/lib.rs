//! The event log: the append-only source of truth of Gatehouse, and everything built
//! directly on it.
//!
//! - [`EventStore`]: append with optimistic concurrency, idempotency keys, unique-name
//!   claims and secret slots written in the same transaction; read a stream; read the
//!   whole log for rebuilds.
//! - [`EventFeed`]: ordered, at-least-once delivery of committed events to consumers
//!   (JetStream in production, the in-memory log in `gatehouse dev`).
//! - [`ViewStore`] and [`ProjectionRunner`]: read models folded from events, idempotent
//!   under redelivery and rebuildable from the log.
//!
//! Two implementations pass the same contract tests: [`memory`] (for `gatehouse dev` and
//! fast unit tests) and [`postgres`] (for everything else).

pub mod aggregate;
pub mod checked;
pub mod feed;
pub mod memory;
pub mod postgres;
pub mod projector;
pub mod relay;
pub mod store;
pub mod sweep;
pub mod views;
pub mod writer;

pub use aggregate::{Aggregate, LoadError, load};
pub use feed::{
    BusLink, Delivery, EventFeed, FeedError, PublishError, Publisher, StartFrom, SubscriptionSpec,
};
pub use projector::{ProjectionRunner, ProjectorError};
pub use store::{
    AppendError, AppendRequest, Appended, EventStore, ExpectedVersion, IdempotencyRecord, NewEvent,
    SecretOp, StoreError, StoredOutcome, UniqueClaim,
};
pub use views::{
    FailureKind, ListQuery, Page, ProjectionError, SkippedEvent, TimeBound, ViewChange, ViewDoc,
    ViewProjection, ViewSnapshot, ViewStore,
};
pub use writer::{CommandWriter, Extras, Idempotency};
