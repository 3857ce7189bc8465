use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use uuid::Uuid;

use crate::apikey::{CHECKSUM_AT, SECRET_AT, base62_value, crc32, decode_secret, encode_secret};
use crate::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Replaces the byte at `at` (ASCII keys only).
fn with_char(key: &str, at: usize, c: char) -> String {
    let mut out = String::with_capacity(key.len());
    out.push_str(&key[..at]);
    out.push(c);
    out.push_str(&key[at + 1..]);
    out
}

/// Builds a key string with a correct checksum from raw parts.
fn assemble(id_hex: &str, secret_digits: &str) -> String {
    let body = format!("{API_KEY_PREFIX}{id_hex}_{secret_digits}");
    let mut crc = crc32(body.as_bytes());
    let mut checksum = [b'0'; 6];
    for d in checksum.iter_mut().rev() {
        *d = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[(crc % 62) as usize];
        crc /= 62;
    }
    format!(
        "{body}{}",
        String::from_utf8(checksum.to_vec()).expect("ascii")
    )
}

// ----------------------------------------------------------------- primitives

#[test]
fn crc32_matches_the_ieee_check_value() {
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(
        crc32(b"The quick brown fox jumps over the lazy dog"),
        0x414F_A339
    );
}

#[test]
fn base62_fixed_width_edges() {
    let mut digits = [0u8; 43];
    encode_secret(&[0u8; 32], &mut digits);
    assert_eq!(&digits, &[b'0'; 43]);

    let mut one = [0u8; 32];
    one[31] = 1;
    encode_secret(&one, &mut digits);
    assert_eq!(&digits[..42], &[b'0'; 42]);
    assert_eq!(digits[42], b'1');

    let mut sixty_two = [0u8; 32];
    sixty_two[31] = 62;
    encode_secret(&sixty_two, &mut digits);
    assert_eq!(&digits[41..], b"10");

    for bytes in [[0u8; 32], [0xff; 32], one, sixty_two, [0x5a; 32]] {
        encode_secret(&bytes, &mut digits);
        let values = digits.map(|c| base62_value(c).expect("digit"));
        let mut back = [0u8; 32];
        assert!(decode_secret(&values, &mut back));
        assert_eq!(back, bytes);
    }
}

#[test]
fn base62_rejects_values_of_2_pow_256_and_above() {
    let mut digits = [0u8; 43];
    encode_secret(&[0xff; 32], &mut digits);
    let max = digits.map(|c| base62_value(c).expect("digit"));
    // 2^256 - 1 + 1 overflows: increment the base62 number by one.
    let mut plus_one = max;
    for d in plus_one.iter_mut().rev() {
        if *d == 61 {
            *d = 0;
        } else {
            *d += 1;
            break;
        }
    }
    let mut out = [0u8; 32];
    assert!(!decode_secret(&plus_one, &mut out));
    assert!(!decode_secret(&[61; 43], &mut out));

    // A key with such a secret and a valid checksum is still refused.
    let key = assemble(&"0".repeat(32), &"z".repeat(43));
    assert_eq!(
        parse_api_key(&key).map(|_| ()),
        Err(ApiKeyFormatError::InvalidCharacter)
    );
}

// ----------------------------------------------------------------- round trip

#[test]
fn generated_key_has_the_documented_format_and_parses_back() {
    let id = Uuid::new_v4();
    let generated = generate_api_key(id);
    let full = generated.full.expose_secret();
    assert_eq!(full.len(), API_KEY_LEN);
    assert_eq!(API_KEY_LEN, 92);
    assert!(full.starts_with("gatehouse_"));
    assert_eq!(&full[10..42], id.simple().to_string());
    assert_eq!(&full[42..43], "_");
    assert!(full[43..].bytes().all(|c| c.is_ascii_alphanumeric()));

    let parsed = parse_api_key(full).expect("parses");
    assert_eq!(parsed.key_id, id);
    assert_eq!(parsed.secret, generated.secret);
    assert_eq!(generated.key_id, id);
}

#[test]
fn surrounding_whitespace_is_ignored() {
    let generated = generate_api_key(Uuid::new_v4());
    let full = generated.full.expose_secret();
    for pasted in [
        format!("{full}\n"),
        format!("  {full}\r\n"),
        format!("\t{full} "),
    ] {
        assert_eq!(
            parse_api_key(&pasted).expect("parses").secret,
            generated.secret
        );
    }
}

#[test]
fn a_thousand_generated_keys_round_trip() {
    let hasher = ApiKeyHasher::new([0x42; 32]);
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let id = Uuid::new_v4();
        let generated = generate_api_key(id);
        let full = generated.full.expose_secret();
        assert_eq!(full.len(), API_KEY_LEN);
        assert!(seen.insert(full.to_owned()), "duplicate key");
        let parsed = parse_api_key(full).expect("parses");
        assert_eq!(parsed.key_id, id);
        assert_eq!(parsed.secret, generated.secret);
        let stored = hasher.hash(id, &generated.secret);
        assert!(hasher.verify(parsed.key_id, &parsed.secret, &stored));
    }
}

