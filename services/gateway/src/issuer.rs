//! Token issuance and verification.
//!
//! The signing keys live in the event log's `keyring` stream (public halves in events,
//! private halves sealed under the master key in the stream's secret slots), so every
//! gateway replica signs with the same key and verifies every replica's tokens. The
//! identity service owns the keyring: it creates the first key (a starting gateway asks it
//! to), adds keys (verifying at once, signing from `active_from`) and retires them (their
//! tokens are refused), by admin request or on schedule. Gateways only read: each replica
//! hears of every change through its directory's `keyring` read model
//! ([`TokenIssuer::apply_view`]) and loads new private halves from the log.
//!
//! Verification is the per-request hot path: a verified token's claims are cached by the
//! token string, so a client that reuses its token costs one hash-map lookup rather than
//! one Ed25519 verification per request. Revocation is not decided here (the directory
//! does it on every request), so caching cannot keep a revoked token alive.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use gatehouse_contracts::clock::Clock;
use gatehouse_contracts::events::{DomainEvent, EventDecodeError};
use gatehouse_contracts::keyring::{
    KeyringEvent, KeyringView, SigningKeyAdded, keyring_stream, signing_key_slot,
};
use gatehouse_eventlog::{EventStore, StoreError};
use gatehouse_secrets::MasterKey;
use gatehouse_tokens::{
    AccessTokenClaims, Jwk, Jwks, PrincipalKind, SessionSource, SigningKey, SigningKeySeal,
    TokenError, UnsealError, VerificationKey, Verifier,
};
use uuid::Uuid;

use crate::errors::ApiError;

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
    store: Arc<dyn EventStore>,
    seal: SigningKeySeal,
    issuer: String,
    audience: String,
    keys: RwLock<Arc<Keys>>,
    cache: RwLock<HashMap<Box<str>, Arc<AccessTokenClaims>>>,
}

/// What the keyring holds now, as this replica knows it.
struct Keys {
    /// The public state (every key added, which are retired), from the log.
    view: KeyringView,
    /// The private halves loaded so far, by kid (retired keys are dropped).
    seeds: HashMap<String, SigningKey>,
    /// Verifies with every key that is not retired.
    verifier: Verifier,
    /// Publishes every key that is not retired (keys that sign later too, so that
    /// verifiers can fetch them ahead).
    jwks: Jwks,
}

impl Keys {
    fn new(
        view: KeyringView,
        mut seeds: HashMap<String, SigningKey>,
        issuer: &str,
        audience: &str,
    ) -> Self {
        seeds.retain(|kid, _| !view.is_retired(kid));
        let valid: Vec<VerificationKey> = view
            .keys
            .iter()
            .filter(|k| !view.is_retired(&k.kid))
            .filter_map(|k| public_key(k).ok())
            .collect();
        let jwks = Jwks {
            keys: valid.iter().map(VerificationKey::to_jwk).collect(),
        };
        Self {
            verifier: Verifier::new(issuer, audience, valid),
            jwks,
            view,
            seeds,
        }
    }

    /// The key to sign with at `now`: the newest active, unretired key whose private half
    /// this replica has (a key another replica just added signs here once loaded).
    fn signer(&self, now: DateTime<Utc>) -> Option<&SigningKey> {
        self.view
            .signer_where(now, |kid| self.seeds.contains_key(kid))
            .and_then(|k| self.seeds.get(&k.kid))
    }
}

fn public_key(added: &SigningKeyAdded) -> Result<VerificationKey, IssuerError> {
    Jwk {
        kty: "OKP".into(),
        crv: "Ed25519".into(),
        x: added.public_key.clone(),
        kid: added.kid.clone(),
        alg: None,
        key_use: None,
    }
    .to_verification_key()
    .map_err(|e| IssuerError::Corrupt(format!("public key {}: {e}", added.kid)))
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("keys", &self.keys().view.keys.len())
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// A signing key as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SigningKeyInfo {
    /// The key id (the `kid` header of the tokens it signs).
    pub kid: String,
    /// `pending` (signs from `active_from`), `signing` (signs new tokens now), `verifying`
    /// (superseded: its tokens still work until they expire) or `retired` (its tokens are
    /// refused).
    pub status: &'static str,
    /// From when it signs.
    pub active_from: DateTime<Utc>,
    /// When it was retired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
}

