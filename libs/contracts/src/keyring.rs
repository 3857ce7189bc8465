//! The token-signing keyring: one stream (`keyring-<nil uuid>`) recording which Ed25519
//! keys sign access tokens. Only public keys are in the events; each private key lives,
//! sealed under the master key, in the stream's secret slot `signing_key:<kid>`.
//!
//! The identity service owns the keyring (commands on `gatehouse.cmd.identity.*`, and the
//! rotation schedule); gateways read it (the public halves from the `keyring` read model,
//! the private halves from the secret slots) and sign with it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate_events;
use crate::commands::Command;
use crate::envelope::StreamId;
use crate::failures::IdentityFailure;

/// The aggregate name.
pub const KEYRING_AGGREGATE: &str = "keyring";

/// The keyring's one stream.
pub fn keyring_stream() -> StreamId {
    StreamId::new(KEYRING_AGGREGATE, Uuid::nil())
}

/// The secret slot of the keyring stream holding `kid`'s sealed private half (sealed and
/// opened by `gatehouse_tokens::SigningKeySeal`).
pub fn signing_key_slot(kid: &str) -> String {
    format!("signing_key:{kid}")
}

/// Creates the first signing key unless the keyring has one (a gateway sends it before it
/// loads the keyring; replicas racing to start create one key between them).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EnsureSigningKey {}

/// Whether [`EnsureSigningKey`] created the first key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyEnsured {
    /// True when this command created it.
    pub created: bool,
}

impl Command for EnsureSigningKey {
    const SERVICE: &'static str = "identity";
    type Code = IdentityFailure;
    const NAME: &'static str = "ensure_signing_key";
    type Output = SigningKeyEnsured;
}

/// Adds a signing key (admins only): it verifies at once and signs from `active_from`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddSigningKey {
    /// From when it signs new tokens (at most a day ahead).
    pub active_from: DateTime<Utc>,
}

/// The key [`AddSigningKey`] added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyCreated {
    /// Its id.
    pub kid: String,
}

impl Command for AddSigningKey {
    const SERVICE: &'static str = "identity";
    type Code = IdentityFailure;
    const NAME: &'static str = "add_signing_key";
    type Output = SigningKeyCreated;
}

/// Retires a signing key (admins only): tokens it signed are refused, it leaves the JWKS,
/// and its sealed private half is deleted. Refused when no other key could sign now.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RetireSigningKey {
    /// The key id.
    pub kid: String,
}

impl Command for RetireSigningKey {
    const SERVICE: &'static str = "identity";
    type Code = IdentityFailure;
    const NAME: &'static str = "retire_signing_key";
    /// Nothing: the keyring read model shows the retirement.
    type Output = ();
}

/// `keyring.signing_key_added`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SigningKeyAdded {
    /// The key id (`kid` header of the tokens it signs).
    pub kid: String,
    /// The public key, base64url without padding (the JWK `x`).
    pub public_key: String,
    /// From when it signs new tokens.
    pub active_from: DateTime<Utc>,
}

/// `keyring.signing_key_retired`: tokens signed with the key are refused from now on, and
/// it leaves the JWKS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SigningKeyRetired {
    /// The key id.
    pub kid: String,
    /// When.
    pub retired_at: DateTime<Utc>,
}

aggregate_events! {
    /// Events of the signing keyring.
    pub enum KeyringEvent: "keyring" {
        /// A signing key was added; the newest active key signs.
        SigningKeyAdded(SigningKeyAdded) = "signing_key_added",
        /// A signing key was retired; its tokens stop verifying.
        SigningKeyRetired(SigningKeyRetired) = "signing_key_retired",
    }
}

/// The read-model kind of the keyring (one document, for the nil id).
pub const KEYRING_VIEW: &str = "keyring";

/// The keyring's public state: every key added (public half), and which are retired.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyringView {
    /// Keys in the order they were added.
    pub keys: Vec<SigningKeyAdded>,
    /// When each retired key was retired.
    #[serde(default)]
    pub retired: Vec<SigningKeyRetired>,
}

impl KeyringView {
    /// Folds one event.
    pub fn apply(&mut self, event: &KeyringEvent) {
        match event {
            KeyringEvent::SigningKeyAdded(added) => {
                if !self.keys.iter().any(|k| k.kid == added.kid) {
                    self.keys.push(added.clone());
                }
            }
            KeyringEvent::SigningKeyRetired(retired) => {
                if !self.is_retired(&retired.kid) {
                    self.retired.push(retired.clone());
                }
            }
        }
    }

    /// Whether `kid` is retired.
    pub fn is_retired(&self, kid: &str) -> bool {
        self.retired.iter().any(|r| r.kid == kid)
    }

    /// The key that signs new tokens at `now`: the newest key that is active and not retired.
    pub fn signer(&self, now: DateTime<Utc>) -> Option<&SigningKeyAdded> {
        self.signer_where(now, |_| true)
    }

    /// [`Self::signer`] among the keys `usable` accepts (e.g. those whose private half a
    /// replica has loaded).
    pub fn signer_where(
        &self,
        now: DateTime<Utc>,
        usable: impl Fn(&str) -> bool,
    ) -> Option<&SigningKeyAdded> {
        self.keys
            .iter()
            .filter(|k| k.active_from <= now && !self.is_retired(&k.kid) && usable(&k.kid))
            .max_by_key(|k| k.active_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default()
    }

    fn added(kid: &str, from: i64) -> KeyringEvent {
        KeyringEvent::SigningKeyAdded(SigningKeyAdded {
            kid: kid.into(),
            public_key: format!("x-{kid}"),
            active_from: at(from),
        })
    }

    #[test]
    fn the_newest_active_key_that_is_not_retired_signs() {
        let mut view = KeyringView::default();
        view.apply(&added("k0", 0));
        view.apply(&added("k1", 60));
        assert_eq!(view.signer(at(59)).map(|k| k.kid.as_str()), Some("k0"));
        assert_eq!(view.signer(at(60)).map(|k| k.kid.as_str()), Some("k1"));
        view.apply(&KeyringEvent::SigningKeyRetired(SigningKeyRetired {
            kid: "k1".into(),
            retired_at: at(61),
        }));
        assert_eq!(view.signer(at(120)).map(|k| k.kid.as_str()), Some("k0"));
        assert!(view.is_retired("k1"));
        // Folding an event twice changes nothing.
        let before = view.clone();
        view.apply(&added("k0", 0));
        assert_eq!(view, before);
    }
}
