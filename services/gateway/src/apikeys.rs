//! API-key authentication at the gateway: the api-key grant and `Authorization: Bearer
//! <api key>` both come through [`ApiKeyAuthenticator::authenticate`].
//!
//! A key whose shape or checksum is wrong is refused before any lookup. Otherwise the
//! keys service checks the secret against the stored hashes (over the bus, sealed). A
//! verified key is remembered here by a keyed digest of the whole key string, so the
//! next use of the same key costs a hash and a map lookup instead of a round trip; the
//! remembered fact is only "this string is generation G of key K", and whether G may be
//! used *now* (active, not expired, not rotated away, account active) is decided on every
//! use from the directory, which follows the event feed. So a deactivation, deletion,
//! rotation or expiry takes effect here as fast as it does for tokens.
//!
//! The authenticator is a component of the application state that takes exactly what it
//! uses: the directory's key and principal entries ([`KeyLookup`]), the keys service's
//! check of a key not seen here yet ([`KeyChecker`]; [`BusKeyChecker`] sends
//! `AuthenticateApiKey` over the bus), the shared failure limits, the read models (to record
//! a key's use) and the clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gatehouse_bus::CommandBus;
use gatehouse_contracts::clock::Clock;
use gatehouse_contracts::commands::{Command, FailureKind};
use gatehouse_contracts::failures::KeysFailure;
use gatehouse_contracts::keys::{API_KEY_VIEW, AuthenticateApiKey, KeyRefusal};
use gatehouse_eventlog::ViewStore;
use gatehouse_replicas::Limits;
use gatehouse_secrets::BusSealer;
use gatehouse_tokens::{ApiKeyHash, ApiKeyHasher, ParsedApiKey, PrincipalKind, parse_api_key};
use rand_core::{OsRng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::context::RequestContext;
use crate::directory::{Directory, KeyEntry, NotLoaded, Principal};

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

impl From<NotLoaded> for KeyError {
    fn from(e: NotLoaded) -> Self {
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
struct KeyCache {
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

/// What the authenticator reads from the directory (which follows the event feed).
pub trait KeyLookup: Send + Sync + 'static {
    /// `Err` until the directory is loaded: before that, "not found" proves nothing.
    fn loaded(&self) -> Result<(), NotLoaded>;
    /// An API key by id.
    fn api_key(&self, id: &Uuid) -> Option<Arc<KeyEntry>>;
    /// A principal by id.
    fn principal(&self, id: &Uuid) -> Option<Arc<Principal>>;
}

impl KeyLookup for Directory {
    fn loaded(&self) -> Result<(), NotLoaded> {
        Directory::loaded(self)
    }

    fn api_key(&self, id: &Uuid) -> Option<Arc<KeyEntry>> {
        Directory::api_key(self, id)
    }

    fn principal(&self, id: &Uuid) -> Option<Arc<Principal>> {
        Directory::principal(self, id)
    }
}

/// The keys service's check of a presented key against its stored hashes.
#[async_trait]
pub trait KeyChecker: Send + Sync + 'static {
    /// The generation the key's secret is, or why it is refused.
    async fn check(&self, ctx: &RequestContext, key: &SecretString) -> Result<u32, KeyError>;
}

/// Asks the keys service over the bus (`AuthenticateApiKey`, the key sealed).
pub struct BusKeyChecker {
    bus: Arc<dyn CommandBus>,
    sealer: Arc<BusSealer>,
}

impl std::fmt::Debug for BusKeyChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusKeyChecker").finish_non_exhaustive()
    }
}

impl BusKeyChecker {
    /// Sends over `bus`, sealing the key with `sealer`.
    pub fn new(bus: Arc<dyn CommandBus>, sealer: Arc<BusSealer>) -> Self {
        Self { bus, sealer }
    }
}

#[async_trait]
impl KeyChecker for BusKeyChecker {
    async fn check(&self, ctx: &RequestContext, key: &SecretString) -> Result<u32, KeyError> {
        let sealed = self
            .sealer
            .seal(key, &AuthenticateApiKey::subject())
            .map_err(|e| KeyError::Unavailable(e.to_string()))?;
        let accepted = crate::state::send(
            self.bus.as_ref(),
            ctx,
            None,
            AuthenticateApiKey { key: sealed },
            None,
        )
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
        Ok(accepted.output.generation)
    }
}

/// Authenticates presented API keys (see the module docs).
pub struct ApiKeyAuthenticator {
    cache: KeyCache,
    directory: Arc<dyn KeyLookup>,
    checker: Arc<dyn KeyChecker>,
    limits: Limits,
    views: Arc<dyn ViewStore>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ApiKeyAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .finish_non_exhaustive()
    }
}

