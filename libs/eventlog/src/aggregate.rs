//! Loading an aggregate: fold its stream with the pure `evolve`.

use gatehouse_contracts::envelope::StreamId;
use gatehouse_contracts::events::{DomainEvent, EventDecodeError};

use crate::store::{EventStore, StoreError};

/// A pure aggregate: state folded from its own events.
pub trait Aggregate: Default + Sized + Send {
    /// Its events.
    type Event: DomainEvent;
    /// Folds one event (no rules, no I/O: rules live in `decide`).
    fn evolve(self, event: &Self::Event) -> Self;
}

/// Loading failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event cannot be decoded by this build.
    #[error(transparent)]
    Decode(#[from] EventDecodeError),
}

/// Loads `stream_id` and returns the state and the stream's version (0 when new).
pub async fn load<A: Aggregate>(
    store: &dyn EventStore,
    stream_id: &StreamId,
) -> Result<(A, i64), LoadError> {
    let events = store.read_stream(stream_id, 0).await?;
    let mut state = A::default();
    let mut version = 0;
    for recorded in &events {
        let event = A::Event::from_recorded(recorded)?;
        state = state.evolve(&event);
        version = recorded.version;
    }
    Ok((state, version))
}
