//! The identity service: users and service accounts.
//!
//! It owns the `user-<id>` and `service_account-<id>` streams. Commands arrive on
//! `gatehouse.cmd.identity.*`; each handler loads the aggregate, decides with a pure
//! function, and appends with optimistic concurrency. Names are unique across users and
//! service accounts (a unique claim taken in the same transaction as the append).
//! Password hashes never enter the log: they live in the stream's secret slot, written
//! atomically with the event that says the password changed.

pub mod domain;
pub mod passwords;
pub mod service;

pub use service::IdentityService;
