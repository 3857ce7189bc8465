//! The user aggregate.

use gatehouse_contracts::commands::Caller;
use gatehouse_contracts::identity::{
    Deactivated, EpochEvent, Reactivated, Role, RoleChanged, UserCreated, UserEvent,
    UserPasswordChanged,
};
use gatehouse_contracts::ids::{PrincipalId, UserId};
use gatehouse_contracts::names::Name;
use gatehouse_eventlog::Aggregate;

use super::Rejection;

/// A user's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum User {
    /// No such user yet.
    #[default]
    Absent,
    /// The user exists.
    Present {
        /// Login name.
        name: Name,
        /// Role.
        role: Role,
        /// Whether the user may log in.
        active: bool,
        /// Incremented by every event that kills existing tokens.
        epoch: u64,
    },
}

impl Aggregate for User {
    type Event = UserEvent;

    fn evolve(self, event: &UserEvent) -> Self {
        let mut next = match (self, event) {
            (User::Absent, UserEvent::Created(e)) => User::Present {
                name: e.name.clone(),
                role: e.role,
                active: true,
                epoch: 0,
            },
            (
                User::Present {
                    name,
                    active,
                    epoch,
                    ..
                },
                UserEvent::RoleChanged(e),
            ) => User::Present {
                name,
                role: e.role,
                active,
                epoch,
            },
            (
                User::Present {
                    name, role, epoch, ..
                },
                UserEvent::Deactivated(_),
            ) => User::Present {
                name,
                role,
                active: false,
                epoch,
            },
            (
                User::Present {
                    name, role, epoch, ..
                },
                UserEvent::Reactivated(_),
            ) => User::Present {
                name,
                role,
                active: true,
                epoch,
            },
            (
                User::Present {
                    name,
                    role,
                    active,
                    epoch,
                },
                UserEvent::PasswordChanged(_),
            ) => User::Present {
                name,
                role,
                active,
                epoch,
            },
            (state, _) => state,
        };
        if let User::Present { epoch, .. } = &mut next {
            *epoch = event.epoch_after(*epoch);
        }
        next
    }
}

/// Creates a user. Only admins create users, except the bootstrap (no caller).
pub fn create(
    state: &User,
    caller: Option<&Caller>,
    name: Name,
    role: Role,
) -> Result<Vec<UserEvent>, Rejection> {
    if let Some(caller) = caller
        && !caller.is_admin()
    {
        return Err(Rejection::Forbidden("only admins can create users"));
    }
    match state {
        User::Absent => Ok(vec![UserEvent::Created(UserCreated { name, role })]),
        User::Present { .. } => Err(Rejection::AlreadyExists("user")),
    }
}

/// Changes the password (the hash itself is stored beside the log).
pub fn change_password(state: &User) -> Result<Vec<UserEvent>, Rejection> {
    match state {
        User::Present { .. } => Ok(vec![UserEvent::PasswordChanged(UserPasswordChanged {})]),
        User::Absent => Err(Rejection::NotFound("user")),
    }
}

