//! Ed25519 JWS compact access tokens (RFC 7515, RFC 8037, RFC 9068).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use rand_core::{OsRng, RngCore};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use crate::AccessTokenClaims;

/// The `typ` header written into access tokens (RFC 9068 §2.1).
pub const TOKEN_TYPE: &str = "at+jwt";
/// The `alg` header written when signing (RFC 8037).
pub const SIGNING_ALG: &str = "EdDSA";
/// The fully-specified algorithm name (RFC 9864), accepted when verifying.
pub const FULLY_SPECIFIED_ALG: &str = "Ed25519";
/// Longest token [`Verifier::verify`] accepts, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Default clock-skew leeway of a [`Verifier`], in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// Length of a key id (see [`SigningKey::generate`]).
const KID_LEN: usize = 16;
/// Base64url length of a 64-byte Ed25519 signature.
const SIGNATURE_B64_LEN: usize = 86;
/// Largest encoded header accepted; ours is about 90 characters.
const MAX_HEADER_B64_LEN: usize = 1024;
const MAX_HEADER_LEN: usize = MAX_HEADER_B64_LEN / 4 * 3;

/// Why a token was rejected by [`Verifier::verify`].
///
/// The variants carry no token content, so they are safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum TokenError {
    /// Not a well-formed JWS compact token with our claims: wrong number of
    /// segments, too long, bad base64url, bad JSON, missing claims, or an
    /// unsupported `crit` header.
    #[error("malformed token")]
    Malformed,
    /// The `alg` header is not `EdDSA` or `Ed25519` (e.g. `none`, `HS256`).
    #[error("unsupported signature algorithm")]
    UnsupportedAlgorithm,
    /// The `typ` header is missing or is not `at+jwt`.
    #[error("wrong token type")]
    WrongType,
    /// The `kid` header is missing or names no trusted key.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify under the key named by `kid`.
    #[error("bad signature")]
    BadSignature,
    /// The token's `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// The token's `nbf` or `iat` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The `iss` claim is not the expected issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// The `aud` claim is not the expected audience.
    #[error("wrong audience")]
    WrongAudience,
}

/// Why a [`Jwk`] or raw public key was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum JwkError {
    /// `kty` is not `OKP` or `crv` is not `Ed25519`.
    #[error("unsupported key type (expected kty OKP, crv Ed25519)")]
    UnsupportedKeyType,
    /// `alg` is present and is not `EdDSA` or `Ed25519`.
    #[error("unsupported key algorithm")]
    UnsupportedAlgorithm,
    /// `use` is present and is not `sig`.
    #[error("key is not a signature key")]
    WrongUse,
    /// `x` is not 32 bytes of base64url, or not a valid (non-weak) Ed25519 point.
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
}

/// Computes the key id of a public key: the first 16 characters of
/// base64url(SHA-256(public key bytes)).
fn kid_for(public: &ed25519_dalek::VerifyingKey) -> String {
    let digest = Sha256::digest(public.as_bytes());
    let mut kid = URL_SAFE_NO_PAD.encode(digest);
    kid.truncate(KID_LEN);
    kid
}

/// An Ed25519 private key with its key id, used to sign access tokens.
///
/// The key is zeroized on drop (every clone too); `Debug` shows the `kid`
/// but prints `[HIDDEN]` for the key.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    key: Box<ed25519_dalek::SigningKey>,
    /// base64url of the constant header `{"alg":"EdDSA","typ":"at+jwt","kid":…}`.
    header_b64: String,
}

