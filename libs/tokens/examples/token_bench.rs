//! Single-threaded throughput of the per-request credential paths.
//!
//! Run with `cargo run -p gatehouse-tokens --release --example token_bench`.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use gatehouse_tokens::{
    AccessTokenClaims, ApiKeyHasher, PrincipalKind, SessionSource, SigningKey, Verifier,
    generate_api_key, parse_api_key, sign,
};
use secrecy::ExposeSecret;
use uuid::Uuid;

const TOKEN_ITERATIONS: u32 = 20_000;
const API_KEY_ITERATIONS: u32 = 100_000;
const NOW: i64 = 1_750_000_000;

fn per_second(iterations: u32, elapsed: Duration) -> f64 {
    f64::from(iterations) / elapsed.as_secs_f64()
}

fn main() -> Result<(), Box<dyn Error>> {
    let key = SigningKey::generate();
    let claims = AccessTokenClaims {
        iss: "https://gatehouse.example".to_owned(),
        sub: Uuid::new_v4().to_string(),
        aud: "ml-platform".to_owned(),
        exp: NOW + 900,
        iat: NOW,
        nbf: NOW,
        jti: Uuid::new_v4().to_string(),
        client_id: "gatehouse-cli".to_owned(),
        scope: Some("models:read runs:write".to_owned()),
        principal_kind: PrincipalKind::User,
        source: SessionSource::ApiKey {
            id: Uuid::new_v4(),
            generation: 1,
            epoch: 0,
        },
        principal_epoch: 3,
    };
    let verifier = Verifier::new(
        "https://gatehouse.example",
        "ml-platform",
        [SigningKey::generate().verifying_key(), key.verifying_key()],
    );

    // Sign.
    let start = Instant::now();
    for _ in 0..TOKEN_ITERATIONS {
        black_box(sign(black_box(&claims), &key));
    }
    let sign_elapsed = start.elapsed();

    // Verify.
    let token = sign(&claims, &key);
    let start = Instant::now();
    for _ in 0..TOKEN_ITERATIONS {
        black_box(verifier.verify(black_box(&token), NOW)?);
    }
    let verify_elapsed = start.elapsed();

    // API key: parse + hash + constant-time compare.
    let hasher = ApiKeyHasher::new([0x5a; 32]);
    let generated = generate_api_key(Uuid::new_v4());
    let stored = hasher.hash(generated.key_id, &generated.secret);
    let full = generated.full.expose_secret();
    let start = Instant::now();
    for _ in 0..API_KEY_ITERATIONS {
        let parsed = parse_api_key(black_box(full))?;
        if !hasher.verify(parsed.key_id, &parsed.secret, &stored) {
            return Err("API key failed to verify".into());
        }
    }
    let api_key_elapsed = start.elapsed();

    println!("token length: {} bytes", token.len());
    println!(
        "sign:    {:>10.0} /s  ({TOKEN_ITERATIONS} iterations, {:.2?})",
        per_second(TOKEN_ITERATIONS, sign_elapsed),
        sign_elapsed
    );
    println!(
        "verify:  {:>10.0} /s  ({TOKEN_ITERATIONS} iterations, {:.2?})",
        per_second(TOKEN_ITERATIONS, verify_elapsed),
        verify_elapsed
    );
    println!(
        "api key: {:>10.0} /s  parse+hash+verify ({API_KEY_ITERATIONS} iterations, {:.2?})",
        per_second(API_KEY_ITERATIONS, api_key_elapsed),
        api_key_elapsed
    );
    Ok(())
}
