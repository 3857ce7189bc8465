//! The service account aggregate.

use gatehouse_contracts::commands::Caller;
use gatehouse_contracts::identity::{
    Deactivated, DescriptionChanged, EpochEvent, Reactivated, Role, RoleChanged,
    ServiceAccountCreated, ServiceAccountDeleted, ServiceAccountEvent,
};
use gatehouse_contracts::ids::PrincipalId;
use gatehouse_contracts::names::{Description, Name};
use gatehouse_eventlog::Aggregate;

use super::Rejection;

/// A service account's state. A deleted account is gone for every command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ServiceAccount {
    /// Never created.
    #[default]
    Absent,
    /// Exists.
    Present {
        /// Name.
        name: Name,
        /// Description.
        description: Description,
        /// Role of its sessions.
        role: Role,
        /// Whether it may authenticate.
        active: bool,
        /// Its manager.
        owner: PrincipalId,
        /// Incremented by every event that kills existing tokens.
        epoch: u64,
    },
    /// Deleted.
    Deleted,
}

impl Aggregate for ServiceAccount {
    type Event = ServiceAccountEvent;

    fn evolve(self, event: &ServiceAccountEvent) -> Self {
        use ServiceAccountEvent as E;
        let mut next = match (self, event) {
            (ServiceAccount::Absent, E::Created(e)) => ServiceAccount::Present {
                name: e.name.clone(),
                description: e.description.clone(),
                role: e.role,
                active: true,
                owner: e.owner,
                epoch: 0,
            },
            (
                ServiceAccount::Present {
                    name,
                    role,
                    active,
                    owner,
                    epoch,
                    ..
                },
                E::DescriptionChanged(e),
            ) => ServiceAccount::Present {
                name,
                description: e.description.clone(),
                role,
                active,
                owner,
                epoch,
            },
            (
                ServiceAccount::Present {
                    name,
                    description,
                    active,
                    owner,
                    epoch,
                    ..
                },
                E::RoleChanged(e),
            ) => ServiceAccount::Present {
                name,
                description,
                role: e.role,
                active,
                owner,
                epoch,
            },
            (
                ServiceAccount::Present {
                    name,
                    description,
                    role,
                    owner,
                    epoch,
                    ..
                },
                E::Deactivated(_),
            ) => ServiceAccount::Present {
                name,
                description,
                role,
                active: false,
                owner,
                epoch,
            },
            (
                ServiceAccount::Present {
                    name,
                    description,
                    role,
                    owner,
                    epoch,
                    ..
                },
                E::Reactivated(_),
            ) => ServiceAccount::Present {
                name,
                description,
                role,
                active: true,
                owner,
                epoch,
            },
            (ServiceAccount::Present { .. }, E::Deleted(_)) => ServiceAccount::Deleted,
            (state, _) => state,
        };
        if let ServiceAccount::Present { epoch, .. } = &mut next {
            *epoch = event.epoch_after(*epoch);
        }
        next
    }
}

/// Creates an account owned by the caller. Only admins may give it a role above member.
pub fn create(
    state: &ServiceAccount,
    caller: &Caller,
    name: Name,
    description: Description,
    role: Option<Role>,
) -> Result<Vec<ServiceAccountEvent>, Rejection> {
    let role = role.unwrap_or(Role::Member);
    if role != Role::Member && !caller.is_admin() {
        return Err(Rejection::Forbidden(
            "only admins can create service accounts with the admin role",
        ));
    }
    match state {
        ServiceAccount::Absent => Ok(vec![ServiceAccountEvent::Created(ServiceAccountCreated {
            name,
            description,
            role,
            owner: caller.id,
        })]),
        _ => Err(Rejection::AlreadyExists("service account")),
    }
}

/// Changes description, active flag and/or role.
pub fn update(
    state: &ServiceAccount,
    caller: &Caller,
    description: Option<Description>,
    active: Option<bool>,
    role: Option<Role>,
) -> Result<Vec<ServiceAccountEvent>, Rejection> {
    let ServiceAccount::Present {
        description: current_description,
        role: current_role,
        active: current_active,
        owner,
        ..
    } = state
    else {
        return Err(Rejection::NotFound("service account"));
    };
    if !caller.may_manage(*owner) {
        return Err(Rejection::NotFound("service account"));
    }
    let mut events = Vec::new();
    if let Some(description) = description.filter(|d| d != current_description) {
        events.push(ServiceAccountEvent::DescriptionChanged(
            DescriptionChanged { description },
        ));
    }
    if let Some(role) = role.filter(|r| r != current_role) {
        if !caller.is_admin() {
            return Err(Rejection::Forbidden(
                "only admins can change the role of a service account",
            ));
        }
        events.push(ServiceAccountEvent::RoleChanged(RoleChanged { role }));
    }
    match active {
        Some(false) if *current_active => {
            events.push(ServiceAccountEvent::Deactivated(Deactivated {}))
        }
        Some(true) if !*current_active => {
            events.push(ServiceAccountEvent::Reactivated(Reactivated {}))
        }
        _ => {}
    }
    Ok(events)
}

