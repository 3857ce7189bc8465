//! The `device` read model: a pure fold from device events to one document per device.

use chrono::{DateTime, Utc};
use gatehouse_contracts::devices::{
    DEVICE_VIEW, DeviceEvent, DeviceFacts, DeviceStatus, DeviceView,
};
use gatehouse_contracts::envelope::RecordedEvent;
use gatehouse_contracts::events::DomainEvent;
use gatehouse_contracts::ids::DeviceId;
use gatehouse_eventlog::views::{current_view, decode_event, upsert_view};
use gatehouse_eventlog::{ListQuery, ProjectionError, TimeBound, ViewChange, ViewProjection};

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
                    standing: DeviceStatus::Pending,
                    live_until: None,
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
        // Copied out for listing by status (`status_query`).
        next.standing = next.facts.standing();
        next.live_until = next.facts.live_until();
        next.updated = at;
        upsert_view(DEVICE_VIEW, &next, event)
    }
}

/// Narrows `query` on `device` views to the devices whose status at `now` is `status`
/// ([`DeviceFacts::status`], read from the fields the projection copies out of it).
pub fn status_query(query: &mut ListQuery, status: DeviceStatus, now: DateTime<Utc>) {
    let live_until = || "live_until".to_owned();
    match status {
        DeviceStatus::Expired => query
            .time_bounds
            .push(TimeBound::AtOrBefore(live_until(), now)),
        standing => {
            query
                .filters
                .push(("standing".to_owned(), serde_json::json!(standing)));
            if standing != DeviceStatus::Denied {
                query.time_bounds.push(TimeBound::After(live_until(), now));
            }
        }
    }
}

/// The devices service's read side: device authorizations and devices.
pub const READ_SIDE: crate::ReadSide = crate::ReadSide {
    service: "devices",
    events: DeviceEvent::schemas,
    projections: || vec![std::sync::Arc::new(DeviceProjection)],
    directory: &[DeviceEvent::AGGREGATE],
};

#[cfg(test)]
mod tests {
    use gatehouse_contracts::ids::UserId;

    use super::*;

    /// Whether a document meets `query`'s filters and bounds (the stores' own rule: equal
    /// top-level fields, bounds on top-level timestamps).
    fn meets(query: &ListQuery, doc: &serde_json::Value) -> bool {
        query
            .filters
            .iter()
            .all(|(field, value)| doc.get(field) == Some(value))
            && query.time_bounds.iter().all(|bound| bound.admits(doc))
    }

    #[test]
    fn a_status_query_finds_exactly_the_devices_with_that_status_now() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20_000);
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let statuses = [
            DeviceStatus::Pending,
            DeviceStatus::Verified,
            DeviceStatus::Active,
            DeviceStatus::Locked,
            DeviceStatus::Denied,
            DeviceStatus::Expired,
        ];
        for bits in 0u8..32 {
            let has = |bit: u8| bits & (1 << bit) != 0;
            let facts = DeviceFacts {
                owner: has(0).then(UserId::new),
                trusted: false,
                denied: has(1),
                locked: has(2),
                expires_at: at(600),
                verified_at: None,
                activated_at: has(3).then(|| at(10)),
                token_expires_at: has(4).then(|| at(3600)),
            };
            // What the projection writes.
            let doc = serde_json::json!({
                "standing": facts.standing(),
                "live_until": facts.live_until(),
            });
            for now in [0, 599, 600, 601, 3600, 4000].map(at) {
                for status in statuses {
                    let mut query = ListQuery::default();
                    status_query(&mut query, status, now);
                    assert_eq!(
                        meets(&query, &doc),
                        facts.status(now) == status,
                        "{facts:?} at {now} asked for {status:?}"
                    );
                }
            }
        }
    }
}
