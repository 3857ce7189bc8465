//! Error types of the crate.

use thiserror::Error;

/// Why a master key supplied as text was rejected.
///
/// The variants describe the problem without ever echoing the input, so the
/// error can be logged safely even when an operator pasted a real key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MasterKeyError {
    /// The text is not standard base64 (alphabet `A–Z a–z 0–9 + /`, padding optional).
    #[error("master key is not valid standard base64")]
    NotBase64,
    /// The text is base64 but does not decode to exactly 32 bytes.
    #[error("master key must decode to 32 bytes, but decodes to {actual} bytes")]
    WrongLength {
        /// Number of bytes the text decoded to.
        actual: usize,
    },
}

/// Errors returned by this crate.
///
/// Decryption failures are deliberately not broken down further: AES-GCM
/// cannot tell a wrong key from a wrong AAD or a tampered ciphertext, and
/// callers should treat all three the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SecretsError {
    /// The master key could not be loaded.
    #[error("invalid master key: {0}")]
    InvalidMasterKey(#[from] MasterKeyError),
    /// Authentication failed: wrong key, wrong AAD/context, or tampered ciphertext.
    #[error("decryption failed (wrong key, wrong associated data, or tampered ciphertext)")]
    Decrypt,
    /// The ciphertext cannot be parsed: too short, unknown format version,
    /// bad encoding, or a decrypted payload of the wrong shape.
    #[error("malformed ciphertext")]
    Malformed,
    /// The plaintext or associated data exceeds the AES-GCM limit (2^36 bytes).
    #[error("plaintext or associated data too large for AES-256-GCM")]
    TooLarge,
}
