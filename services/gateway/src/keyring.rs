//! The `keyring` read model: the signing keys' public state in one document, so that every
//! gateway's directory follows rotations and retirements like any other revocation (and
//! the replica barrier covers them); and the schedule that rotates and retires keys
//! without anyone asking.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_contracts::clock::Clock;
use gatehouse_contracts::envelope::{Actor, EventMetadata, RecordedEvent};
use gatehouse_contracts::events::DomainEvent;
use gatehouse_contracts::keyring::{KEYRING_VIEW, KeyringEvent, KeyringView};
use gatehouse_eventlog::views::{current_view, decode_event, upsert_view};
use gatehouse_eventlog::{ProjectionError, ViewChange, ViewProjection};
use tokio::sync::watch;

use crate::issuer::TokenIssuer;

/// Folds the `keyring` stream into its one document.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyringProjection;

impl ViewProjection for KeyringProjection {
    fn kind(&self) -> &'static str {
        KEYRING_VIEW
    }

    fn aggregate(&self) -> &'static str {
        KeyringEvent::AGGREGATE
    }

    fn apply(
        &self,
        doc: Option<&serde_json::Value>,
        event: &RecordedEvent,
    ) -> Result<ViewChange, ProjectionError> {
        let decoded: KeyringEvent = decode_event(KEYRING_VIEW, event)?;
        // Read models built before this projection existed start from the first change
        // they see; the issuer keeps what it loaded from the log and merges.
        let mut view: KeyringView = current_view(KEYRING_VIEW, doc, event)?.unwrap_or_default();
        view.apply(&decoded);
        upsert_view(KEYRING_VIEW, &view, event)
    }
}

/// When signing keys are rotated and retired without anyone asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationSchedule {
    /// A new key is added once the signing key has signed this long (`None`: never).
    pub rotate_after: Option<chrono::Duration>,
    /// A new key signs this long after it is added (verifiers fetch it meanwhile).
    pub activate_after: chrono::Duration,
    /// A superseded key is retired once its successor has signed this long (`None`:
    /// never). Must exceed the longest token lifetime, or sessions end early.
    pub retire_after: Option<chrono::Duration>,
}

impl RotationSchedule {
    /// Whether a new key is due at `now`: none is waiting to sign, and the signer has
    /// signed for `rotate_after`.
    pub fn key_due(&self, view: &KeyringView, now: DateTime<Utc>) -> bool {
        let Some(rotate_after) = self.rotate_after else {
            return false;
        };
        let waiting = view
            .keys
            .iter()
            .any(|k| k.active_from > now && !view.is_retired(&k.kid));
        !waiting
            && view
                .signer(now)
                .is_some_and(|signer| signer.active_from + rotate_after <= now)
    }

    /// The keys due for retirement at `now`: unretired keys with a newer unretired key that
    /// has signed for `retire_after`. The signer itself never qualifies.
    pub fn retirements_due(&self, view: &KeyringView, now: DateTime<Utc>) -> Vec<String> {
        let Some(retire_after) = self.retire_after else {
            return Vec::new();
        };
        let live: Vec<_> = view
            .keys
            .iter()
            .filter(|k| !view.is_retired(&k.kid))
            .collect();
        live.iter()
            .filter(|old| {
                live.iter().any(|newer| {
                    newer.active_from > old.active_from && newer.active_from + retire_after <= now
                })
            })
            .map(|k| k.kid.clone())
            .collect()
    }

    /// How often to look: often enough for the shortest period, at most once a minute.
    pub fn tick(&self) -> std::time::Duration {
        [self.rotate_after, self.retire_after]
            .into_iter()
            .flatten()
            .filter_map(|d| (d / 4).to_std().ok())
            .fold(std::time::Duration::from_secs(60), std::cmp::min)
            .max(std::time::Duration::from_millis(250))
    }

    /// Whether anything is scheduled at all.
    pub fn is_enabled(&self) -> bool {
        self.rotate_after.is_some() || self.retire_after.is_some()
    }
}

