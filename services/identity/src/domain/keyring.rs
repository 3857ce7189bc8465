//! The keyring aggregate: the token-signing keys. Pure rules: which key to add or retire,
//! and when the schedule says so. (Generating a key and sealing its private half is the
//! service's I/O; a decision takes the new key's public half as input.)

use chrono::{DateTime, Utc};
use gatehouse_contracts::keyring::{KeyringEvent, KeyringView, SigningKeyAdded, SigningKeyRetired};
use gatehouse_eventlog::Aggregate;

/// The keyring as its stream has it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Keyring(pub KeyringView);

impl Aggregate for Keyring {
    type Event = KeyringEvent;

    fn evolve(mut self, event: &KeyringEvent) -> Self {
        self.0.apply(event);
        self
    }
}

/// Why a keyring change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyringRejection {
    /// No such key.
    #[error("no signing key {0}")]
    NotFound(String),
    /// Retiring it would leave nothing to sign with.
    #[error("{0} is the only key that can sign now: add a key (and let it become active) first")]
    LastSigner(String),
    /// A key may sign at most a day after it is added.
    #[error("a new key must start signing within a day")]
    TooFarAhead,
}

/// The longest a new key may wait before it signs.
pub const MAX_ACTIVATION_DELAY: chrono::Duration = chrono::Duration::days(1);

/// Adds `key` when `due` holds for the keyring (the first key: when it is empty; the
/// schedule: [`RotationSchedule::key_due`]; an admin: always).
pub fn add(
    keyring: &Keyring,
    key: SigningKeyAdded,
    due: impl Fn(&KeyringView) -> bool,
    now: DateTime<Utc>,
) -> Result<Vec<KeyringEvent>, KeyringRejection> {
    if key.active_from > now + MAX_ACTIVATION_DELAY {
        return Err(KeyringRejection::TooFarAhead);
    }
    if !due(&keyring.0) {
        return Ok(vec![]);
    }
    Ok(vec![KeyringEvent::SigningKeyAdded(key)])
}

/// Retires `kid` at `now`: nothing when it is retired already; refused when it is unknown
/// or when no other key could sign now.
pub fn retire(
    keyring: &Keyring,
    kid: &str,
    now: DateTime<Utc>,
) -> Result<Vec<KeyringEvent>, KeyringRejection> {
    let view = &keyring.0;
    if !view.keys.iter().any(|k| k.kid == kid) {
        return Err(KeyringRejection::NotFound(kid.to_owned()));
    }
    if view.is_retired(kid) {
        return Ok(vec![]);
    }
    let retired = KeyringEvent::SigningKeyRetired(SigningKeyRetired {
        kid: kid.to_owned(),
        retired_at: now,
    });
    let mut after = view.clone();
    after.apply(&retired);
    if after.signer(now).is_none() {
        return Err(KeyringRejection::LastSigner(kid.to_owned()));
    }
    Ok(vec![retired])
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
    fn retiring_refuses_the_last_signer_and_unknown_keys_and_is_idempotent() {
        let keyring = Keyring(KeyringView {
            keys: vec![key("k0", 0), key("k1", 110)],
            retired: vec![],
        });
        assert_eq!(
            retire(&keyring, "nope", at(200)),
            Err(KeyringRejection::NotFound("nope".into()))
        );
        let events = retire(&keyring, "k0", at(200)).expect("k1 signs");
        assert_eq!(events.len(), 1);
        let keyring = events.iter().fold(keyring, |k, e| k.evolve(e));
        assert_eq!(
            retire(&keyring, "k0", at(201)),
            Ok(vec![]),
            "retired already"
        );
        assert_eq!(
            retire(&keyring, "k1", at(201)),
            Err(KeyringRejection::LastSigner("k1".into()))
        );
    }

    #[test]
    fn a_key_is_added_when_due_and_never_more_than_a_day_ahead() {
        let empty = Keyring::default();
        let first = |_: &KeyringView| true;
        assert_eq!(
            add(&empty, key("k0", 0), first, at(0)).map(|e| e.len()),
            Ok(1)
        );
        let only_when_empty = |v: &KeyringView| v.keys.is_empty();
        let one = Keyring(KeyringView {
            keys: vec![key("k0", 0)],
            retired: vec![],
        });
        assert_eq!(add(&one, key("k1", 0), only_when_empty, at(0)), Ok(vec![]));
        assert_eq!(
            add(&one, key("k1", 86_401), first, at(0)),
            Err(KeyringRejection::TooFarAhead)
        );
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
