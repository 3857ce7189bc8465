//! Key types: the master key, keys derived from it, and per-object data keys.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose::STANDARD};
use hkdf::hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{MasterKeyError, SecretsError, aead};

/// Length in bytes of every symmetric key in this crate.
pub const KEY_LEN: usize = 32;

/// HKDF salt used for every derivation from the master key.
pub const HKDF_SALT: &[u8] = b"gatehouse/v1";

/// HKDF purpose of the key-encryption key used by [`MasterKey::wrap`].
pub const KEY_WRAP_PURPOSE: &str = "gatehouse/key-wrap/v1";

/// Standard alphabet, padding written on encode and optional on decode.
const MASTER_KEY_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// SHA-256 block size; HMAC keys are zero-padded to this length.
const HMAC_BLOCK: usize = 64;

/// 32 key bytes on the heap, zeroized on drop, never printed.
struct KeyBytes(SecretBox<[u8; KEY_LEN]>);

impl KeyBytes {
    fn init(fill: impl FnOnce(&mut [u8; KEY_LEN])) -> Self {
        Self(SecretBox::init_with_mut(fill))
    }

    fn random() -> Self {
        Self::init(|bytes| OsRng.fill_bytes(bytes))
    }

    fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }
}

/// Formats a key type as `Name([HIDDEN])`.
fn hidden(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    f.debug_tuple(name)
        .field(&format_args!("[HIDDEN]"))
        .finish()
}

/// HMAC-SHA-256 keyed with a block-sized key (`key_block`), over the
/// concatenation of `parts`, written into `out`.
///
/// HMAC zero-pads keys shorter than the hash block (RFC 2104 §2), so keying
/// with a zero-padded 64-byte block is identical to keying with the short key;
/// it lets us use the infallible fixed-size constructor.
fn hmac_sha256_into(key_block: &[u8; HMAC_BLOCK], parts: &[&[u8]], out: &mut [u8; 32]) {
    let mut mac = <Hmac<Sha256> as Mac>::new(key_block.into());
    for part in parts {
        mac.update(part);
    }
    out.copy_from_slice(&mac.finalize().into_bytes());
}

/// Zero-pads a short HMAC key to a full block.
fn key_block(key: &[u8; KEY_LEN]) -> Zeroizing<[u8; HMAC_BLOCK]> {
    let mut block = Zeroizing::new([0u8; HMAC_BLOCK]);
    block[..KEY_LEN].copy_from_slice(key);
    block
}

/// The HKDF salt as an HMAC key block, built at compile time.
const SALT_BLOCK: [u8; HMAC_BLOCK] = {
    let mut block = [0u8; HMAC_BLOCK];
    let mut i = 0;
    while i < HKDF_SALT.len() {
        block[i] = HKDF_SALT[i];
        i += 1;
    }
    block
};

/// The root secret of a Gatehouse deployment (32 bytes).
///
/// Everything else is derived from it ([`MasterKey::derive_key`]) or wrapped
/// under it ([`MasterKey::wrap`]). The bytes live on the heap, are zeroized on
/// drop, and `Debug` prints `MasterKey([HIDDEN])`.
pub struct MasterKey(KeyBytes);

impl MasterKey {
    /// Generates a fresh random master key from the operating system RNG.
    pub fn generate() -> Self {
        Self(KeyBytes::random())
    }

    /// Parses a master key from standard base64 (padding optional,
    /// surrounding whitespace ignored). It must decode to exactly 32 bytes.
    ///
    /// The error never contains the input.
    pub fn from_base64(encoded: &str) -> Result<Self, SecretsError> {
        let mut decoded = Zeroizing::new(Vec::new());
        MASTER_KEY_B64
            .decode_vec(encoded.trim(), &mut decoded)
            .map_err(|_| MasterKeyError::NotBase64)?;
        let bytes: &[u8; KEY_LEN] =
            decoded
                .as_slice()
                .try_into()
                .map_err(|_| MasterKeyError::WrongLength {
                    actual: decoded.len(),
                })?;
        Ok(Self(KeyBytes::init(|out| out.copy_from_slice(bytes))))
    }

    /// Encodes the key as padded standard base64 (44 characters), e.g. for a
    /// development setup to print it once.
    pub fn to_base64(&self) -> SecretString {
        // Exact capacity: converting to the boxed string inside
        // `SecretString` then does not reallocate (and leave a copy behind).
        let mut out = String::with_capacity(44);
        MASTER_KEY_B64.encode_string(self.0.expose(), &mut out);
        SecretString::from(out)
    }

