//! Read models of the identity service: pure folds from events to view documents.

use gatehouse_contracts::envelope::RecordedEvent;
use gatehouse_contracts::events::DomainEvent;
use gatehouse_contracts::identity::{
    EpochEvent, SERVICE_ACCOUNT_VIEW, ServiceAccountEvent, ServiceAccountView, USER_VIEW,
    UserEvent, UserView,
};
use gatehouse_contracts::ids::{ServiceAccountId, UserId};
use gatehouse_eventlog::views::{current_view as current, decode_event, upsert_view as upsert};
use gatehouse_eventlog::{ProjectionError, ViewChange, ViewProjection};

/// Folds `user-*` streams into `user` views.
#[derive(Debug, Default, Clone, Copy)]
pub struct UserProjection;

impl ViewProjection for UserProjection {
    fn kind(&self) -> &'static str {
        USER_VIEW
    }

    fn aggregate(&self) -> &'static str {
        UserEvent::AGGREGATE
    }

    fn apply(
        &self,
        doc: Option<&serde_json::Value>,
        event: &RecordedEvent,
    ) -> Result<ViewChange, ProjectionError> {
        let decoded: UserEvent = decode_event(USER_VIEW, event)?;
        let view: Option<UserView> = current(USER_VIEW, doc, event)?;
        let at = event.recorded_at;
        let mut next = match (view, &decoded) {
            (None, UserEvent::Created(e)) => {
                let id = event.stream_id.id().map(UserId::from_uuid).ok_or_else(|| {
                    ProjectionError::new(USER_VIEW, event, "stream id is not a uuid")
                })?;
                UserView {
                    id,
                    name: e.name.to_string(),
                    role: e.role,
                    active: true,
                    epoch: 0,
                    created: at,
                    updated: at,
                }
            }
            (Some(v), UserEvent::RoleChanged(e)) => UserView {
                role: e.role,
                updated: at,
                ..v
            },
            (Some(v), UserEvent::Deactivated(_)) => UserView {
                active: false,
                updated: at,
                ..v
            },
            (Some(v), UserEvent::Reactivated(_)) => UserView {
                active: true,
                updated: at,
                ..v
            },
            (Some(v), UserEvent::PasswordChanged(_)) => UserView { updated: at, ..v },
            (_, _) => return Ok(ViewChange::Unchanged),
        };
        next.epoch = decoded.epoch_after(next.epoch);
        upsert(USER_VIEW, &next, event)
    }
}

/// Folds `service_account-*` streams into `service_account` views.
#[derive(Debug, Default, Clone, Copy)]
pub struct ServiceAccountProjection;

impl ViewProjection for ServiceAccountProjection {
    fn kind(&self) -> &'static str {
        SERVICE_ACCOUNT_VIEW
    }

    fn aggregate(&self) -> &'static str {
        ServiceAccountEvent::AGGREGATE
    }

    fn apply(
        &self,
        doc: Option<&serde_json::Value>,
        event: &RecordedEvent,
    ) -> Result<ViewChange, ProjectionError> {
        let decoded: ServiceAccountEvent = decode_event(SERVICE_ACCOUNT_VIEW, event)?;
        let view: Option<ServiceAccountView> = current(SERVICE_ACCOUNT_VIEW, doc, event)?;
        let at = event.recorded_at;
        let mut next = match (view, &decoded) {
            (None, ServiceAccountEvent::Created(e)) => {
                let id = event
                    .stream_id
                    .id()
                    .map(ServiceAccountId::from_uuid)
                    .ok_or_else(|| {
                        ProjectionError::new(SERVICE_ACCOUNT_VIEW, event, "stream id is not a uuid")
                    })?;
                ServiceAccountView {
                    id,
                    name: e.name.to_string(),
                    description: e.description.as_ref().to_owned(),
                    role: e.role,
                    active: true,
                    owner: e.owner,
                    epoch: 0,
                    created: at,
                    updated: at,
                }
            }
            (Some(v), ServiceAccountEvent::DescriptionChanged(e)) => ServiceAccountView {
                description: e.description.as_ref().to_owned(),
                updated: at,
                ..v
            },
            (Some(v), ServiceAccountEvent::RoleChanged(e)) => ServiceAccountView {
                role: e.role,
                updated: at,
                ..v
            },
            (Some(v), ServiceAccountEvent::Deactivated(_)) => ServiceAccountView {
                active: false,
                updated: at,
                ..v
            },
            (Some(v), ServiceAccountEvent::Reactivated(_)) => ServiceAccountView {
                active: true,
                updated: at,
                ..v
            },
            (Some(_), ServiceAccountEvent::Deleted(_)) => return Ok(ViewChange::Delete),
            (_, _) => return Ok(ViewChange::Unchanged),
        };
        next.epoch = decoded.epoch_after(next.epoch);
        upsert(SERVICE_ACCOUNT_VIEW, &next, event)
    }
}

/// The identity service's read side: users, service accounts and the keyring.
pub const READ_SIDE: crate::ReadSide = crate::ReadSide {
    service: "identity",
    events: || {
        [
            UserEvent::schemas(),
            ServiceAccountEvent::schemas(),
            gatehouse_contracts::keyring::KeyringEvent::schemas(),
        ]
        .concat()
    },
    projections: || {
        vec![
            std::sync::Arc::new(UserProjection),
            std::sync::Arc::new(ServiceAccountProjection),
            std::sync::Arc::new(crate::keyring::KeyringProjection),
        ]
    },
    directory: &[
        UserEvent::AGGREGATE,
        ServiceAccountEvent::AGGREGATE,
        gatehouse_contracts::keyring::KeyringEvent::AGGREGATE,
    ],
};

#[cfg(test)]
mod tests {
    use gatehouse_contracts::clock::{Clock, SystemClock};
    use gatehouse_contracts::envelope::{EventMetadata, StreamId};
    use gatehouse_contracts::identity::{
        Deactivated, Reactivated, Role, UserCreated, UserPasswordChanged,
    };
    use gatehouse_contracts::names::Name;

    use super::*;

    /// The `user` view after `events`, folded as the projector folds them.
    fn folded(events: &[UserEvent]) -> UserView {
        let stream_id = StreamId::new(UserEvent::AGGREGATE, UserId::new().as_uuid());
        let mut doc = None;
        for (version, event) in (1..).zip(events) {
            let recorded = RecordedEvent {
                position: version,
                stream_id: stream_id.clone(),
                version,
                event_id: UserId::new().as_uuid(),
                event_type: event.event_type().into(),
                schema_version: event.schema_version(),
                payload: event.to_payload(),
                metadata: EventMetadata::default(),
                recorded_at: SystemClock.now(),
            };
            match UserProjection.apply(doc.as_ref(), &recorded).unwrap() {
                ViewChange::Upsert(next) => doc = Some(next),
                other => panic!("{event:?}: {other:?}"),
            }
        }
        serde_json::from_value(doc.unwrap()).unwrap()
    }

    #[test]
    fn the_user_view_folds_the_epoch_by_the_one_rule() {
        let events = [
            UserEvent::Created(UserCreated {
                name: Name::parse("alice").unwrap(),
                role: Role::Member,
            }),
            UserEvent::PasswordChanged(UserPasswordChanged {}),
            UserEvent::Deactivated(Deactivated {}),
            UserEvent::Reactivated(Reactivated {}),
        ];
        let expected = events.iter().fold(0, |epoch, e| e.epoch_after(epoch));
        assert_eq!(expected, 2);
        assert_eq!(folded(&events).epoch, expected);
    }
}
