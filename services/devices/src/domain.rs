//! The device aggregate: pure `evolve` and `decide` functions. Time is an argument, so
//! expiry and token lifetimes are tested with any clock.
//!
//! Lifecycle: requested (pending) → verified by a person (or denied) → activated by the
//! device's first successful poll → locked / unlocked → deleted. A pending or verified
//! authorization lapses at its `expires_at`; an active device's session ends at its
//! token's expiry. Those are read from the clock; the one event about time is
//! `authorization_lapsed`, which the sweep records for a request nobody decided on, to
//! release its user code (see [`lapse`]).

use chrono::{DateTime, Duration, Utc};
pub use gatehouse_contracts::devices::PollRefusal;
use gatehouse_contracts::devices::{
    DeviceActivated, DeviceAuthorizationLapsed, DeviceAuthorizationRequested, DeviceDeleted,
    DeviceDenied, DeviceEvent, DeviceFacts, DeviceLocked, DeviceMetadata, DeviceStatus,
    DeviceUnlocked, DeviceVerified, DeviceViewer,
};
use gatehouse_contracts::ids::UserId;
use gatehouse_eventlog::Aggregate;

/// How long an authorization waits for approval and redemption, and how often the device
/// may poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSettings {
    /// Lifetime of a pending authorization (RFC 8628 `expires_in`).
    pub authorization_ttl: Duration,
    /// The polling interval first given (RFC 8628 `interval`).
    pub interval_seconds: u32,
}

impl Default for FlowSettings {
    fn default() -> Self {
        Self {
            authorization_ttl: Duration::minutes(10),
            interval_seconds: 5,
        }
    }
}

/// Token lifetimes of devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLifetimes {
    /// A device the person did not mark trusted.
    pub untrusted: Duration,
    /// A trusted device.
    pub trusted: Duration,
}

impl Default for DeviceLifetimes {
    fn default() -> Self {
        Self {
            untrusted: Duration::hours(24),
            trusted: Duration::days(30),
        }
    }
}

/// Why the devices service refused a management command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No such device that the caller may see. Also the answer for codes that match
    /// nothing, so that answers never reveal whether a code exists.
    #[error("device not found")]
    NotFound,
    /// The authorization is no longer waiting for approval (approved, denied, expired).
    #[error("this code can no longer be used")]
    NotPending,
    /// The request makes no sense for the device's state.
    #[error("{0}")]
    Invalid(String),
}

/// A device that exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The OAuth client that asked.
    pub client_id: String,
    /// The scope asked for.
    pub scope: Option<String>,
    /// What the device said about itself.
    pub metadata: DeviceMetadata,
    /// When it asked.
    pub requested_at: DateTime<Utc>,
    /// The polling interval first given.
    pub interval_seconds: u32,
    /// The keyed hash of the device code's secret.
    pub device_code_hash: String,
    /// Owner, trust, lock and the times that decide its status.
    pub facts: DeviceFacts,
    /// Whether its lapse without a decision was recorded (its user code released).
    pub lapse_recorded: bool,
}

impl Device {
    /// Where the device stands at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> DeviceStatus {
        self.facts.status(now)
    }
}

/// A device's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DeviceState {
    /// Never requested.
    #[default]
    Absent,
    /// Exists.
    Present(Box<Device>),
    /// Deleted: gone for every command.
    Deleted,
}

impl Aggregate for DeviceState {
    type Event = DeviceEvent;

    fn evolve(self, event: &DeviceEvent) -> Self {
        match (self, event) {
            (DeviceState::Absent, DeviceEvent::AuthorizationRequested(e)) => {
                DeviceState::Present(Box::new(Device {
                    client_id: e.client_id.clone(),
                    scope: e.scope.clone(),
                    metadata: e.metadata.clone(),
                    requested_at: e.requested_at,
                    interval_seconds: e.interval_seconds,
                    device_code_hash: e.device_code_hash.clone(),
                    facts: DeviceFacts::requested(e),
                    lapse_recorded: false,
                }))
            }
            (DeviceState::Present(_), DeviceEvent::Deleted(_)) => DeviceState::Deleted,
            (DeviceState::Present(mut device), DeviceEvent::AuthorizationLapsed(_)) => {
                device.lapse_recorded = true;
                DeviceState::Present(device)
            }
            (DeviceState::Present(mut device), event) => {
                device.facts.evolve(event);
                DeviceState::Present(device)
            }
            (state, _) => state,
        }
    }
}

