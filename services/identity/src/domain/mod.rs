//! Pure domain logic: `decide` (rules) and `evolve` (state), no I/O, no clock.

pub mod keyring;
pub mod service_account;
pub mod user;

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
