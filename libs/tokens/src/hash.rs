//! Keyed hashing of API key secrets for storage.

use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;
use uuid::Uuid;
use zeroize::Zeroize;

use crate::ApiKeySecret;

/// SHA-256 block size; HMAC keys are zero-padded to it.
const HMAC_BLOCK: usize = 64;

/// Computes [`ApiKeyHash`]es: HMAC-SHA-256 keyed with a server-side pepper
/// over `key id (16 bytes) || secret (32 bytes)`.
///
/// A database leak alone then does not allow offline guessing (the secrets
/// have 256 bits anyway) nor confirming a leaked key. The pepper is zeroized
/// on drop; `Debug` prints `[HIDDEN]`.
pub struct ApiKeyHasher {
    /// The pepper zero-padded to one SHA-256 block (see [`ApiKeyHasher::hash`]).
    key_block: SecretBox<[u8; HMAC_BLOCK]>,
}

impl ApiKeyHasher {
    /// Creates a hasher with a 32-byte pepper (for example a key derived from
    /// the master key for purpose `"gatehouse/api-key-pepper/v1"`).
    pub fn new(mut pepper: [u8; 32]) -> Self {
        let mut key_block = SecretBox::new(Box::new([0u8; HMAC_BLOCK]));
        key_block.expose_secret_mut()[..32].copy_from_slice(&pepper);
        pepper.zeroize();
        Self { key_block }
    }

    /// Hashes the secret of API key `key_id`.
    pub fn hash(&self, key_id: Uuid, secret: &ApiKeySecret) -> ApiKeyHash {
        // HMAC zero-pads keys shorter than the block (RFC 2104 §2): keying with
        // the padded block equals keying with the 32-byte pepper, through the
        // infallible fixed-size constructor. Tests check this equivalence.
        let mut mac = <Hmac<Sha256> as Mac>::new(self.key_block.expose_secret().into());
        mac.update(key_id.as_bytes());
        mac.update(secret.expose());
        ApiKeyHash(mac.finalize().into_bytes().into())
    }

    /// Checks in constant time that `secret` of key `key_id` hashes to `expected`.
    pub fn verify(&self, key_id: Uuid, secret: &ApiKeySecret, expected: &ApiKeyHash) -> bool {
        self.hash(key_id, secret) == *expected
    }
}

impl fmt::Debug for ApiKeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ApiKeyHasher")
            .field(&format_args!("[HIDDEN]"))
            .finish()
    }
}

/// The stored hash of an API key secret (32 bytes).
///
/// Serializes as 64 lowercase hex digits. Equality is constant-time. `Debug`
/// prints only the first 4 hex digits, e.g. `ApiKeyHash(3fa9…)`.
#[derive(Clone, Copy, Eq)]
pub struct ApiKeyHash([u8; 32]);

/// A string is not 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[error("API key hash must be 64 hex digits")]
pub struct InvalidApiKeyHash;

impl ApiKeyHash {
    /// Wraps stored hash bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(hex: &str) -> Result<Self, InvalidApiKeyHash> {
        fn nibble(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            }
        }
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return Err(InvalidApiKeyHash);
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let hi = nibble(pair[0]).ok_or(InvalidApiKeyHash)?;
            let lo = nibble(pair[1]).ok_or(InvalidApiKeyHash)?;
            *byte = (hi << 4) | lo;
        }
        Ok(Self(bytes))
    }
}

impl PartialEq for ApiKeyHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for ApiKeyHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyHash({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl Serialize for ApiKeyHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ApiKeyHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}
