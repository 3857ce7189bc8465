//! The devices service: OAuth 2.0 device authorizations (RFC 8628) and the authorized
//! devices they become. [`domain`] holds the aggregate's pure rules, [`service`] the
//! command handlers, [`projections`] the `device` read model.

pub mod domain;
pub mod projections;
pub mod service;

pub use service::{DeviceCodes, DeviceSettings, DevicesService};
