//! The keys service: API keys of service accounts.
//!
//! It owns the `api_key-<id>` streams. A key's secret is generated here, shown once (sealed
//! for the gateway in the command's reply) and stored only as a keyed hash
//! (HMAC-SHA-256 with a pepper derived from the master key) in the stream's secret slot,
//! written in the same transaction as the event that creates or rotates it. Checking a
//! presented key (`authenticate_api_key`) appends nothing: uses are not events.

pub mod domain;
pub mod service;

pub use service::{KeySettings, KeysService, write_side};
