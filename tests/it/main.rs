//! End-to-end suite: the real `gatehouse` binaries against real Postgres and nats-server,
//! and the gateway's handlers against the in-process app (`gatehouse_e2e::InProcApp`).
//! One test binary (link time); modules by topic.

mod api_keys;
mod authorization;
mod bad_input;
mod browser_smoke;
mod bus_security;
mod cli;
mod committed_answers;
mod connectors;
mod connectors_cli;
mod dev_mode;
mod devices;
mod event_feed;
mod faults;
mod flows;
mod fuzz;
mod hardening_limits;
mod inproc;
mod oauth_client;
mod outbox;
mod restart;
mod revocation;
mod shared_limits;
mod signing_keys;
mod split_processes;
mod unknown_events;
