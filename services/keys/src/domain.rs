//! The API key aggregate: pure `evolve` and `decide` functions. Time is an argument, so
//! retention windows and expiry are tested with any clock.

use chrono::{DateTime, Duration, Utc};
use gatehouse_contracts::commands::Caller;
use gatehouse_contracts::identity::{AccountOwner, Deactivated, DescriptionChanged, Reactivated};
use gatehouse_contracts::ids::ServiceAccountId;
use gatehouse_contracts::keys::{
    ApiKeyCreated, ApiKeyDeleted, ApiKeyEvent, ApiKeyExpired, ApiKeyExpiryChanged, ApiKeyRotated,
    KeyRefusal, KeyValidity,
};
use gatehouse_contracts::names::{Description, Name};
use gatehouse_eventlog::Aggregate;

/// The longest retention window a rotation may ask for (30 days).
pub const MAX_RETAIN_SECONDS: u32 = 30 * 24 * 3600;
/// The longest lifetime a key may be given (10 years).
pub const MAX_LIFETIME_SECONDS: u64 = 10 * 366 * 24 * 3600;

/// Why the keys service refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No such key in this service account.
    #[error("API key not found")]
    NotFound,
    /// No such service account that the caller may manage.
    #[error("no such service account")]
    AccountNotFound,
    /// The request makes no sense for the key's state or is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Whether `caller` may manage the keys of the service account whose owner is `owner`
/// (`None`: no such account): admins and whoever created the account, the one rule
/// [`Caller::may_manage`]. Everyone else is told the account does not exist, as the
/// gateway tells them: the keys service does not take the gateway's word for it.
pub fn authorize(caller: &Caller, owner: AccountOwner) -> Result<(), Rejection> {
    match owner {
        AccountOwner(Some(owner)) if caller.may_manage(owner) => Ok(()),
        _ => Err(Rejection::AccountNotFound),
    }
}

/// A live key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// Its service account.
    pub service_account_id: ServiceAccountId,
    /// Name.
    pub name: Name,
    /// Description.
    pub description: Description,
    /// What decides whether it works.
    pub validity: KeyValidity,
    /// Whether the expiry event was recorded.
    pub expired: bool,
}

/// An API key's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ApiKey {
    /// Never created.
    #[default]
    Absent,
    /// Exists.
    Present(Key),
    /// Deleted: gone for every command.
    Deleted,
}

impl Aggregate for ApiKey {
    type Event = ApiKeyEvent;

    fn evolve(self, event: &ApiKeyEvent) -> Self {
        match (self, event) {
            (ApiKey::Absent, ApiKeyEvent::Created(e)) => ApiKey::Present(Key {
                service_account_id: e.service_account_id,
                name: e.name.clone(),
                description: e.description.clone(),
                validity: KeyValidity::new(e.expires_at),
                expired: false,
            }),
            (ApiKey::Present(_), ApiKeyEvent::Deleted(_)) => ApiKey::Deleted,
            (ApiKey::Present(mut key), event) => {
                key.validity.evolve(event);
                match event {
                    ApiKeyEvent::DescriptionChanged(e) => key.description = e.description.clone(),
                    ApiKeyEvent::Expired(_) => key.expired = true,
                    ApiKeyEvent::ExpiryChanged(_) => key.expired = false,
                    _ => {}
                }
                ApiKey::Present(key)
            }
            (state, _) => state,
        }
    }
}

impl ApiKey {
    /// The key, if it exists and belongs to `service_account_id`.
    pub fn of(&self, service_account_id: ServiceAccountId) -> Result<&Key, Rejection> {
        match self {
            ApiKey::Present(key) if key.service_account_id == service_account_id => Ok(key),
            _ => Err(Rejection::NotFound),
        }
    }
}

fn expiry_from(now: DateTime<Utc>, seconds: u64) -> Result<DateTime<Utc>, Rejection> {
    if seconds == 0 || seconds > MAX_LIFETIME_SECONDS {
        return Err(Rejection::Invalid(format!(
            "expires_in_seconds must be between 1 and {MAX_LIFETIME_SECONDS}"
        )));
    }
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
    Ok(now + Duration::seconds(seconds))
}

