//! Signing keys at rest: a key's private half is sealed (AES-GCM under a key derived from
//! the master key, the kid as associated data) into the keyring stream's secret slot. The
//! identity service seals new keys; every gateway opens them. Both sides go through
//! [`SigningKeySeal`], so the purpose and the associated data are written once.

use chrono::{DateTime, Utc};
use gatehouse_contracts::keyring::SigningKeyAdded;
use gatehouse_secrets::{DerivedKey, MasterKey, SecretsError};

use crate::SigningKey;

/// The master-key purpose of the key that seals signing keys' private halves.
const SIGNING_KEY_SEAL_PURPOSE: &str = "gatehouse/signing-keys/v1";

/// A sealed private half could not be turned back into a key.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// It does not open: the master key differs from the one that sealed it, or the bytes
    /// were changed.
    #[error("the sealed signing key does not open")]
    Open,
    /// It opened but is not an Ed25519 seed.
    #[error("the sealed signing key is not 32 bytes")]
    NotASeed,
}

/// Seals and opens the keyring's private halves.
pub struct SigningKeySeal(DerivedKey);

impl std::fmt::Debug for SigningKeySeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeySeal([HIDDEN])")
    }
}

impl SigningKeySeal {
    /// The seal every process with `master` agrees on.
    pub fn new(master: &MasterKey) -> Self {
        Self(master.derive_key(SIGNING_KEY_SEAL_PURPOSE))
    }

    /// A fresh key signing from `active_from`: the key, the public half as the
    /// `keyring.signing_key_added` payload, and the sealed private half for its slot.
    pub fn generate(
        &self,
        active_from: DateTime<Utc>,
    ) -> Result<(SigningKey, SigningKeyAdded, Vec<u8>), SecretsError> {
        let key = SigningKey::generate();
        let sealed = self.0.seal(key.seed().as_slice(), key.kid().as_bytes())?;
        let added = SigningKeyAdded {
            kid: key.kid().to_owned(),
            public_key: key.jwk().x,
            active_from,
        };
        Ok((key, added, sealed))
    }

    /// Opens the sealed private half of `kid`.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<SigningKey, UnsealError> {
        let seed = self
            .0
            .open(sealed, kid.as_bytes())
            .map_err(|_| UnsealError::Open)?;
        let seed: [u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| UnsealError::NotASeed)?;
        Ok(SigningKey::from_seed(seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_under_its_kid_and_master_key() -> Result<(), SecretsError> {
        let master = MasterKey::generate();
        let seal = SigningKeySeal::new(&master);
        let (key, added, sealed) = seal.generate(Utc::now())?;
        assert_eq!(added.kid, key.kid());
        let opened = seal.open(&added.kid, &sealed).expect("opens");
        assert_eq!(opened.kid(), key.kid());
        assert!(matches!(
            seal.open("another-kid", &sealed),
            Err(UnsealError::Open)
        ));
        let other = SigningKeySeal::new(&MasterKey::generate());
        assert!(matches!(
            other.open(&added.kid, &sealed),
            Err(UnsealError::Open)
        ));
        Ok(())
    }
}
