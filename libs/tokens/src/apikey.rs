//! API key format: `gatehouse_<key id>_<secret><checksum>`.

use std::fmt;

use rand_core::{OsRng, RngCore};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use subtle::ConstantTimeEq;
use thiserror::Error;
use uuid::Uuid;
use zeroize::Zeroizing;

/// Fixed prefix of every API key; secret scanners match on it.
pub const API_KEY_PREFIX: &str = "gatehouse_";
/// Length of an API key in characters (all ASCII).
pub const API_KEY_LEN: usize = PREFIX_LEN + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;

const PREFIX_LEN: usize = API_KEY_PREFIX.len();
/// Key id: 32 lowercase hex digits.
const ID_LEN: usize = 32;
/// Secret: 256 bits in base62 (62^43 > 2^256).
const SECRET_LEN: usize = 43;
/// Checksum: CRC-32 in base62 (62^6 > 2^32).
const CHECKSUM_LEN: usize = 6;
/// Offset of the API key's secret (after the `_` following the key id).
#[cfg(test)]
pub(crate) const SECRET_AT: usize = PREFIX_LEN + ID_LEN + 1;
#[cfg(test)]
pub(crate) const CHECKSUM_AT: usize = SECRET_AT + SECRET_LEN;

/// Base62 digits in ascending order.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is not a well-formed API key.
///
/// Every variant is detected locally, without a database lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum ApiKeyFormatError {
    /// The string does not start with `gatehouse_`.
    #[error("not a Gatehouse API key (missing `gatehouse_` prefix)")]
    WrongPrefix,
    /// The string is not 92 characters long.
    #[error("API key has the wrong length")]
    WrongLength,
    /// A character is not allowed at its position (or the secret segment does
    /// not encode a 256-bit value).
    #[error("API key contains an invalid character")]
    InvalidCharacter,
    /// The checksum does not match: the key was mistyped or truncated.
    #[error("API key checksum mismatch")]
    BadChecksum,
}

/// The 256-bit secret part of an API key.
///
/// Zeroized on drop; `Debug` prints `ApiKeySecret([HIDDEN])`. Equality is
/// constant-time.
pub struct ApiKeySecret(SecretBox<[u8; 32]>);

impl ApiKeySecret {
    fn random() -> Self {
        Self(SecretBox::init_with_mut(|bytes: &mut [u8; 32]| {
            OsRng.fill_bytes(bytes)
        }))
    }

    /// The raw secret bytes (crate-internal: hashing and encoding only).
    pub(crate) fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl PartialEq for ApiKeySecret {
    fn eq(&self, other: &Self) -> bool {
        self.expose().ct_eq(other.expose()).into()
    }
}

impl Eq for ApiKeySecret {}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ApiKeySecret")
            .field(&format_args!("[HIDDEN]"))
            .finish()
    }
}

/// A freshly generated API key: show `full` to the user once, store only the
/// key id and the hash of `secret` (see [`crate::ApiKeyHasher`]).
#[derive(Debug)]
pub struct GeneratedApiKey {
    /// The key id (the public part of the key).
    pub key_id: Uuid,
    /// The complete key string, `gatehouse_…`.
    pub full: SecretString,
    /// The secret part.
    pub secret: ApiKeySecret,
}

/// A syntactically valid API key whose checksum matched.
#[derive(Debug)]
pub struct ParsedApiKey {
    /// The key id, to look up the stored hash.
    pub key_id: Uuid,
    /// The secret part, to hash and compare.
    pub secret: ApiKeySecret,
}

/// A credential layout: `<prefix><id: 32 lowercase hex>_<secret: 43 base62><checksum: 6
/// base62 CRC-32 of everything before it>`. API keys use it with the prefix `gatehouse_`
/// ([`API_KEY_FORMAT`]); device codes (RFC 8628) with `gatehouse_dc_`
/// ([`DEVICE_CODE_FORMAT`]). The id names the record to check against, the checksum
/// catches mistyped and truncated strings before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialFormat {
    prefix: &'static str,
}

/// API keys.
pub const API_KEY_FORMAT: CredentialFormat = CredentialFormat {
    prefix: API_KEY_PREFIX,
};

/// Device codes of the device authorization grant.
pub const DEVICE_CODE_FORMAT: CredentialFormat = CredentialFormat {
    prefix: "gatehouse_dc_",
};

