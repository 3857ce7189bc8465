//! The keys service's contract: API keys of service accounts.
//!
//! A key belongs to one service account and is named uniquely within it. Its secret is
//! never in an event, a view or a bus message in clear: the service keeps only keyed
//! hashes (HMAC-SHA-256 with a server-side pepper) in the stream's secret slot, one per
//! *generation* of the key. Rotation starts a new generation and may keep the previous
//! one valid for a retention window; each retained generation keeps its own window.

use chrono::{DateTime, Utc};
use gatehouse_secrets::SealedSecret;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate_events;
use crate::commands::Command;
use crate::identity::{Deactivated, DescriptionChanged, Reactivated};
use crate::ids::{ApiKeyId, ServiceAccountId};
use crate::names::{Description, Name};

/// The aggregate name (`api_key-<id>` streams, `gatehouse.events.api_key.*` subjects).
pub const API_KEY_AGGREGATE: &str = "api_key";

/// The unique-name scope of keys; values are `<service account id>/<key name>`.
pub const API_KEY_NAME_SCOPE: &str = "api_key_name";

/// The claim value that makes `name` unique within `service_account`.
pub fn api_key_name_claim(service_account: ServiceAccountId, name: &str) -> String {
    format!("{service_account}/{name}")
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// `api_key.created`: generation 1 of the key exists (its hash is in the secret slot).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyCreated {
    /// The service account whose sessions the key opens.
    pub service_account_id: ServiceAccountId,
    /// Name, unique within the service account.
    pub name: Name,
    /// What the key is for.
    pub description: Description,
    /// When the key stops working, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `api_key.rotated`: a new secret (generation) replaces the current one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyRotated {
    /// When the rotation happened.
    pub rotated_at: DateTime<Utc>,
    /// The new current generation.
    pub generation: u32,
    /// The generation that was current until now.
    pub previous_generation: u32,
    /// Until when the previous secret (and tokens obtained with it) keeps working;
    /// absent when it stopped working at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<DateTime<Utc>>,
}

/// `api_key.expiry_changed`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyExpiryChanged {
    /// The new expiry; absent when the key no longer expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `api_key.expired`: the key reached its expiry (recorded for audit; the key stopped
/// working at `expires_at` whether or not this event was written yet).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyExpired {
    /// The expiry that was reached.
    pub expires_at: DateTime<Utc>,
}

/// `api_key.deleted`: the key and every token obtained with it are dead; its name is free.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyDeleted {
    /// The service account it belonged to.
    pub service_account_id: ServiceAccountId,
    /// The name it had, released for reuse.
    pub name: Name,
}

aggregate_events! {
    /// Events of an API key (`api_key-<id>` streams).
    pub enum ApiKeyEvent: "api_key" {
        /// The key was created.
        Created(ApiKeyCreated) = "created",
        /// The key's secret was rotated.
        Rotated(ApiKeyRotated) = "rotated",
        /// The description was changed.
        DescriptionChanged(DescriptionChanged) = "description_changed",
        /// The key was deactivated: it and its tokens are refused at once.
        Deactivated(Deactivated) = "deactivated",
        /// The key was reactivated; tokens from before the deactivation stay dead.
        Reactivated(Reactivated) = "reactivated",
        /// The expiry was set, moved or removed.
        ExpiryChanged(ApiKeyExpiryChanged) = "expiry_changed",
        /// The key reached its expiry.
        Expired(ApiKeyExpired) = "expired",
        /// The key was deleted.
        Deleted(ApiKeyDeleted) = "deleted",
    }
}

// ---------------------------------------------------------------------------------------
// Validity: one rule, used by the aggregate, the read model and every gateway replica
// ---------------------------------------------------------------------------------------

/// A previous secret that still works until `valid_until`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
pub struct RetainedSecret {
    /// Its generation.
    pub generation: u32,
    /// When it stops working.
    pub valid_until: DateTime<Utc>,
}

/// What decides whether a key (and a token obtained with it) is usable right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValidity {
    /// Whether the key is active.
    pub active: bool,
    /// Incremented by every deactivation: tokens carrying an older epoch are dead.
    pub epoch: u64,
    /// The current generation.
    pub generation: u32,
    /// Previous generations still inside their retention window (or past it; the
    /// window decides).
    #[serde(default)]
    pub retained: Vec<RetainedSecret>,
    /// When the key stops working, if ever.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a key or a key's token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    /// Deactivated.
    #[error("the API key is deactivated")]
    Deactivated,
    /// Past its expiry.
    #[error("the API key has expired")]
    Expired,
    /// The secret (generation) was rotated away and its retention window is over.
    #[error("the API key was rotated and this secret is no longer valid")]
    Rotated,
    /// Deactivated since the token was issued (reactivation does not revive tokens).
    #[error("the token was issued before the API key was deactivated")]
    Revoked,
}

