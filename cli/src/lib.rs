//! The library half of the `gatehouse` command: how `gatehouse dev` and `gatehouse serve`
//! wire every service, the read-model projector and the gateway in one process. The binary
//! runs it; the end-to-end suite's in-process test app (`tests/support/inproc.rs`) starts
//! the same `dev` wiring, so it is written once.

pub mod runtime;
pub mod services;