// ------------------------------------------------------------------- failures

#[test]
fn every_single_character_substitution_is_caught() {
    let generated = generate_api_key(Uuid::new_v4());
    let full = generated.full.expose_secret();
    let mut checked = 0;
    for at in 0..full.len() {
        for c in (0x20u8..0x7f).map(char::from) {
            if full.as_bytes()[at] == c as u8 {
                continue;
            }
            let typo = with_char(full, at, c);
            let result = parse_api_key(&typo);
            assert!(result.is_err(), "substitution {c:?} at {at} was accepted");
            checked += 1;
        }
    }
    assert_eq!(checked, API_KEY_LEN * 94);

    // In the secret and checksum a base62 substitution is caught by the
    // checksum, anything else by the character check.
    let at = SECRET_AT + 5;
    let other = if full.as_bytes()[at] == b'a' {
        'b'
    } else {
        'a'
    };
    assert_eq!(
        parse_api_key(&with_char(full, at, other)).map(|_| ()),
        Err(ApiKeyFormatError::BadChecksum)
    );
    assert_eq!(
        parse_api_key(&with_char(full, at, '-')).map(|_| ()),
        Err(ApiKeyFormatError::InvalidCharacter)
    );
    let at = CHECKSUM_AT + 2;
    let other = if full.as_bytes()[at] == b'Z' {
        'Y'
    } else {
        'Z'
    };
    assert_eq!(
        parse_api_key(&with_char(full, at, other)).map(|_| ()),
        Err(ApiKeyFormatError::BadChecksum)
    );
}

#[test]
fn truncated_extended_and_wrongly_prefixed_keys_fail_precisely() {
    let generated = generate_api_key(Uuid::new_v4());
    let full = generated.full.expose_secret();
    for len in [API_KEY_PREFIX.len(), 50, API_KEY_LEN - 6, API_KEY_LEN - 1] {
        assert_eq!(
            parse_api_key(&full[..len]).map(|_| ()),
            Err(ApiKeyFormatError::WrongLength),
            "{len}"
        );
    }
    for extended in [
        format!("{full}0"),
        format!("{full}{full}"),
        format!("{full}-x"),
    ] {
        assert_eq!(
            parse_api_key(&extended).map(|_| ()),
            Err(ApiKeyFormatError::WrongLength)
        );
    }
    for wrong in [
        String::new(),
        "gatehouse".to_owned(),
        full.replacen("gatehouse_", "Gatehouse_", 1),
        full.replacen("gatehouse_", "gatehouse-", 1),
        full.replacen("gatehouse_", "ghp_", 1),
        format!("x{}", &full[1..]),
        format!("Bearer {full}"),
    ] {
        assert_eq!(
            parse_api_key(&wrong).map(|_| ()),
            Err(ApiKeyFormatError::WrongPrefix)
        );
    }
}

#[test]
fn key_id_must_be_lowercase_hex_and_separator_an_underscore() {
    let id_hex = "0123456789abcdef0123456789abcdef";
    let secret = "1".repeat(43);
    assert!(parse_api_key(&assemble(id_hex, &secret)).is_ok());
    // Correct checksums, so only the character checks can object.
    for bad_id in [
        "0123456789ABCDEF0123456789abcdef",
        "0123456789abcdeg0123456789abcdef",
        "01234567-89ab-cdef-0123-456789ab",
    ] {
        assert_eq!(
            parse_api_key(&assemble(bad_id, &secret)).map(|_| ()),
            Err(ApiKeyFormatError::InvalidCharacter),
            "{bad_id}"
        );
    }
    let key = assemble(id_hex, &secret);
    let dashed = with_char(&key, SECRET_AT - 1, '-');
    assert_eq!(
        parse_api_key(&dashed).map(|_| ()),
        Err(ApiKeyFormatError::InvalidCharacter)
    );
    // Non-ASCII input of the right byte length is refused, not panicking.
    let multibyte = format!("{}é{}", &key[..50], &key[52..]);
    assert_eq!(multibyte.len(), API_KEY_LEN);
    assert_eq!(
        parse_api_key(&multibyte).map(|_| ()),
        Err(ApiKeyFormatError::InvalidCharacter)
    );
}

// -------------------------------------------------------------------- hashing

#[test]
fn hash_verify_accepts_only_the_right_secret_id_and_pepper() {
    let hasher = ApiKeyHasher::new([1; 32]);
    let generated = generate_api_key(Uuid::new_v4());
    let stored = hasher.hash(generated.key_id, &generated.secret);
    assert!(hasher.verify(generated.key_id, &generated.secret, &stored));

    let other = generate_api_key(generated.key_id);
    assert!(
        !hasher.verify(generated.key_id, &other.secret, &stored),
        "wrong secret"
    );
    assert!(
        !hasher.verify(Uuid::new_v4(), &generated.secret, &stored),
        "wrong id"
    );
    let other_pepper = ApiKeyHasher::new([2; 32]);
    assert!(
        !other_pepper.verify(generated.key_id, &generated.secret, &stored),
        "wrong pepper"
    );
}

