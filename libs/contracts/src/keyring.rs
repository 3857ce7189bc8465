//! The token-signing keyring: one stream (`keyring-<nil uuid>`) recording which Ed25519
//! keys sign access tokens. Only public keys are in the events; each private key lives,
//! sealed under the master key, in the stream's secret slot `signing_key:<kid>`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::aggregate_events;

/// The aggregate name.
pub const KEYRING_AGGREGATE: &str = "keyring";

/// `keyring.signing_key_added`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SigningKeyAdded {
    /// The key id (`kid` header of the tokens it signs).
    pub kid: String,
    /// The public key, base64url without padding (the JWK `x`).
    pub public_key: String,
    /// From when it signs new tokens.
    pub active_from: DateTime<Utc>,
}

aggregate_events! {
    /// Events of the signing keyring.
    pub enum KeyringEvent: "keyring" {
        /// A signing key was added; the newest active key signs.
        SigningKeyAdded(SigningKeyAdded) = "signing_key_added",
    }
}