impl TokenIssuer {
    /// Loads the keyring from the log (the identity service creates the first key: see
    /// [`crate::bootstrap::ensure_signing_key`]).
    pub async fn load(
        store: Arc<dyn EventStore>,
        master: &MasterKey,
        issuer: &str,
        audience: &str,
        clock: &dyn Clock,
    ) -> Result<Self, IssuerError> {
        let seal = SigningKeySeal::new(master);
        let events = store.read_stream(&keyring_stream(), 0).await?;
        if events.is_empty() {
            return Err(IssuerError::Corrupt("the keyring has no key yet".into()));
        }
        let mut view = KeyringView::default();
        for recorded in &events {
            match KeyringEvent::from_recorded(recorded) {
                Ok(event) => view.apply(&event),
                // A newer build's keyring event: skipped here as by the read models
                // (decision 0012); the keys this build knows still sign and verify.
                Err(
                    error @ (EventDecodeError::UnknownType { .. }
                    | EventDecodeError::UnsupportedVersion { .. }),
                ) => {
                    tracing::warn!(error = %error, "skipping a keyring event this build does not know")
                }
                Err(error) => return Err(IssuerError::Corrupt(error.to_string())),
            }
        }
        let mut seeds = HashMap::new();
        for added in view.keys.iter().filter(|k| !view.is_retired(&k.kid)) {
            let key = load_seed(store.as_ref(), &seal, &added.kid)
                .await?
                .ok_or_else(|| {
                    IssuerError::Corrupt(format!("the private half of {} is missing", added.kid))
                })?;
            seeds.insert(added.kid.clone(), key);
        }
        let keys = Keys::new(view, seeds, issuer, audience);
        let Some(signing) = keys.signer(clock.now()) else {
            return Err(IssuerError::Corrupt(
                "no signing key is active and unretired".into(),
            ));
        };
        tracing::info!(
            kid = signing.kid(),
            keys = keys.seeds.len(),
            "token signing keys loaded"
        );
        Ok(Self {
            store,
            seal,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys: RwLock::new(Arc::new(keys)),
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// The keyring's public state as this replica knows it.
    pub fn view(&self) -> KeyringView {
        self.keys().view.clone()
    }

    fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes in the keyring's public state as the directory folded it: keys added by any
    /// replica start verifying (and, once their private half is loaded, signing); retired
    /// keys stop verifying at once.
    pub fn apply_view(self: &Arc<Self>, view: KeyringView) {
        let missing: Vec<String> = {
            let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
            // The keyring only grows (keys added, keys retired): merging never loses what
            // this replica loaded from the log, even from a read model that began late.
            let mut merged = keys.view.clone();
            for added in view.keys {
                merged.apply(&KeyringEvent::SigningKeyAdded(added));
            }
            for retired in view.retired {
                merged.apply(&KeyringEvent::SigningKeyRetired(retired));
            }
            if merged == keys.view {
                return;
            }
            let next = Keys::new(merged, keys.seeds.clone(), &self.issuer, &self.audience);
            let missing = next
                .view
                .keys
                .iter()
                .filter(|k| !next.view.is_retired(&k.kid) && !next.seeds.contains_key(&k.kid))
                .map(|k| k.kid.clone())
                .collect();
            *keys = Arc::new(next);
            missing
        };
        // A retired key's tokens may sit in the cache of verified claims.
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        for kid in missing {
            let issuer = self.clone();
            tokio::spawn(async move {
                match load_seed(issuer.store.as_ref(), &issuer.seal, &kid).await {
                    Ok(Some(key)) => issuer.add_seed(key),
                    Ok(None) => tracing::error!(kid, "a signing key's private half is missing"),
                    Err(error) => {
                        tracing::error!(kid, error = %error, "loading a signing key failed")
                    }
                }
            });
        }
    }

    fn add_seed(&self, key: SigningKey) {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if keys.view.is_retired(key.kid()) {
            return;
        }
        let mut seeds = keys.seeds.clone();
        seeds.insert(key.kid().to_owned(), key);
        *keys = Arc::new(Keys::new(
            keys.view.clone(),
            seeds,
            &self.issuer,
            &self.audience,
        ));
    }

    /// The keys, newest first, as the API lists them.
    pub fn list(&self, now: DateTime<Utc>) -> Vec<SigningKeyInfo> {
        let keys = self.keys();
        let signer = keys.view.signer(now).map(|k| k.kid.clone());
        let mut list: Vec<SigningKeyInfo> = keys
            .view
            .keys
            .iter()
            .map(|k| {
                let retired_at = keys
                    .view
                    .retired
                    .iter()
                    .find(|r| r.kid == k.kid)
                    .map(|r| r.retired_at);
                let status = if retired_at.is_some() {
                    "retired"
                } else if k.active_from > now {
                    "pending"
                } else if signer.as_deref() == Some(k.kid.as_str()) {
                    "signing"
                } else {
                    "verifying"
                };
                SigningKeyInfo {
                    kid: k.kid.clone(),
                    status,
                    active_from: k.active_from,
                    retired_at,
                }
            })
            .collect();
        list.reverse();
        list
    }

    /// One key, as the API shows it.
    pub fn info(&self, kid: &str, now: DateTime<Utc>) -> Option<SigningKeyInfo> {
        self.list(now).into_iter().find(|k| k.kid == kid)
    }

    /// Mints a token; returns it with its lifetime in seconds.
    pub fn mint(&self, session: &Session, at: DateTime<Utc>) -> (String, u64) {
        let now = at.timestamp();
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
        let keys = self.keys();
        // Load refuses a keyring without a signer and retiring the last one is refused, so
        // there is always one; the fallback only guards against a clock gone backwards.
        let signing = keys
            .signer(at)
            .or_else(|| keys.seeds.values().next())
            .expect("the keyring always holds a key that can sign");
        (gatehouse_tokens::sign(&claims, signing), ttl)
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
        let claims = self
            .keys()
            .verifier
            .verify(token, now)
            .map_err(|e| match e {
                TokenError::Expired => ApiError::unauthenticated("the access token has expired")
                    .with_code("token_expired"),
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

    /// The public keys (JWKS): every key that is not retired.
    pub fn jwks(&self) -> Jwks {
        self.keys().jwks.clone()
    }
}

/// The private half of `kid`, unsealed from the keyring's secret slot.
async fn load_seed(
    store: &dyn EventStore,
    seal: &SigningKeySeal,
    kid: &str,
) -> Result<Option<SigningKey>, IssuerError> {
    let Some(sealed) = store
        .read_secret(&keyring_stream(), &signing_key_slot(kid))
        .await?
    else {
        return Ok(None);
    };
    seal.open(kid, &sealed).map(Some).map_err(|e| match e {
        UnsealError::Open => IssuerError::Unseal {
            kid: kid.to_owned(),
        },
        UnsealError::NotASeed => IssuerError::Corrupt(format!("{kid}: {e}")),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use gatehouse_contracts::envelope::EventMetadata;
    use gatehouse_eventlog::{AppendRequest, ExpectedVersion, NewEvent, SecretOp};

    use super::*;

    /// Writes a first signing key into `log` as the identity service does (the gateway's
    /// own tests cannot run the service: the gateway does not depend on it).
    pub(crate) async fn first_key(log: &dyn EventStore, master: &MasterKey) -> anyhow::Result<()> {
        let (_, added, sealed) =
            SigningKeySeal::new(master).generate(Utc::now() - chrono::Duration::seconds(1))?;
        let name = signing_key_slot(&added.kid);
        let added = KeyringEvent::SigningKeyAdded(added);
        let mut request = AppendRequest::new(
            keyring_stream(),
            ExpectedVersion::NoStream,
            vec![NewEvent::from_domain(
                &added,
                EventMetadata::default(),
                Utc::now(),
            )],
        );
        request.secrets.push(SecretOp::Put {
            name,
            value: sealed,
        });
        log.append(request).await?;
        Ok(())
    }
}
