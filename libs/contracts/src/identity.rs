//! The identity service's contract: users and service accounts.

use chrono::{DateTime, Utc};
use gatehouse_secrets::SealedSecret;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate_events;
use crate::commands::Command;
use crate::ids::{PrincipalId, ServiceAccountId, UserId};
use crate::names::{Description, Name};

/// What a principal may do. Admins manage everything; members manage what they created.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages every user, service account and key.
    Admin,
    /// Manages the service accounts it created.
    Member,
}

impl Role {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(format!("unknown role {other:?}: expected admin or member")),
        }
    }
}

/// The unique-name scope shared by users and service accounts: a name means one
/// principal, whatever its kind.
pub const PRINCIPAL_NAME_SCOPE: &str = "principal_name";

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// `user.created`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserCreated {
    /// Login name, unique among all principals.
    pub name: Name,
    /// Initial role.
    pub role: Role,
}

/// `user.password_changed`: the new hash is kept outside the log (in the credential
/// store), so the event says only that it happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserPasswordChanged {}

/// `user.role_changed`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoleChanged {
    /// The new role.
    pub role: Role,
}

/// `*.deactivated`: every token of the principal is refused from now on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Deactivated {}

/// `*.reactivated`: new tokens may be issued again; older ones stay dead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reactivated {}

aggregate_events! {
    /// Events of a user (`user-<id>` streams).
    pub enum UserEvent: "user" {
        /// The user was created.
        Created(UserCreated) = "created",
        /// The user's password was changed.
        PasswordChanged(UserPasswordChanged) = "password_changed",
        /// The user's role was changed.
        RoleChanged(RoleChanged) = "role_changed",
        /// The user was deactivated.
        Deactivated(Deactivated) = "deactivated",
        /// The user was reactivated.
        Reactivated(Reactivated) = "reactivated",
    }
}

/// `service_account.created`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceAccountCreated {
    /// Name, unique among all principals.
    pub name: Name,
    /// What the account is for.
    pub description: Description,
    /// Role of the account's sessions.
    pub role: Role,
    /// The principal that created (and so manages) the account.
    #[schemars(with = "Uuid")]
    pub owner: PrincipalId,
}

/// A service account's owner as its events tell it: `None` before it is created and after
/// it is deleted. What a service other than identity folds to decide who may manage the
/// account (the keys service, for its keys), with [`crate::commands::Caller::may_manage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountOwner(pub Option<PrincipalId>);

impl AccountOwner {
    /// Folds one event.
    pub fn evolve(self, event: &ServiceAccountEvent) -> Self {
        match event {
            ServiceAccountEvent::Created(created) => AccountOwner(Some(created.owner)),
            ServiceAccountEvent::Deleted(_) => AccountOwner(None),
            _ => self,
        }
    }
}

/// `service_account.description_changed`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DescriptionChanged {
    /// The new description.
    pub description: Description,
}

/// `service_account.deleted`: the account and its keys are gone; its name is free again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceAccountDeleted {
    /// The name the account had, released for reuse.
    pub name: Name,
}

aggregate_events! {
    /// Events of a service account (`service_account-<id>` streams).
    pub enum ServiceAccountEvent: "service_account" {
        /// The account was created.
        Created(ServiceAccountCreated) = "created",
        /// The description was changed.
        DescriptionChanged(DescriptionChanged) = "description_changed",
        /// The role was changed.
        RoleChanged(RoleChanged) = "role_changed",
        /// The account was deactivated: its tokens are refused at once.
        Deactivated(Deactivated) = "deactivated",
        /// The account was reactivated.
        Reactivated(Reactivated) = "reactivated",
        /// The account was deleted.
        Deleted(ServiceAccountDeleted) = "deleted",
    }
}

