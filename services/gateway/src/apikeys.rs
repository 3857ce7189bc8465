//! API-key authentication at the gateway: the api-key grant and `Authorization: Bearer
//! <api key>` both come through [`authenticate_key`].
//!
//! A key whose shape or checksum is wrong is refused before any lookup. Otherwise the
//! keys service checks the secret against the stored hashes (over the bus, sealed). A
//! verified key is remembered here by a keyed digest of the whole key string, so the
//! next use of the same key costs a hash and a map lookup instead of a round trip; the
//! remembered fact is only "this string is generation G of key K", and whether G may be
//! used *now* (active, not expired, not rotated away, account active) is decided on every
//! use from the directory, which follows the event feed. So a deactivation, deletion,
//! rotation or expiry takes effect here as fast as it does for tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gatehouse_contracts::commands::{Command, FailureKind};
use gatehouse_contracts::failures::KeysFailure;
use gatehouse_contracts::keys::{API_KEY_VIEW, AuthenticateApiKey, KeyRefusal};
use gatehouse_tokens::{ApiKeyHash, ApiKeyHasher, PrincipalKind, parse_api_key};
use rand_core::{OsRng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::context::RequestContext;
use crate::directory::Principal;
use crate::state::AppState;

/// How often a key's use is written to the shared `last_used` record (per replica).
const USE_RESOLUTION: Duration = Duration::from_secs(60);
/// Verified keys remembered at most (a bound against memory abuse).
const MAX_REMEMBERED: usize = 100_000;
/// Secrets (generations) remembered per key.
const SECRETS_PER_KEY: usize = 4;

/// A key that may be used right now.
#[derive(Clone, Debug)]
pub struct VerifiedKey {
    /// The key.
    pub id: Uuid,
    /// The generation the presented secret is.
    pub generation: u32,
    /// The key's epoch now.
    pub epoch: u64,
    /// The key's expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its service account, as the directory knows it now.
    pub principal: Arc<Principal>,
}

/// Why a key was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Unknown key, wrong secret, malformed key: the same answer for all.
    Invalid,
    /// The key is deactivated, expired or rotated away, or its account is inactive.
    Refused(KeyRefusal),
    /// Too many failures from this address; retry after this many seconds.
    RateLimited(u64),
    /// The keys service did not answer.
    Unavailable(String),
}

impl From<crate::directory::NotLoaded> for KeyError {
    fn from(e: crate::directory::NotLoaded) -> Self {
        KeyError::Unavailable(e.to_string())
    }
}

impl KeyError {
    /// The short reason given to clients (`gatehouse_reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            KeyError::Invalid => "invalid",
            KeyError::Refused(KeyRefusal::Deactivated) => "deactivated",
            KeyError::Refused(KeyRefusal::Expired) => "expired",
            KeyError::Refused(KeyRefusal::Rotated) => "rotated",
            KeyError::Refused(KeyRefusal::Revoked) => "revoked",
            KeyError::RateLimited(_) => "rate_limited",
            KeyError::Unavailable(_) => "unavailable",
        }
    }

    /// A message for people.
    pub fn message(&self) -> String {
        match self {
            KeyError::Invalid => "invalid API key".into(),
            KeyError::Refused(r) => r.to_string(),
            KeyError::RateLimited(s) => {
                format!("too many failed attempts from this address; retry in {s} s")
            }
            KeyError::Unavailable(m) => m.clone(),
        }
    }
}

#[derive(Clone, Copy)]
struct Remembered {
    digest: ApiKeyHash,
    generation: u32,
}

/// Verified keys and when each was last recorded as used.
pub struct KeyCache {
    /// Keyed with a random per-process pepper: the digests are useless outside.
    digester: ApiKeyHasher,
    /// Per key, the secrets (generations) verified lately: during a retention window old
    /// and new secrets are both in use, and each should stay a cache hit.
    verified: RwLock<HashMap<Uuid, Vec<Remembered>>>,
    recorded_use: Mutex<HashMap<Uuid, Instant>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").finish_non_exhaustive()
    }
}

