//! The connectors service: the connector broker.
//!
//! It keeps long-lived cloud credentials (sealed, per connector) and hands clients
//! short-lived, down-scoped credentials for one resource as **leases**; stack components
//! link to a connector and a resource. Everything that is the same for every cloud lives
//! here (the catalogue, sealed secrets and their shredding, grants, leases, reuse of a
//! live lease, the implicit gate, timeouts); each cloud is one module behind
//! [`types::ConnectorType`].

pub mod domain;
pub mod schema;
pub mod service;
pub mod types;
pub mod vault;

pub use service::{ConnectorSettings, ConnectorsService, write_side};