#[test]
fn hash_is_hmac_sha256_of_id_and_secret() {
    let pepper = [7u8; 32];
    let hasher = ApiKeyHasher::new(pepper);
    let generated = generate_api_key(Uuid::new_v4());
    let mut mac = Hmac::<Sha256>::new_from_slice(&pepper).expect("any key length");
    mac.update(generated.key_id.as_bytes());
    mac.update(generated.secret.expose());
    let expected: [u8; 32] = mac.finalize().into_bytes().into();
    assert_eq!(
        hasher.hash(generated.key_id, &generated.secret).as_bytes(),
        &expected
    );
}

#[test]
fn api_key_hash_serde_and_debug() {
    let hash = ApiKeyHash::from_bytes(core::array::from_fn(|i| i as u8 * 7));
    let hex_form = hex(hash.as_bytes());
    assert_eq!(hash.to_hex(), hex_form);
    let json = serde_json::to_string(&hash).expect("json");
    assert_eq!(json, format!("\"{hex_form}\""));
    assert_eq!(
        serde_json::from_str::<ApiKeyHash>(&json).expect("parses"),
        hash
    );
    assert_eq!(ApiKeyHash::from_hex(&hex_form.to_uppercase()), Ok(hash));
    assert_eq!(
        format!("{hash:?}"),
        format!("ApiKeyHash({}…)", &hex_form[..4])
    );
    for bad in [
        "",
        "00",
        &hex_form[..63],
        &format!("{hex_form}0"),
        &"g".repeat(64),
    ] {
        assert_eq!(ApiKeyHash::from_hex(bad), Err(InvalidApiKeyHash));
    }
    assert!(serde_json::from_str::<ApiKeyHash>("\"xyz\"").is_err());
}

// ---------------------------------------------------------------------- Debug

#[test]
fn debug_output_never_contains_secrets() {
    let generated = generate_api_key(Uuid::new_v4());
    let full = generated.full.expose_secret().to_owned();
    let secret_digits = full[SECRET_AT..CHECKSUM_AT].to_owned();
    let bytes = *generated.secret.expose();
    let forbidden = [
        full.clone(),
        secret_digits.clone(),
        secret_digits[..12].to_owned(),
        hex(&bytes),
        STANDARD.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
        format!("{bytes:?}"),
    ];
    let parsed = parse_api_key(&full).expect("parses");
    let pepper = [0x99u8; 32];
    let hasher = ApiKeyHasher::new(pepper);
    for dbg in [
        format!("{generated:?}"),
        format!("{generated:#?}"),
        format!("{:?}", generated.secret),
        format!("{parsed:?}"),
        format!("{hasher:?}"),
    ] {
        assert!(dbg.contains("HIDDEN") || dbg.contains("REDACTED"), "{dbg}");
        for form in &forbidden {
            assert!(!dbg.contains(form.as_str()), "{dbg}");
        }
        assert!(!dbg.contains(&hex(&pepper)));
        assert!(!dbg.contains(&format!("{pepper:?}")));
    }
    assert!(format!("{:?}", generated.secret).contains("[HIDDEN]"));
    assert!(format!("{hasher:?}").contains("[HIDDEN]"));
}

#[test]
fn format_errors_are_terse() {
    assert_eq!(
        ApiKeyFormatError::BadChecksum.to_string(),
        "API key checksum mismatch"
    );
}

#[test]
fn device_codes_share_the_layout_under_their_own_prefix() {
    let id = Uuid::new_v4();
    let code = crate::DEVICE_CODE_FORMAT.generate(id);
    let full = code.full.expose_secret();
    assert!(full.starts_with("gatehouse_dc_"));
    assert_eq!(full.len(), crate::DEVICE_CODE_FORMAT.length());
    let parsed = crate::DEVICE_CODE_FORMAT.parse(full).unwrap();
    assert_eq!(parsed.key_id, id);
    assert_eq!(parsed.secret, code.secret);
    // Neither format accepts the other's strings.
    assert_eq!(
        parse_api_key(full).unwrap_err(),
        ApiKeyFormatError::WrongLength
    );
    let key = generate_api_key(id);
    assert_eq!(
        crate::DEVICE_CODE_FORMAT
            .parse(key.full.expose_secret())
            .unwrap_err(),
        ApiKeyFormatError::WrongPrefix
    );
    // A mistyped device code is caught by its checksum.
    let mut typo = full.to_owned().into_bytes();
    let at = crate::DEVICE_CODE_FORMAT.length() - 10;
    typo[at] = if typo[at] == b'a' { b'b' } else { b'a' };
    assert_eq!(
        crate::DEVICE_CODE_FORMAT
            .parse(std::str::from_utf8(&typo).unwrap())
            .unwrap_err(),
        ApiKeyFormatError::BadChecksum
    );
}
