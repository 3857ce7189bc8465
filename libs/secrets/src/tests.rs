//! Unit tests of the whole crate (inside the crate to reach data key bytes).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::*;

fn master() -> MasterKey {
    MasterKey::generate()
}

/// Every textual form of `bytes` that a careless `Debug` could reveal.
fn encodings(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        hex,
        format!("{bytes:?}"),
    ]
}

fn assert_hidden(debug: &str, key: &[u8]) {
    for form in encodings(key) {
        assert!(!debug.contains(&form), "Debug output leaks key: {debug}");
    }
}

// ---------------------------------------------------------------- master key

#[test]
fn master_key_base64_round_trip() {
    let key = master();
    let text = key.to_base64();
    assert_eq!(text.expose_secret().len(), 44);
    let again = MasterKey::from_base64(text.expose_secret()).expect("parses");
    assert_eq!(again.to_base64().expose_secret(), text.expose_secret());
}

#[test]
fn master_key_accepts_unpadded_and_surrounding_whitespace() {
    let bytes = [7u8; 32];
    let padded = STANDARD.encode(bytes);
    let unpadded = STANDARD_NO_PAD.encode(bytes);
    for text in [padded.clone(), unpadded, format!("  {padded}\n")] {
        let key = MasterKey::from_base64(&text).expect("parses");
        assert_eq!(key.to_base64().expose_secret(), padded);
    }
}

#[test]
fn master_key_rejects_wrong_lengths() {
    for len in [0usize, 16, 31, 33, 64] {
        let text = STANDARD.encode(vec![0x5a; len]);
        assert_eq!(
            MasterKey::from_base64(&text).map(|_| ()),
            Err(SecretsError::InvalidMasterKey(
                MasterKeyError::WrongLength { actual: len }
            )),
            "{len} bytes"
        );
    }
}

#[test]
fn master_key_rejects_non_base64_without_echoing_it() {
    let url_safe = URL_SAFE_NO_PAD.encode([0xfb; 32]); // contains '-' / '_'
    for text in ["not base64 at all!", "@@@@", url_safe.as_str(), "QUJD=A"] {
        let err = MasterKey::from_base64(text)
            .map(|_| ())
            .expect_err("rejected");
        assert_eq!(
            err,
            SecretsError::InvalidMasterKey(MasterKeyError::NotBase64),
            "{text}"
        );
        assert!(!err.to_string().contains(text));
    }
    // A real-looking key of the wrong length is not echoed either.
    let text = STANDARD.encode([0x42; 33]);
    let err = MasterKey::from_base64(&text)
        .map(|_| ())
        .expect_err("rejected");
    assert!(!err.to_string().contains(&text[..20]));
}

// ---------------------------------------------------------------- derivation

#[test]
fn derive_key_is_hkdf_sha256() {
    let bytes = [0x11u8; 32];
    let key = MasterKey::from_base64(&STANDARD.encode(bytes)).expect("parses");
    for purpose in ["", "gatehouse/bus-seal/v1", "x".repeat(200).as_str()] {
        let mut expected = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"gatehouse/v1"), &bytes)
            .expand(purpose.as_bytes(), &mut expected)
            .expect("32 bytes is a valid HKDF length");
        assert_eq!(
            key.derive_key(purpose).expose(),
            &expected,
            "purpose {purpose:?}"
        );
    }
}

#[test]
fn derived_keys_are_deterministic_and_separated() {
    let key = master();
    assert_eq!(key.derive_key("a").expose(), key.derive_key("a").expose());
    assert_ne!(key.derive_key("a").expose(), key.derive_key("b").expose());
    assert_ne!(
        key.derive_key("a").expose(),
        master().derive_key("a").expose()
    );
}

// ---------------------------------------------------------------------- AEAD

#[test]
fn data_key_round_trip_and_layout() {
    let dk = DataKey::generate();
    for plaintext in [&b""[..], b"x", &[0xa5; 1000]] {
        let ct = dk.seal(plaintext, b"aad").expect("seals");
        assert_eq!(ct.len(), plaintext.len() + CIPHERTEXT_OVERHEAD);
        assert_eq!(ct[0], FORMAT_VERSION);
        assert_eq!(dk.open(&ct, b"aad").expect("opens").as_slice(), plaintext);
    }
    // A fresh nonce every time.
    assert_ne!(
        dk.seal(b"same", b"").expect("seals"),
        dk.seal(b"same", b"").expect("seals")
    );
}

#[test]
fn derived_key_round_trip() {
    let key = master().derive_key("test/v1");
    let ct = key.seal(b"hello", b"ctx").expect("seals");
    assert_eq!(key.open(&ct, b"ctx").expect("opens").as_slice(), b"hello");
    assert_eq!(
        key.open(&ct, b"other").map(|_| ()),
        Err(SecretsError::Decrypt)
    );
}

