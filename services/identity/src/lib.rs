//! The identity service: users, service accounts and the token-signing keyring.
//!
//! It owns the `user-<id>` and `service_account-<id>` streams and the `keyring` stream
//! ([`keyring`]: signing keys added, retired and rotated on schedule). Commands arrive on
//! `gatehouse.cmd.identity.*`; each handler loads the aggregate, decides with a pure
//! function, and appends with optimistic concurrency. Names are unique across users and
//! service accounts (a unique claim taken in the same transaction as the append).
//! Password hashes never enter the log: they live in the stream's secret slot, written
//! atomically with the event that says the password changed.

pub mod domain;
pub mod keyring;
pub mod passwords;
pub mod service;

pub use keyring::{KeyringKeeper, KeyringSettings};
pub use service::{IdentityService, write_side};