/// Creates a key.
pub fn create(
    state: &ApiKey,
    service_account_id: ServiceAccountId,
    name: Name,
    description: Description,
    expires_in_seconds: Option<u64>,
    now: DateTime<Utc>,
) -> Result<Vec<ApiKeyEvent>, Rejection> {
    if !matches!(state, ApiKey::Absent) {
        return Err(Rejection::Invalid("the API key already exists".into()));
    }
    let expires_at = expires_in_seconds
        .map(|s| expiry_from(now, s))
        .transpose()?;
    Ok(vec![ApiKeyEvent::Created(ApiKeyCreated {
        service_account_id,
        name,
        description,
        expires_at,
    })])
}

/// Starts a new generation; the current secret stays valid for `retain_seconds`
/// (0: it dies at once). Earlier retained secrets keep their own windows. An expired key
/// cannot be rotated back to life: change its expiry first.
pub fn rotate(
    state: &ApiKey,
    service_account_id: ServiceAccountId,
    retain_seconds: u32,
    now: DateTime<Utc>,
) -> Result<Vec<ApiKeyEvent>, Rejection> {
    let key = state.of(service_account_id)?;
    if retain_seconds > MAX_RETAIN_SECONDS {
        return Err(Rejection::Invalid(format!(
            "the retention period must be at most {} days",
            MAX_RETAIN_SECONDS / 86_400
        )));
    }
    if key.validity.expires_at.is_some_and(|at| at <= now) {
        return Err(Rejection::Invalid(
            "the API key has expired; change its expiry before rotating it".into(),
        ));
    }
    let previous_valid_until =
        (retain_seconds > 0).then(|| now + Duration::seconds(i64::from(retain_seconds)));
    Ok(vec![ApiKeyEvent::Rotated(ApiKeyRotated {
        rotated_at: now,
        generation: key.validity.generation + 1,
        previous_generation: key.validity.generation,
        previous_valid_until,
    })])
}

