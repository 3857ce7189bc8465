//! The devices service: OAuth 2.0 device authorizations (RFC 8628) and the authorized
//! devices they become. [`domain`] holds the aggregate's pure rules, [`service`] the
//! command handlers, `gatehouse_readmodels::devices` the `device` read model.
//!
//! It owns the `device-<id>` streams. A device code (`gatehouse_dc_<device id>_<secret>`)
//! is generated here, sent to the gateway sealed in the reply, and kept only as a keyed
//! hash in the `device.authorization_requested` event, so that every gateway replica can
//! check polled codes in memory (`gatehouse_tokens::DeviceCodes::check_device_code`). A user code is never
//! in an event: a unique claim on its keyed hash maps it to its stream until a person
//! decides. Polls are not events; only the one that redeems an approved code is.

pub mod domain;
pub mod service;

pub use domain::{DeviceLifetimes, FlowSettings, PollRefusal, Rejection};
pub use service::{
    DeviceSettings, DevicesService, UserCodeGenerator, generate_user_code, write_side,
};
