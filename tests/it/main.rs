//! End-to-end suite: the real `gatehouse` binaries against real Postgres and nats-server.
//! One test binary (link time); modules by topic.

mod api_keys;
mod authorization;
mod bad_input;
mod cli;
mod dev_mode;
mod flows;
mod outbox;
mod restart;
mod revocation;
