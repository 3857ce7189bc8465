use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::jws::sign_compact_raw;
use crate::*;

const ISS: &str = "https://gatehouse.example";
const AUD: &str = "ml-platform";
const NOW: i64 = 1_750_000_000;

fn claims() -> AccessTokenClaims {
    AccessTokenClaims {
        iss: ISS.to_owned(),
        sub: Uuid::new_v4().to_string(),
        aud: AUD.to_owned(),
        exp: NOW + 300,
        iat: NOW,
        nbf: NOW,
        jti: Uuid::new_v4().to_string(),
        client_id: "cli".to_owned(),
        scope: Some("models:read runs:write".to_owned()),
        principal_kind: PrincipalKind::User,
        source: SessionSource::ApiKey {
            id: Uuid::new_v4(),
            generation: 3,
            epoch: 1,
        },
        principal_epoch: 7,
    }
}

fn verifier(key: &SigningKey) -> Verifier {
    Verifier::new(ISS, AUD, [key.verifying_key()])
}

fn header(alg: &str, typ: Option<&str>, kid: Option<&str>) -> String {
    let mut fields = vec![format!(r#""alg":"{alg}""#)];
    if let Some(typ) = typ {
        fields.push(format!(r#""typ":"{typ}""#));
    }
    if let Some(kid) = kid {
        fields.push(format!(r#""kid":"{kid}""#));
    }
    format!("{{{}}}", fields.join(","))
}

/// Signs `claims` under an arbitrary header with `key`.
fn craft(header: &str, claims: &AccessTokenClaims, key: &SigningKey) -> String {
    let payload = serde_json::to_vec(claims).expect("claims serialize");
    sign_compact_raw(header.as_bytes(), &payload, key)
}

fn verify_with(key: &SigningKey, token: &str) -> Result<AccessTokenClaims, TokenError> {
    verifier(key).verify(token, NOW)
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_owned).collect()
}

// ------------------------------------------------------------------ happy path

#[test]
fn sign_verify_round_trip() {
    let key = SigningKey::generate();
    let claims = claims();
    let token = sign(&claims, &key);
    assert_eq!(token.split('.').count(), 3);
    assert_eq!(verify_with(&key, &token), Ok(claims));
}

#[test]
fn header_is_exactly_the_documented_one() {
    let key = SigningKey::generate();
    let token = sign(&claims(), &key);
    let header = URL_SAFE_NO_PAD.decode(&segments(&token)[0]).expect("b64");
    assert_eq!(
        String::from_utf8(header).expect("utf8"),
        format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{}"}}"#, key.kid())
    );
}

#[test]
fn fully_specified_ed25519_alg_verifies() {
    let key = SigningKey::generate();
    let claims = claims();
    let token = craft(
        &header("Ed25519", Some("at+jwt"), Some(key.kid())),
        &claims,
        &key,
    );
    assert_eq!(verify_with(&key, &token), Ok(claims));
}

#[test]
fn typ_variants_are_accepted() {
    let key = SigningKey::generate();
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/AT+JWT",
    ] {
        let token = craft(
            &header("EdDSA", Some(typ), Some(key.kid())),
            &claims(),
            &key,
        );
        assert!(verify_with(&key, &token).is_ok(), "{typ}");
    }
}

#[test]
fn rotation_with_several_keys() {
    let old = SigningKey::generate();
    let new = SigningKey::generate();
    let verifier = Verifier::new(ISS, AUD, [old.verifying_key(), new.verifying_key()]);
    for key in [&old, &new] {
        let token = sign(&claims(), key);
        assert!(verifier.verify(&token, NOW).is_ok());
    }
}

#[test]
fn claims_serialize_to_the_documented_shape() {
    let id = Uuid::new_v4();
    let mut claims = claims();
    claims.scope = None;
    claims.principal_kind = PrincipalKind::ServiceAccount;
    claims.source = SessionSource::ApiKey {
        id,
        generation: 2,
        epoch: 4,
    };
    let json = serde_json::to_value(&claims).expect("json");
    assert_eq!(json["gh_kind"], "service_account");
    assert_eq!(
        json["gh_src"],
        serde_json::json!({"method": "api_key", "id": id.to_string(), "generation": 2, "epoch": 4})
    );
    assert_eq!(json["gh_ep"], 7);
    assert!(json.get("scope").is_none());

    for (source, expected) in [
        (
            SessionSource::Password,
            serde_json::json!({"method": "password"}),
        ),
        (
            SessionSource::Device {
                id: gatehouse_contracts::DeviceId::from_uuid(id),
            },
            serde_json::json!({"method": "device", "id": id.to_string()}),
        ),
    ] {
        assert_eq!(serde_json::to_value(source).expect("json"), expected);
    }

    // gh_ep defaults to 0 when absent.
    let mut json = json;
    json.as_object_mut().expect("object").remove("gh_ep");
    let back: AccessTokenClaims = serde_json::from_value(json).expect("parses");
    assert_eq!(back.principal_epoch, 0);
}

// ------------------------------------------------------------- header attacks

#[test]
fn alg_none_is_rejected() {
    let key = SigningKey::generate();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).expect("json"));
    for alg in ["none", "None", "NONE"] {
        let h = URL_SAFE_NO_PAD.encode(header(alg, Some("at+jwt"), Some(key.kid())));
        for token in [format!("{h}.{payload}."), format!("{h}.{payload}.AAAA")] {
            assert_eq!(
                verify_with(&key, &token),
                Err(TokenError::UnsupportedAlgorithm)
            );
        }
    }
}

#[test]
fn hs256_with_public_key_as_secret_is_rejected() {
    let key = SigningKey::generate();
    let h = URL_SAFE_NO_PAD.encode(header("HS256", Some("at+jwt"), Some(key.kid())));
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).expect("json"));
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.verifying_key().public_key_bytes()).expect("hmac");
    mac.update(format!("{h}.{p}").as_bytes());
    let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    assert_eq!(
        verify_with(&key, &format!("{h}.{p}.{s}")),
        Err(TokenError::UnsupportedAlgorithm)
    );
}

