//! The `keyring` read model: the signing keys' public state in one document, so that every
//! gateway's directory follows rotations and retirements like any other revocation (and
//! the replica barrier covers them).

use gatehouse_contracts::envelope::RecordedEvent;
use gatehouse_contracts::events::DomainEvent;
use gatehouse_contracts::keyring::{KEYRING_VIEW, KeyringEvent, KeyringView};
use gatehouse_eventlog::views::{current_view, decode_event, upsert_view};
use gatehouse_eventlog::{ProjectionError, ViewChange, ViewProjection};

/// Folds the `keyring` stream into its one document.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyringProjection;

impl ViewProjection for KeyringProjection {
    fn kind(&self) -> &'static str {
        KEYRING_VIEW
    }

    fn aggregate(&self) -> &'static str {
        KeyringEvent::AGGREGATE
    }

    fn apply(
        &self,
        doc: Option<&serde_json::Value>,
        event: &RecordedEvent,
    ) -> Result<ViewChange, ProjectionError> {
        let decoded: KeyringEvent = decode_event(KEYRING_VIEW, event)?;
        // Read models built before this projection existed start from the first change
        // they see; the issuer keeps what it loaded from the log and merges.
        let mut view: KeyringView = current_view(KEYRING_VIEW, doc, event)?.unwrap_or_default();
        view.apply(&decoded);
        upsert_view(KEYRING_VIEW, &view, event)
    }
}
