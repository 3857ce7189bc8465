//! Access tokens: JWS compact serialization signed with Ed25519 (RFC 8037, RFC 9864),
//! `typ` `at+jwt` with the claims of RFC 9068 plus Gatehouse's own, and the JWK set that
//! lets any JOSE library verify them offline.
//!
//! Signing and verification are done by hand with `ed25519-dalek`: the format is three
//! base64url segments, and doing it directly keeps the per-request path free of
//! allocations a general JOSE library would make. Verification refuses every algorithm but
//! Ed25519 (`EdDSA` or the fully specified `Ed25519`) before touching any key, so `none`
//! and HMAC confusion attacks cannot happen.
//!
//! The crate has no clock: callers pass `now`.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The largest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Default clock-skew allowance, in seconds.
pub const DEFAULT_LEEWAY: i64 = 30;

/// Who a token speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A non-interactive principal.
    ServiceAccount,
}

/// How the session behind a token was authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum SessionSource {
    /// Username and password.
    Password,
    /// An API key; `generation` counts the key's rotations.
    ApiKey {
        /// The key's id.
        id: uuid::Uuid,
        /// Which secret of the key (0 = original, +1 per rotation).
        generation: u32,
    },
    /// An authorized device (OAuth device flow).
    Device {
        /// The device's id.
        id: uuid::Uuid,
    },
}

/// The claims of a Gatehouse access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer (the gateway's public URL).
    pub iss: String,
    /// The principal's id.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before (Unix seconds).
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
    /// The OAuth client that obtained it.
    pub client_id: String,
    /// Granted scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// User or service account.
    #[serde(rename = "gh_kind")]
    pub principal_kind: PrincipalKind,
    /// How the session was authenticated.
    #[serde(rename = "gh_src")]
    pub source: SessionSource,
    /// The principal's epoch at issuance; a later revocation raises it.
    #[serde(rename = "gh_ep", default)]
    pub principal_epoch: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url segments of JSON, or too large.
    #[error("malformed token")]
    Malformed,
    /// `alg` is not Ed25519.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// `typ` is not `at+jwt`.
    #[error("not an access token")]
    WrongType,
    /// No key with this `kid`.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Past `exp`.
    #[error("expired")]
    Expired,
    /// Before `nbf` or `iat`.
    #[error("not yet valid")]
    NotYetValid,
    /// Another issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// Another audience.
    #[error("wrong audience")]
    WrongAudience,
}

/// A public key as a JWK (RFC 8037 OKP).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    /// Key id.
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

impl Jwk {
    /// The verification key it describes.
    pub fn to_verification_key(&self) -> Result<VerificationKey, TokenError> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let bytes: [u8; 32] = B64.decode(&self.x).map_err(|_| TokenError::Malformed)?.try_into().map_err(|_| TokenError::Malformed)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| TokenError::Malformed)?;
        Ok(VerificationKey { kid: self.kid.clone(), key })
    }
}

/// A JWK set (RFC 7517), as published at `/.well-known/jwks.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

fn kid_of(public: &VerifyingKey) -> String {
    let digest = Sha256::digest(public.as_bytes());
    B64.encode(digest)[..16].to_owned()
}

/// An Ed25519 signing key with its key id.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, [HIDDEN])", self.kid)
    }
}

impl SigningKey {
    /// A new random key; its kid is derived from the public key.
    pub fn generate() -> Self {
        Self::from_seed(rand::random())
    }

    /// The key with this 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        Self { kid: kid_of(&key.verifying_key()), key }
    }

    /// The seed, to be sealed for storage.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerificationKey {
        VerificationKey { kid: self.kid.clone(), key: self.key.verifying_key() }
    }

    /// The public half as a JWK.
    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: B64.encode(self.key.verifying_key().as_bytes()),
            kid: self.kid.clone(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
        }
    }
}

/// A public key with its key id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerificationKey {
    /// Key id.
    pub kid: String,
    /// The key.
    pub key: VerifyingKey,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