/// What an update may change.
#[derive(Clone, Debug, Default)]
pub struct KeyChanges {
    /// Activate or deactivate.
    pub active: Option<bool>,
    /// New description.
    pub description: Option<Description>,
    /// New expiry (`Some(None)` removes it).
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// Changes the active flag, description and/or expiry; unchanged values append nothing.
pub fn update(
    state: &ApiKey,
    service_account_id: ServiceAccountId,
    changes: KeyChanges,
    now: DateTime<Utc>,
) -> Result<Vec<ApiKeyEvent>, Rejection> {
    let key = state.of(service_account_id)?;
    let mut events = Vec::new();
    if let Some(description) = changes.description.filter(|d| *d != key.description) {
        events.push(ApiKeyEvent::DescriptionChanged(DescriptionChanged {
            description,
        }));
    }
    if let Some(expires_at) = changes.expires_at.filter(|e| *e != key.validity.expires_at) {
        if let Some(at) = expires_at {
            if at <= now {
                return Err(Rejection::Invalid("the new expiry is in the past".into()));
            }
            let longest = i64::try_from(MAX_LIFETIME_SECONDS).unwrap_or(i64::MAX);
            if at > now + Duration::seconds(longest) {
                return Err(Rejection::Invalid(format!(
                    "the new expiry is more than {} days away",
                    MAX_LIFETIME_SECONDS / 86_400
                )));
            }
        }
        events.push(ApiKeyEvent::ExpiryChanged(ApiKeyExpiryChanged {
            expires_at,
        }));
    }
    match changes.active {
        Some(false) if key.validity.active => events.push(ApiKeyEvent::Deactivated(Deactivated {})),
        Some(true) if !key.validity.active => events.push(ApiKeyEvent::Reactivated(Reactivated {})),
        _ => {}
    }
    Ok(events)
}

/// Deletes a key.
pub fn delete(
    state: &ApiKey,
    service_account_id: ServiceAccountId,
) -> Result<Vec<ApiKeyEvent>, Rejection> {
    let key = state.of(service_account_id)?;
    Ok(vec![ApiKeyEvent::Deleted(ApiKeyDeleted {
        service_account_id,
        name: key.name.clone(),
    })])
}

/// Records the expiry of a key whose expiry has passed; nothing otherwise (idempotent).
pub fn expire(state: &ApiKey, now: DateTime<Utc>) -> Vec<ApiKeyEvent> {
    match state {
        ApiKey::Present(key) if !key.expired => match key.validity.expires_at {
            Some(at) if at <= now => vec![ApiKeyEvent::Expired(ApiKeyExpired { expires_at: at })],
            _ => vec![],
        },
        _ => vec![],
    }
}

/// Which generations a presented secret may match at `now`, or why none may.
pub fn candidate_generations(state: &ApiKey, now: DateTime<Utc>) -> Result<Vec<u32>, KeyRefusal> {
    match state {
        ApiKey::Present(key) => {
            // Deactivation and expiry are checked against the current generation (they do
            // not depend on which secret is presented).
            key.validity.check(key.validity.generation, now)?;
            Ok(key.validity.live_generations(now))
        }
        _ => Err(KeyRefusal::Rotated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    fn sa() -> ServiceAccountId {
        ServiceAccountId::from_uuid(uuid::Uuid::from_u128(7))
    }

    fn given(events: &[ApiKeyEvent]) -> ApiKey {
        events
            .iter()
            .fold(ApiKey::default(), |state, e| state.evolve(e))
    }

    fn created(expires_in: Option<u64>) -> Vec<ApiKeyEvent> {
        create(
            &ApiKey::Absent,
            sa(),
            Name::parse("deploy").unwrap(),
            Description::default(),
            expires_in,
            t0(),
        )
        .unwrap()
    }

    /// Folds `events` into `history` and returns the new state.
    fn apply(history: &mut Vec<ApiKeyEvent>, events: Vec<ApiKeyEvent>) -> ApiKey {
        history.extend(events);
        given(history)
    }

    fn validity(state: &ApiKey) -> &KeyValidity {
        match state {
            ApiKey::Present(k) => &k.validity,
            other => panic!("no key: {other:?}"),
        }
    }

    #[test]
    fn only_admins_and_the_accounts_creator_manage_its_keys() {
        use gatehouse_contracts::identity::Role;
        use gatehouse_contracts::ids::{PrincipalId, PrincipalKind};
        let caller = |n: u128, role| Caller {
            id: PrincipalId::from_uuid(uuid::Uuid::from_u128(n)),
            kind: PrincipalKind::User,
            name: "someone".into(),
            role,
        };
        let creator = caller(1, Role::Member);
        let account = AccountOwner(Some(creator.id));
        assert_eq!(authorize(&creator, account), Ok(()));
        assert_eq!(authorize(&caller(9, Role::Admin), account), Ok(()));
        assert_eq!(
            authorize(&caller(2, Role::Member), account),
            Err(Rejection::AccountNotFound),
            "another member is told the account does not exist"
        );
        // No such account (never created, or deleted): not even for an admin.
        for owner in [AccountOwner(None), AccountOwner::default()] {
            assert_eq!(
                authorize(&caller(9, Role::Admin), owner),
                Err(Rejection::AccountNotFound)
            );
        }
    }

    #[test]
    fn a_new_key_is_generation_one_active_and_valid() {
        let state = given(&created(None));
        assert_eq!(validity(&state).generation, 1);
        assert_eq!(validity(&state).check(1, t0()), Ok(()));
        assert_eq!(validity(&state).check(2, t0()), Err(KeyRefusal::Rotated));
    }

    #[test]
    fn creating_twice_or_with_a_zero_or_huge_lifetime_is_refused() {
        let state = given(&created(None));
        assert!(
            create(
                &state,
                sa(),
                Name::parse("x").unwrap(),
                Description::default(),
                None,
                t0()
            )
            .is_err()
        );
        for bad in [0, MAX_LIFETIME_SECONDS + 1] {
            let r = create(
                &ApiKey::Absent,
                sa(),
                Name::parse("x").unwrap(),
                Description::default(),
                Some(bad),
                t0(),
            );
            assert!(matches!(r, Err(Rejection::Invalid(_))), "{bad}: {r:?}");
        }
    }

    #[test]
    fn rotation_without_retention_kills_the_old_secret_at_once() {
        let mut h = created(None);
        let state = given(&h);
        let state = apply(&mut h, rotate(&state, sa(), 0, t0()).unwrap());
        assert_eq!(validity(&state).generation, 2);
        assert_eq!(validity(&state).check(1, t0()), Err(KeyRefusal::Rotated));
        assert_eq!(validity(&state).check(2, t0()), Ok(()));
    }

    #[test]
    fn the_old_secret_works_inside_its_window_and_not_after() {
        let mut h = created(None);
        let state = given(&h);
        let state = apply(&mut h, rotate(&state, sa(), 60 * 60, t0()).unwrap());
        let v = validity(&state);
        assert_eq!(v.check(1, t0() + Duration::minutes(59)), Ok(()));
        assert_eq!(
            v.check(1, t0() + Duration::minutes(60)),
            Err(KeyRefusal::Rotated)
        );
        assert_eq!(v.check(2, t0() + Duration::minutes(60)), Ok(()));
    }

    #[test]
    fn each_retained_secret_keeps_its_own_window_across_rotations() {
        let mut h = created(None);
        let mut state = given(&h);
        // gen 1 retained 60 min from t0; gen 2 retained 10 min from t0+5.
        state = apply(&mut h, rotate(&state, sa(), 60 * 60, t0()).unwrap());
        state = apply(
            &mut h,
            rotate(&state, sa(), 10 * 60, t0() + Duration::minutes(5)).unwrap(),
        );
        let v = validity(&state).clone();
        assert_eq!(v.generation, 3);
        let at = |m| t0() + Duration::minutes(m);
        assert_eq!(v.check(1, at(14)), Ok(()));
        assert_eq!(v.check(2, at(14)), Ok(()));
        assert_eq!(
            v.check(2, at(15)),
            Err(KeyRefusal::Rotated),
            "gen 2's window is its own"
        );
        assert_eq!(v.check(1, at(59)), Ok(()), "gen 1 keeps its longer window");
        assert_eq!(v.check(1, at(60)), Err(KeyRefusal::Rotated));
        // A third rotation without retention leaves the earlier windows alone.
        state = apply(&mut h, rotate(&state, sa(), 0, at(20)).unwrap());
        let v = validity(&state);
        assert_eq!(v.check(3, at(20)), Err(KeyRefusal::Rotated));
        assert_eq!(v.check(1, at(30)), Ok(()));
        assert_eq!(v.live_generations(at(30)), vec![4, 1]);
    }

    #[test]
    fn closed_windows_are_dropped_at_the_next_rotation() {
        let mut h = created(None);
        let mut state = given(&h);
        state = apply(&mut h, rotate(&state, sa(), 60, t0()).unwrap());
        state = apply(
            &mut h,
            rotate(&state, sa(), 0, t0() + Duration::minutes(2)).unwrap(),
        );
        assert!(validity(&state).retained.is_empty());
    }

    #[test]
    fn retention_is_bounded() {
        let state = given(&created(None));
        assert!(matches!(
            rotate(&state, sa(), MAX_RETAIN_SECONDS + 1, t0()),
            Err(Rejection::Invalid(_))
        ));
    }

    #[test]
    fn another_accounts_key_is_not_found() {
        let state = given(&created(None));
        let other = ServiceAccountId::from_uuid(uuid::Uuid::from_u128(8));
        assert_eq!(rotate(&state, other, 0, t0()), Err(Rejection::NotFound));
        assert_eq!(
            update(&state, other, KeyChanges::default(), t0()),
            Err(Rejection::NotFound)
        );
        assert_eq!(delete(&state, other), Err(Rejection::NotFound));
    }

    #[test]
    fn deactivation_bumps_the_epoch_and_reactivation_does_not_restore_it() {
        let mut h = created(None);
        let mut state = given(&h);
        let off = KeyChanges {
            active: Some(false),
            ..Default::default()
        };
        state = apply(&mut h, update(&state, sa(), off.clone(), t0()).unwrap());
        assert_eq!(
            validity(&state).check(1, t0()),
            Err(KeyRefusal::Deactivated)
        );
        assert!(
            update(&state, sa(), off, t0()).unwrap().is_empty(),
            "already inactive: no event"
        );
        let on = KeyChanges {
            active: Some(true),
            ..Default::default()
        };
        state = apply(&mut h, update(&state, sa(), on, t0()).unwrap());
        let v = validity(&state);
        assert_eq!(v.check(1, t0()), Ok(()));
        assert_eq!(
            v.check_token(1, 0, t0()),
            Err(KeyRefusal::Revoked),
            "old tokens stay dead"
        );
        assert_eq!(v.check_token(1, 1, t0()), Ok(()));
    }

    #[test]
    fn a_key_stops_working_at_its_expiry_and_the_expiry_is_recorded_once() {
        let mut h = created(Some(3600));
        let state = given(&h);
        assert_eq!(
            validity(&state).check(1, t0() + Duration::seconds(3599)),
            Ok(())
        );
        let at = t0() + Duration::seconds(3600);
        assert_eq!(validity(&state).check(1, at), Err(KeyRefusal::Expired));
        assert!(expire(&state, at - Duration::seconds(1)).is_empty());
        let state = apply(&mut h, expire(&state, at));
        assert!(expire(&state, at).is_empty(), "recorded once");
        assert_eq!(candidate_generations(&state, at), Err(KeyRefusal::Expired));
        assert!(
            rotate(&state, sa(), 0, at).is_err(),
            "an expired key cannot be rotated"
        );
    }

    #[test]
    fn moving_the_expiry_revives_an_expired_key_and_a_past_expiry_is_refused() {
        let mut h = created(Some(60));
        let mut state = given(&h);
        let later = t0() + Duration::seconds(120);
        state = apply(&mut h, expire(&state, later));
        let past = KeyChanges {
            expires_at: Some(Some(t0())),
            ..Default::default()
        };
        assert!(matches!(
            update(&state, sa(), past, later),
            Err(Rejection::Invalid(_))
        ));
        let too_far = KeyChanges {
            expires_at: Some(Some(
                later + Duration::seconds(MAX_LIFETIME_SECONDS as i64 + 1),
            )),
            ..Default::default()
        };
        assert!(matches!(
            update(&state, sa(), too_far, later),
            Err(Rejection::Invalid(_))
        ));
        let none = KeyChanges {
            expires_at: Some(None),
            ..Default::default()
        };
        state = apply(&mut h, update(&state, sa(), none, later).unwrap());
        assert_eq!(validity(&state).check(1, later), Ok(()));
        assert!(matches!(&state, ApiKey::Present(k) if !k.expired));
    }

    #[test]
    fn a_deleted_key_is_gone_for_every_command() {
        let mut h = created(None);
        let state = given(&h);
        let state = apply(&mut h, delete(&state, sa()).unwrap());
        assert_eq!(state, ApiKey::Deleted);
        assert_eq!(rotate(&state, sa(), 0, t0()), Err(Rejection::NotFound));
        assert_eq!(delete(&state, sa()), Err(Rejection::NotFound));
        assert!(candidate_generations(&state, t0()).is_err());
        assert!(expire(&state, t0()).is_empty());
    }

    #[test]
    fn description_changes_only_when_different() {
        let state = given(&created(None));
        let same = KeyChanges {
            description: Some(Description::default()),
            ..Default::default()
        };
        assert!(update(&state, sa(), same, t0()).unwrap().is_empty());
        let new = KeyChanges {
            description: Some(Description::parse("deploys").unwrap()),
            ..Default::default()
        };
        assert_eq!(update(&state, sa(), new, t0()).unwrap().len(), 1);
    }
}
