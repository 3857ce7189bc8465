//! The identity service's command handlers: load the aggregate, decide, append.

use std::sync::Arc;

use gatehouse_bus::CommandRouter;
use gatehouse_bus::host::{ServiceContext, Task, WriteSide};
use gatehouse_contracts::clock::Clock;
use gatehouse_contracts::commands::{Accepted, Command, CommandEnvelope, Failure, FailureKind};
use gatehouse_contracts::envelope::StreamId;
use gatehouse_contracts::failures::{CommonFailure, IdentityFailure};
use gatehouse_contracts::identity::{
    AuthenticatePassword, AuthenticatedUser, BootstrapAdmin, BootstrapOutcome, ChangePassword,
    CreateServiceAccount, CreateUser, DeleteServiceAccount, PRINCIPAL_NAME_SCOPE, Role,
    ServiceAccountView, UpdateServiceAccount, UpdateUser, UserView,
};
use gatehouse_contracts::ids::{ServiceAccountId, UserId};
use gatehouse_contracts::keyring::{AddSigningKey, EnsureSigningKey, RetireSigningKey};
use gatehouse_contracts::names::Name;
use gatehouse_eventlog::writer::{create_failure, require_caller, store_failure};
use gatehouse_eventlog::{
    AppendError, CommandWriter, EventStore, Extras, Idempotency, SecretOp, UniqueClaim,
    ViewProjection,
};
use gatehouse_secrets::{BusSealer, MasterKey};
use secrecy::SecretString;
use uuid::Uuid;

use crate::domain::Rejection;
use crate::domain::service_account::{self, ServiceAccount};
use crate::domain::user::{self, User};
use crate::keyring::{KeyringKeeper, KeyringSettings};
use crate::passwords;
use gatehouse_readmodels::identity::{ServiceAccountProjection, UserProjection};

/// The secret slot holding a user's Argon2id hash.
const PASSWORD_SLOT: &str = "password_hash";

/// The identity service.
#[derive(Clone)]
pub struct IdentityService {
    writer: CommandWriter,
    sealer: Arc<BusSealer>,
    keyring: KeyringKeeper,
}

impl std::fmt::Debug for IdentityService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityService").finish_non_exhaustive()
    }
}

fn user_stream(id: Uuid) -> StreamId {
    StreamId::new("user", id)
}

fn service_account_stream(id: Uuid) -> StreamId {
    StreamId::new("service_account", id)
}

/// The identity service's write side: its commands, and the signing-key schedule.
pub fn write_side(ctx: &ServiceContext<'_>, keyring: &KeyringSettings) -> WriteSide {
    let service = IdentityService::new(ctx.log.clone(), ctx.master, ctx.clock.clone());
    let schedule = service
        .keyring()
        .run_schedule(keyring.schedule(), ctx.shutdown.clone());
    WriteSide {
        service: "identity",
        router: service.router(),
        tasks: vec![Task::infallible("signing-key schedule", schedule)],
    }
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        let message = r.to_string();
        match r {
            Rejection::NotFound(_) => {
                Failure::new(FailureKind::NotFound, CommonFailure::NotFound, message)
            }
            Rejection::Forbidden(_) => {
                Failure::new(FailureKind::Forbidden, CommonFailure::Forbidden, message)
            }
            Rejection::AlreadyExists(_) => Failure::new(
                FailureKind::Conflict,
                IdentityFailure::AlreadyExists,
                message,
            ),
            Rejection::Invalid(_) => {
                Failure::new(FailureKind::Invalid, CommonFailure::Invalid, message)
            }
        }
    }
}

impl IdentityService {
    /// A service over `store`; the bus sealer and the signing keys' sealing key are
    /// derived from `master`.
    pub fn new(store: Arc<dyn EventStore>, master: &MasterKey, clock: Arc<dyn Clock>) -> Self {
        let writer = CommandWriter::new(store, clock);
        Self {
            keyring: KeyringKeeper::new(writer.clone(), master),
            sealer: Arc::new(BusSealer::new(master)),
            writer,
        }
    }

    /// The keyring's write side (its schedule runs as a background task).
    pub fn keyring(&self) -> KeyringKeeper {
        self.keyring.clone()
    }

