//! Gatehouse credentials: Ed25519 access tokens and API keys.
//!
//! # Access tokens
//!
//! Access tokens are JWS compact serializations (RFC 7515) signed with Ed25519
//! (RFC 8037) and following the JWT access token profile (RFC 9068). The
//! header is always `{"alg":"EdDSA","typ":"at+jwt","kid":"…"}`; the claims are
//! [`AccessTokenClaims`]. `alg` `EdDSA` is what every JOSE library accepts
//! today; [`Verifier`] also accepts the fully-specified `Ed25519` (RFC 9864)
//! and rejects every other algorithm (`none`, `HS256`, …) before touching any
//! key, which rules out algorithm-confusion attacks.
//!
//! A key id (`kid`) is the first 16 characters of base64url(SHA-256(public
//! key)). [`SigningKey::jwk`] gives the public key as a JWK for the JWKS
//! endpoint ([`Jwks`]). Verification is strict Ed25519 (no small-order keys, no
//! malleable signatures) over the exact ASCII `header.payload`, then `iss`,
//! `aud`, `exp`, `nbf` and `iat` are checked with a 30-second default leeway.
//! The crate has no clock: callers pass the current Unix time in.
//!
//! # API keys
//!
//! ```text
//! gatehouse_<key id: 32 lowercase hex>_<secret: 43 base62><checksum: 6 base62>
//! ```
//!
//! The fixed prefix lets secret scanners find leaked keys. The secret is 256
//! random bits written as a big-endian number in base62 (digits `0-9A-Za-z`,
//! left-padded to 43 characters). The checksum is the CRC-32 (IEEE) of
//! everything before it, in base62 padded to 6 characters, so typos and
//! truncation are caught by [`parse_api_key`] without a database lookup. A key
//! is 92 ASCII characters.
//!
//! Only a keyed hash of the secret is stored: [`ApiKeyHasher`] computes
//! HMAC-SHA-256 with a server-side pepper over `key id || secret`, and compares
//! in constant time.
//!
//! # Secrets hygiene
//!
//! Every type holding key material ([`SigningKey`], [`ApiKeySecret`],
//! [`ApiKeyHasher`]) zeroizes it on drop and prints `[HIDDEN]` from `Debug`.
//! Errors are typed enums that never include token or key content.

mod apikey;
mod claims;
mod device_code;
mod hash;
mod jws;
mod sealed_keys;

#[cfg(test)]
mod tests;

pub use apikey::{
    API_KEY_FORMAT, API_KEY_LEN, API_KEY_PREFIX, ApiKeyFormatError, ApiKeySecret, CredentialFormat,
    DEVICE_CODE_FORMAT, GeneratedApiKey, ParsedApiKey, generate_api_key, parse_api_key,
};
pub use claims::{AccessTokenClaims, PrincipalKind, SessionSource};
pub use device_code::DeviceCodes;
pub use hash::{ApiKeyHash, ApiKeyHasher, InvalidApiKeyHash};
pub use jws::{
    DEFAULT_LEEWAY_SECS, FULLY_SPECIFIED_ALG, Jwk, JwkError, Jwks, MAX_TOKEN_LEN, SIGNING_ALG,
    SigningKey, TOKEN_TYPE, TokenError, VerificationKey, Verifier, sign,
};
pub use sealed_keys::{SigningKeySeal, UnsealError};