impl DeviceState {
    /// The device, if it exists.
    pub fn device(&self) -> Option<&Device> {
        match self {
            DeviceState::Present(device) => Some(device),
            _ => None,
        }
    }

    /// The device, if it exists and `actor` may see and manage it
    /// ([`DeviceViewer::may_see`]).
    pub fn of(&self, actor: &DeviceViewer) -> Result<&Device, Rejection> {
        self.device()
            .filter(|d| actor.may_see(&d.facts))
            .ok_or(Rejection::NotFound)
    }
}

/// The longest client id, scope or metadata value kept (longer values are cut).
const MAX_FIELD: usize = 200;

fn clipped(value: Option<String>) -> Option<String> {
    value
        .map(|v| {
            v.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_FIELD)
                .collect::<String>()
        })
        .filter(|v| !v.is_empty())
}

/// Starts a device authorization.
pub fn request(
    state: &DeviceState,
    client_id: &str,
    scope: Option<String>,
    metadata: DeviceMetadata,
    device_code_hash: String,
    settings: FlowSettings,
    now: DateTime<Utc>,
) -> Result<Vec<DeviceEvent>, Rejection> {
    if !matches!(state, DeviceState::Absent) {
        return Err(Rejection::Invalid("the device already exists".into()));
    }
    let client_id = clipped(Some(client_id.to_owned()))
        .ok_or_else(|| Rejection::Invalid("client_id is required".into()))?;
    let metadata = DeviceMetadata {
        hostname: clipped(metadata.hostname),
        os: clipped(metadata.os),
        client_version: clipped(metadata.client_version),
        ip_address: clipped(metadata.ip_address),
    };
    Ok(vec![DeviceEvent::AuthorizationRequested(
        DeviceAuthorizationRequested {
            client_id,
            scope: clipped(scope),
            metadata,
            requested_at: now,
            expires_at: now + settings.authorization_ttl,
            interval_seconds: settings.interval_seconds.max(1),
            device_code_hash,
        },
    )])
}

fn pending(state: &DeviceState, now: DateTime<Utc>) -> Result<&Device, Rejection> {
    let device = state.device().ok_or(Rejection::NotFound)?;
    match device.status(now) {
        DeviceStatus::Pending => Ok(device),
        _ => Err(Rejection::NotPending),
    }
}

/// A signed-in person approves the device for their account, trusting it or not.
pub fn verify(
    state: &DeviceState,
    user_id: UserId,
    trusted: bool,
    now: DateTime<Utc>,
) -> Result<Vec<DeviceEvent>, Rejection> {
    pending(state, now)?;
    Ok(vec![DeviceEvent::Verified(DeviceVerified {
        user_id,
        trusted,
        verified_at: now,
    })])
}

/// A signed-in person refuses the authorization.
pub fn deny(
    state: &DeviceState,
    user_id: UserId,
    now: DateTime<Utc>,
) -> Result<Vec<DeviceEvent>, Rejection> {
    pending(state, now)?;
    Ok(vec![DeviceEvent::Denied(DeviceDenied {
        user_id,
        denied_at: now,
    })])
}

/// The device polls with its code: once approved, the first poll activates the device
/// and fixes its token's lifetime; every other outcome is an RFC 8628 error and no event.
pub fn redeem(
    state: &DeviceState,
    lifetimes: DeviceLifetimes,
    now: DateTime<Utc>,
) -> Result<Vec<DeviceEvent>, PollRefusal> {
    let device = state.device().ok_or(PollRefusal::InvalidGrant)?;
    device.facts.poll(now)?;
    let lifetime = if device.facts.trusted {
        lifetimes.trusted
    } else {
        lifetimes.untrusted
    };
    Ok(vec![DeviceEvent::Activated(DeviceActivated {
        activated_at: now,
        token_expires_at: now + lifetime,
    })])
}

