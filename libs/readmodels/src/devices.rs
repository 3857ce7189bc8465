//! The `device` read model: a pure fold from device events to one document per device.

use gatehouse_contracts::devices::{DEVICE_VIEW, DeviceEvent, DeviceFacts, DeviceView};
use gatehouse_contracts::envelope::RecordedEvent;
use gatehouse_contracts::events::DomainEvent;
use gatehouse_contracts::ids::DeviceId;
use gatehouse_eventlog::views::{current_view, decode_event, upsert_view};
use gatehouse_eventlog::{ProjectionError, ViewChange, ViewProjection};

/// Folds `device-*` streams into `device` views.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceProjection;

impl ViewProjection for DeviceProjection {
    fn kind(&self) -> &'static str {
        DEVICE_VIEW
    }

    fn aggregate(&self) -> &'static str {
        DeviceEvent::AGGREGATE
    }

    fn apply(
        &self,
        doc: Option<&serde_json::Value>,
        event: &RecordedEvent,
    ) -> Result<ViewChange, ProjectionError> {
        let decoded: DeviceEvent = decode_event(DEVICE_VIEW, event)?;
        let view: Option<DeviceView> = current_view(DEVICE_VIEW, doc, event)?;
        let at = event.recorded_at;
        let mut next = match (view, &decoded) {
            (None, DeviceEvent::AuthorizationRequested(e)) => {
                let id = event.stream_id.id().ok_or_else(|| {
                    ProjectionError::new(DEVICE_VIEW, event, "stream id is not a uuid")
                })?;
                DeviceView {
                    id: DeviceId::from_uuid(id),
                    client_id: e.client_id.clone(),
                    scope: e.scope.clone(),
                    metadata: e.metadata.clone(),
                    interval_seconds: e.interval_seconds,
                    device_code_hash: e.device_code_hash.clone(),
                    facts: DeviceFacts::requested(e),
                    owner_id: None,
                    awaiting_decision: true,
                    created: at,
                    updated: at,
                }
            }
            // A lapsed request nobody decided on was never anyone's device: it leaves the
            // list (and every gateway's memory); its events stay in the log.
            (Some(_), DeviceEvent::Deleted(_) | DeviceEvent::AuthorizationLapsed(_)) => {
                return Ok(ViewChange::Delete);
            }
            (Some(mut v), event) => {
                v.facts.evolve(event);
                v
            }
            (None, _) => return Ok(ViewChange::Unchanged),
        };
        next.owner_id = next.facts.owner;
        // Copied out of `facts` for the lapse sweep's filter (a lapsed request's view is
        // removed, so undecided means nobody approved or denied it).
        next.awaiting_decision = next.facts.awaiting_decision();
        next.updated = at;
        upsert_view(DEVICE_VIEW, &next, event)
    }
}

/// The devices service's read side: device authorizations and devices.
pub const READ_SIDE: crate::ReadSide = crate::ReadSide {
    service: "devices",
    events: DeviceEvent::schemas,
    projections: || vec![std::sync::Arc::new(DeviceProjection)],
    directory: &[DeviceEvent::AGGREGATE],
};