#[test]
fn wrong_aad_fails() {
    let dk = DataKey::generate();
    let ct = dk.seal(b"secret", b"object-1").expect("seals");
    assert_eq!(
        dk.open(&ct, b"object-2").map(|_| ()),
        Err(SecretsError::Decrypt)
    );
    assert_eq!(dk.open(&ct, b"").map(|_| ()), Err(SecretsError::Decrypt));
}

#[test]
fn wrong_key_fails() {
    let ct = DataKey::generate().seal(b"secret", b"").expect("seals");
    assert_eq!(
        DataKey::generate().open(&ct, b"").map(|_| ()),
        Err(SecretsError::Decrypt)
    );
}

#[test]
fn every_tampered_byte_fails() {
    let dk = DataKey::generate();
    let ct = dk.seal(b"attack at dawn", b"aad").expect("seals");
    for i in 0..ct.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = ct.clone();
            bad[i] ^= flip;
            let expected = if i == 0 {
                SecretsError::Malformed
            } else {
                SecretsError::Decrypt
            };
            assert_eq!(dk.open(&bad, b"aad").map(|_| ()), Err(expected), "byte {i}");
        }
    }
}

#[test]
fn short_or_unknown_version_is_malformed() {
    let dk = DataKey::generate();
    let ct = dk.seal(b"", b"").expect("seals");
    assert_eq!(ct.len(), CIPHERTEXT_OVERHEAD);
    for len in 0..ct.len() {
        assert_eq!(
            dk.open(&ct[..len], b"").map(|_| ()),
            Err(SecretsError::Malformed),
            "{len}"
        );
    }
    let mut v2 = ct.clone();
    v2[0] = 2;
    assert_eq!(dk.open(&v2, b"").map(|_| ()), Err(SecretsError::Malformed));
    // Extending the ciphertext breaks the tag.
    let mut longer = ct;
    longer.push(0);
    assert_eq!(
        dk.open(&longer, b"").map(|_| ()),
        Err(SecretsError::Decrypt)
    );
}

// ------------------------------------------------------------------ wrapping

#[test]
fn wrap_round_trip() {
    let mk = master();
    let dk = DataKey::generate();
    let wrapped = mk.wrap(&dk, b"object-1").expect("wraps");
    assert_eq!(wrapped.as_bytes().len(), KEY_LEN + CIPHERTEXT_OVERHEAD);
    let back = mk.unwrap_key(&wrapped, b"object-1").expect("unwraps");
    assert_eq!(back.expose_for_tests(), dk.expose_for_tests());

    let ct = dk.seal(b"payload", b"").expect("seals");
    assert_eq!(back.open(&ct, b"").expect("opens").as_slice(), b"payload");

    let rebuilt = WrappedKey::from_bytes(wrapped.as_bytes().to_vec());
    assert_eq!(rebuilt, wrapped);
}

#[test]
fn unwrap_with_wrong_master_aad_or_tampering_fails() {
    let mk = master();
    let wrapped = mk.wrap(&DataKey::generate(), b"object-1").expect("wraps");
    assert_eq!(
        master().unwrap_key(&wrapped, b"object-1").map(|_| ()),
        Err(SecretsError::Decrypt)
    );
    assert_eq!(
        mk.unwrap_key(&wrapped, b"object-2").map(|_| ()),
        Err(SecretsError::Decrypt)
    );
    let mut bytes = wrapped.as_bytes().to_vec();
    bytes[20] ^= 1;
    assert_eq!(
        mk.unwrap_key(&WrappedKey::from_bytes(bytes), b"object-1")
            .map(|_| ()),
        Err(SecretsError::Decrypt)
    );
}

#[test]
fn wrap_key_is_not_the_master_key_itself() {
    // A value sealed with the raw master key bytes must not unwrap.
    let bytes = [9u8; 32];
    let mk = MasterKey::from_base64(&STANDARD.encode(bytes)).expect("parses");
    let ct = aead::seal(&bytes, &[1u8; 32], b"").expect("seals");
    assert_eq!(
        mk.unwrap_key(&WrappedKey::from_bytes(ct), b"").map(|_| ()),
        Err(SecretsError::Decrypt)
    );
}

#[test]
fn a_wrapped_value_of_the_wrong_length_is_malformed() {
    let bytes = [3u8; 32];
    let mk = MasterKey::from_base64(&STANDARD.encode(bytes)).expect("parses");
    let kek = mk.derive_key(KEY_WRAP_PURPOSE);
    let ct = kek.seal(&[0u8; 31], b"").expect("seals");
    assert_eq!(
        mk.unwrap_key(&WrappedKey::from_bytes(ct), b"").map(|_| ()),
        Err(SecretsError::Malformed)
    );
}