impl KeyValidity {
    /// The validity of a new key.
    pub fn new(expires_at: Option<DateTime<Utc>>) -> Self {
        Self {
            active: true,
            epoch: 0,
            generation: 1,
            retained: Vec::new(),
            expires_at,
        }
    }

    /// Whether the key's secret of `generation` may be used at `now`.
    pub fn check(&self, generation: u32, now: DateTime<Utc>) -> Result<(), KeyRefusal> {
        if !self.active {
            return Err(KeyRefusal::Deactivated);
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(KeyRefusal::Expired);
        }
        if generation == self.generation
            || self
                .retained
                .iter()
                .any(|r| r.generation == generation && r.valid_until > now)
        {
            Ok(())
        } else {
            Err(KeyRefusal::Rotated)
        }
    }

    /// Whether a token obtained with `generation` at key epoch `epoch` is still good.
    pub fn check_token(
        &self,
        generation: u32,
        epoch: u64,
        now: DateTime<Utc>,
    ) -> Result<(), KeyRefusal> {
        self.check(generation, now)?;
        if epoch != self.epoch {
            return Err(KeyRefusal::Revoked);
        }
        Ok(())
    }

    /// The generations that may still be valid at `now` (current first).
    pub fn live_generations(&self, now: DateTime<Utc>) -> Vec<u32> {
        let mut live = vec![self.generation];
        live.extend(
            self.retained
                .iter()
                .filter(|r| r.valid_until > now)
                .map(|r| r.generation),
        );
        live
    }

    /// The state after `event` (the fold shared by the aggregate and the views).
    pub fn evolve(&mut self, event: &ApiKeyEvent) {
        match event {
            ApiKeyEvent::Created(e) => *self = Self::new(e.expires_at),
            ApiKeyEvent::Rotated(e) => {
                // Windows closed by the time of this rotation are dropped; until then
                // `check` ignores them by time.
                if let Some(until) = e.previous_valid_until {
                    self.retained.push(RetainedSecret {
                        generation: e.previous_generation,
                        valid_until: until,
                    });
                }
                self.retained.retain(|r| r.valid_until > e.rotated_at);
                self.generation = e.generation;
            }
            ApiKeyEvent::Deactivated(_) => {
                self.active = false;
                self.epoch += 1;
            }
            ApiKeyEvent::Reactivated(_) => self.active = true,
            ApiKeyEvent::ExpiryChanged(e) => self.expires_at = e.expires_at,
            ApiKeyEvent::Expired(_)
            | ApiKeyEvent::DescriptionChanged(_)
            | ApiKeyEvent::Deleted(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Read model
// ---------------------------------------------------------------------------------------

/// The view kind of API keys in the read store.
pub const API_KEY_VIEW: &str = "api_key";

/// An API key as the read side sees it (never a secret or a hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyView {
    /// Id.
    pub id: ApiKeyId,
    /// The owning service account.
    pub service_account_id: ServiceAccountId,
    /// Name, unique within the service account.
    pub name: String,
    /// Description.
    pub description: String,
    /// Whether it works (also false once expired).
    pub active: bool,
    /// Whether the `api_key.expired` event was recorded.
    pub expired: bool,
    /// `true` while an expiry is set and its event not yet recorded (the sweeper's filter).
    pub expiry_pending: bool,
    /// What decides validity.
    pub validity: KeyValidity,
    /// Created at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
    /// Last rotated at.
    pub last_rotated: Option<DateTime<Utc>>,
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// A new key together with its one-time secret (sealed on the bus).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssuedKey {
    /// The key's id.
    pub id: ApiKeyId,
    /// The full key string, sealed for the gateway; shown to the caller once.
    pub key: SealedSecret,
    /// The generation this secret is (1 for a new key). Concurrent rotations may move
    /// the key on before the caller reads it back, so the reply says which one it got.
    pub generation: u32,
}

/// The answer to creating or rotating a key: the key as the command left it (folded from
/// the log, not read back from a read model that may lag) and its new secret, sealed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyWithSecret {
    /// The key as of the command's write.
    pub key: ApiKeyView,
    /// The secret handed out.
    pub issued: IssuedKey,
}

/// Creates a key for a service account the gateway has checked the caller may manage.
/// With an idempotency key, the sealed answer is kept for a bounded time (24 h by
/// default) so that a retry gets the same key again; without one a retry gets 409.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateApiKey {
    /// The service account.
    pub service_account_id: ServiceAccountId,
    /// Name, unique within the service account.
    pub name: Name,
    /// Description.
    pub description: Description,
    /// Lifetime from now, if the key should expire.
    pub expires_in_seconds: Option<u64>,
}

impl Command for CreateApiKey {
    const SERVICE: &'static str = "keys";
    const NAME: &'static str = "create_api_key";
    type Output = KeyWithSecret;
    type Code = crate::failures::KeysFailure;
}

/// Rotates a key's secret; the previous one stays valid for `retain_seconds`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RotateApiKey {
    /// The service account the key must belong to.
    pub service_account_id: ServiceAccountId,
    /// The key.
    pub id: ApiKeyId,
    /// How long, in seconds, the previous secret keeps working (0: not at all).
    pub retain_seconds: u32,
}