/// The token epoch: every token carries its principal's epoch from when it was minted, and
/// a token with an older epoch than the principal's is refused. An event that ends every
/// token the principal holds raises the epoch; nothing lowers it (reactivating does not
/// bring old tokens back). The one rule for the identity aggregates and the identity read
/// models (and so every gateway's directory).
pub trait EpochEvent {
    /// Whether the event ends every token the principal holds.
    fn raises_epoch(&self) -> bool;

    /// The principal's epoch after the event, from `epoch` before it.
    fn epoch_after(&self, epoch: u64) -> u64 {
        epoch + u64::from(self.raises_epoch())
    }
}

impl EpochEvent for UserEvent {
    /// Deactivation and a password change.
    fn raises_epoch(&self) -> bool {
        matches!(
            self,
            UserEvent::Deactivated(_) | UserEvent::PasswordChanged(_)
        )
    }
}

impl EpochEvent for ServiceAccountEvent {
    /// Deactivation.
    fn raises_epoch(&self) -> bool {
        matches!(self, ServiceAccountEvent::Deactivated(_))
    }
}

// ---------------------------------------------------------------------------------------
// Read models (views), shared by the projector and the gateway
// ---------------------------------------------------------------------------------------

/// The view kind of users in the read store.
pub const USER_VIEW: &str = "user";
/// The view kind of service accounts in the read store.
pub const SERVICE_ACCOUNT_VIEW: &str = "service_account";

/// A user as the read side sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    /// Id.
    pub id: UserId,
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Whether the user may log in.
    pub active: bool,
    /// Incremented by every event that must kill existing tokens.
    pub epoch: u64,
    /// Created at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
}

/// A service account as the read side sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceAccountView {
    /// Id.
    pub id: ServiceAccountId,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Role of its sessions.
    pub role: Role,
    /// Whether it may authenticate.
    pub active: bool,
    /// The principal that created it.
    pub owner: PrincipalId,
    /// Incremented by every event that must kill existing tokens.
    pub epoch: u64,
    /// Created at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// Creates the initial admin user if no principal of that name exists yet. Idempotent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BootstrapAdmin {
    /// The admin's name (`admin`).
    pub name: Name,
    /// The initial password, sealed for transport.
    pub password: SealedSecret,
}

/// Whether bootstrapping created the admin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapOutcome {
    /// The admin's id.
    pub user_id: UserId,
    /// `false` when the admin already existed (its password is left alone).
    pub created: bool,
}

impl Command for BootstrapAdmin {
    const SERVICE: &'static str = "identity";
    const NAME: &'static str = "bootstrap_admin";
    type Output = BootstrapOutcome;
    type Code = crate::failures::IdentityFailure;
}

/// Creates a user (admins only).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateUser {
    /// Login name.
    pub name: Name,
    /// Role.
    pub role: Role,
    /// Initial password, sealed for transport.
    pub password: SealedSecret,
}

impl Command for CreateUser {
    const SERVICE: &'static str = "identity";
    const NAME: &'static str = "create_user";
    /// The user or account as the command left it (folded from the log, not read back
    /// from a read model that may lag).
    type Output = UserView;
    type Code = crate::failures::IdentityFailure;
}

/// Changes a user's role or active flag (admins only).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpdateUser {
    /// The user.
    pub user_id: UserId,
    /// New role.
    pub role: Option<Role>,
    /// Activate or deactivate.
    pub active: Option<bool>,
}

impl Command for UpdateUser {
    const SERVICE: &'static str = "identity";
    const NAME: &'static str = "update_user";
    /// The user or account as the command left it (folded from the log, not read back
    /// from a read model that may lag).
    type Output = UserView;
    type Code = crate::failures::IdentityFailure;
}

/// Changes the caller's own password; the current one must be given.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChangePassword {
    /// The current password, sealed.
    pub current_password: SealedSecret,
    /// The new password, sealed.
    pub new_password: SealedSecret,
}

impl Command for ChangePassword {
    const SERVICE: &'static str = "identity";
    const NAME: &'static str = "change_password";
    type Output = ();
    type Code = crate::failures::IdentityFailure;
}

