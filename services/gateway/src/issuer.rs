//! Token issuance and verification.
//!
//! The signing keys live in the event log's `keyring` stream (public halves in events,
//! private halves sealed under the master key in the stream's secret slots), so every
//! gateway replica signs with the same key and verifies every replica's tokens. The first
//! gateway to start creates the key; the others load it.
//!
//! Verification is the per-request hot path: a verified token's claims are cached by the
//! token string, so a client that reuses its token costs one hash-map lookup rather than
//! one Ed25519 verification per request. Revocation is not decided here (the directory
//! does it on every request), so caching cannot keep a revoked token alive.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gatehouse_contracts::clock::Clock;
use gatehouse_contracts::envelope::{Actor, EventMetadata, StreamId};
use gatehouse_contracts::events::DomainEvent;
use gatehouse_contracts::keyring::{KEYRING_AGGREGATE, KeyringEvent, SigningKeyAdded};
use gatehouse_eventlog::{
    AppendError, AppendRequest, EventStore, ExpectedVersion, NewEvent, SecretOp, StoreError,
};
use gatehouse_secrets::{DerivedKey, MasterKey};
use gatehouse_tokens::{
    AccessTokenClaims, Jwks, PrincipalKind, SessionSource, SigningKey, TokenError, Verifier,
};
use uuid::Uuid;

use crate::errors::ApiError;

const SEAL_PURPOSE: &str = "gatehouse/signing-keys/v1";
const CACHE_CAPACITY: usize = 100_000;

/// A session to mint a token for.
#[derive(Clone, Debug)]
pub struct Session {
    /// The principal (`sub`).
    pub subject: Uuid,
    /// User or service account.
    pub kind: PrincipalKind,
    /// The principal's epoch now; a later revocation raises it.
    pub epoch: u64,
    /// How the session was authenticated.
    pub source: SessionSource,
    /// The OAuth client.
    pub client_id: String,
    /// Granted scope.
    pub scope: Option<String>,
    /// Lifetime.
    pub ttl: Duration,
}

/// Loading or creating the keyring failed.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The event log failed.
    #[error("the event log is unavailable")]
    Store(#[from] StoreError),
    /// A sealed key cannot be opened: the master key differs from the one that sealed it.
    #[error(
        "signing key {kid} cannot be unsealed: is GATEHOUSE_MASTER_KEY the one this deployment was created with?"
    )]
    Unseal {
        /// The key id.
        kid: String,
    },
    /// The keyring holds something this build cannot read.
    #[error("the keyring is corrupt: {0}")]
    Corrupt(String),
}

/// Signs and verifies access tokens.
pub struct TokenIssuer {
    signing: SigningKey,
    verifier: Verifier,
    jwks: Jwks,
    issuer: String,
    audience: String,
    cache: RwLock<HashMap<Box<str>, Arc<AccessTokenClaims>>>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.signing.kid())
            .field("issuer", &self.issuer)
            .finish()
    }
}

fn keyring_stream() -> StreamId {
    StreamId::new(KEYRING_AGGREGATE, Uuid::nil())
}

fn slot(kid: &str) -> String {
    format!("signing_key:{kid}")
}