/// Locks an approved device: its token is refused until it is unlocked. Locking a locked
/// device changes nothing.
pub fn lock(
    state: &DeviceState,
    actor: &DeviceViewer,
    now: DateTime<Utc>,
) -> Result<Vec<DeviceEvent>, Rejection> {
    let device = state.of(actor)?;
    match device.status(now) {
        DeviceStatus::Locked => Ok(vec![]),
        DeviceStatus::Verified | DeviceStatus::Active => {
            Ok(vec![DeviceEvent::Locked(DeviceLocked {})])
        }
        status => Err(Rejection::Invalid(format!(
            "a device that is {} cannot be locked",
            status.as_str()
        ))),
    }
}

/// Unlocks a device: its token, if it has not expired, works again. Unlocking a device that
/// is not locked changes nothing.
pub fn unlock(
    state: &DeviceState,
    actor: &DeviceViewer,
    now: DateTime<Utc>,
) -> Result<Vec<DeviceEvent>, Rejection> {
    let device = state.of(actor)?;
    if !device.facts.locked {
        return Ok(vec![]);
    }
    match device.status(now) {
        DeviceStatus::Expired => Err(Rejection::Invalid(
            "the device's session has expired; log in again instead".into(),
        )),
        _ => Ok(vec![DeviceEvent::Unlocked(DeviceUnlocked {})]),
    }
}

/// Deletes a device: its token dies at once.
pub fn delete(state: &DeviceState, actor: &DeviceViewer) -> Result<Vec<DeviceEvent>, Rejection> {
    let device = state.of(actor)?;
    Ok(vec![DeviceEvent::Deleted(DeviceDeleted {
        user_id: device.facts.owner,
    })])
}