#[test]
fn wrapped_key_serde_is_standard_base64() {
    let wrapped = master().wrap(&DataKey::generate(), b"").expect("wraps");
    let json = serde_json::to_string(&wrapped).expect("serializes");
    assert_eq!(json, format!("\"{}\"", STANDARD.encode(wrapped.as_bytes())));
    let back: WrappedKey = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, wrapped);
    assert!(serde_json::from_str::<WrappedKey>("\"***\"").is_err());
}

// --------------------------------------------------------------- bus sealing

#[test]
fn bus_sealer_round_trip() {
    let mk = master();
    let sealer = BusSealer::new(&mk);
    let secret = SecretString::from("correct horse battery staple ✓");
    let sealed = sealer
        .seal(&secret, "identity.set_password")
        .expect("seals");
    let opened = sealer
        .open(&sealed, "identity.set_password")
        .expect("opens");
    assert_eq!(opened.expose_secret(), secret.expose_secret());

    // Another sealer built from the same master key opens it too.
    let other = BusSealer::new(&mk);
    assert!(other.open(&sealed, "identity.set_password").is_ok());
}

#[test]
fn bus_sealer_rejects_other_context_and_other_master() {
    let sealer = BusSealer::new(&master());
    let sealed = sealer
        .seal(&SecretString::from("hunter2"), "identity.set_password")
        .expect("seals");
    assert_eq!(
        sealer.open(&sealed, "identity.create_user").map(|_| ()),
        Err(SecretsError::Decrypt)
    );
    assert_eq!(
        BusSealer::new(&master())
            .open(&sealed, "identity.set_password")
            .map(|_| ()),
        Err(SecretsError::Decrypt)
    );
}

#[test]
fn sealed_secret_serde_hides_plaintext_and_detects_tampering() {
    let sealer = BusSealer::new(&master());
    let plaintext = "hunter2-hunter2";
    let sealed = sealer
        .seal(&SecretString::from(plaintext), "cmd")
        .expect("seals");

    let json = serde_json::to_string(&serde_json::json!({ "password": sealed })).expect("json");
    assert!(!json.contains(plaintext));
    assert!(!json.contains(&STANDARD.encode(plaintext)));
    let encoded = sealed.to_base64url();
    assert!(json.contains(&encoded));
    assert!(
        encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );

    let back: SealedSecret = serde_json::from_str(&format!("\"{encoded}\"")).expect("parses");
    assert_eq!(back, sealed);
    assert_eq!(format!("{back:?}"), "[SEALED]");

    // Flip one character of the encoded form.
    let mut chars: Vec<char> = encoded.chars().collect();
    chars[30] = if chars[30] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let tampered: SealedSecret = serde_json::from_str(&format!("\"{tampered}\"")).expect("parses");
    assert_eq!(
        sealer.open(&tampered, "cmd").map(|_| ()),
        Err(SecretsError::Decrypt)
    );

    assert!(serde_json::from_str::<SealedSecret>("\"not+base64url=\"").is_err());
    assert_eq!(
        sealer
            .open(
                &SealedSecret::from_base64url("AAAA").expect("parses"),
                "cmd"
            )
            .map(|_| ()),
        Err(SecretsError::Malformed)
    );
}

// ---------------------------------------------------------------------- Debug

#[test]
fn debug_output_never_contains_key_bytes() {
    let bytes = [0x3cu8; 32];
    let mk = MasterKey::from_base64(&STANDARD.encode(bytes)).expect("parses");
    let dbg = format!("{mk:?} {mk:#?}");
    assert!(dbg.contains("[HIDDEN]"));
    assert_hidden(&dbg, &bytes);

    let random = master();
    let random_bytes = STANDARD
        .decode(random.to_base64().expose_secret())
        .expect("b64");
    assert_hidden(&format!("{random:?}"), &random_bytes);

    let derived = random.derive_key("p");
    let dbg = format!("{derived:?}");
    assert!(dbg.contains("[HIDDEN]"));
    assert_hidden(&dbg, derived.expose());

    let dk = DataKey::generate();
    let dbg = format!("{dk:?}");
    assert!(dbg.contains("[HIDDEN]"));
    assert_hidden(&dbg, dk.expose_for_tests());

    let sealer = BusSealer::new(&random);
    let dbg = format!("{sealer:?}");
    assert!(dbg.contains("[HIDDEN]"));
    assert_hidden(&dbg, random.derive_key(BUS_SEAL_PURPOSE).expose());

    let secret = SecretString::from("p4ssw0rd-p4ssw0rd");
    let sealed = sealer.seal(&secret, "c").expect("seals");
    assert_eq!(format!("{sealed:?}"), "[SEALED]");
}

#[test]
fn errors_render_without_detail_leaks() {
    assert_eq!(
        SecretsError::InvalidMasterKey(MasterKeyError::WrongLength { actual: 31 }).to_string(),
        "invalid master key: master key must decode to 32 bytes, but decodes to 31 bytes"
    );
}
