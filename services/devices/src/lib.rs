//! The devices service: OAuth 2.0 device authorizations (RFC 8628) and the authorized
//! devices they become. This crate holds the aggregate's pure rules ([`domain`]); the
//! service adapter, projections and binary follow (issue 4).

pub mod domain;