impl CredentialFormat {
    /// The fixed prefix.
    pub fn prefix(&self) -> &'static str {
        self.prefix
    }

    /// Length of a credential in characters (all ASCII).
    pub fn length(&self) -> usize {
        self.prefix.len() + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN
    }

    fn separator_at(&self) -> usize {
        self.prefix.len() + ID_LEN
    }

    fn checksum_at(&self) -> usize {
        self.separator_at() + 1 + SECRET_LEN
    }

    /// Generates a credential with id `id` and 256 random bits of secret.
    pub fn generate(&self, id: Uuid) -> GeneratedApiKey {
        let secret = ApiKeySecret::random();
        let mut full = Zeroizing::new(String::with_capacity(self.length()));
        full.push_str(self.prefix);
        full.push_str(id.simple().encode_lower(&mut Uuid::encode_buffer()));
        full.push('_');
        let mut digits = Zeroizing::new([0u8; SECRET_LEN]);
        encode_secret(secret.expose(), &mut digits);
        full.extend(digits.iter().map(|&d| char::from(d)));
        let mut checksum = [0u8; CHECKSUM_LEN];
        encode_checksum(crc32(full.as_bytes()), &mut checksum);
        full.extend(checksum.iter().map(|&d| char::from(d)));
        GeneratedApiKey {
            key_id: id,
            // Copy into an exactly sized box; `full` is zeroized on drop.
            full: SecretString::from(Box::<str>::from(full.as_str())),
            secret,
        }
    }

    /// Parses a credential, ignoring surrounding whitespace.
    ///
    /// Checks, in order: prefix, length, characters, checksum. A mistyped credential is
    /// therefore rejected without any lookup.
    pub fn parse(&self, key: &str) -> Result<ParsedApiKey, ApiKeyFormatError> {
        let key = key.trim().as_bytes();
        if !key.starts_with(self.prefix.as_bytes()) {
            return Err(ApiKeyFormatError::WrongPrefix);
        }
        if key.len() != self.length() {
            return Err(ApiKeyFormatError::WrongLength);
        }
        let (separator_at, checksum_at) = (self.separator_at(), self.checksum_at());
        let id = &key[self.prefix.len()..separator_at];
        if !id.iter().all(|&c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) || key[separator_at] != b'_'
        {
            return Err(ApiKeyFormatError::InvalidCharacter);
        }
        let mut secret_digits = Zeroizing::new([0u8; SECRET_LEN]);
        for (digit, &c) in secret_digits
            .iter_mut()
            .zip(&key[separator_at + 1..checksum_at])
        {
            *digit = base62_value(c).ok_or(ApiKeyFormatError::InvalidCharacter)?;
        }
        let mut checksum: u64 = 0;
        for &c in &key[checksum_at..] {
            let digit = base62_value(c).ok_or(ApiKeyFormatError::InvalidCharacter)?;
            checksum = checksum * 62 + u64::from(digit);
        }
        if checksum != u64::from(crc32(&key[..checksum_at])) {
            return Err(ApiKeyFormatError::BadChecksum);
        }
        let key_id = Uuid::try_parse_ascii(id).map_err(|_| ApiKeyFormatError::InvalidCharacter)?;
        let mut overflow = false;
        let secret = ApiKeySecret(SecretBox::init_with_mut(|bytes: &mut [u8; 32]| {
            overflow = !decode_secret(&secret_digits, bytes);
        }));
        if overflow {
            return Err(ApiKeyFormatError::InvalidCharacter);
        }
        Ok(ParsedApiKey { key_id, secret })
    }
}

/// Generates a new API key with id `key_id` and 256 random bits of secret.
pub fn generate_api_key(key_id: Uuid) -> GeneratedApiKey {
    API_KEY_FORMAT.generate(key_id)
}

/// Parses an API key, ignoring surrounding whitespace.
///
/// Checks, in order: prefix, length, characters, checksum. A mistyped key is
/// therefore rejected without any lookup.
pub fn parse_api_key(key: &str) -> Result<ParsedApiKey, ApiKeyFormatError> {
    API_KEY_FORMAT.parse(key)
}

/// Value of a base62 digit.
pub(crate) fn base62_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'Z' => Some(c - b'A' + 10),
        b'a'..=b'z' => Some(c - b'a' + 36),
        _ => None,
    }
}

/// Writes the 32 bytes (a big-endian 256-bit number) as exactly 43 base62
/// digits, most significant first, left-padded with `'0'`.
pub(crate) fn encode_secret(bytes: &[u8; 32], out: &mut [u8; SECRET_LEN]) {
    // Eight big-endian 32-bit limbs, divided by 62 once per output digit.
    let mut limbs = Zeroizing::new([0u32; 8]);
    for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(4)) {
        *limb = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    for digit in out.iter_mut().rev() {
        let mut remainder: u64 = 0;
        for limb in limbs.iter_mut() {
            let acc = (remainder << 32) | u64::from(*limb);
            *limb = (acc / 62) as u32;
            remainder = acc % 62;
        }
        *digit = BASE62[remainder as usize];
    }
}

/// Inverse of [`encode_secret`], from digit values (0–61). Returns `false` if
/// the digits encode a number of 2^256 or more.
pub(crate) fn decode_secret(digits: &[u8; SECRET_LEN], out: &mut [u8; 32]) -> bool {
    let mut limbs = Zeroizing::new([0u32; 8]);
    for &digit in digits {
        let mut carry = u64::from(digit);
        for limb in limbs.iter_mut().rev() {
            let acc = u64::from(*limb) * 62 + carry;
            *limb = acc as u32;
            carry = acc >> 32;
        }
        if carry != 0 {
            return false;
        }
    }
    for (chunk, limb) in out.chunks_exact_mut(4).zip(limbs.iter()) {
        chunk.copy_from_slice(&limb.to_be_bytes());
    }
    true
}

/// Writes a CRC-32 as exactly 6 base62 digits, left-padded with `'0'`.
fn encode_checksum(mut crc: u32, out: &mut [u8; CHECKSUM_LEN]) {
    for digit in out.iter_mut().rev() {
        *digit = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
}

/// CRC-32 (IEEE 802.3: reflected polynomial 0xEDB88320, init and final XOR
/// 0xFFFFFFFF), table-driven.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc = (crc >> 8) ^ TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize];
    }
    !crc
}