impl SigningKey {
    /// Generates a fresh key from the operating system RNG. The `kid` is the
    /// first 16 characters of base64url(SHA-256(public key)).
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// Rebuilds a key from its 32-byte seed (RFC 8032 private key), e.g. after
    /// unsealing it. The `kid` is derived as for [`SigningKey::generate`].
    pub fn from_seed(mut seed: [u8; 32]) -> Self {
        let key = Box::new(ed25519_dalek::SigningKey::from_bytes(&seed));
        seed.zeroize();
        let kid = kid_for(&key.verifying_key());
        // `kid` is base64url, so it needs no JSON escaping.
        let header = format!(r#"{{"alg":"{SIGNING_ALG}","typ":"{TOKEN_TYPE}","kid":"{kid}"}}"#);
        let header_b64 = URL_SAFE_NO_PAD.encode(header);
        Self {
            kid,
            key,
            header_b64,
        }
    }

    /// The 32-byte seed, so that the caller can seal it for storage.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The key id written into the `kid` header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, for a [`Verifier`].
    pub fn verifying_key(&self) -> VerificationKey {
        VerificationKey {
            kid: self.kid.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// The public half as a JWK, for publishing in a JWKS.
    pub fn jwk(&self) -> Jwk {
        self.verifying_key().to_jwk()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("key", &format_args!("[HIDDEN]"))
            .finish()
    }
}

/// An Ed25519 public key with its key id, trusted by a [`Verifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationKey {
    kid: String,
    key: ed25519_dalek::VerifyingKey,
}

impl VerificationKey {
    /// Builds a verification key from a key id and the 32 public key bytes.
    /// Rejects invalid and weak (small-order) points.
    pub fn from_bytes(kid: impl Into<String>, public_key: &[u8; 32]) -> Result<Self, JwkError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
            .map_err(|_| JwkError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(JwkError::InvalidPublicKey);
        }
        Ok(Self {
            kid: kid.into(),
            key,
        })
    }

    /// The key id matched against the token's `kid` header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The 32 public key bytes.
    pub fn public_key_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// This key as a JWK (`kty` `OKP`, `crv` `Ed25519`, `alg` `EdDSA`, `use` `sig`).
    pub fn to_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: URL_SAFE_NO_PAD.encode(self.key.as_bytes()),
            kid: self.kid.clone(),
            alg: Some(SIGNING_ALG.to_owned()),
            key_use: Some("sig".to_owned()),
        }
    }
}

/// A public JSON Web Key for Ed25519 (RFC 8037 §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type; `"OKP"`.
    pub kty: String,
    /// Curve; `"Ed25519"`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// Key id.
    pub kid: String,
    /// Algorithm; `"EdDSA"` when we publish it, optional when reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Public key use; `"sig"` when we publish it, optional when reading.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
}

impl Jwk {
    /// Converts to a [`VerificationKey`], rejecting keys that are not Ed25519
    /// signature keys.
    pub fn to_verification_key(&self) -> Result<VerificationKey, JwkError> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(JwkError::UnsupportedKeyType);
        }
        if let Some(alg) = &self.alg
            && alg != SIGNING_ALG
            && alg != FULLY_SPECIFIED_ALG
        {
            return Err(JwkError::UnsupportedAlgorithm);
        }
        if self.key_use.as_deref().is_some_and(|u| u != "sig") {
            return Err(JwkError::WrongUse);
        }
        let mut bytes = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(&self.x, &mut bytes) {
            Ok(32) => VerificationKey::from_bytes(self.kid.clone(), &bytes),
            _ => Err(JwkError::InvalidPublicKey),
        }
    }
}

/// A JSON Web Key Set (RFC 7517 §5), as published at the JWKS endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// Signs `claims` as a JWS compact token with header
/// `{"alg":"EdDSA","typ":"at+jwt","kid":<key id>}`.
pub fn sign(claims: &AccessTokenClaims, key: &SigningKey) -> String {
    sign_encoded_header(&key.header_b64, &claims.to_json(), &key.key)
}

/// Signs an arbitrary header and payload (both given as the exact JSON bytes
/// to encode). Used to reproduce RFC 8037 vectors and to craft test tokens.
#[cfg(test)]
pub(crate) fn sign_compact_raw(header_json: &[u8], payload: &[u8], key: &SigningKey) -> String {
    sign_encoded_header(&URL_SAFE_NO_PAD.encode(header_json), payload, &key.key)
}

fn sign_encoded_header(
    header_b64: &str,
    payload: &[u8],
    key: &ed25519_dalek::SigningKey,
) -> String {
    let payload_len = base64::encoded_len(payload.len(), false).unwrap_or(0);
    let mut token = String::with_capacity(header_b64.len() + payload_len + 2 + SIGNATURE_B64_LEN);
    token.push_str(header_b64);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
    token
}