impl Default for KeyCache {
    fn default() -> Self {
        let mut pepper = [0u8; 32];
        OsRng.fill_bytes(&mut pepper);
        Self {
            digester: ApiKeyHasher::new(pepper),
            verified: RwLock::default(),
            recorded_use: Mutex::default(),
        }
    }
}

impl KeyCache {
    fn remembered(&self, id: &Uuid, digest: &ApiKeyHash) -> Option<u32> {
        let verified = self.verified.read().unwrap_or_else(|p| p.into_inner());
        verified
            .get(id)?
            .iter()
            .find(|r| r.digest == *digest)
            .map(|r| r.generation)
    }

    fn remember(&self, id: Uuid, digest: ApiKeyHash, generation: u32) {
        let mut verified = self.verified.write().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= MAX_REMEMBERED && !verified.contains_key(&id) {
            verified.clear();
        }
        let secrets = verified.entry(id).or_default();
        secrets.retain(|r| r.generation != generation);
        if secrets.len() >= SECRETS_PER_KEY {
            // The oldest generation goes first: it is the one whose window ends soonest.
            if let Some(oldest) = (0..secrets.len()).min_by_key(|&i| secrets[i].generation) {
                secrets.swap_remove(oldest);
            }
        }
        secrets.push(Remembered { digest, generation });
    }