#[derive(Deserialize)]
struct ParsedHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// Signs `payload` under `protected_header` (both raw JSON bytes): the compact JWS.
fn sign_raw(header: &[u8], payload: &[u8], key: &ed25519_dalek::SigningKey) -> String {
    let mut out = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 100);
    out.push_str(&B64.encode(header));
    out.push('.');
    out.push_str(&B64.encode(payload));
    let signature = key.sign(out.as_bytes());
    out.push('.');
    out.push_str(&B64.encode(signature.to_bytes()));
    out
}

/// Signs an access token (`alg` `EdDSA`, `typ` `at+jwt`, `kid`).
pub fn sign(claims: &AccessTokenClaims, key: &SigningKey) -> String {
    let header = serde_json::to_vec(&Header { alg: "EdDSA", typ: "at+jwt", kid: &key.kid }).unwrap_or_default();
    // These claims are plain strings and numbers: serializing them cannot fail.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    sign_raw(&header, &payload, &key.key)
}

/// Verifies access tokens against a set of keys, an issuer and an audience.
#[derive(Clone, Debug)]
pub struct Verifier {
    issuer: String,
    audience: String,
    keys: HashMap<String, VerifyingKey>,
    leeway: i64,
}

impl Verifier {
    /// A verifier trusting `keys`.
    pub fn new(issuer: &str, audience: &str, keys: impl IntoIterator<Item = VerificationKey>) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys: keys.into_iter().map(|k| (k.kid, k.key)).collect(),
            leeway: DEFAULT_LEEWAY,
        }
    }

    /// With another clock-skew allowance (seconds).
    pub fn with_leeway(mut self, seconds: i64) -> Self {
        self.leeway = seconds;
        self
    }

    /// Verifies `token` at Unix time `now` and returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<AccessTokenClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let header: ParsedHeader = serde_json::from_slice(&B64.decode(h).map_err(|_| TokenError::Malformed)?).map_err(|_| TokenError::Malformed)?;
        if header.alg != "EdDSA" && header.alg != "Ed25519" {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt"));
        if !typ_ok {
            return Err(TokenError::WrongType);
        }
        let key = header.kid.as_deref().and_then(|kid| self.keys.get(kid)).ok_or(TokenError::UnknownKey)?;
        let mut signature = [0u8; 64];
        let decoded = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        if decoded.len() != 64 {
            return Err(TokenError::Malformed);
        }
        signature.copy_from_slice(&decoded);
        let signing_input = &token[..h.len() + 1 + p.len()];
        key.verify_strict(signing_input.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| TokenError::BadSignature)?;
        let claims: AccessTokenClaims = serde_json::from_slice(&B64.decode(p).map_err(|_| TokenError::Malformed)?).map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.aud != self.audience {
            return Err(TokenError::WrongAudience);
        }
        if now >= claims.exp + self.leeway {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + self.leeway || claims.iat > now + self.leeway {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://gatehouse.test".into(),
            sub: uuid::Uuid::new_v4().to_string(),
            aud: "gatehouse".into(),
            exp: NOW + 3600,
            iat: NOW,
            nbf: NOW,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: "cli".into(),
            scope: None,
            principal_kind: PrincipalKind::User,
            source: SessionSource::ApiKey { id: uuid::Uuid::new_v4(), generation: 2 },
            principal_epoch: 3,
        }
    }

    fn verifier(key: &SigningKey) -> Verifier {
        Verifier::new("https://gatehouse.test", "gatehouse", [key.verifying_key()])
    }

    fn forge(header: &str, payload: &AccessTokenClaims, key: &SigningKey) -> String {
        sign_raw(header.as_bytes(), &serde_json::to_vec(payload).unwrap(), &key.key)
    }

    #[test]
    fn a_signed_token_verifies_to_its_claims() {
        let key = SigningKey::generate();
        let c = claims();
        assert_eq!(verifier(&key).verify(&sign(&c, &key), NOW), Ok(c));
    }

    #[test]
    fn the_fully_specified_ed25519_alg_verifies_too() {
        let key = SigningKey::generate();
        let header = format!(r#"{{"alg":"Ed25519","typ":"at+jwt","kid":"{}"}}"#, key.kid());
        assert!(verifier(&key).verify(&forge(&header, &claims(), &key), NOW).is_ok());
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let key = SigningKey::generate();
        let v = verifier(&key);
        let kid = key.kid().to_owned();
        let good = sign(&claims(), &key);
        let parts: Vec<&str> = good.split('.').collect();

        let none = format!("{}.{}.", B64.encode(br#"{"alg":"none","typ":"at+jwt"}"#), parts[1]);
        assert_eq!(v.verify(&none, NOW), Err(TokenError::UnsupportedAlgorithm));
        let hs = forge(&format!(r#"{{"alg":"HS256","typ":"at+jwt","kid":"{kid}"}}"#), &claims(), &key);
        assert_eq!(v.verify(&hs, NOW), Err(TokenError::UnsupportedAlgorithm));
        let jwt = forge(&format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#), &claims(), &key);
        assert_eq!(v.verify(&jwt, NOW), Err(TokenError::WrongType));
        let unknown = forge(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"nope"}"#, &claims(), &key);
        assert_eq!(v.verify(&unknown, NOW), Err(TokenError::UnknownKey));

        let mut other = claims();
        other.sub = "someone-else".into();
        let tampered = format!("{}.{}.{}", parts[0], B64.encode(serde_json::to_vec(&other).unwrap()), parts[2]);
        assert_eq!(v.verify(&tampered, NOW), Err(TokenError::BadSignature));
        let mut sig = B64.decode(parts[2]).unwrap();
        sig[0] ^= 1;
        assert_eq!(v.verify(&format!("{}.{}.{}", parts[0], parts[1], B64.encode(sig)), NOW), Err(TokenError::BadSignature));
        // Another key claiming our kid.
        let impostor = SigningKey::generate();
        let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}"}}"#);
        assert_eq!(v.verify(&forge(&header, &claims(), &impostor), NOW), Err(TokenError::BadSignature));

        assert_eq!(v.verify(&good, NOW + 3600 + DEFAULT_LEEWAY), Err(TokenError::Expired));
        assert!(v.verify(&good, NOW + 3600 + DEFAULT_LEEWAY - 1).is_ok());
        assert_eq!(v.verify(&good, NOW - DEFAULT_LEEWAY - 1), Err(TokenError::NotYetValid));
        assert_eq!(Verifier::new("https://other", "gatehouse", [key.verifying_key()]).verify(&good, NOW), Err(TokenError::WrongIssuer));
        assert_eq!(Verifier::new("https://gatehouse.test", "other", [key.verifying_key()]).verify(&good, NOW), Err(TokenError::WrongAudience));

        for malformed in ["", "a.b", "a.b.c.d", "!!!.###.$$$", &good[..good.len() - 3]] {
            assert!(matches!(v.verify(malformed, NOW), Err(TokenError::Malformed | TokenError::BadSignature)), "{malformed}");
        }
        assert_eq!(v.verify(&"a".repeat(MAX_TOKEN_LEN + 1), NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn rfc_8037_test_vectors() {
        // RFC 8037 Appendix A.1–A.4.
        let d: [u8; 32] = B64.decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap().try_into().unwrap();
        let key = SigningKey::from_seed(d);
        assert_eq!(key.jwk().x, "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        let jws = sign_raw(br#"{"alg":"EdDSA"}"#, b"Example of Ed25519 signing", &key.key);
        assert_eq!(
            jws,
            "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
    }

    #[test]
    fn jwks_round_trip_and_debug_hides_the_seed() {
        let key = SigningKey::generate();
        let jwk = key.jwk();
        assert_eq!(jwk.to_verification_key().unwrap(), key.verifying_key());
        let json = serde_json::to_value(Jwks { keys: vec![jwk] }).unwrap();
        assert_eq!(json["keys"][0]["use"], "sig");
        let seed = B64.encode(*key.seed());
        assert!(!format!("{key:?}").contains(&seed));
    }
}