    /// The bus router for every identity command.
    pub fn router(&self) -> CommandRouter {
        CommandRouter::new()
            .route::<BootstrapAdmin, _, _, _>(
                self,
                |s, env| async move { s.bootstrap_admin(env).await },
            )
            .route::<CreateUser, _, _, _>(self, |s, env| async move { s.create_user(env).await })
            .route::<UpdateUser, _, _, _>(self, |s, env| async move { s.update_user(env).await })
            .route::<ChangePassword, _, _, _>(
                self,
                |s, env| async move { s.change_password(env).await },
            )
            .route::<AuthenticatePassword, _, _, _>(self, |s, env| async move {
                s.authenticate_password(env).await
            })
            .route::<CreateServiceAccount, _, _, _>(self, |s, env| async move {
                s.create_service_account(env).await
            })
            .route::<UpdateServiceAccount, _, _, _>(self, |s, env| async move {
                s.update_service_account(env).await
            })
            .route::<DeleteServiceAccount, _, _, _>(self, |s, env| async move {
                s.delete_service_account(env).await
            })
            .route::<EnsureSigningKey, _, _, _>(&self.keyring, |k, env| async move {
                k.ensure(env).await
            })
            .route::<AddSigningKey, _, _, _>(
                &self.keyring,
                |k, env| async move { k.add(env).await },
            )
            .route::<RetireSigningKey, _, _, _>(&self.keyring, |k, env| async move {
                k.retire(env).await
            })
    }

    /// Opens a secret sealed by the gateway for this command (the command's subject is the
    /// sealing context, so a secret sealed for one command cannot be replayed into another).
    fn open(
        &self,
        sealed: &gatehouse_secrets::SealedSecret,
        context: &str,
    ) -> Result<SecretString, Failure> {
        self.sealer.open(sealed, context).map_err(|_| {
            Failure::new(
                FailureKind::Invalid,
                IdentityFailure::UnsealableSecret,
                "the sealed secret cannot be opened",
            )
        })
    }

    async fn new_password_hash(&self, password: SecretString) -> Result<String, Failure> {
        passwords::check_policy(&password).map_err(|e| {
            Failure::new(
                FailureKind::Invalid,
                IdentityFailure::WeakPassword,
                e.to_string(),
            )
        })?;
        passwords::hash(password).await.map_err(|e| {
            tracing::error!(error = %e, "hashing failed");
            Failure::new(
                FailureKind::Internal,
                IdentityFailure::HashingFailed,
                "the password could not be stored",
            )
        })
    }

    fn name_taken(name: &Name) -> impl FnOnce() -> Failure {
        let message = format!("a user or service account named \"{name}\" already exists");
        move || Failure::new(FailureKind::Conflict, IdentityFailure::NameTaken, message)
    }

    /// Looks up the user a name belongs to (write side, strongly consistent).
    async fn user_by_name(&self, name: &str) -> Result<Option<UserId>, Failure> {
        let holder = self
            .writer
            .store()
            .claim_holder(PRINCIPAL_NAME_SCOPE, name)
            .await
            .map_err(|e| store_failure(&e))?;
        Ok(holder
            .filter(|s| s.aggregate() == "user")
            .and_then(|s| s.id())
            .map(UserId::from_uuid))
    }

    /// Creates the initial admin if no principal has its name yet.
    #[tracing::instrument(skip_all)]
    pub async fn bootstrap_admin(
        &self,
        env: CommandEnvelope<BootstrapAdmin>,
    ) -> Result<Accepted<BootstrapOutcome>, Failure> {
        if let Some(user_id) = self.user_by_name(env.command.name.as_ref()).await? {
            return Ok(Accepted {
                written: None,
                output: BootstrapOutcome {
                    user_id,
                    created: false,
                },
            });
        }
        let password = self.open(&env.command.password, &BootstrapAdmin::subject())?;
        let hash = self.new_password_hash(password).await?;
        let user_id = UserId::new();
        let events = user::create(&User::Absent, None, env.command.name.clone(), Role::Admin)?;
        let extras = Extras {
            claims: vec![UniqueClaim::Claim {
                scope: PRINCIPAL_NAME_SCOPE.into(),
                value: env.command.name.to_string(),
            }],
            secrets: vec![SecretOp::Put {
                name: PASSWORD_SLOT.into(),
                value: hash.into_bytes(),
            }],
        };
        let output = BootstrapOutcome {
            user_id,
            created: true,
        };
        match self
            .writer
            .append(
                user_stream(user_id.as_uuid()),
                0,
                events,
                extras,
                &env.metadata,
                None,
                &output,
            )
            .await
        {
            Ok(written) => Ok(Accepted { written, output }),
            // Another replica bootstrapped at the same moment.
            Err(AppendError::UniqueViolation { .. }) => {
                match self.user_by_name(env.command.name.as_ref()).await? {
                    Some(user_id) => Ok(Accepted {
                        written: None,
                        output: BootstrapOutcome {
                            user_id,
                            created: false,
                        },
                    }),
                    None => Err(Failure::new(
                        FailureKind::Conflict,
                        IdentityFailure::NameTaken,
                        "the admin name is taken by a service account",
                    )),
                }
            }
            Err(e) => Err(create_failure(e, Self::name_taken(&env.command.name))),
        }
    }

