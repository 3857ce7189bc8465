//! The connectors service's read models: one document per connector, lease and
//! component, each the shared fold of its contract (`Connector::evolve`, ...) with the id
//! and the times beside it. Secret values are never here: a connector's document names
//! its secret fields only.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_contracts::connectors::{
    COMPONENT_VIEW, CONNECTOR_VIEW, Component, ComponentEvent, ComponentView, Connector,
    ConnectorEvent, ConnectorView, LEASE_VIEW, Lease, LeaseEvent, LeaseView,
};
use gatehouse_contracts::envelope::RecordedEvent;
use gatehouse_contracts::events::DomainEvent;
use gatehouse_contracts::ids::{ComponentId, ConnectorId, LeaseId};
use gatehouse_eventlog::views::{current_view, decode_event, upsert_view};
use gatehouse_eventlog::{ProjectionError, ViewChange, ViewProjection};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// A document of the read store: an entity's state with its id and times.
trait Document: Serialize + DeserializeOwned {
    const KIND: &'static str;
    type Event: DomainEvent;
    type State;
    fn state(self) -> Self::State;
    fn evolve(state: Option<Self::State>, event: &Self::Event) -> Option<Self::State>;
    fn assemble(id: Uuid, state: Self::State, created: DateTime<Utc>, at: DateTime<Utc>) -> Self;
    fn created(&self) -> DateTime<Utc>;
}

/// Applies one event to a document of `D` (the fold is `D`'s contract's).
fn apply<D: Document>(
    doc: Option<&serde_json::Value>,
    event: &RecordedEvent,
) -> Result<ViewChange, ProjectionError> {
    let decoded: D::Event = decode_event(D::KIND, event)?;
    let view: Option<D> = current_view(D::KIND, doc, event)?;
    let existed = view.is_some();
    let created = view.as_ref().map_or(event.recorded_at, D::created);
    match D::evolve(view.map(D::state), &decoded) {
        Some(state) => {
            let id = event
                .stream_id
                .id()
                .ok_or_else(|| ProjectionError::new(D::KIND, event, "stream id is not a uuid"))?;
            upsert_view(
                D::KIND,
                &D::assemble(id, state, created, event.recorded_at),
                event,
            )
        }
        None if existed => Ok(ViewChange::Delete),
        None => Ok(ViewChange::Unchanged),
    }
}

impl Document for ConnectorView {
    const KIND: &'static str = CONNECTOR_VIEW;
    type Event = ConnectorEvent;
    type State = Connector;
    fn state(self) -> Connector {
        self.connector
    }
    fn evolve(state: Option<Connector>, event: &ConnectorEvent) -> Option<Connector> {
        Connector::evolve(state, event)
    }
    fn assemble(id: Uuid, connector: Connector, created: DateTime<Utc>, at: DateTime<Utc>) -> Self {
        ConnectorView {
            id: ConnectorId::from_uuid(id),
            connector,
            created,
            updated: at,
        }
    }
    fn created(&self) -> DateTime<Utc> {
        self.created
    }
}

impl Document for LeaseView {
    const KIND: &'static str = LEASE_VIEW;
    type Event = LeaseEvent;
    type State = Lease;
    fn state(self) -> Lease {
        self.lease
    }
    fn evolve(state: Option<Lease>, event: &LeaseEvent) -> Option<Lease> {
        Lease::evolve(state, event)
    }
    fn assemble(id: Uuid, lease: Lease, created: DateTime<Utc>, _at: DateTime<Utc>) -> Self {
        LeaseView {
            id: LeaseId::from_uuid(id),
            lease,
            issued_at: created,
        }
    }
    fn created(&self) -> DateTime<Utc> {
        self.issued_at
    }
}

impl Document for ComponentView {
    const KIND: &'static str = COMPONENT_VIEW;
    type Event = ComponentEvent;
    type State = Component;
    fn state(self) -> Component {
        self.component
    }
    fn evolve(state: Option<Component>, event: &ComponentEvent) -> Option<Component> {
        Component::evolve(state, event)
    }
    fn assemble(id: Uuid, component: Component, created: DateTime<Utc>, at: DateTime<Utc>) -> Self {
        ComponentView {
            id: ComponentId::from_uuid(id),
            component,
            created,
            updated: at,
        }
    }
    fn created(&self) -> DateTime<Utc> {
        self.created
    }
}

/// Folds `connector-*` streams into `connector` views.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnectorProjection;

impl ViewProjection for ConnectorProjection {
    fn kind(&self) -> &'static str {
        CONNECTOR_VIEW
    }
    fn aggregate(&self) -> &'static str {
        ConnectorEvent::AGGREGATE
    }
    fn apply(
        &self,
        doc: Option<&serde_json::Value>,
        event: &RecordedEvent,
    ) -> Result<ViewChange, ProjectionError> {
        apply::<ConnectorView>(doc, event)
    }
}

/// Folds `lease-*` streams into `lease` views.
#[derive(Debug, Default, Clone, Copy)]
pub struct LeaseProjection;

impl ViewProjection for LeaseProjection {
    fn kind(&self) -> &'static str {
        LEASE_VIEW
    }
    fn aggregate(&self) -> &'static str {
        LeaseEvent::AGGREGATE
    }
    fn apply(
        &self,
        doc: Option<&serde_json::Value>,
        event: &RecordedEvent,
    ) -> Result<ViewChange, ProjectionError> {
        apply::<LeaseView>(doc, event)
    }
}

/// Folds `component-*` streams into `component` views.
#[derive(Debug, Default, Clone, Copy)]
pub struct ComponentProjection;

impl ViewProjection for ComponentProjection {
    fn kind(&self) -> &'static str {
        COMPONENT_VIEW
    }
    fn aggregate(&self) -> &'static str {
        ComponentEvent::AGGREGATE
    }
    fn apply(
        &self,
        doc: Option<&serde_json::Value>,
        event: &RecordedEvent,
    ) -> Result<ViewChange, ProjectionError> {
        apply::<ComponentView>(doc, event)
    }
}

fn schemas() -> Vec<crate::EventSchema> {
    let mut all = ConnectorEvent::schemas();
    all.extend(LeaseEvent::schemas());
    all.extend(ComponentEvent::schemas());
    all
}

/// The connectors service's read side: connectors, leases and components. The gateway's
/// directory follows connectors (who may use them), so that a replica hands out a live
/// lease again without a round trip; leases and components stay in the read store.
pub const READ_SIDE: crate::ReadSide = crate::ReadSide {
    service: "connectors",
    events: schemas,
    projections: || {
        vec![
            Arc::new(ConnectorProjection),
            Arc::new(LeaseProjection),
            Arc::new(ComponentProjection),
        ]
    },
    directory: &[ConnectorEvent::AGGREGATE],
};
