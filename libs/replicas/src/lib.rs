//! What gateway replicas tell each other, beside the command bus and the event feed.
//!
//! Gateways are stateless apart from what they keep in memory, and two things in memory
//! must hold across every replica behind a load balancer:
//!
//! - the request limits ([`limits`], counted by [`limiter`]): a client spreading its
//!   attempts over N replicas gets the budget of one, not N;
//! - the write barrier and presence ([`peers`]): a write that changes who may do what is
//!   answered only once every live replica enforces it.
//!
//! Both run over core NATS on the `gatehouse.gateway.>` subjects, with the same client (and
//! NATS user) as the replica's command bus (`gatehouse_bus::infra`). This crate knows no
//! gateway type: the barrier asks "have you applied stream S at version V?" of a
//! [`peers::Follower`], which the gateway's directory implements. With no NATS client
//! (`gatehouse dev`, one process) both work alone: limits counted locally, every barrier
//! confirmed at once.

pub mod limiter;
pub mod limits;
pub mod peers;

pub use limits::Limits;
pub use peers::{BarrierOutcome, Follower, Peers};