/// The JOSE header fields we look at. Unknown fields are ignored; duplicate
/// fields make the header malformed.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// Verifies access tokens against a fixed issuer, audience and key set.
///
/// Build one at startup (or on key rotation) and share it; [`Verifier::verify`]
/// takes `&self` and does not allocate except for the decoded payload and the
/// returned claims.
#[derive(Debug, Clone)]
pub struct Verifier {
    issuer: String,
    audience: String,
    keys: Vec<VerificationKey>,
    leeway_secs: i64,
}

impl Verifier {
    /// Trusts `keys` for tokens issued by `issuer` for `audience`. If several
    /// keys share a key id, the first one is used. The leeway defaults to
    /// [`DEFAULT_LEEWAY_SECS`].
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        keys: impl IntoIterator<Item = VerificationKey>,
    ) -> Self {
        let mut unique: Vec<VerificationKey> = Vec::new();
        for key in keys {
            if !unique.iter().any(|k| k.kid == key.kid) {
                unique.push(key);
            }
        }
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            keys: unique,
            leeway_secs: DEFAULT_LEEWAY_SECS as i64,
        }
    }

    /// Sets the clock-skew leeway applied to `exp`, `nbf` and `iat`
    /// (whole seconds; saturates at `i64::MAX`).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway_secs = i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// Verifies `token` at time `now_unix` (seconds since the Unix epoch) and
    /// returns its claims.
    ///
    /// Checks, in order: size and structure, the `alg` header (`EdDSA` or
    /// `Ed25519`), the `typ` header (`at+jwt` or `application/at+jwt`, any
    /// case), the `kid`, the signature (strict Ed25519 verification over the
    /// ASCII `header.payload`), then `iss`, `aud`, `exp`, `nbf` and `iat`.
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<AccessTokenClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];

        // Header: decoded on the stack, checked before any cryptography.
        if header_b64.len() > MAX_HEADER_B64_LEN {
            return Err(TokenError::Malformed);
        }
        let mut header_buf = [0u8; MAX_HEADER_LEN];
        let header_len = URL_SAFE_NO_PAD
            .decode_slice(header_b64, &mut header_buf)
            .map_err(|_| TokenError::Malformed)?;
        let header: Header<'_> =
            serde_json::from_slice(&header_buf[..header_len]).map_err(|_| TokenError::Malformed)?;
        if header.alg != SIGNING_ALG && header.alg != FULLY_SPECIFIED_ALG {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        match header.typ.as_deref() {
            Some(typ)
                if typ.eq_ignore_ascii_case(TOKEN_TYPE)
                    || typ.eq_ignore_ascii_case("application/at+jwt") => {}
            _ => return Err(TokenError::WrongType),
        }
        if header.crit.is_some() {
            // We understand no extension header, so any `crit` must be refused
            // (RFC 7515 §4.1.11).
            return Err(TokenError::Malformed);
        }
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::UnknownKey)?;

        // Signature and payload encodings are checked before the signature.
        if signature_b64.len() != SIGNATURE_B64_LEN {
            return Err(TokenError::Malformed);
        }
        let mut signature = [0u8; 64];
        match URL_SAFE_NO_PAD.decode_slice(signature_b64, &mut signature) {
            Ok(64) => {}
            _ => return Err(TokenError::Malformed),
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| TokenError::Malformed)?;

        key.key
            .verify_strict(
                signing_input,
                &ed25519_dalek::Signature::from_bytes(&signature),
            )
            .map_err(|_| TokenError::BadSignature)?;

        let claims: AccessTokenClaims =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.aud != self.audience {
            return Err(TokenError::WrongAudience);
        }
        if now_unix.saturating_sub(self.leeway_secs) >= claims.exp {
            return Err(TokenError::Expired);
        }
        let latest_acceptable = now_unix.saturating_add(self.leeway_secs);
        if claims.nbf > latest_acceptable || claims.iat > latest_acceptable {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}