/// Checks a username and password (the password grant). Appends nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthenticatePassword {
    /// The login name as typed (not validated: unknown names must cost the same time).
    pub username: String,
    /// The password, sealed.
    pub password: SealedSecret,
}

/// The authenticated user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticatedUser {
    /// Id.
    pub user_id: UserId,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The user's current epoch (tokens carry it; a later deactivation kills them).
    pub epoch: u64,
}

impl Command for AuthenticatePassword {
    const SERVICE: &'static str = "identity";
    const NAME: &'static str = "authenticate_password";
    type Output = AuthenticatedUser;
    type Code = crate::failures::IdentityFailure;
}

/// Creates a service account owned by the caller.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateServiceAccount {
    /// Name.
    pub name: Name,
    /// Description.
    pub description: Description,
    /// Role; only admins may ask for anything but `member`.
    pub role: Option<Role>,
}

impl Command for CreateServiceAccount {
    const SERVICE: &'static str = "identity";
    const NAME: &'static str = "create_service_account";
    /// The user or account as the command left it (folded from the log, not read back
    /// from a read model that may lag).
    type Output = ServiceAccountView;
    type Code = crate::failures::IdentityFailure;
}

/// Changes a service account.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpdateServiceAccount {
    /// The account.
    pub id: ServiceAccountId,
    /// New description.
    pub description: Option<Description>,
    /// Activate or deactivate.
    pub active: Option<bool>,
    /// New role (admins only).
    pub role: Option<Role>,
}

impl Command for UpdateServiceAccount {
    const SERVICE: &'static str = "identity";
    const NAME: &'static str = "update_service_account";
    /// The user or account as the command left it (folded from the log, not read back
    /// from a read model that may lag).
    type Output = ServiceAccountView;
    type Code = crate::failures::IdentityFailure;
}

/// Deletes a service account.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeleteServiceAccount {
    /// The account.
    pub id: ServiceAccountId,
}

impl Command for DeleteServiceAccount {
    const SERVICE: &'static str = "identity";
    const NAME: &'static str = "delete_service_account";
    type Output = ();
    type Code = crate::failures::IdentityFailure;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deactivation_and_a_password_change_raise_the_epoch_and_nothing_lowers_it() {
        let name = || Name::parse("alice").unwrap();
        let users = [
            (
                UserEvent::Created(UserCreated {
                    name: name(),
                    role: Role::Member,
                }),
                false,
            ),
            (UserEvent::PasswordChanged(UserPasswordChanged {}), true),
            (
                UserEvent::RoleChanged(RoleChanged { role: Role::Admin }),
                false,
            ),
            (UserEvent::Deactivated(Deactivated {}), true),
            (UserEvent::Reactivated(Reactivated {}), false),
        ];
        for (event, raises) in &users {
            assert_eq!(event.raises_epoch(), *raises, "{event:?}");
            assert_eq!(event.epoch_after(7), 7 + u64::from(*raises), "{event:?}");
        }
        let accounts = [
            (
                ServiceAccountEvent::Created(ServiceAccountCreated {
                    name: name(),
                    description: Description::default(),
                    role: Role::Member,
                    owner: PrincipalId::new(),
                }),
                false,
            ),
            (
                ServiceAccountEvent::DescriptionChanged(DescriptionChanged {
                    description: Description::default(),
                }),
                false,
            ),
            (
                ServiceAccountEvent::RoleChanged(RoleChanged { role: Role::Admin }),
                false,
            ),
            (ServiceAccountEvent::Deactivated(Deactivated {}), true),
            (ServiceAccountEvent::Reactivated(Reactivated {}), false),
            (
                ServiceAccountEvent::Deleted(ServiceAccountDeleted { name: name() }),
                false,
            ),
        ];
        for (event, raises) in &accounts {
            assert_eq!(event.raises_epoch(), *raises, "{event:?}");
            assert_eq!(event.epoch_after(7), 7 + u64::from(*raises), "{event:?}");
        }
    }
}