/// Deletes the account and frees its name.
pub fn delete(
    state: &ServiceAccount,
    caller: &Caller,
) -> Result<Vec<ServiceAccountEvent>, Rejection> {
    match state {
        ServiceAccount::Present { name, owner, .. } if caller.may_manage(*owner) => {
            Ok(vec![ServiceAccountEvent::Deleted(ServiceAccountDeleted {
                name: name.clone(),
            })])
        }
        _ => Err(Rejection::NotFound("service account")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            id: gatehouse_contracts::PrincipalId::new(),
            kind: gatehouse_contracts::PrincipalKind::User,
            name: "someone".into(),
            role,
        }
    }

    fn created_by(owner: &Caller) -> ServiceAccountEvent {
        ServiceAccountEvent::Created(ServiceAccountCreated {
            name: Name::parse("ci-bot").unwrap(),
            description: Description::parse("nightly").unwrap(),
            role: Role::Member,
            owner: owner.id,
        })
    }

    fn given(events: &[ServiceAccountEvent]) -> ServiceAccount {
        events
            .iter()
            .fold(ServiceAccount::default(), |s, e| s.evolve(e))
    }

    #[test]
    fn a_member_creates_an_account_it_owns_with_role_member() {
        let me = caller(Role::Member);
        let events = create(
            &ServiceAccount::Absent,
            &me,
            Name::parse("ci-bot").unwrap(),
            Description::parse("nightly").unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(events, vec![created_by(&me)]);
    }

    #[test]
    fn only_admins_create_admin_accounts() {
        let r = create(
            &ServiceAccount::Absent,
            &caller(Role::Member),
            Name::parse("x").unwrap(),
            Description::default(),
            Some(Role::Admin),
        );
        assert!(matches!(r, Err(Rejection::Forbidden(_))));
        let r = create(
            &ServiceAccount::Absent,
            &caller(Role::Admin),
            Name::parse("x").unwrap(),
            Description::default(),
            Some(Role::Admin),
        );
        assert!(r.is_ok());
    }

    #[test]
    fn another_member_cannot_see_my_account() {
        let me = caller(Role::Member);
        let other = caller(Role::Member);
        let state = given(&[created_by(&me)]);
        assert_eq!(
            update(&state, &other, None, Some(false), None),
            Err(Rejection::NotFound("service account"))
        );
        assert_eq!(
            delete(&state, &other),
            Err(Rejection::NotFound("service account"))
        );
    }

    #[test]
    fn an_admin_manages_any_account() {
        let me = caller(Role::Member);
        let state = given(&[created_by(&me)]);
        assert_eq!(
            update(&state, &caller(Role::Admin), None, Some(false), None),
            Ok(vec![ServiceAccountEvent::Deactivated(Deactivated {})])
        );
    }

    #[test]
    fn deactivation_bumps_the_epoch_once() {
        let me = caller(Role::Member);
        let state = given(&[
            created_by(&me),
            ServiceAccountEvent::Deactivated(Deactivated {}),
        ]);
        assert!(matches!(
            state,
            ServiceAccount::Present {
                active: false,
                epoch: 1,
                ..
            }
        ));
        // Deactivating an inactive account records nothing.
        assert_eq!(update(&state, &me, None, Some(false), None), Ok(vec![]));
        let events = update(&state, &me, None, Some(true), None).unwrap();
        assert_eq!(
            events,
            vec![ServiceAccountEvent::Reactivated(Reactivated {})]
        );
    }

    #[test]
    fn a_member_cannot_change_the_role() {
        let me = caller(Role::Member);
        let state = given(&[created_by(&me)]);
        assert!(matches!(
            update(&state, &me, None, None, Some(Role::Admin)),
            Err(Rejection::Forbidden(_))
        ));
    }

    #[test]
    fn description_changes_are_recorded_only_when_different() {
        let me = caller(Role::Member);
        let state = given(&[created_by(&me)]);
        assert_eq!(
            update(
                &state,
                &me,
                Some(Description::parse("nightly").unwrap()),
                None,
                None
            ),
            Ok(vec![])
        );
        assert_eq!(
            update(
                &state,
                &me,
                Some(Description::parse("weekly").unwrap()),
                None,
                None
            ),
            Ok(vec![ServiceAccountEvent::DescriptionChanged(
                DescriptionChanged {
                    description: Description::parse("weekly").unwrap()
                }
            )])
        );
    }

    #[test]
    fn a_deleted_account_is_gone() {
        let me = caller(Role::Member);
        let state = given(&[created_by(&me)]);
        let events = delete(&state, &me).unwrap();
        let state = events.iter().fold(state, |s, e| s.evolve(e));
        assert_eq!(state, ServiceAccount::Deleted);
        assert_eq!(
            delete(&state, &me),
            Err(Rejection::NotFound("service account"))
        );
        assert_eq!(
            update(&state, &me, None, Some(true), None),
            Err(Rejection::NotFound("service account"))
        );
        assert!(matches!(
            create(
                &state,
                &me,
                Name::parse("ci-bot").unwrap(),
                Description::default(),
                None
            ),
            Err(Rejection::AlreadyExists(_))
        ));
    }
}
