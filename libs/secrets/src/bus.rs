//! Sealing secrets that travel inside bus (NATS) command payloads.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{DerivedKey, MasterKey, SecretsError};

/// HKDF purpose of the key used by [`BusSealer`].
pub const BUS_SEAL_PURPOSE: &str = "gatehouse/bus-seal/v1";

/// Seals secret strings (passwords, API key secrets) so that they can be put
/// in a bus command payload without appearing in plaintext in the bus, its
/// persistence or its logs.
///
/// The `context` given to [`BusSealer::seal`] is bound as AAD: a value sealed
/// for one command cannot be opened under another context. Use the command
/// name (or a more specific string) as context.
pub struct BusSealer {
    key: DerivedKey,
}

impl BusSealer {
    /// Builds a sealer from the master key (purpose [`BUS_SEAL_PURPOSE`]).
    pub fn new(master: &MasterKey) -> Self {
        Self {
            key: master.derive_key(BUS_SEAL_PURPOSE),
        }
    }

    /// Seals `secret`, binding `context`.
    ///
    /// Fails only with [`SecretsError::TooLarge`] (inputs over 2^36 bytes).
    pub fn seal(&self, secret: &SecretString, context: &str) -> Result<SealedSecret, SecretsError> {
        self.key
            .seal(secret.expose_secret().as_bytes(), context.as_bytes())
            .map(SealedSecret)
    }

    /// Opens a value sealed with the same master key and `context`.
    pub fn open(&self, sealed: &SealedSecret, context: &str) -> Result<SecretString, SecretsError> {
        let plain = self.key.open(&sealed.0, context.as_bytes())?;
        let text = std::str::from_utf8(&plain).map_err(|_| SecretsError::Malformed)?;
        // Copy into an exactly sized box; `plain` is zeroized when dropped.
        Ok(SecretString::from(Box::<str>::from(text)))
    }
}

impl fmt::Debug for BusSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusSealer").field("key", &self.key).finish()
    }
}

/// A secret sealed by a [`BusSealer`].
///
/// Serializes as an unpadded base64url string of the ciphertext (same layout
/// as every ciphertext of this crate). `Debug` prints `[SEALED]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret(Vec<u8>);

impl SealedSecret {
    /// The sealed value as an unpadded base64url string (its serde form).
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.0)
    }

    /// Parses the serde form; the content is only authenticated by
    /// [`BusSealer::open`].
    pub fn from_base64url(encoded: &str) -> Result<Self, SecretsError> {
        URL_SAFE_NO_PAD
            .decode(encoded)
            .map(Self)
            .map_err(|_| SecretsError::Malformed)
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[SEALED]")
    }
}

impl Serialize for SealedSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64url())
    }
}

impl<'de> Deserialize<'de> for SealedSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_base64url(&text)
            .map_err(|_| serde::de::Error::custom("sealed secret is not valid base64url"))
    }
}