impl TokenIssuer {
    /// Loads the keyring from the log, creating the first key if there is none.
    pub async fn load_or_create(
        store: &dyn EventStore,
        master: &MasterKey,
        issuer: &str,
        audience: &str,
        clock: &dyn Clock,
    ) -> Result<Self, IssuerError> {
        let seal = master.derive_key(SEAL_PURPOSE);
        for _ in 0..3 {
            let events = store.read_stream(&keyring_stream(), 0).await?;
            if events.is_empty() {
                Self::create_first_key(store, &seal, clock).await?;
                continue;
            }
            let mut keys = Vec::new();
            for recorded in &events {
                let KeyringEvent::SigningKeyAdded(added) = KeyringEvent::from_recorded(recorded)
                    .map_err(|e| IssuerError::Corrupt(e.to_string()))?;
                let sealed = store
                    .read_secret(&keyring_stream(), &slot(&added.kid))
                    .await?
                    .ok_or_else(|| {
                        IssuerError::Corrupt(format!(
                            "the private half of {} is missing",
                            added.kid
                        ))
                    })?;
                let seed =
                    seal.open(&sealed, added.kid.as_bytes())
                        .map_err(|_| IssuerError::Unseal {
                            kid: added.kid.clone(),
                        })?;
                let seed: [u8; 32] = seed
                    .as_slice()
                    .try_into()
                    .map_err(|_| IssuerError::Corrupt("a seed is not 32 bytes".into()))?;
                keys.push(SigningKey::from_seed(seed));
            }
            let Some(signing) = keys.last().cloned() else {
                continue;
            };
            let verifier =
                Verifier::new(issuer, audience, keys.iter().map(SigningKey::verifying_key));
            let jwks = Jwks {
                keys: keys.iter().map(SigningKey::jwk).collect(),
            };
            tracing::info!(
                kid = signing.kid(),
                keys = keys.len(),
                "token signing keys loaded"
            );
            return Ok(Self {
                signing,
                verifier,
                jwks,
                issuer: issuer.to_owned(),
                audience: audience.to_owned(),
                cache: RwLock::new(HashMap::new()),
            });
        }
        Err(IssuerError::Corrupt(
            "the keyring could not be created".into(),
        ))
    }

    async fn create_first_key(
        store: &dyn EventStore,
        seal: &DerivedKey,
        clock: &dyn Clock,
    ) -> Result<(), IssuerError> {
        let key = SigningKey::generate();
        let kid = key.kid().to_owned();
        let event = KeyringEvent::SigningKeyAdded(SigningKeyAdded {
            kid: kid.clone(),
            public_key: key.jwk().x,
            active_from: clock.now(),
        });
        let metadata = EventMetadata {
            actor: Some(Actor::system()),
            ..EventMetadata::default()
        };
        let mut request = AppendRequest::new(
            keyring_stream(),
            ExpectedVersion::NoStream,
            vec![NewEvent::from_domain(&event, metadata, clock.now())],
        );
        let sealed = seal
            .seal(key.seed().as_slice(), kid.as_bytes())
            .map_err(|e| IssuerError::Corrupt(e.to_string()))?;
        request.secrets.push(SecretOp::Put {
            name: slot(&kid),
            value: sealed,
        });
        match store.append(request).await {
            // Another gateway created it first: load theirs.
            Ok(_) | Err(AppendError::WrongExpectedVersion { .. }) => Ok(()),
            Err(AppendError::Store(e)) => Err(IssuerError::Store(e)),
            Err(other) => Err(IssuerError::Corrupt(other.to_string())),
        }
    }

    /// Mints a token; returns it with its lifetime in seconds.
    pub fn mint(&self, session: &Session, now: i64) -> (String, u64) {
        let ttl = session.ttl.as_secs();
        let claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: session.subject.to_string(),
            aud: self.audience.clone(),
            exp: now + ttl as i64,
            iat: now,
            nbf: now,
            jti: Uuid::new_v4().to_string(),
            client_id: session.client_id.clone(),
            scope: session.scope.clone(),
            principal_kind: session.kind,
            source: session.source.clone(),
            principal_epoch: session.epoch,
        };
        (gatehouse_tokens::sign(&claims, &self.signing), ttl)
    }

    /// Verifies a token (signature, issuer, audience, lifetime), from the cache when it
    /// was verified before.
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<AccessTokenClaims>, ApiError> {
        if let Some(claims) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
        {
            if claims.exp > now {
                return Ok(claims.clone());
            }
            return Err(ApiError::unauthenticated("the access token has expired")
                .with_code("token_expired"));
        }
        let claims = self.verifier.verify(token, now).map_err(|e| match e {
            TokenError::Expired => {
                ApiError::unauthenticated("the access token has expired").with_code("token_expired")
            }
            _ => ApiError::unauthenticated("invalid access token").with_code("invalid_token"),
        })?;
        let claims = Arc::new(claims);
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(token.into(), claims.clone());
        Ok(claims)
    }

    /// The public keys (JWKS).
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }
}