    /// Creates a user.
    #[tracing::instrument(skip_all, fields(name = %env.command.name))]
    pub async fn create_user(
        &self,
        env: CommandEnvelope<CreateUser>,
    ) -> Result<Accepted<UserView>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let key = Idempotency::of(
            env.caller.as_ref(),
            env.idempotency_key.as_ref(),
            CreateUser::NAME,
            &(&env.command.name, env.command.role),
        );
        if let Some(done) = self.writer.replay::<UserId>(key.as_ref()).await? {
            return self
                .answer(&UserProjection, user_stream(done.output.as_uuid()), done)
                .await;
        }
        let events = user::create(
            &User::Absent,
            Some(&caller),
            env.command.name.clone(),
            env.command.role,
        )?;
        let password = self.open(&env.command.password, &CreateUser::subject())?;
        let hash = self.new_password_hash(password).await?;
        let user_id = UserId::new();
        let extras = Extras {
            claims: vec![UniqueClaim::Claim {
                scope: PRINCIPAL_NAME_SCOPE.into(),
                value: env.command.name.to_string(),
            }],
            secrets: vec![SecretOp::Put {
                name: PASSWORD_SLOT.into(),
                value: hash.into_bytes(),
            }],
        };
        let created = self
            .writer
            .create(
                user_stream(user_id.as_uuid()),
                events,
                extras,
                &env.metadata,
                key.as_ref(),
                user_id,
                Self::name_taken(&env.command.name),
            )
            .await?;
        self.answer(&UserProjection, user_stream(user_id.as_uuid()), created)
            .await
    }

    /// The answer to a command on `stream_id`: the user or account as the command left it.
    async fn answer<O, V: serde::de::DeserializeOwned>(
        &self,
        projection: &dyn ViewProjection,
        stream_id: StreamId,
        accepted: Accepted<O>,
    ) -> Result<Accepted<V>, Failure> {
        self.writer
            .answer(projection, &stream_id, accepted, |_, view| view)
            .await
    }

    /// Changes a user's role or active flag.
    #[tracing::instrument(skip_all, fields(user_id = %env.command.user_id))]
    pub async fn update_user(
        &self,
        env: CommandEnvelope<UpdateUser>,
    ) -> Result<Accepted<UserView>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let target = env.command.user_id;
        let updated = self
            .writer
            .update_with_retry::<User, _, _, _>(
                user_stream(target.as_uuid()),
                &env.metadata,
                |state| {
                    user::update(state, &caller, target, env.command.role, env.command.active)
                        .map(|events| (events, Extras::default(), ()))
                },
            )
            .await?;
        self.answer(&UserProjection, user_stream(target.as_uuid()), updated)
            .await
    }

    /// Changes the caller's own password after checking the current one.
    #[tracing::instrument(skip_all)]
    pub async fn change_password(
        &self,
        env: CommandEnvelope<ChangePassword>,
    ) -> Result<Accepted<()>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let Some(user) = caller.user_id() else {
            return Err(Failure::new(
                FailureKind::Forbidden,
                CommonFailure::Forbidden,
                "only users have passwords",
            ));
        };
        let stream_id = user_stream(user.as_uuid());
        let current = self.open(&env.command.current_password, &ChangePassword::subject())?;
        let new = self.open(&env.command.new_password, &ChangePassword::subject())?;
        let stored = self
            .writer
            .store()
            .read_secret(&stream_id, PASSWORD_SLOT)
            .await
            .map_err(|e| store_failure(&e))?;
        let stored = stored.and_then(|b| String::from_utf8(b).ok());
        if !passwords::verify(current, stored).await {
            return Err(Failure::new(
                FailureKind::Invalid,
                IdentityFailure::WrongPassword,
                "the current password is not correct",
            ));
        }
        let hash = self.new_password_hash(new).await?;
        self.writer
            .update_with_retry::<User, _, _, _>(stream_id, &env.metadata, |state| {
                let events = user::change_password(state)?;
                let secrets = vec![SecretOp::Put {
                    name: PASSWORD_SLOT.into(),
                    value: hash.clone().into_bytes(),
                }];
                Ok::<_, Rejection>((
                    events,
                    Extras {
                        claims: vec![],
                        secrets,
                    },
                    (),
                ))
            })
            .await
    }

    /// Checks a username and password. The answer for an unknown name, a wrong password
    /// and a deactivated user is the same, and costs the same time.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate_password(
        &self,
        env: CommandEnvelope<AuthenticatePassword>,
    ) -> Result<Accepted<AuthenticatedUser>, Failure> {
        let password = self.open(&env.command.password, &AuthenticatePassword::subject())?;
        let user_id = self.user_by_name(&env.command.username).await?;
        let (state, stored) = match user_id {
            Some(id) => {
                let stream_id = user_stream(id.as_uuid());
                let (state, _) = self.writer.load::<User>(&stream_id).await?;
                let stored = self
                    .writer
                    .store()
                    .read_secret(&stream_id, PASSWORD_SLOT)
                    .await
                    .map_err(|e| store_failure(&e))?;
                (state, stored.and_then(|b| String::from_utf8(b).ok()))
            }
            None => (User::Absent, None),
        };
        let verified = passwords::verify(password, stored).await;
        match (verified, user_id, state) {
            (
                true,
                Some(user_id),
                User::Present {
                    name,
                    role,
                    active: true,
                    epoch,
                },
            ) => Ok(Accepted {
                written: None,
                output: AuthenticatedUser {
                    user_id,
                    name: name.to_string(),
                    role,
                    epoch,
                },
            }),
            _ => Err(Failure::new(
                FailureKind::Unauthenticated,
                IdentityFailure::InvalidGrant,
                "invalid username or password",
            )),
        }
    }

    /// Creates a service account owned by the caller.
    #[tracing::instrument(skip_all, fields(name = %env.command.name))]
    pub async fn create_service_account(
        &self,
        env: CommandEnvelope<CreateServiceAccount>,
    ) -> Result<Accepted<ServiceAccountView>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let c = &env.command;
        let key = Idempotency::of(
            env.caller.as_ref(),
            env.idempotency_key.as_ref(),
            CreateServiceAccount::NAME,
            &(&c.name, &c.description, c.role),
        );
        if let Some(done) = self.writer.replay::<ServiceAccountId>(key.as_ref()).await? {
            return self
                .answer(
                    &ServiceAccountProjection,
                    service_account_stream(done.output.as_uuid()),
                    done,
                )
                .await;
        }
        let events = service_account::create(
            &ServiceAccount::Absent,
            &caller,
            c.name.clone(),
            c.description.clone(),
            c.role,
        )?;
        let id = ServiceAccountId::new();
        let extras = Extras {
            claims: vec![UniqueClaim::Claim {
                scope: PRINCIPAL_NAME_SCOPE.into(),
                value: c.name.to_string(),
            }],
            secrets: vec![],
        };
        let created = self
            .writer
            .create(
                service_account_stream(id.as_uuid()),
                events,
                extras,
                &env.metadata,
                key.as_ref(),
                id,
                Self::name_taken(&c.name),
            )
            .await?;
        self.answer(
            &ServiceAccountProjection,
            service_account_stream(id.as_uuid()),
            created,
        )
        .await
    }

    /// Changes a service account.
    #[tracing::instrument(skip_all, fields(id = %env.command.id))]
    pub async fn update_service_account(
        &self,
        env: CommandEnvelope<UpdateServiceAccount>,
    ) -> Result<Accepted<ServiceAccountView>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let c = &env.command;
        let updated = self
            .writer
            .update_with_retry::<ServiceAccount, _, _, _>(
                service_account_stream(c.id.as_uuid()),
                &env.metadata,
                |state| {
                    service_account::update(state, &caller, c.description.clone(), c.active, c.role)
                        .map(|events| (events, Extras::default(), ()))
                },
            )
            .await?;
        self.answer(
            &ServiceAccountProjection,
            service_account_stream(c.id.as_uuid()),
            updated,
        )
        .await
    }

    /// Deletes a service account and frees its name.
    #[tracing::instrument(skip_all, fields(id = %env.command.id))]
    pub async fn delete_service_account(
        &self,
        env: CommandEnvelope<DeleteServiceAccount>,
    ) -> Result<Accepted<()>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let stream_id = service_account_stream(env.command.id.as_uuid());
        self.writer
            .update_with_retry::<ServiceAccount, _, _, _>(stream_id, &env.metadata, |state| {
                let events = service_account::delete(state, &caller)?;
                // Deleting frees the name for reuse, in the same transaction.
                let claims = match state {
                    ServiceAccount::Present { name, .. } => vec![UniqueClaim::Release {
                        scope: PRINCIPAL_NAME_SCOPE.into(),
                        value: name.to_string(),
                    }],
                    _ => vec![],
                };
                Ok::<_, Rejection>((
                    events,
                    Extras {
                        claims,
                        secrets: vec![],
                    },
                    (),
                ))
            })
            .await
    }
}
