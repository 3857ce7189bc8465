//! The read side of every Gatehouse service, and the read half of the service registry.
//!
//! A service is described once, in two halves:
//!
//! - its **read side** ([`ReadSide`], here): its name, the JSON Schemas of its events, the
//!   projections that fold its streams into read models, and which of its aggregates the
//!   gateway's in-memory directory follows. The gateway, the read-model projector and the
//!   schema drift test iterate [`SERVICES`]; none of them names a service.
//! - its **write side** (in the service's own crate): the command router and background
//!   tasks, listed once in `gatehouse`'s runtime (`cli/src/services.rs`), which a test
//!   keeps in step with [`SERVICES`].
//!
//! The gateway may depend on this crate (it is a library, pure folds from events to
//! documents); it never depends on a service crate. `docs/adding-a-service.md` walks
//! through adding a service.

use std::sync::Arc;

use gatehouse_eventlog::ViewProjection;

pub mod connectors;
pub mod devices;
pub mod identity;
pub mod keyring;
pub mod keys;

/// An event type's JSON Schema: `(event type, schema version, schema)`.
pub type EventSchema = (&'static str, i32, schemars::Schema);

/// The read half of a service's registry entry.
#[derive(Clone, Copy)]
pub struct ReadSide {
    /// The service's name: its commands are on `gatehouse.cmd.<service>.*`.
    pub service: &'static str,
    /// The schemas of every event the service appends (checked in under `schemas/events/`).
    pub events: fn() -> Vec<EventSchema>,
    /// The projections of its read models (run by the shared read-model projector).
    pub projections: fn() -> Vec<Arc<dyn ViewProjection>>,
    /// The aggregates the gateway's directory follows (what each request's authentication
    /// depends on: principals, keys, devices, signing keys); their projections must be in
    /// `projections`.
    pub directory: &'static [&'static str],
}

impl std::fmt::Debug for ReadSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSide")
            .field("service", &self.service)
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

/// Every service's read side.
pub const SERVICES: &[ReadSide] = &[
    identity::READ_SIDE,
    keys::READ_SIDE,
    devices::READ_SIDE,
    connectors::READ_SIDE,
];

/// Every read-model projection of every service.
pub fn projections() -> Vec<Arc<dyn ViewProjection>> {
    SERVICES.iter().flat_map(|s| (s.projections)()).collect()
}

/// The projections the gateway's directory runs: those of the aggregates it follows.
pub fn directory_projections() -> Vec<Arc<dyn ViewProjection>> {
    SERVICES
        .iter()
        .flat_map(|s| {
            (s.projections)()
                .into_iter()
                .filter(|p| s.directory.contains(&p.aggregate()))
        })
        .collect()
}

/// The schemas of every event of every service.
pub fn event_schemas() -> Vec<EventSchema> {
    SERVICES.iter().flat_map(|s| (s.events)()).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_followed_aggregate_has_a_projection_and_names_are_unique() {
        let mut names = HashSet::new();
        let mut kinds = HashSet::new();
        for service in SERVICES {
            assert!(names.insert(service.service), "{} twice", service.service);
            let projections = (service.projections)();
            for aggregate in service.directory {
                assert!(
                    projections.iter().any(|p| p.aggregate() == *aggregate),
                    "{}: the directory follows {aggregate}, which has no projection",
                    service.service
                );
            }
            for p in &projections {
                assert!(kinds.insert(p.kind()), "view kind {} twice", p.kind());
            }
        }
        assert_eq!(directory_projections().len(), 6);
    }

    #[test]
    fn every_event_type_belongs_to_one_service() {
        let mut types = HashSet::new();
        for (event_type, version, _) in event_schemas() {
            assert!(types.insert((event_type, version)), "{event_type} twice");
        }
    }
}
