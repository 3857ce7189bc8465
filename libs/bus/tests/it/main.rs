//! Integration tests of the NATS bus against a real nats-server (≥ 2.10) on a free port.

mod command_bus;
mod feed;
mod publisher;
mod recovery;
mod relay;
mod restart;
mod support;
