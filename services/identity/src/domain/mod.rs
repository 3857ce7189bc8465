//! Pure domain logic: `decide` (rules) and `evolve` (state), no I/O, no clock.

pub mod keyring;
pub mod service_account;
pub mod user;

use gatehouse_contracts::commands::Caller;

/// Why the identity service refused a command. Distinct from store failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The target does not exist, or the caller may not see it.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may see the target but not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The target already exists.
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// The request makes no sense for the current state.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Whether `caller` may manage something owned by `owner` (the rule shared with the keys
/// service and the gateway: [`Caller::may_manage`]).
pub fn may_manage(caller: &Caller, owner: gatehouse_contracts::PrincipalId) -> bool {
    caller.may_manage(owner)
}