    fn forget(&self, id: &Uuid) {
        self.verified
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Whether a use of `id` at `now` should be written (at most once per resolution).
    fn due_for_recording(&self, id: Uuid, now: Instant) -> bool {
        let mut recorded = self.recorded_use.lock().unwrap_or_else(|p| p.into_inner());
        match recorded.get(&id) {
            Some(at) if now.duration_since(*at) < USE_RESOLUTION => false,
            _ => {
                if recorded.len() >= MAX_REMEMBERED {
                    recorded.clear();
                }
                recorded.insert(id, now);
                true
            }
        }
    }
}

/// Decides, from the directory alone, whether generation `generation` of key `id` may be
/// used now, and returns the key's service account.
fn usable_now(
    state: &AppState,
    id: Uuid,
    generation: u32,
    now: DateTime<Utc>,
) -> Result<VerifiedKey, KeyError> {
    let entry = state.directory.api_key(&id).ok_or(KeyError::Invalid)?;
    entry
        .validity
        .check(generation, now)
        .map_err(KeyError::Refused)?;
    let principal = state
        .directory
        .principal(&entry.service_account_id)
        .filter(|p| p.kind == PrincipalKind::ServiceAccount)
        .ok_or(KeyError::Invalid)?;
    if !principal.active {
        return Err(KeyError::Refused(KeyRefusal::Deactivated));
    }
    Ok(VerifiedKey {
        id,
        generation,
        epoch: entry.validity.epoch,
        expires_at: entry.validity.expires_at,
        principal,
    })
}

/// Authenticates a presented API key. Failures count against the source address and the
/// key id (malformed keys against the address alone).
pub async fn authenticate_key(
    state: &AppState,
    ctx: &RequestContext,
    key: &SecretString,
) -> Result<VerifiedKey, KeyError> {
    state.directory.loaded()?;
    let subject = parse_api_key(key.expose_secret())
        .map(|parsed| parsed.key_id.to_string())
        .unwrap_or_default();
    if let Err(wait) = state.limits.check_login(ctx.client_ip, &subject) {
        return Err(KeyError::RateLimited(wait));
    }
    let result = verify(state, ctx, key).await;
    match &result {
        Ok(verified) => {
            state.limits.login_succeeded(ctx.client_ip, &subject);
            record_use(state, verified.id);
        }
        Err(KeyError::Unavailable(_)) => {}
        Err(_) => state.limits.login_failed(ctx.client_ip, &subject),
    }
    result
}

async fn verify(
    state: &AppState,
    ctx: &RequestContext,
    key: &SecretString,
) -> Result<VerifiedKey, KeyError> {
    let parsed = parse_api_key(key.expose_secret()).map_err(|_| KeyError::Invalid)?;
    let id = parsed.key_id;
    let digest = state.key_cache.digester.hash(id, &parsed.secret);
    let now = state.clock.now();
    if let Some(generation) = state.key_cache.remembered(&id, &digest) {
        let result = usable_now(state, id, generation, now);
        if matches!(result, Err(KeyError::Invalid)) {
            state.key_cache.forget(&id);
        }
        return result;
    }
    let sealed = state
        .sealer
        .seal(key, &AuthenticateApiKey::subject())
        .map_err(|e| KeyError::Unavailable(e.to_string()))?;
    let accepted = state
        .command(ctx, None, AuthenticateApiKey { key: sealed }, None)
        .await
        .map_err(|e| match e.code {
            KeysFailure::KeyDeactivated => KeyError::Refused(KeyRefusal::Deactivated),
            KeysFailure::KeyExpired => KeyError::Refused(KeyRefusal::Expired),
            KeysFailure::KeyRotated => KeyError::Refused(KeyRefusal::Rotated),
            _ if e.kind == FailureKind::Unavailable => KeyError::Unavailable(e.message),
            _ => {
                if e.kind.is_ours() {
                    tracing::error!(error = %e, "the keys service failed to check a key");
                }
                KeyError::Invalid
            }
        })?;
    let generation = accepted.output.generation;
    // A key created a moment ago on another replica may not have reached this one's
    // directory yet: give the feed a moment.
    let deadline = Instant::now() + Duration::from_secs(1);
    while state.directory.api_key(&id).is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let verified = usable_now(state, id, generation, now)?;
    state.key_cache.remember(id, digest, generation);
    Ok(verified)
}

/// Writes the key's use to the shared record, at most once a minute per key and replica,
/// in the background (never on the request's path).
fn record_use(state: &AppState, id: Uuid) {
    if !state.key_cache.due_for_recording(id, Instant::now()) {
        return;
    }
    let views = state.views.clone();
    let at = state.clock.now();
    tokio::spawn(async move {
        if let Err(e) = views.record_use(API_KEY_VIEW, id, at).await {
            tracing::warn!(key = %id, error = %e, "recording an API key's use failed");
        }
    });
}

/// Whether a bearer credential looks like an API key rather than a token.
pub fn looks_like_api_key(credential: &str) -> bool {
    credential.starts_with(gatehouse_tokens::API_KEY_PREFIX)
}

#[cfg(test)]
mod tests {
    use gatehouse_tokens::generate_api_key;

    use super::*;

    #[test]
    fn several_generations_of_one_key_stay_remembered_and_the_oldest_goes_first() {
        let cache = KeyCache::default();
        let id = Uuid::new_v4();
        let digests: Vec<ApiKeyHash> = (0..=SECRETS_PER_KEY)
            .map(|_| cache.digester.hash(id, &generate_api_key(id).secret))
            .collect();
        for (generation, digest) in (1u32..).zip(&digests[..SECRETS_PER_KEY]) {
            cache.remember(id, *digest, generation);
        }
        for (generation, digest) in (1u32..).zip(&digests[..SECRETS_PER_KEY]) {
            assert_eq!(cache.remembered(&id, digest), Some(generation));
        }
        let newest = u32::try_from(SECRETS_PER_KEY).unwrap() + 1;
        cache.remember(id, digests[SECRETS_PER_KEY], newest);
        assert_eq!(
            cache.remembered(&id, &digests[0]),
            None,
            "generation 1 evicted"
        );
        assert_eq!(cache.remembered(&id, &digests[1]), Some(2));
        assert_eq!(
            cache.remembered(&id, &digests[SECRETS_PER_KEY]),
            Some(newest)
        );
        cache.forget(&id);
        assert_eq!(cache.remembered(&id, &digests[1]), None);
    }
}
