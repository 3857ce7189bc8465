//! Password hashing: Argon2id, always off the async runtime, and the same cost whether or
//! not the user exists.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand_core::OsRng;
use secrecy::{ExposeSecret, SecretString};
use tracing::Instrument;

/// Why a password is not acceptable as a new password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordPolicyError {
    /// Too short.
    #[error("the password must have at least {min} characters")]
    TooShort {
        /// Minimum length.
        min: usize,
    },
    /// Too long (Argon2 input is bounded to keep hashing cost bounded).
    #[error("the password must have at most {max} characters")]
    TooLong {
        /// Maximum length.
        max: usize,
    },
}

/// Minimum password length.
pub const MIN_LEN: usize = 8;
/// Maximum password length.
pub const MAX_LEN: usize = 1024;

/// Checks a new password against the policy.
pub fn check_policy(password: &SecretString) -> Result<(), PasswordPolicyError> {
    let len = password.expose_secret().chars().count();
    if len < MIN_LEN {
        return Err(PasswordPolicyError::TooShort { min: MIN_LEN });
    }
    if len > MAX_LEN {
        return Err(PasswordPolicyError::TooLong { max: MAX_LEN });
    }
    Ok(())
}

/// Hashing failed (a bug or resource exhaustion, never bad input).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashingError(String);

/// Hashes a password with Argon2id (default OWASP parameters) on the blocking pool.
pub async fn hash(password: SecretString) -> Result<String, HashingError> {
    let span = tracing::info_span!("argon2_hash");
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HashingError(e.to_string()))
    })
    .in_current_span()
    .await
    .map_err(|e| HashingError(e.to_string()))?
}

/// A valid hash of a random password, verified against when the user does not exist so
/// that an unknown name costs the same time as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"gatehouse-dummy-password-for-timing", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Verifies `password` against `stored` (or against a dummy hash when `stored` is `None`,
/// which always fails but costs the same) on the blocking pool.
pub async fn verify(password: SecretString, stored: Option<String>) -> bool {
    let span = tracing::info_span!("argon2_verify");
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let known = stored.is_some();
        let phc = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        ok && known
    })
    .in_current_span()
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = hash(SecretString::from("correct horse")).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(SecretString::from("correct horse"), Some(h.clone())).await);
        assert!(!verify(SecretString::from("wrong horse"), Some(h)).await);
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        assert!(
            !verify(
                SecretString::from("gatehouse-dummy-password-for-timing"),
                None
            )
            .await
        );
    }

    #[test]
    fn the_policy_bounds_length() {
        assert_eq!(
            check_policy(&SecretString::from("short")),
            Err(PasswordPolicyError::TooShort { min: 8 })
        );
        assert!(check_policy(&SecretString::from("long enough")).is_ok());
        assert_eq!(
            check_policy(&SecretString::from("x".repeat(1025))),
            Err(PasswordPolicyError::TooLong { max: 1024 })
        );
    }
}