/// Records that a request nobody approved or denied lapsed, once `now` is `grace` past its
/// expiry; nothing otherwise (not lapsed yet, decided, already recorded, or gone). The
/// caller releases the user code with the event.
pub fn lapse(state: &DeviceState, now: DateTime<Utc>, grace: Duration) -> Vec<DeviceEvent> {
    match state.device() {
        Some(device)
            if !device.lapse_recorded
                && device.facts.awaiting_decision()
                && now >= device.facts.expires_at + grace =>
        {
            vec![DeviceEvent::AuthorizationLapsed(
                DeviceAuthorizationLapsed {
                    expired_at: device.facts.expires_at,
                },
            )]
        }
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        t0() + Duration::seconds(seconds)
    }

    fn alice() -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(1))
    }

    fn bob() -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(2))
    }

    fn as_user(user_id: UserId) -> DeviceViewer {
        DeviceViewer {
            id: user_id.into(),
            admin: false,
        }
    }

    fn admin() -> DeviceViewer {
        DeviceViewer {
            id: UserId::from_uuid(uuid::Uuid::from_u128(99)).into(),
            admin: true,
        }
    }

    /// Applies `events` to the history and returns the new state.
    fn apply(history: &mut Vec<DeviceEvent>, events: Vec<DeviceEvent>) -> DeviceState {
        history.extend(events);
        history
            .iter()
            .fold(DeviceState::default(), |s, e| s.evolve(e))
    }

    fn requested() -> (Vec<DeviceEvent>, DeviceState) {
        let mut history = Vec::new();
        let events = request(
            &DeviceState::Absent,
            "gatehouse-cli",
            None,
            DeviceMetadata {
                hostname: Some("laptop".into()),
                os: Some("linux".into()),
                client_version: Some("0.1.0".into()),
                ip_address: Some("10.0.0.7".into()),
            },
            "hash".into(),
            FlowSettings::default(),
            t0(),
        )
        .unwrap();
        let state = apply(&mut history, events);
        (history, state)
    }

    fn verified(trusted: bool) -> (Vec<DeviceEvent>, DeviceState) {
        let (mut history, state) = requested();
        let state = apply(
            &mut history,
            verify(&state, alice(), trusted, at(30)).unwrap(),
        );
        (history, state)
    }

    fn active(trusted: bool) -> (Vec<DeviceEvent>, DeviceState) {
        let (mut history, state) = verified(trusted);
        let state = apply(
            &mut history,
            redeem(&state, DeviceLifetimes::default(), at(35)).unwrap(),
        );
        (history, state)
    }

    fn status(state: &DeviceState, now: DateTime<Utc>) -> DeviceStatus {
        state.device().unwrap().status(now)
    }

    #[test]
    fn a_request_is_pending_until_it_lapses() {
        let (_, state) = requested();
        let device = state.device().unwrap();
        assert_eq!(device.facts.expires_at, at(600));
        assert_eq!(device.interval_seconds, 5);
        assert_eq!(status(&state, at(599)), DeviceStatus::Pending);
        assert_eq!(status(&state, at(600)), DeviceStatus::Expired);
        assert_eq!(device.facts.owner, None);
    }

    #[test]
    fn a_request_needs_a_client_id_and_clips_what_the_device_says() {
        assert!(matches!(
            request(
                &DeviceState::Absent,
                "  ",
                None,
                DeviceMetadata::default(),
                "hash".into(),
                FlowSettings::default(),
                t0()
            ),
            Err(Rejection::Invalid(_))
        ));
        let events = request(
            &DeviceState::Absent,
            "cli",
            None,
            DeviceMetadata {
                hostname: Some(format!("evil\u{1b}[31m{}", "x".repeat(500))),
                ..DeviceMetadata::default()
            },
            "hash".into(),
            FlowSettings::default(),
            t0(),
        )
        .unwrap();
        let DeviceEvent::AuthorizationRequested(e) = &events[0] else {
            panic!("unexpected {events:?}")
        };
        let hostname = e.metadata.hostname.as_deref().unwrap();
        assert_eq!(hostname.chars().count(), MAX_FIELD);
        assert!(!hostname.chars().any(char::is_control));
    }

    #[test]
    fn polling_a_pending_request_says_pending_and_records_nothing() {
        let (_, state) = requested();
        assert_eq!(
            redeem(&state, DeviceLifetimes::default(), at(10)),
            Err(PollRefusal::AuthorizationPending)
        );
    }

    #[test]
    fn approval_makes_the_device_the_approvers_and_the_next_poll_activates_it() {
        let (_, state) = verified(false);
        assert_eq!(status(&state, at(31)), DeviceStatus::Verified);
        assert_eq!(state.device().unwrap().facts.owner, Some(alice()));
        let events = redeem(&state, DeviceLifetimes::default(), at(35)).unwrap();
        assert_eq!(
            events,
            vec![DeviceEvent::Activated(DeviceActivated {
                activated_at: at(35),
                token_expires_at: at(35) + Duration::hours(24),
            })]
        );
    }

    #[test]
    fn a_trusted_device_gets_a_thirty_day_session() {
        let (_, state) = active(true);
        assert_eq!(
            state.device().unwrap().facts.token_expires_at,
            Some(at(35) + Duration::days(30))
        );
        assert_eq!(
            status(&state, at(35) + Duration::days(29)),
            DeviceStatus::Active
        );
        assert_eq!(
            status(&state, at(35) + Duration::days(30)),
            DeviceStatus::Expired
        );
    }

    #[test]
    fn an_untrusted_device_gets_a_one_day_session_even_past_the_request_expiry() {
        let (_, state) = active(false);
        assert_eq!(status(&state, at(3600)), DeviceStatus::Active);
        assert_eq!(
            status(&state, at(35) + Duration::hours(24)),
            DeviceStatus::Expired
        );
    }

    #[test]
    fn a_device_code_is_redeemed_once() {
        let (_, state) = active(false);
        assert_eq!(
            redeem(&state, DeviceLifetimes::default(), at(40)),
            Err(PollRefusal::InvalidGrant)
        );
    }

    #[test]
    fn a_denied_request_answers_access_denied_and_cannot_be_approved() {
        let (mut history, state) = requested();
        let state = apply(&mut history, deny(&state, bob(), at(20)).unwrap());
        assert_eq!(status(&state, at(21)), DeviceStatus::Denied);
        assert_eq!(
            redeem(&state, DeviceLifetimes::default(), at(25)),
            Err(PollRefusal::AccessDenied)
        );
        assert_eq!(
            verify(&state, alice(), true, at(26)),
            Err(Rejection::NotPending)
        );
    }

    #[test]
    fn a_lapsed_request_cannot_be_approved_or_redeemed() {
        let (_, state) = requested();
        assert_eq!(
            verify(&state, alice(), false, at(600)),
            Err(Rejection::NotPending)
        );
        assert_eq!(deny(&state, alice(), at(600)), Err(Rejection::NotPending));
        assert_eq!(
            redeem(&state, DeviceLifetimes::default(), at(600)),
            Err(PollRefusal::ExpiredToken)
        );
    }

    #[test]
    fn an_approved_but_unredeemed_request_still_lapses() {
        let (_, state) = verified(true);
        assert_eq!(status(&state, at(600)), DeviceStatus::Expired);
        assert_eq!(
            redeem(&state, DeviceLifetimes::default(), at(600)),
            Err(PollRefusal::ExpiredToken)
        );
    }

    #[test]
    fn a_request_is_approved_once() {
        let (_, state) = verified(false);
        assert_eq!(
            verify(&state, bob(), false, at(40)),
            Err(Rejection::NotPending)
        );
        assert_eq!(deny(&state, bob(), at(40)), Err(Rejection::NotPending));
    }

    #[test]
    fn unknown_and_deleted_devices_are_invalid_grants_and_not_found() {
        assert_eq!(
            redeem(&DeviceState::Absent, DeviceLifetimes::default(), t0()),
            Err(PollRefusal::InvalidGrant)
        );
        assert_eq!(
            verify(&DeviceState::Absent, alice(), false, t0()),
            Err(Rejection::NotFound)
        );
        let (mut history, state) = active(false);
        let state = apply(&mut history, delete(&state, &as_user(alice())).unwrap());
        assert_eq!(state, DeviceState::Deleted);
        assert_eq!(lock(&state, &admin(), at(50)), Err(Rejection::NotFound));
        assert_eq!(
            redeem(&state, DeviceLifetimes::default(), at(50)),
            Err(PollRefusal::InvalidGrant)
        );
    }

    #[test]
    fn lock_and_unlock_keep_the_session_and_its_expiry() {
        let (mut history, state) = active(false);
        let state = apply(
            &mut history,
            lock(&state, &as_user(alice()), at(60)).unwrap(),
        );
        assert_eq!(status(&state, at(61)), DeviceStatus::Locked);
        assert_eq!(
            lock(&state, &as_user(alice()), at(62)),
            Ok(vec![]),
            "idempotent"
        );
        let state = apply(&mut history, unlock(&state, &admin(), at(70)).unwrap());
        assert_eq!(status(&state, at(71)), DeviceStatus::Active);
        assert_eq!(
            state.device().unwrap().facts.token_expires_at,
            Some(at(35) + Duration::hours(24)),
            "unlocking restores the same session, not a new one"
        );
        assert_eq!(unlock(&state, &admin(), at(72)), Ok(vec![]), "idempotent");
    }

    #[test]
    fn a_lapsed_session_cannot_be_unlocked_back_to_life() {
        let (mut history, state) = active(false);
        let state = apply(
            &mut history,
            lock(&state, &as_user(alice()), at(60)).unwrap(),
        );
        let later = at(35) + Duration::hours(25);
        assert_eq!(status(&state, later), DeviceStatus::Expired);
        assert!(matches!(
            unlock(&state, &as_user(alice()), later),
            Err(Rejection::Invalid(_))
        ));
    }

    #[test]
    fn pending_denied_and_expired_devices_cannot_be_locked() {
        let (_, state) = requested();
        assert!(matches!(
            lock(&state, &admin(), at(1)),
            Err(Rejection::Invalid(_))
        ));
        let (mut history, state) = requested();
        let state = apply(&mut history, deny(&state, alice(), at(2)).unwrap());
        assert!(matches!(
            lock(&state, &admin(), at(3)),
            Err(Rejection::Invalid(_))
        ));
        let (_, state) = active(false);
        assert!(matches!(
            lock(&state, &admin(), at(35) + Duration::days(2)),
            Err(Rejection::Invalid(_))
        ));
    }

    #[test]
    fn only_the_owner_or_an_admin_sees_and_manages_a_device() {
        let (_, state) = active(false);
        for decision in [
            lock(&state, &as_user(bob()), at(60)),
            unlock(&state, &as_user(bob()), at(60)),
            delete(&state, &as_user(bob())),
        ] {
            assert_eq!(decision, Err(Rejection::NotFound));
        }
        assert!(lock(&state, &as_user(alice()), at(60)).is_ok());
        assert!(delete(&state, &admin()).is_ok());
        // A pending authorization is nobody's yet.
        let (_, pending) = requested();
        assert_eq!(
            delete(&pending, &as_user(alice())),
            Err(Rejection::NotFound)
        );
        assert!(delete(&pending, &admin()).is_ok());
    }

    #[test]
    fn an_undecided_request_lapses_once_after_the_grace_and_stays_expired() {
        let grace = Duration::minutes(10);
        let (mut history, state) = requested();
        let expiry = at(600);
        assert!(lapse(&state, expiry, grace).is_empty(), "within the grace");
        assert_eq!(
            state.device().map(|d| d.status(expiry)),
            Some(DeviceStatus::Expired)
        );
        let events = lapse(&state, expiry + grace, grace);
        assert_eq!(
            events,
            vec![DeviceEvent::AuthorizationLapsed(
                DeviceAuthorizationLapsed { expired_at: expiry }
            )]
        );
        let state = apply(&mut history, events);
        assert!(
            lapse(&state, expiry + grace * 3, grace).is_empty(),
            "recorded once"
        );
        assert_eq!(
            state.device().map(|d| d.status(expiry + grace)),
            Some(DeviceStatus::Expired)
        );
        assert_eq!(
            verify(&state, alice(), true, expiry + grace),
            Err(Rejection::NotPending)
        );
    }

    #[test]
    fn decided_and_deleted_requests_never_lapse_by_event() {
        let late = at(600) + Duration::days(1);
        let grace = Duration::minutes(10);
        // Approved (the code was released with the approval), redeemed or not.
        assert!(lapse(&verified(false).1, late, grace).is_empty());
        assert!(lapse(&active(false).1, late, grace).is_empty());
        // Denied.
        let (mut history, state) = requested();
        let state = apply(&mut history, deny(&state, alice(), at(30)).unwrap());
        assert!(lapse(&state, late, grace).is_empty());
        // Gone.
        assert!(lapse(&DeviceState::Deleted, late, grace).is_empty());
        assert!(lapse(&DeviceState::Absent, late, grace).is_empty());
    }

    #[test]
    fn deleting_records_whose_device_it_was() {
        let (_, state) = active(true);
        assert_eq!(
            delete(&state, &admin()),
            Ok(vec![DeviceEvent::Deleted(DeviceDeleted {
                user_id: Some(alice())
            })])
        );
    }

    #[test]
    fn user_codes_are_read_case_insensitively_with_or_without_the_dash() {
        use gatehouse_contracts::devices::{display_user_code, normalize_user_code};
        assert_eq!(
            normalize_user_code("wdjb-mjht").as_deref(),
            Some("WDJBMJHT")
        );
        assert_eq!(
            normalize_user_code(" WDJB MJHT ").as_deref(),
            Some("WDJBMJHT")
        );
        assert_eq!(normalize_user_code("WDJBMJHT").as_deref(), Some("WDJBMJHT"));
        assert_eq!(
            normalize_user_code("WDJB-MJHA"),
            None,
            "A is not in the alphabet"
        );
        assert_eq!(normalize_user_code("WDJB-MJH"), None, "too short");
        assert_eq!(normalize_user_code("WDJB-MJHTT"), None, "too long");
        assert_eq!(display_user_code("WDJBMJHT"), "WDJB-MJHT");
    }
}
