//! End-to-end suite: the real `gatehouse` binaries against real Postgres and nats-server.
//! One test binary (link time); modules by topic.

mod api_keys;
mod authorization;
mod bad_input;
mod browser_smoke;
mod cli;
mod dev_mode;
mod devices;
mod faults;
mod flows;
mod oauth_client;
mod outbox;
mod restart;
mod revocation;
mod shared_limits;
mod signing_keys;