#[test]
fn other_algorithms_are_rejected() {
    let key = SigningKey::generate();
    for alg in ["RS256", "ES256", "eddsa", "ED25519", "Ed448", ""] {
        let token = craft(
            &header(alg, Some("at+jwt"), Some(key.kid())),
            &claims(),
            &key,
        );
        assert_eq!(
            verify_with(&key, &token),
            Err(TokenError::UnsupportedAlgorithm),
            "{alg}"
        );
    }
    // Missing alg is not even a header we understand.
    let token = craft(r#"{"typ":"at+jwt"}"#, &claims(), &key);
    assert_eq!(verify_with(&key, &token), Err(TokenError::Malformed));
}

#[test]
fn duplicate_header_fields_are_malformed() {
    let key = SigningKey::generate();
    let h = format!(
        r#"{{"alg":"EdDSA","alg":"none","typ":"at+jwt","kid":"{}"}}"#,
        key.kid()
    );
    assert_eq!(
        verify_with(&key, &craft(&h, &claims(), &key)),
        Err(TokenError::Malformed)
    );
}

#[test]
fn crit_header_is_refused() {
    let key = SigningKey::generate();
    let h = format!(
        r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{}","crit":["exp"]}}"#,
        key.kid()
    );
    assert_eq!(
        verify_with(&key, &craft(&h, &claims(), &key)),
        Err(TokenError::Malformed)
    );
}

#[test]
fn wrong_or_missing_typ_is_rejected() {
    let key = SigningKey::generate();
    for typ in [
        Some("JWT"),
        Some("jwt"),
        Some("at+jwt2"),
        Some("application/jwt"),
        None,
    ] {
        let token = craft(&header("EdDSA", typ, Some(key.kid())), &claims(), &key);
        assert_eq!(
            verify_with(&key, &token),
            Err(TokenError::WrongType),
            "{typ:?}"
        );
    }
}

#[test]
fn unknown_or_missing_kid_is_rejected() {
    let key = SigningKey::generate();
    let other = SigningKey::generate();
    let token = sign(&claims(), &other);
    assert_eq!(verify_with(&key, &token), Err(TokenError::UnknownKey));
    let token = craft(&header("EdDSA", Some("at+jwt"), None), &claims(), &key);
    assert_eq!(verify_with(&key, &token), Err(TokenError::UnknownKey));
}

// ---------------------------------------------------------- signature attacks

#[test]
fn another_key_with_the_same_kid_fails() {
    let key = SigningKey::generate();
    let impostor = SigningKey::generate();
    let token = craft(
        &header("EdDSA", Some("at+jwt"), Some(key.kid())),
        &claims(),
        &impostor,
    );
    assert_eq!(verify_with(&key, &token), Err(TokenError::BadSignature));
}

#[test]
fn tampered_payload_fails() {
    let key = SigningKey::generate();
    let token = sign(&claims(), &key);
    let parts = segments(&token);
    let mut forged = claims();
    forged.sub = Uuid::new_v4().to_string();
    forged.scope = Some("admin".to_owned());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
    let token = format!("{}.{payload}.{}", parts[0], parts[2]);
    assert_eq!(verify_with(&key, &token), Err(TokenError::BadSignature));
}

#[test]
fn tampered_header_fails() {
    let key = SigningKey::generate();
    let token = sign(&claims(), &key);
    let parts = segments(&token);
    // Same meaning, different bytes: the signature covers the exact encoding.
    let h = URL_SAFE_NO_PAD.encode(header("Ed25519", Some("at+jwt"), Some(key.kid())));
    let token = format!("{h}.{}.{}", parts[1], parts[2]);
    assert_eq!(verify_with(&key, &token), Err(TokenError::BadSignature));
}

#[test]
fn tampered_signature_fails() {
    let key = SigningKey::generate();
    let token = sign(&claims(), &key);
    let parts = segments(&token);
    for i in [0, 10, 42, 84] {
        let mut sig: Vec<char> = parts[2].chars().collect();
        sig[i] = if sig[i] == 'A' { 'B' } else { 'A' };
        let sig: String = sig.into_iter().collect();
        let token = format!("{}.{}.{sig}", parts[0], parts[1]);
        assert_eq!(
            verify_with(&key, &token),
            Err(TokenError::BadSignature),
            "char {i}"
        );
    }
    // Setting the unused low bits of the last character is a non-canonical
    // encoding of the same signature: refused before any cryptography.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut sig = parts[2].clone();
    let last = sig.pop().expect("non-empty");
    let index = alphabet
        .iter()
        .position(|&c| char::from(c) == last)
        .expect("base64url character");
    assert_eq!(index & 0x0f, 0);
    sig.push(char::from(alphabet[index | 1]));
    let token = format!("{}.{}.{sig}", parts[0], parts[1]);
    assert_eq!(verify_with(&key, &token), Err(TokenError::Malformed));
}

// ------------------------------------------------------------------ structure

#[test]
fn wrong_segment_counts_are_malformed() {
    let key = SigningKey::generate();
    let token = sign(&claims(), &key);
    let p = segments(&token);
    for bad in [
        String::new(),
        p[0].clone(),
        format!("{}.{}", p[0], p[1]),
        format!("{}.{}.{}.{}", p[0], p[1], p[2], p[2]),
        format!("{token}."),
        format!(".{token}"),
        format!("{}..{}.{}", p[0], p[1], p[2]),
    ] {
        assert_eq!(verify_with(&key, &bad), Err(TokenError::Malformed), "{bad}");
    }
}

#[test]
fn non_base64_segments_are_malformed() {
    let key = SigningKey::generate();
    let token = sign(&claims(), &key);
    let p = segments(&token);
    let std_sig = STANDARD.encode(URL_SAFE_NO_PAD.decode(&p[2]).expect("b64"));
    for bad in [
        format!("{}!.{}.{}", p[0], p[1], p[2]),
        format!("{}.{}*.{}", p[0], p[1], p[2]),
        format!("{}.{}.{}", p[0], p[1], &p[2].replace(&p[2][..1], "+")),
        format!("{}.{}.{std_sig}", p[0], p[1]),
        format!("{}=.{}.{}", p[0], p[1], p[2]),
        format!("{}.{}.{}", p[0], p[1], &p[2][..85]),
        format!("{}.{}.{}A", p[0], p[1], p[2]),
        format!("e30.{}.{}", p[1], p[2]),
    ] {
        assert_eq!(verify_with(&key, &bad), Err(TokenError::Malformed), "{bad}");
    }
}

#[test]
fn oversized_token_is_malformed() {
    let key = SigningKey::generate();
    let mut claims = claims();
    claims.scope = Some("s ".repeat(MAX_TOKEN_LEN / 2));
    let token = sign(&claims, &key);
    assert!(token.len() > MAX_TOKEN_LEN);
    assert_eq!(verify_with(&key, &token), Err(TokenError::Malformed));
}

#[test]
fn signed_garbage_payload_is_malformed() {
    let key = SigningKey::generate();
    let h = header("EdDSA", Some("at+jwt"), Some(key.kid()));
    for payload in [&b"not json"[..], br#"{"iss":"x"}"#, b"[]"] {
        let token = sign_compact_raw(h.as_bytes(), payload, &key);
        assert_eq!(verify_with(&key, &token), Err(TokenError::Malformed));
    }
}

// --------------------------------------------------------------------- claims

#[test]
fn wrong_issuer_and_audience_are_rejected() {
    let key = SigningKey::generate();
    let mut c = claims();
    c.iss = "https://evil.example".to_owned();
    assert_eq!(
        verify_with(&key, &sign(&c, &key)),
        Err(TokenError::WrongIssuer)
    );
    let mut c = claims();
    c.aud = "other-service".to_owned();
    assert_eq!(
        verify_with(&key, &sign(&c, &key)),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn expiry_honours_the_leeway() {
    let key = SigningKey::generate();
    let mut c = claims();
    c.exp = NOW - 31;
    assert_eq!(verify_with(&key, &sign(&c, &key)), Err(TokenError::Expired));
    c.exp = NOW - 29;
    let token = sign(&c, &key);
    assert!(verify_with(&key, &token).is_ok());
    let strict = verifier(&key).with_leeway(Duration::ZERO);
    assert_eq!(strict.verify(&token, NOW), Err(TokenError::Expired));
    c.exp = NOW;
    assert_eq!(
        strict.verify(&sign(&c, &key), NOW),
        Err(TokenError::Expired)
    );
    c.exp = NOW + 1;
    assert!(strict.verify(&sign(&c, &key), NOW).is_ok());
    // Extreme values do not overflow.
    c.exp = i64::MIN;
    let token = sign(&c, &key);
    assert_eq!(
        verifier(&key)
            .with_leeway(Duration::MAX)
            .verify(&token, i64::MIN),
        Err(TokenError::Expired)
    );
}

#[test]
fn future_nbf_or_iat_is_not_yet_valid() {
    let key = SigningKey::generate();
    let mut c = claims();
    c.nbf = NOW + 31;
    assert_eq!(
        verify_with(&key, &sign(&c, &key)),
        Err(TokenError::NotYetValid)
    );
    c.nbf = NOW + 29;
    assert!(verify_with(&key, &sign(&c, &key)).is_ok());
    let mut c = claims();
    c.iat = NOW + 31;
    assert_eq!(
        verify_with(&key, &sign(&c, &key)),
        Err(TokenError::NotYetValid)
    );
}

// ----------------------------------------------------------------------- keys

const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

fn rfc8037_key() -> SigningKey {
    let seed: [u8; 32] = URL_SAFE_NO_PAD
        .decode(RFC8037_D)
        .expect("b64")
        .try_into()
        .expect("32 bytes");
    SigningKey::from_seed(seed)
}

#[test]
fn rfc8037_public_key_vector() {
    let jwk = rfc8037_key().jwk();
    assert_eq!(jwk.x, RFC8037_X);
    assert_eq!(jwk.kty, "OKP");
    assert_eq!(jwk.crv, "Ed25519");
    assert_eq!(jwk.alg.as_deref(), Some("EdDSA"));
    assert_eq!(jwk.key_use.as_deref(), Some("sig"));
}

#[test]
fn rfc8037_jws_vector() {
    // RFC 8037 Appendix A.4.
    let token = sign_compact_raw(
        br#"{"alg":"EdDSA"}"#,
        b"Example of Ed25519 signing",
        &rfc8037_key(),
    );
    assert_eq!(
        token,
        "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.\
         hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
    );
}

#[test]
fn kid_is_a_prefix_of_the_public_key_hash() {
    use sha2::Digest as _;
    let key = rfc8037_key();
    let x = URL_SAFE_NO_PAD.decode(RFC8037_X).expect("b64");
    let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(&x));
    assert_eq!(key.kid(), &expected[..16]);
    assert_eq!(key.jwk().kid, key.kid());
    assert_eq!(key.verifying_key().kid(), key.kid());
}

#[test]
fn seed_round_trip() {
    let key = SigningKey::generate();
    let again = SigningKey::from_seed(*key.seed());
    assert_eq!(again.kid(), key.kid());
    let token = sign(&claims(), &again);
    assert!(verify_with(&key, &token).is_ok());
}

#[test]
fn jwk_round_trip_and_json_shape() {
    let key = SigningKey::generate();
    let jwks = Jwks {
        keys: vec![key.jwk()],
    };
    let json = serde_json::to_value(&jwks).expect("json");
    let jwk = &json["keys"][0];
    for field in ["kty", "crv", "x", "kid", "alg", "use"] {
        assert!(jwk.get(field).is_some(), "{field}");
    }
    assert_eq!(jwk["use"], "sig");
    let back: Jwks = serde_json::from_value(json).expect("parses");
    let vk = back.keys[0].to_verification_key().expect("valid");
    assert_eq!(vk, key.verifying_key());

    // alg and use are optional when reading.
    let minimal: Jwk = serde_json::from_value(serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "x": RFC8037_X, "kid": "k1"
    }))
    .expect("parses");
    assert!(minimal.to_verification_key().is_ok());
    let minimal_json = serde_json::to_value(&minimal).expect("json");
    assert!(minimal_json.get("use").is_none());
}