    /// Derives an independent 32-byte key for `purpose` with HKDF-SHA-256
    /// (salt [`HKDF_SALT`], info = `purpose`).
    ///
    /// Use a distinct, versioned purpose string per use, e.g.
    /// `"gatehouse/bus-seal/v1"`.
    pub fn derive_key(&self, purpose: &str) -> DerivedKey {
        // HKDF with L = 32 = HashLen is a single block (RFC 5869 §2.3):
        //   PRK = HMAC(salt, IKM);  OKM = T(1) = HMAC(PRK, info || 0x01)
        // Computed directly so that no length error can arise; tests check
        // the result against the `hkdf` crate.
        let mut prk = Zeroizing::new([0u8; 32]);
        hmac_sha256_into(&SALT_BLOCK, &[self.0.expose()], &mut prk);
        let prk_block = key_block(&prk);
        DerivedKey(KeyBytes::init(|okm| {
            hmac_sha256_into(&prk_block, &[purpose.as_bytes(), &[1u8]], okm);
        }))
    }

    /// Encrypts `data_key` under a key-encryption key derived from this master
    /// key (purpose [`KEY_WRAP_PURPOSE`]), binding `aad` (for example the id
    /// of the object the data key protects).
    ///
    /// Fails only with [`SecretsError::TooLarge`] if `aad` exceeds 2^36 bytes.
    pub fn wrap(&self, data_key: &DataKey, aad: &[u8]) -> Result<WrappedKey, SecretsError> {
        let kek = self.derive_key(KEY_WRAP_PURPOSE);
        aead::seal(kek.expose(), data_key.0.expose(), aad).map(WrappedKey)
    }

    /// Recovers a data key wrapped by [`MasterKey::wrap`] with the same master
    /// key and `aad`.
    pub fn unwrap_key(&self, wrapped: &WrappedKey, aad: &[u8]) -> Result<DataKey, SecretsError> {
        let kek = self.derive_key(KEY_WRAP_PURPOSE);
        let plain = aead::open(kek.expose(), &wrapped.0, aad)?;
        let bytes: &[u8; KEY_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| SecretsError::Malformed)?;
        Ok(DataKey(KeyBytes::init(|out| out.copy_from_slice(bytes))))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hidden(f, "MasterKey")
    }
}

/// A 32-byte key derived from the master key for one purpose.
///
/// Zeroized on drop; `Debug` prints `DerivedKey([HIDDEN])`.
pub struct DerivedKey(KeyBytes);

impl DerivedKey {
    /// The raw key bytes, for use as a MAC or cipher key.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.expose()
    }

    /// Encrypts `plaintext` with AES-256-GCM, binding `aad`. See the crate
    /// docs for the ciphertext layout.
    ///
    /// Fails only with [`SecretsError::TooLarge`] (inputs over 2^36 bytes).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretsError> {
        aead::seal(self.0.expose(), plaintext, aad)
    }

    /// Decrypts a ciphertext produced by [`DerivedKey::seal`] with the same
    /// key and `aad`.
    pub fn open(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        aead::open(self.0.expose(), ciphertext, aad)
    }
}

impl fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hidden(f, "DerivedKey")
    }
}

/// A random 32-byte key protecting one object (envelope encryption).
///
/// Store it only wrapped ([`MasterKey::wrap`]). Zeroized on drop; `Debug`
/// prints `DataKey([HIDDEN])`.
pub struct DataKey(KeyBytes);

impl DataKey {
    /// Generates a fresh random data key.
    pub fn generate() -> Self {
        Self(KeyBytes::random())
    }

    /// Encrypts `plaintext` with AES-256-GCM, binding `aad`. See the crate
    /// docs for the ciphertext layout.
    ///
    /// Fails only with [`SecretsError::TooLarge`] (inputs over 2^36 bytes).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SecretsError> {
        aead::seal(self.0.expose(), plaintext, aad)
    }

    /// Decrypts a ciphertext produced by [`DataKey::seal`] with the same key
    /// and `aad`.
    pub fn open(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        aead::open(self.0.expose(), ciphertext, aad)
    }

    #[cfg(test)]
    pub(crate) fn expose_for_tests(&self) -> &[u8; KEY_LEN] {
        self.0.expose()
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hidden(f, "DataKey")
    }
}

/// A [`DataKey`] encrypted under the master key; safe to store next to the
/// data it protects.
///
/// Same layout as any ciphertext of this crate (61 bytes today). Serializes as
/// a standard base64 string.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(Vec<u8>);

impl WrappedKey {
    /// The stored bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Rebuilds a wrapped key from stored bytes. The bytes are validated when
    /// unwrapped, not here.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey({} bytes)", self.0.len())
    }
}

impl Serialize for WrappedKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for WrappedKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Self)
            .map_err(|_| serde::de::Error::custom("wrapped key is not valid standard base64"))
    }
}
