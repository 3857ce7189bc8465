//! A connector's secrets at rest: sealed with a data key of their own, which is itself
//! wrapped by the master key; both in the connector stream's secret slots, written in the
//! same transaction as the event that sets them.
//!
//! Replacing the secrets makes a new data key. Deleting the connector deletes the wrapped
//! key with the sealed secrets: a copy of the ciphertext kept anywhere (a backup of the
//! slot table, a replica) cannot be opened any more, with the master key or without, since
//! the data key was random and is gone (crypto-shredding).

use std::collections::BTreeMap;
use std::sync::Arc;

use gatehouse_contracts::envelope::StreamId;
use gatehouse_eventlog::{EventStore, SecretOp, StoreError};
use gatehouse_secrets::{DataKey, MasterKey, SecretsError, WrappedKey, Zeroizing};
use secrecy::SecretString;

use crate::types::Secrets;

/// The slot holding the connector's data key, wrapped by the master key.
pub const DATA_KEY_SLOT: &str = "data_key";
/// The slot holding the connector's secrets, sealed with its data key.
pub const SECRETS_SLOT: &str = "secrets";

/// Why a connector's secrets cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data key is gone (the connector was deleted) while sealed secrets remain.
    #[error("the connector's data key is gone: its secrets were shredded")]
    Shredded,
    /// The stored bytes do not open (wrong master key, tampering).
    #[error("the connector's secrets cannot be opened")]
    Unreadable(#[from] SecretsError),
}

/// Seals and opens connectors' secrets.
#[derive(Clone)]
pub struct Vault {
    master: Arc<MasterKey>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault([HIDDEN])")
    }
}

impl Vault {
    /// A vault under `master`.
    pub fn new(master: Arc<MasterKey>) -> Self {
        Self { master }
    }

    /// The slot writes that store `secrets` for `stream` under a new data key. The
    /// stream id is the associated data of both ciphertexts: they open for this
    /// connector only.
    pub fn seal(
        &self,
        stream: &StreamId,
        secrets: &BTreeMap<String, String>,
    ) -> Result<Vec<SecretOp>, SecretsError> {
        let aad = stream.to_string();
        let key = DataKey::generate();
        let wrapped = self.master.wrap(&key, aad.as_bytes())?;
        let plaintext = Zeroizing::new(serde_json::to_vec(secrets).unwrap_or_default());
        let sealed = key.seal(&plaintext, aad.as_bytes())?;
        Ok(vec![
            SecretOp::Put {
                name: DATA_KEY_SLOT.into(),
                value: wrapped.as_bytes().to_vec(),
            },
            SecretOp::Put {
                name: SECRETS_SLOT.into(),
                value: sealed,
            },
        ])
    }

    /// The slot writes that destroy a connector's data key and sealed secrets.
    pub fn shred() -> Vec<SecretOp> {
        vec![
            SecretOp::Delete {
                name: DATA_KEY_SLOT.into(),
            },
            SecretOp::Delete {
                name: SECRETS_SLOT.into(),
            },
        ]
    }

    /// Opens `stream`'s secrets as stored.
    pub async fn open(
        &self,
        store: &dyn EventStore,
        stream: &StreamId,
    ) -> Result<Secrets, VaultError> {
        let wrapped = store.read_secret(stream, DATA_KEY_SLOT).await?;
        let sealed = store.read_secret(stream, SECRETS_SLOT).await?;
        self.open_bytes(stream, wrapped.as_deref(), sealed.as_deref())
    }

    /// Opens sealed secrets with a wrapped data key (either may be missing).
    pub fn open_bytes(
        &self,
        stream: &StreamId,
        wrapped: Option<&[u8]>,
        sealed: Option<&[u8]>,
    ) -> Result<Secrets, VaultError> {
        let Some(sealed) = sealed else {
            return Ok(Secrets::default());
        };
        let wrapped = wrapped.ok_or(VaultError::Shredded)?;
        let aad = stream.to_string();
        let key = self
            .master
            .unwrap_key(&WrappedKey::from_bytes(wrapped), aad.as_bytes())?;
        let plaintext = key.open(sealed, aad.as_bytes())?;
        let fields: BTreeMap<String, String> =
            serde_json::from_slice(&plaintext).map_err(|_| SecretsError::Decrypt)?;
        Ok(Secrets::new(
            fields.into_iter().map(|(k, v)| (k, SecretString::from(v))),
        ))
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_eventlog::memory::MemoryEventStore;
    use uuid::Uuid;

    use super::*;

    fn secrets() -> BTreeMap<String, String> {
        BTreeMap::from([(
            "aws_secret_access_key".to_owned(),
            "s3cr3t-value".to_owned(),
        )])
    }

    fn slots(ops: &[SecretOp]) -> (Vec<u8>, Vec<u8>) {
        let get = |slot: &str| {
            ops.iter()
                .find_map(|op| match op {
                    SecretOp::Put { name, value } if name == slot => Some(value.clone()),
                    _ => None,
                })
                .unwrap()
        };
        (get(DATA_KEY_SLOT), get(SECRETS_SLOT))
    }

    #[test]
    fn sealed_secrets_open_for_their_connector_only() {
        let vault = Vault::new(Arc::new(MasterKey::generate()));
        let stream = StreamId::new("connector", Uuid::new_v4());
        let (key, sealed) = slots(&vault.seal(&stream, &secrets()).unwrap());
        assert!(
            !String::from_utf8_lossy(&sealed).contains("s3cr3t-value"),
            "the slot holds ciphertext"
        );
        let opened = vault
            .open_bytes(&stream, Some(&key), Some(&sealed))
            .unwrap();
        assert_eq!(opened.get("aws_secret_access_key"), Some("s3cr3t-value"));
        let other = StreamId::new("connector", Uuid::new_v4());
        assert!(vault.open_bytes(&other, Some(&key), Some(&sealed)).is_err());
    }

    #[test]
    fn without_the_data_key_the_ciphertext_is_unreadable_even_with_the_master_key() {
        let master = Arc::new(MasterKey::generate());
        let vault = Vault::new(master.clone());
        let stream = StreamId::new("connector", Uuid::new_v4());
        let (_, sealed) = slots(&vault.seal(&stream, &secrets()).unwrap());
        assert!(matches!(
            vault.open_bytes(&stream, None, Some(&sealed)),
            Err(VaultError::Shredded)
        ));
        // Nothing derived from the master key opens it either: the data key was random.
        for purpose in ["gatehouse/key-wrap/v1", "gatehouse/bus-seal/v1", ""] {
            let derived = master.derive_key(purpose);
            assert!(
                derived
                    .open(&sealed, stream.to_string().as_bytes())
                    .is_err()
            );
        }
    }

    #[test]
    fn replacing_secrets_makes_a_new_data_key() {
        let vault = Vault::new(Arc::new(MasterKey::generate()));
        let stream = StreamId::new("connector", Uuid::new_v4());
        let (first_key, first) = slots(&vault.seal(&stream, &secrets()).unwrap());
        let (second_key, _) = slots(&vault.seal(&stream, &secrets()).unwrap());
        assert_ne!(first_key, second_key);
        // The old ciphertext does not open with the new key.
        assert!(
            vault
                .open_bytes(&stream, Some(&second_key), Some(&first))
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_stream_without_secrets_has_none() {
        let vault = Vault::new(Arc::new(MasterKey::generate()));
        let store = MemoryEventStore::default();
        let stream = StreamId::new("connector", Uuid::new_v4());
        assert!(vault.open(&store, &stream).await.unwrap().is_empty());
    }
}