/// Rotates and retires keys on `schedule` until `shutdown`. Every replica may run it: the
/// decisions are checked again against the log when appending, so replicas add one key
/// and retire each key once between them.
pub async fn run_rotation(
    issuer: Arc<TokenIssuer>,
    schedule: RotationSchedule,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
) {
    if !schedule.is_enabled() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(schedule.tick()) => {}
            _ = shutdown.changed() => return,
        }
        let now = clock.now();
        let view = issuer.view();
        let system = || EventMetadata {
            actor: Some(Actor::system()),
            ..EventMetadata::default()
        };
        if schedule.key_due(&view, now) {
            let due = |view: &KeyringView| schedule.key_due(view, now);
            match issuer
                .add_key_when(due, now + schedule.activate_after, system(), now)
                .await
            {
                Ok(Some((_, kid))) => {
                    tracing::info!(kid, "scheduled signing-key rotation: key added")
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(error = %error, "scheduled signing-key rotation failed; retrying later")
                }
            }
        }
        for kid in schedule.retirements_due(&view, now) {
            match issuer.retire_key(&kid, system(), now).await {
                Ok(Some(_)) => tracing::info!(kid, "scheduled signing-key retirement: key retired"),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(kid, error = %error, "scheduled signing-key retirement failed; retrying later")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_contracts::keyring::{SigningKeyAdded, SigningKeyRetired};

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default()
    }

    fn key(kid: &str, from: i64) -> SigningKeyAdded {
        SigningKeyAdded {
            kid: kid.into(),
            public_key: String::new(),
            active_from: at(from),
        }
    }

    fn schedule() -> RotationSchedule {
        RotationSchedule {
            rotate_after: Some(chrono::Duration::seconds(100)),
            activate_after: chrono::Duration::seconds(10),
            retire_after: Some(chrono::Duration::seconds(50)),
        }
    }

    #[test]
    fn a_key_is_due_when_the_signer_is_old_and_none_waits() {
        let mut view = KeyringView {
            keys: vec![key("k0", 0)],
            retired: vec![],
        };
        assert!(!schedule().key_due(&view, at(99)));
        assert!(schedule().key_due(&view, at(100)));
        view.keys.push(key("k1", 110)); // added at 100, signs from 110
        assert!(!schedule().key_due(&view, at(105)), "one is waiting");
        assert!(
            !schedule().key_due(&view, at(150)),
            "k1 signs, and is young"
        );
        assert!(schedule().key_due(&view, at(210)));
        let off = RotationSchedule {
            rotate_after: None,
            ..schedule()
        };
        assert!(!off.key_due(&view, at(10_000)));
    }

    #[test]
    fn a_superseded_key_retires_once_its_successor_signed_long_enough() {
        let mut view = KeyringView {
            keys: vec![key("k0", 0), key("k1", 110)],
            retired: vec![],
        };
        assert!(schedule().retirements_due(&view, at(159)).is_empty());
        assert_eq!(schedule().retirements_due(&view, at(160)), ["k0"]);
        // A pending successor does not count, and the signer is never due.
        view.keys.push(key("k2", 1_000));
        assert_eq!(schedule().retirements_due(&view, at(500)), ["k0"]);
        view.retired.push(SigningKeyRetired {
            kid: "k0".into(),
            retired_at: at(160),
        });
        assert!(schedule().retirements_due(&view, at(500)).is_empty());
        assert_eq!(schedule().retirements_due(&view, at(1_050)), ["k1"]);
    }

    #[test]
    fn the_tick_follows_the_shortest_period() {
        assert_eq!(schedule().tick(), std::time::Duration::from_millis(12_500));
        let days = RotationSchedule {
            rotate_after: Some(chrono::Duration::days(90)),
            activate_after: chrono::Duration::hours(1),
            retire_after: Some(chrono::Duration::days(31)),
        };
        assert_eq!(days.tick(), std::time::Duration::from_secs(60));
    }
}
