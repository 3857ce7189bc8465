//! Envelope encryption of Gatehouse secrets under a single master key.
//!
//! # Keys
//!
//! A deployment has one 32-byte [`MasterKey`], supplied as standard base64
//! (for example from a secret store or an environment variable). It is never
//! used directly as a cipher key. Instead:
//!
//! * [`MasterKey::derive_key`] derives independent [`DerivedKey`]s with
//!   HKDF-SHA-256 (salt `"gatehouse/v1"`, info = a versioned purpose string such
//!   as `"gatehouse/bus-seal/v1"`). Different purposes give unrelated keys.
//! * Each protected object gets its own random [`DataKey`]. The data key is
//!   stored only in wrapped form ([`WrappedKey`]), encrypted under a
//!   key-encryption key derived for purpose `"gatehouse/key-wrap/v1"`. Rotating
//!   the master key therefore means re-wrapping data keys, not re-encrypting data.
//!
//! Every type holding key material keeps it on the heap, zeroizes it on drop
//! and prints `[HIDDEN]` from `Debug`. Decrypted plaintexts are returned in
//! [`Zeroizing`] buffers.
//!
//! # Ciphertext format
//!
//! All ciphertexts (data sealed with a [`DataKey`] or [`DerivedKey`], wrapped
//! keys, and [`SealedSecret`]s) use AES-256-GCM with a fresh random 96-bit
//! nonce per message and this layout:
//!
//! ```text
//! version (1 byte, = 1) || nonce (12 bytes) || ciphertext || tag (16 bytes)
//! ```
//!
//! The caller-supplied associated data (AAD) is authenticated but not stored:
//! it must be presented again to open the ciphertext, which binds a ciphertext
//! to its context (an object id, a command name). Random 96-bit nonces keep the
//! collision risk negligible up to about 2^32 messages per key; per-object data
//! keys keep every individual key far below that.
//!
//! # Bus sealing
//!
//! [`BusSealer`] seals secret strings (passwords, API key secrets) that must
//! cross the message bus inside a command payload. A [`SealedSecret`]
//! serializes as an unpadded base64url string, and the context string (the
//! command name) is bound as AAD so a sealed value cannot be replayed into
//! another command.
//!
//! # Errors
//!
//! All fallible operations return [`SecretsError`]. Decryption failures are a
//! single variant ([`SecretsError::Decrypt`]): a wrong key, wrong AAD and a
//! tampered ciphertext are indistinguishable by design. Sealing fails only for
//! inputs beyond the AES-GCM limit of 2^36 bytes ([`SecretsError::TooLarge`]).

mod aead;
mod bus;
mod error;
mod keys;

#[cfg(test)]
mod tests;

pub use bus::{BUS_SEAL_PURPOSE, BusSealer, SealedSecret};
pub use error::{MasterKeyError, SecretsError};
pub use keys::{DataKey, DerivedKey, HKDF_SALT, KEY_LEN, KEY_WRAP_PURPOSE, MasterKey, WrappedKey};
pub use zeroize::Zeroizing;

/// Format version written as the first byte of every ciphertext.
pub const FORMAT_VERSION: u8 = aead::VERSION;

/// Bytes a ciphertext adds to its plaintext (version, nonce and tag).
pub const CIPHERTEXT_OVERHEAD: usize = aead::OVERHEAD;
