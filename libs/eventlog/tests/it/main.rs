//! Event-log contract tests: the same suite against the in-memory store and Postgres (a
//! fresh database per test), plus Postgres-only tests of the outbox relay.

mod contract;
mod postgres;
mod projector;
mod support;