#[test]
fn jwk_rejects_other_key_types() {
    let good = rfc8037_key().jwk();
    let cases: Vec<(Jwk, JwkError)> = vec![
        (
            Jwk {
                kty: "RSA".into(),
                ..good.clone()
            },
            JwkError::UnsupportedKeyType,
        ),
        (
            Jwk {
                kty: "EC".into(),
                ..good.clone()
            },
            JwkError::UnsupportedKeyType,
        ),
        (
            Jwk {
                crv: "X25519".into(),
                ..good.clone()
            },
            JwkError::UnsupportedKeyType,
        ),
        (
            Jwk {
                crv: "Ed448".into(),
                ..good.clone()
            },
            JwkError::UnsupportedKeyType,
        ),
        (
            Jwk {
                alg: Some("RS256".into()),
                ..good.clone()
            },
            JwkError::UnsupportedAlgorithm,
        ),
        (
            Jwk {
                key_use: Some("enc".into()),
                ..good.clone()
            },
            JwkError::WrongUse,
        ),
        (
            Jwk {
                x: RFC8037_X[..42].into(),
                ..good.clone()
            },
            JwkError::InvalidPublicKey,
        ),
        (
            Jwk {
                x: format!("{RFC8037_X}AA"),
                ..good.clone()
            },
            JwkError::InvalidPublicKey,
        ),
        (
            Jwk {
                x: "!".repeat(43),
                ..good.clone()
            },
            JwkError::InvalidPublicKey,
        ),
        // The identity point is a weak (small-order) key.
        (
            Jwk {
                x: URL_SAFE_NO_PAD.encode({
                    let mut b = [0u8; 32];
                    b[0] = 1;
                    b
                }),
                ..good.clone()
            },
            JwkError::InvalidPublicKey,
        ),
    ];
    for (jwk, expected) in cases {
        assert_eq!(jwk.to_verification_key(), Err(expected), "{jwk:?}");
    }
    let fully_specified = Jwk {
        alg: Some("Ed25519".into()),
        ..good
    };
    assert!(fully_specified.to_verification_key().is_ok());
}