impl ApiKeyAuthenticator {
    /// Decides with `directory`, asks `checker` about keys not verified here before,
    /// counts failures in `limits` and records uses in `views`.
    pub fn new(
        directory: Arc<dyn KeyLookup>,
        checker: Arc<dyn KeyChecker>,
        limits: Limits,
        views: Arc<dyn ViewStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            cache: KeyCache::default(),
            directory,
            checker,
            limits,
            views,
            clock,
        }
    }

    /// Authenticates a presented API key. Failures count against the source address and
    /// the key id (malformed keys against the address alone).
    pub async fn authenticate(
        &self,
        ctx: &RequestContext,
        key: &SecretString,
    ) -> Result<VerifiedKey, KeyError> {
        self.directory.loaded()?;
        // Parsed once: the shape and checksum are checked before anything else.
        let parsed = parse_api_key(key.expose_secret());
        let subject = parsed
            .as_ref()
            .map(|parsed| parsed.key_id.to_string())
            .unwrap_or_default();
        if let Err(wait) = self.limits.check_login(ctx.client_ip, &subject) {
            return Err(KeyError::RateLimited(wait));
        }
        let result = match parsed {
            Ok(parsed) => self.verify(ctx, key, &parsed).await,
            Err(_) => Err(KeyError::Invalid),
        };
        match &result {
            Ok(verified) => {
                self.limits.login_succeeded(ctx.client_ip, &subject);
                self.record_use(verified.id);
            }
            Err(KeyError::Unavailable(_)) => {}
            Err(_) => self.limits.login_failed(ctx.client_ip, &subject),
        }
        result
    }

    /// Decides, from the directory alone, whether generation `generation` of key `id` may
    /// be used now, and returns the key's service account.
    fn usable_now(
        &self,
        id: Uuid,
        generation: u32,
        now: DateTime<Utc>,
    ) -> Result<VerifiedKey, KeyError> {
        let entry = self.directory.api_key(&id).ok_or(KeyError::Invalid)?;
        entry
            .validity
            .check(generation, now)
            .map_err(KeyError::Refused)?;
        let principal = self
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

    async fn verify(
        &self,
        ctx: &RequestContext,
        key: &SecretString,
        parsed: &ParsedApiKey,
    ) -> Result<VerifiedKey, KeyError> {
        let id = parsed.key_id;
        let digest = self.cache.digester.hash(id, &parsed.secret);
        let now = self.clock.now();
        if let Some(generation) = self.cache.remembered(&id, &digest) {
            let result = self.usable_now(id, generation, now);
            if matches!(result, Err(KeyError::Invalid)) {
                self.cache.forget(&id);
            }
            return result;
        }
        let generation = self.checker.check(ctx, key).await?;
        // A key created a moment ago on another replica may not have reached this one's
        // directory yet: give the feed a moment.
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.directory.api_key(&id).is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let verified = self.usable_now(id, generation, now)?;
        self.cache.remember(id, digest, generation);
        Ok(verified)
    }

    /// Writes the key's use to the shared record, at most once a minute per key and
    /// replica, in the background (never on the request's path).
    fn record_use(&self, id: Uuid) {
        if !self.cache.due_for_recording(id, Instant::now()) {
            return;
        }
        let views = self.views.clone();
        let at = self.clock.now();
        tokio::spawn(async move {
            if let Err(e) = views.record_use(API_KEY_VIEW, id, at).await {
                tracing::warn!(key = %id, error = %e, "recording an API key's use failed");
            }
        });
    }
}

