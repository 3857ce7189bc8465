//! Unit tests (inside the crate to reach the raw signing helper and codecs).

mod apikey;
mod jws;
