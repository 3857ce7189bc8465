//! AES-256-GCM with a random 96-bit nonce and a versioned envelope.
//!
//! Layout: `version (1) || nonce (12) || ciphertext || tag (16)`.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use rand_core::{OsRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::SecretsError;

/// Format version written as the first byte of every ciphertext.
pub(crate) const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes added to a plaintext by [`seal`].
pub(crate) const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Encrypts `plaintext` under `key`, binding `aad`.
pub(crate) fn seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretsError> {
    // The same limits aes-gcm enforces; checked first so that no copy of the
    // plaintext is made for an input that will be refused.
    if plaintext.len() as u64 > aes_gcm::P_MAX || aad.len() as u64 > aes_gcm::A_MAX {
        return Err(SecretsError::TooLarge);
    }
    let cipher = Aes256Gcm::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);

    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    match cipher.encrypt_in_place_detached(&Nonce::from(nonce), aad, &mut out[1 + NONCE_LEN..]) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(out)
        }
        Err(_) => {
            // `out` still holds a copy of the plaintext.
            out.zeroize();
            Err(SecretsError::TooLarge)
        }
    }
}

/// Decrypts a ciphertext produced by [`seal`] with the same `key` and `aad`.
pub(crate) fn open(
    key: &[u8; 32],
    sealed: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    let (&version, rest) = sealed.split_first().ok_or(SecretsError::Malformed)?;
    if version != VERSION {
        return Err(SecretsError::Malformed);
    }
    let (nonce, rest) = rest
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(SecretsError::Malformed)?;
    let (ciphertext, tag) = rest
        .split_last_chunk::<TAG_LEN>()
        .ok_or(SecretsError::Malformed)?;

    let cipher = Aes256Gcm::new(key.into());
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt_in_place_detached(
            &Nonce::from(*nonce),
            aad,
            buf.as_mut_slice(),
            &Tag::from(*tag),
        )
        .map_err(|_| SecretsError::Decrypt)?;
    Ok(buf)
}