/// Whether a bearer credential looks like an API key rather than a token.
pub fn looks_like_api_key(credential: &str) -> bool {
    credential.starts_with(gatehouse_tokens::API_KEY_PREFIX)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use gatehouse_contracts::clock::SystemClock;
    use gatehouse_contracts::identity::Role;
    use gatehouse_contracts::keys::KeyValidity;
    use gatehouse_eventlog::memory::MemoryViewStore;
    use gatehouse_tokens::generate_api_key;

    use super::*;

    /// The directory's entries, set by the test.
    #[derive(Default)]
    struct Entries {
        keys: Mutex<HashMap<Uuid, Arc<KeyEntry>>>,
        principals: Mutex<HashMap<Uuid, Arc<Principal>>>,
    }

    impl KeyLookup for Entries {
        fn loaded(&self) -> Result<(), NotLoaded> {
            Ok(())
        }

        fn api_key(&self, id: &Uuid) -> Option<Arc<KeyEntry>> {
            self.keys.lock().ok()?.get(id).cloned()
        }

        fn principal(&self, id: &Uuid) -> Option<Arc<Principal>> {
            self.principals.lock().ok()?.get(id).cloned()
        }
    }

    impl Entries {
        fn key(&self, id: Uuid, account: Uuid, validity: KeyValidity) {
            let entry = KeyEntry {
                service_account_id: account,
                validity,
            };
            if let Ok(mut keys) = self.keys.lock() {
                keys.insert(id, Arc::new(entry));
            }
        }

        fn account(&self, id: Uuid, active: bool) {
            let principal = Principal {
                id,
                kind: PrincipalKind::ServiceAccount,
                name: "ci".into(),
                role: Role::Member,
                active,
                epoch: 0,
            };
            if let Ok(mut principals) = self.principals.lock() {
                principals.insert(id, Arc::new(principal));
            }
        }
    }

    /// The keys service's answer, and how often it was asked.
    struct Answer {
        answer: Result<u32, KeyError>,
        asked: AtomicUsize,
    }

    #[async_trait]
    impl KeyChecker for Answer {
        async fn check(&self, _: &RequestContext, _: &SecretString) -> Result<u32, KeyError> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            self.answer.clone()
        }
    }

    fn authenticator(
        answer: Result<u32, KeyError>,
    ) -> (ApiKeyAuthenticator, Arc<Entries>, Arc<Answer>) {
        let entries = Arc::new(Entries::default());
        let checker = Arc::new(Answer {
            answer,
            asked: AtomicUsize::new(0),
        });
        let authenticator = ApiKeyAuthenticator::new(
            entries.clone(),
            checker.clone(),
            Limits::alone(30),
            Arc::new(MemoryViewStore::new()),
            Arc::new(SystemClock),
        );
        (authenticator, entries, checker)
    }

    fn ctx() -> RequestContext {
        RequestContext {
            request_id: "test".into(),
            client_ip: Some(IpAddr::from([10, 0, 0, 1])),
            traceparent: gatehouse_telemetry::new_traceparent(),
        }
    }

    #[tokio::test]
    async fn a_malformed_key_is_refused_without_asking_the_keys_service() {
        let (authenticator, _, checker) = authenticator(Ok(1));
        let key = SecretString::from("gatehouse_0123_not-a-key");
        let result = authenticator.authenticate(&ctx(), &key).await;
        assert_eq!(result.err(), Some(KeyError::Invalid));
        assert_eq!(checker.asked.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_verified_key_is_decided_from_the_directory_without_asking_again() {
        let (authenticator, entries, checker) = authenticator(Ok(1));
        let (id, account) = (Uuid::new_v4(), Uuid::new_v4());
        entries.key(id, account, KeyValidity::new(None));
        entries.account(account, true);
        let key = generate_api_key(id).full;

        for _ in 0..3 {
            let verified = authenticator.authenticate(&ctx(), &key).await;
            let verified = verified.map_err(|e| e.message());
            assert_eq!(verified.map(|v| (v.id, v.principal.id)), Ok((id, account)));
        }
        assert_eq!(checker.asked.load(Ordering::SeqCst), 1, "asked once");

        // The account is deactivated (the directory hears it from the feed): refused at
        // once, with no round trip.
        entries.account(account, false);
        let refused = authenticator.authenticate(&ctx(), &key).await;
        assert_eq!(
            refused.err(),
            Some(KeyError::Refused(KeyRefusal::Deactivated))
        );
        // So is a deactivated key of an active account.
        entries.account(account, true);
        let mut validity = KeyValidity::new(None);
        validity.active = false;
        entries.key(id, account, validity);
        let refused = authenticator.authenticate(&ctx(), &key).await;
        assert_eq!(
            refused.err(),
            Some(KeyError::Refused(KeyRefusal::Deactivated))
        );
        assert_eq!(checker.asked.load(Ordering::SeqCst), 1, "still once");
    }

    #[tokio::test]
    async fn keys_the_service_refuses_are_counted_until_the_address_must_wait() {
        let (authenticator, _, checker) = authenticator(Err(KeyError::Invalid));
        let key = generate_api_key(Uuid::new_v4()).full;
        // The default allowance: five failures per key and address, then a block.
        for _ in 0..6 {
            let result = authenticator.authenticate(&ctx(), &key).await;
            assert_eq!(result.err(), Some(KeyError::Invalid));
        }
        let result = authenticator.authenticate(&ctx(), &key).await;
        assert!(
            matches!(result, Err(KeyError::RateLimited(_))),
            "{result:?}"
        );
        assert_eq!(
            checker.asked.load(Ordering::SeqCst),
            6,
            "not asked when blocked"
        );
    }

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