impl Command for RotateApiKey {
    const SERVICE: &'static str = "keys";
    const NAME: &'static str = "rotate_api_key";
    type Output = KeyWithSecret;
    type Code = crate::failures::KeysFailure;
}

/// Changes a key's active flag, description or expiry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpdateApiKey {
    /// The service account the key must belong to.
    pub service_account_id: ServiceAccountId,
    /// The key.
    pub id: ApiKeyId,
    /// Activate or deactivate.
    pub active: Option<bool>,
    /// New description.
    pub description: Option<Description>,
    /// New expiry: `Some(None)` removes it (sent as `null`, which is not the same as an
    /// absent field).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::nullable::deserialize"
    )]
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

impl Command for UpdateApiKey {
    const SERVICE: &'static str = "keys";
    const NAME: &'static str = "update_api_key";
    /// The key as the command left it.
    type Output = ApiKeyView;
    type Code = crate::failures::KeysFailure;
}

/// Deletes a key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeleteApiKey {
    /// The service account the key must belong to.
    pub service_account_id: ServiceAccountId,
    /// The key.
    pub id: ApiKeyId,
}

impl Command for DeleteApiKey {
    const SERVICE: &'static str = "keys";
    const NAME: &'static str = "delete_api_key";
    type Output = ();
    type Code = crate::failures::KeysFailure;
}

/// Records that a key reached its expiry (sent by the expiry sweeper). Idempotent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExpireApiKey {
    /// The key.
    pub id: ApiKeyId,
}

impl Command for ExpireApiKey {
    const SERVICE: &'static str = "keys";
    const NAME: &'static str = "expire_api_key";
    type Output = ();
    type Code = crate::failures::KeysFailure;
}

/// Checks an API key (the api-key grant, bearer API keys). Appends nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthenticateApiKey {
    /// The full key, sealed for this command.
    pub key: SealedSecret,
}

/// The key a presented secret belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticatedKey {
    /// The key.
    pub id: ApiKeyId,
    /// Its service account (the session's subject).
    pub service_account_id: ServiceAccountId,
    /// The generation the secret matched.
    pub generation: u32,
    /// The key's epoch (tokens carry it).
    pub epoch: u64,
    /// The key's expiry (tokens do not outlive it).
    pub expires_at: Option<DateTime<Utc>>,
}

impl Command for AuthenticateApiKey {
    const SERVICE: &'static str = "keys";
    const NAME: &'static str = "authenticate_api_key";
    type Output = AuthenticatedKey;
    type Code = crate::failures::KeysFailure;
}

/// The stream of a key.
pub fn api_key_stream(id: ApiKeyId) -> crate::StreamId {
    crate::StreamId::new(API_KEY_AGGREGATE, Uuid::from(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(expires_at: Option<Option<DateTime<Utc>>>) -> UpdateApiKey {
        UpdateApiKey {
            service_account_id: ServiceAccountId::from_uuid(Uuid::from_u128(1)),
            id: ApiKeyId::from_uuid(Uuid::from_u128(2)),
            active: None,
            description: None,
            expires_at,
        }
    }

    fn round_trip(command: &UpdateApiKey) -> UpdateApiKey {
        serde_json::from_value(serde_json::to_value(command).unwrap()).unwrap()
    }

    #[test]
    fn removing_an_expiry_survives_the_bus() {
        assert_eq!(round_trip(&update(Some(None))).expires_at, Some(None));
        assert_eq!(round_trip(&update(None)).expires_at, None);
        let at = Utc::now();
        assert_eq!(
            round_trip(&update(Some(Some(at)))).expires_at,
            Some(Some(at))
        );
    }
}