/// Changes role and/or active flag. Admins only; an admin cannot lock themselves out.
pub fn update(
    state: &User,
    caller: &Caller,
    target: UserId,
    role: Option<Role>,
    active: Option<bool>,
) -> Result<Vec<UserEvent>, Rejection> {
    if !caller.is_admin() {
        return Err(Rejection::Forbidden("only admins can change users"));
    }
    let User::Present {
        role: current_role,
        active: current_active,
        ..
    } = state
    else {
        return Err(Rejection::NotFound("user"));
    };
    if caller.id == PrincipalId::from(target)
        && (active == Some(false) || role == Some(Role::Member))
    {
        return Err(Rejection::Invalid(
            "you cannot deactivate or demote the account you are using",
        ));
    }
    let mut events = Vec::new();
    if let Some(role) = role.filter(|r| r != current_role) {
        events.push(UserEvent::RoleChanged(RoleChanged { role }));
    }
    match active {
        Some(false) if *current_active => events.push(UserEvent::Deactivated(Deactivated {})),
        Some(true) if !*current_active => events.push(UserEvent::Reactivated(Reactivated {})),
        _ => {}
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Caller {
        Caller {
            id: gatehouse_contracts::PrincipalId::new(),
            kind: gatehouse_contracts::PrincipalKind::User,
            name: "admin".into(),
            role: Role::Admin,
        }
    }

    fn member() -> Caller {
        Caller {
            id: gatehouse_contracts::PrincipalId::new(),
            kind: gatehouse_contracts::PrincipalKind::User,
            name: "bob".into(),
            role: Role::Member,
        }
    }

    fn given(events: &[UserEvent]) -> User {
        events.iter().fold(User::default(), |s, e| s.evolve(e))
    }

    fn created() -> UserEvent {
        UserEvent::Created(UserCreated {
            name: Name::parse("alice").unwrap(),
            role: Role::Member,
        })
    }

    #[test]
    fn an_admin_creates_a_user() {
        let events = create(
            &User::Absent,
            Some(&admin()),
            Name::parse("alice").unwrap(),
            Role::Member,
        )
        .unwrap();
        assert_eq!(events, vec![created()]);
    }

    #[test]
    fn bootstrap_creates_without_a_caller() {
        assert!(
            create(
                &User::Absent,
                None,
                Name::parse("admin").unwrap(),
                Role::Admin
            )
            .is_ok()
        );
    }

    #[test]
    fn a_member_cannot_create_users() {
        let r = create(
            &User::Absent,
            Some(&member()),
            Name::parse("alice").unwrap(),
            Role::Member,
        );
        assert_eq!(r, Err(Rejection::Forbidden("only admins can create users")));
    }

    #[test]
    fn creating_twice_is_refused() {
        let r = create(
            &given(&[created()]),
            Some(&admin()),
            Name::parse("alice").unwrap(),
            Role::Member,
        );
        assert_eq!(r, Err(Rejection::AlreadyExists("user")));
    }

    #[test]
    fn deactivating_bumps_the_epoch_and_reactivating_keeps_it() {
        let state = given(&[created()]);
        let target = UserId::new();
        let events = update(&state, &admin(), target, None, Some(false)).unwrap();
        assert_eq!(events, vec![UserEvent::Deactivated(Deactivated {})]);
        let state = events.iter().fold(state, |s, e| s.evolve(e));
        assert!(matches!(
            state,
            User::Present {
                active: false,
                epoch: 1,
                ..
            }
        ));
        let events = update(&state, &admin(), target, None, Some(true)).unwrap();
        let state = events.iter().fold(state, |s, e| s.evolve(e));
        assert!(matches!(
            state,
            User::Present {
                active: true,
                epoch: 1,
                ..
            }
        ));
    }

    #[test]
    fn an_update_to_the_current_values_records_nothing() {
        let state = given(&[created()]);
        assert_eq!(
            update(
                &state,
                &admin(),
                UserId::new(),
                Some(Role::Member),
                Some(true)
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn an_admin_cannot_deactivate_or_demote_themselves() {
        let me = admin();
        let state = given(&[created()]);
        assert!(matches!(
            update(&state, &me, me.user_id().unwrap(), None, Some(false)),
            Err(Rejection::Invalid(_))
        ));
        assert!(matches!(
            update(&state, &me, me.user_id().unwrap(), Some(Role::Member), None),
            Err(Rejection::Invalid(_))
        ));
    }

    #[test]
    fn a_member_cannot_update_users() {
        let state = given(&[created()]);
        assert!(matches!(
            update(&state, &member(), UserId::new(), Some(Role::Admin), None),
            Err(Rejection::Forbidden(_))
        ));
    }

    #[test]
    fn changing_the_password_kills_existing_tokens() {
        let state = given(&[created()]);
        let events = change_password(&state).unwrap();
        let state = events.iter().fold(state, |s, e| s.evolve(e));
        assert!(matches!(state, User::Present { epoch: 1, .. }));
        assert_eq!(
            change_password(&User::Absent),
            Err(Rejection::NotFound("user"))
        );
    }
}