#[test]
fn signing_key_debug_hides_the_key() {
    let key = rfc8037_key();
    let dbg = format!("{key:?} {key:#?}");
    assert!(dbg.contains("[HIDDEN]"));
    assert!(dbg.contains(key.kid()));
    let seed = key.seed();
    for form in [
        RFC8037_D.to_owned(),
        STANDARD.encode(*seed),
        seed.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        format!("{:?}", *seed),
    ] {
        assert!(!dbg.contains(&form), "{dbg}");
    }
}

#[test]
fn errors_are_typed_and_terse() {
    assert_eq!(TokenError::Expired.to_string(), "token expired");
}

#[test]
fn infallible_claims_writer_matches_serde_json() {
    let all_ascii: String = (0u8..0x80).map(char::from).collect();
    let id = Uuid::new_v4();
    let strings = [
        String::new(),
        all_ascii,
        "quote \" backslash \\ slash / del \u{7f}".to_owned(),
        "unicode é ✓ 🦀 \u{2028}\u{2029} \u{feff}".to_owned(),
    ];
    let sources = [
        SessionSource::Password,
        SessionSource::ApiKey {
            id,
            generation: u32::MAX,
            epoch: u64::MAX,
        },
        SessionSource::Device {
            id: gatehouse_contracts::DeviceId::from_uuid(id),
        },
    ];
    let mut checked = 0;
    for text in &strings {
        for source in &sources {
            for kind in [PrincipalKind::User, PrincipalKind::ServiceAccount] {
                for scope in [None, Some(text.clone())] {
                    let c = AccessTokenClaims {
                        iss: text.clone(),
                        sub: text.clone(),
                        aud: text.clone(),
                        exp: i64::MAX,
                        iat: i64::MIN,
                        nbf: -1,
                        jti: text.clone(),
                        client_id: text.clone(),
                        scope,
                        principal_kind: kind,
                        source: source.clone(),
                        principal_epoch: u64::MAX,
                    };
                    assert_eq!(
                        String::from_utf8(c.to_json()).expect("utf8"),
                        serde_json::to_string(&c).expect("serde"),
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 48);
    let c = claims();
    assert_eq!(c.to_json(), serde_json::to_vec(&c).expect("serde"));
}
