//! The `api_key` read model: a pure fold from key events to one document per key.

use gatehouse_contracts::envelope::RecordedEvent;
use gatehouse_contracts::events::DomainEvent;
use gatehouse_contracts::ids::ApiKeyId;
use gatehouse_contracts::keys::{API_KEY_VIEW, ApiKeyEvent, ApiKeyView, KeyValidity};
use gatehouse_eventlog::views::{current_view, decode_event, upsert_view};
use gatehouse_eventlog::{ProjectionError, ViewChange, ViewProjection};

/// Folds `api_key-*` streams into `api_key` views.
#[derive(Debug, Default, Clone, Copy)]
pub struct ApiKeyProjection;

impl ViewProjection for ApiKeyProjection {
    fn kind(&self) -> &'static str {
        API_KEY_VIEW
    }

    fn aggregate(&self) -> &'static str {
        ApiKeyEvent::AGGREGATE
    }

    fn apply(
        &self,
        doc: Option<&serde_json::Value>,
        event: &RecordedEvent,
    ) -> Result<ViewChange, ProjectionError> {
        let decoded: ApiKeyEvent = decode_event(API_KEY_VIEW, event)?;
        let view: Option<ApiKeyView> = current_view(API_KEY_VIEW, doc, event)?;
        let at = event.recorded_at;
        let mut next = match (view, &decoded) {
            (None, ApiKeyEvent::Created(e)) => {
                let id = event
                    .stream_id
                    .id()
                    .map(ApiKeyId::from_uuid)
                    .ok_or_else(|| {
                        ProjectionError::new(API_KEY_VIEW, event, "stream id is not a uuid")
                    })?;
                ApiKeyView {
                    id,
                    service_account_id: e.service_account_id,
                    name: e.name.to_string(),
                    description: e.description.as_ref().to_owned(),
                    active: true,
                    expired: false,
                    expiry_pending: e.expires_at.is_some(),
                    validity: KeyValidity::new(e.expires_at),
                    created: at,
                    updated: at,
                    last_rotated: None,
                }
            }
            (Some(_), ApiKeyEvent::Deleted(_)) => return Ok(ViewChange::Delete),
            (Some(mut v), event) => {
                v.validity.evolve(event);
                match event {
                    ApiKeyEvent::DescriptionChanged(e) => {
                        v.description = e.description.as_ref().to_owned()
                    }
                    ApiKeyEvent::Rotated(_) => v.last_rotated = Some(at),
                    ApiKeyEvent::Expired(_) => v.expired = true,
                    ApiKeyEvent::ExpiryChanged(_) => v.expired = false,
                    _ => {}
                }
                v
            }
            (None, _) => return Ok(ViewChange::Unchanged),
        };
        next.active = next.validity.active && !next.expired;
        next.expiry_pending = next.validity.expires_at.is_some() && !next.expired;
        next.updated = at;
        upsert_view(API_KEY_VIEW, &next, event)
    }
}

/// The keys service's read side: API keys.
pub const READ_SIDE: crate::ReadSide = crate::ReadSide {
    service: "keys",
    events: ApiKeyEvent::schemas,
    projections: || vec![std::sync::Arc::new(ApiKeyProjection)],
    directory: &[ApiKeyEvent::AGGREGATE],
};
