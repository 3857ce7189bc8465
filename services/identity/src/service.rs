//! The identity service's command handlers: load the aggregate, decide, append.

use std::sync::Arc;

use gatehouse_bus::CommandRouter;
use gatehouse_contracts::clock::Clock;
use gatehouse_contracts::commands::{
    Accepted, Caller, Command, CommandEnvelope, Failure, FailureKind, Written,
};
use gatehouse_contracts::envelope::{EventMetadata, StreamId};
use gatehouse_contracts::events::DomainEvent;
use gatehouse_contracts::identity::{
    AuthenticatePassword, AuthenticatedUser, BootstrapAdmin, BootstrapOutcome, ChangePassword,
    CreateServiceAccount, CreateUser, DeleteServiceAccount, PRINCIPAL_NAME_SCOPE, Role,
    UpdateServiceAccount, UpdateUser,
};
use gatehouse_contracts::ids::{ServiceAccountId, UserId};
use gatehouse_contracts::names::Name;
use gatehouse_eventlog::{
    Aggregate, AppendError, AppendRequest, EventStore, ExpectedVersion, IdempotencyRecord,
    LoadError, NewEvent, SecretOp, UniqueClaim, load,
};
use gatehouse_secrets::BusSealer;
use secrecy::SecretString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::domain::Rejection;
use crate::domain::service_account::{self, ServiceAccount};
use crate::domain::user::{self, User};
use crate::passwords;

/// The secret slot holding a user's Argon2id hash.
const PASSWORD_SLOT: &str = "password_hash";

/// How often an update is retried after losing an optimistic-concurrency race.
const MAX_ATTEMPTS: usize = 5;

/// The identity service.
#[derive(Clone)]
pub struct IdentityService {
    store: Arc<dyn EventStore>,
    sealer: Arc<BusSealer>,
    clock: Arc<dyn Clock>,
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

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        let message = r.to_string();
        match r {
            Rejection::NotFound(_) => Failure::new(FailureKind::NotFound, "not_found", message),
            Rejection::Forbidden(_) => Failure::new(FailureKind::Forbidden, "forbidden", message),
            Rejection::AlreadyExists(_) => {
                Failure::new(FailureKind::Conflict, "already_exists", message)
            }
            Rejection::Invalid(_) => Failure::new(FailureKind::Invalid, "invalid", message),
        }
    }
}

fn store_failure(error: &dyn std::error::Error) -> Failure {
    tracing::error!(error = %error, cause = ?error.source(), "event store failure");
    Failure::new(
        FailureKind::Unavailable,
        "store_unavailable",
        "the event store is unavailable",
    )
}

fn load_failure(error: LoadError) -> Failure {
    match error {
        LoadError::Store(e) => store_failure(&e),
        LoadError::Decode(e) => {
            tracing::error!(error = %e, "undecodable event in a stream");
            Failure::new(
                FailureKind::Internal,
                "corrupt_stream",
                "a stored event cannot be read",
            )
        }
    }
}

fn require_caller(caller: Option<Caller>) -> Result<Caller, Failure> {
    caller.ok_or_else(|| {
        Failure::new(
            FailureKind::Unauthenticated,
            "unauthenticated",
            "this command needs a signed-in caller",
        )
    })
}

/// What one append should do besides the events.
#[derive(Default)]
struct Extras {
    claims: Vec<UniqueClaim>,
    secrets: Vec<SecretOp>,
}

impl IdentityService {
    /// A service over `store`, opening sealed secrets with `sealer`.
    pub fn new(store: Arc<dyn EventStore>, sealer: Arc<BusSealer>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            sealer,
            clock,
        }
    }

    /// The bus router for every identity command.
    pub fn router(&self) -> CommandRouter {
        let s = self.clone();
        let router = CommandRouter::new();
        let router = {
            let s = s.clone();
            router.on::<BootstrapAdmin, _, _>(move |env| {
                let s = s.clone();
                async move { s.bootstrap_admin(env).await }
            })
        };
        let router = {
            let s = s.clone();
            router.on::<CreateUser, _, _>(move |env| {
                let s = s.clone();
                async move { s.create_user(env).await }
            })
        };
        let router = {
            let s = s.clone();
            router.on::<UpdateUser, _, _>(move |env| {
                let s = s.clone();
                async move { s.update_user(env).await }
            })
        };
        let router = {
            let s = s.clone();
            router.on::<ChangePassword, _, _>(move |env| {
                let s = s.clone();
                async move { s.change_password(env).await }
            })
        };
        let router = {
            let s = s.clone();
            router.on::<AuthenticatePassword, _, _>(move |env| {
                let s = s.clone();
                async move { s.authenticate_password(env).await }
            })
        };
        let router = {
            let s = s.clone();
            router.on::<CreateServiceAccount, _, _>(move |env| {
                let s = s.clone();
                async move { s.create_service_account(env).await }
            })
        };
        let router = {
            let s = s.clone();
            router.on::<UpdateServiceAccount, _, _>(move |env| {
                let s = s.clone();
                async move { s.update_service_account(env).await }
            })
        };
        router.on::<DeleteServiceAccount, _, _>(move |env| {
            let s = s.clone();
            async move { s.delete_service_account(env).await }
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
                "unsealable_secret",
                "the sealed secret cannot be opened",
            )
        })
    }

    async fn new_password_hash(&self, password: SecretString) -> Result<String, Failure> {
        passwords::check_policy(&password)
            .map_err(|e| Failure::new(FailureKind::Invalid, "weak_password", e.to_string()))?;
        passwords::hash(password).await.map_err(|e| {
            tracing::error!(error = %e, "hashing failed");
            Failure::new(
                FailureKind::Internal,
                "hashing_failed",
                "the password could not be stored",
            )
        })
    }

    /// Appends `events` to `stream_id` at `expected`, with claims, secrets and an
    /// optional idempotency record, mapping store errors to failures.
    #[allow(clippy::too_many_arguments)]
    async fn append<E: DomainEvent, O: Serialize>(
        &self,
        stream_id: StreamId,
        expected: i64,
        events: Vec<E>,
        extras: Extras,
        metadata: &EventMetadata,
        idempotency: Option<(String, String)>,
        output: &O,
    ) -> Result<Option<Written>, AppendError> {
        if events.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now();
        let correlation = metadata.correlation_id.or_else(|| Some(Uuid::new_v4()));
        let new_events = events
            .iter()
            .map(|e| {
                let mut m = metadata.clone();
                m.correlation_id = correlation;
                NewEvent::from_domain(e, m, now)
            })
            .collect();
        let mut request = AppendRequest::new(
            stream_id,
            if expected == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exactly(expected)
            },
            new_events,
        );
        request.claims = extras.claims;
        request.secrets = extras.secrets;
        request.idempotency = idempotency.map(|(key, fingerprint)| IdempotencyRecord {
            key,
            fingerprint,
            response: serde_json::to_value(output).unwrap_or(serde_json::Value::Null),
        });
        let appended = self.store.append(request).await?;
        Ok(Some(Written {
            stream_id: appended.stream_id,
            version: appended.version,
            position: appended.position,
        }))
    }

    /// Returns the stored outcome of an idempotent retry, or `None` to go ahead.
    async fn replay<O: DeserializeOwned>(
        &self,
        key: &Option<(String, String)>,
    ) -> Result<Option<Accepted<O>>, Failure> {
        let Some((key, fingerprint)) = key else {
            return Ok(None);
        };
        let Some(stored) = self
            .store
            .idempotent_outcome(key)
            .await
            .map_err(|e| store_failure(&e))?
        else {
            return Ok(None);
        };
        if &stored.fingerprint != fingerprint {
            return Err(Failure::new(
                FailureKind::Invalid,
                "idempotency_key_reused",
                "this idempotency key was used for a different request",
            ));
        }
        let output = serde_json::from_value(stored.response).map_err(|_| {
            Failure::new(
                FailureKind::Internal,
                "corrupt_idempotency",
                "the stored outcome cannot be read",
            )
        })?;
        Ok(Some(Accepted {
            written: Some(Written {
                stream_id: stored.stream_id,
                version: stored.version,
                position: stored.position,
            }),
            output,
        }))
    }

    fn idempotency<C: Serialize>(
        caller: &Option<Caller>,
        key: &Option<String>,
        command: &str,
        fingerprint: &C,
    ) -> Option<(String, String)> {
        let key = key.as_ref()?;
        let scope = caller
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), |c| c.id.to_string());
        let fingerprint = format!(
            "{command}:{}",
            serde_json::to_string(fingerprint).unwrap_or_default()
        );
        Some((format!("{scope}:{key}"), fingerprint))
    }

    fn map_create_error(error: AppendError, name: &Name) -> Failure {
        match error {
            AppendError::UniqueViolation { .. } => Failure::new(
                FailureKind::Conflict,
                "name_taken",
                format!("a user or service account named \"{name}\" already exists"),
            ),
            AppendError::WrongExpectedVersion { .. } => Failure::new(
                FailureKind::Conflict,
                "conflict",
                "the resource was created concurrently",
            ),
            AppendError::IdempotencyKeyTaken => Failure::new(
                FailureKind::Conflict,
                "idempotency_in_progress",
                "a request with this idempotency key is in progress",
            ),
            AppendError::Invalid(m) => Failure::new(FailureKind::Internal, "invalid_append", m),
            AppendError::Store(e) => store_failure(&e),
        }
    }

    /// Loads, decides and appends, retrying when another writer got there first.
    async fn update_with_retry<A, F>(
        &self,
        stream_id: StreamId,
        metadata: &EventMetadata,
        decide: F,
    ) -> Result<Accepted<()>, Failure>
    where
        A: Aggregate,
        F: Fn(&A) -> Result<(Vec<A::Event>, Extras), Rejection>,
    {
        for _ in 0..MAX_ATTEMPTS {
            let (state, version) = load::<A>(self.store.as_ref(), &stream_id)
                .await
                .map_err(load_failure)?;
            let (events, extras) = decide(&state)?;
            match self
                .append(
                    stream_id.clone(),
                    version,
                    events,
                    extras,
                    metadata,
                    None,
                    &(),
                )
                .await
            {
                Ok(written) => {
                    return Ok(Accepted {
                        written,
                        output: (),
                    });
                }
                Err(AppendError::WrongExpectedVersion { .. }) => continue,
                Err(AppendError::Store(e)) => return Err(store_failure(&e)),
                Err(other) => {
                    return Err(Failure::new(
                        FailureKind::Internal,
                        "append_failed",
                        other.to_string(),
                    ));
                }
            }
        }
        Err(Failure::new(
            FailureKind::Conflict,
            "conflict",
            "the resource is being changed concurrently; try again",
        ))
    }

    /// Looks up the user a name belongs to (write side, strongly consistent).
    async fn user_by_name(&self, name: &str) -> Result<Option<UserId>, Failure> {
        let holder = self
            .store
            .claim_holder(PRINCIPAL_NAME_SCOPE, name)
            .await
            .map_err(|e| store_failure(&e))?;
        Ok(holder
            .filter(|s| s.aggregate() == "user")
            .and_then(|s| s.id())
            .map(UserId::from_uuid))
    }

    /// Creates the initial admin if no principal has its name yet.
    #[tracing::instrument(skip_all, err(Debug))]
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
                        "name_taken",
                        "the admin name is taken by a service account",
                    )),
                }
            }
            Err(e) => Err(Self::map_create_error(e, &env.command.name)),
        }
    }

    /// Creates a user.
    #[tracing::instrument(skip_all, fields(name = %env.command.name), err(Debug))]
    pub async fn create_user(
        &self,
        env: CommandEnvelope<CreateUser>,
    ) -> Result<Accepted<UserId>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let key = Self::idempotency(
            &env.caller,
            &env.idempotency_key,
            CreateUser::NAME,
            &(&env.command.name, env.command.role),
        );
        if let Some(done) = self.replay(&key).await? {
            return Ok(done);
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
        match self
            .append(
                user_stream(user_id.as_uuid()),
                0,
                events,
                extras,
                &env.metadata,
                key.clone(),
                &user_id,
            )
            .await
        {
            Ok(written) => Ok(Accepted {
                written,
                output: user_id,
            }),
            Err(AppendError::IdempotencyKeyTaken) => self.replay(&key).await?.ok_or_else(|| {
                Self::map_create_error(AppendError::IdempotencyKeyTaken, &env.command.name)
            }),
            Err(e) => Err(Self::map_create_error(e, &env.command.name)),
        }
    }

    /// Changes a user's role or active flag.
    #[tracing::instrument(skip_all, fields(user_id = %env.command.user_id), err(Debug))]
    pub async fn update_user(
        &self,
        env: CommandEnvelope<UpdateUser>,
    ) -> Result<Accepted<()>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let target = env.command.user_id.as_uuid();
        self.update_with_retry::<User, _>(user_stream(target), &env.metadata, |state| {
            user::update(state, &caller, target, env.command.role, env.command.active)
                .map(|events| (events, Extras::default()))
        })
        .await
    }

    /// Changes the caller's own password after checking the current one.
    #[tracing::instrument(skip_all, err(Debug))]
    pub async fn change_password(
        &self,
        env: CommandEnvelope<ChangePassword>,
    ) -> Result<Accepted<()>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        if caller.kind != "user" {
            return Err(Failure::new(
                FailureKind::Forbidden,
                "forbidden",
                "only users have passwords",
            ));
        }
        let stream_id = user_stream(caller.id);
        let current = self.open(&env.command.current_password, &ChangePassword::subject())?;
        let new = self.open(&env.command.new_password, &ChangePassword::subject())?;
        let stored = self
            .store
            .read_secret(&stream_id, PASSWORD_SLOT)
            .await
            .map_err(|e| store_failure(&e))?;
        let stored = stored.and_then(|b| String::from_utf8(b).ok());
        if !passwords::verify(current, stored).await {
            return Err(Failure::new(
                FailureKind::Invalid,
                "wrong_password",
                "the current password is not correct",
            ));
        }
        let hash = self.new_password_hash(new).await?;
        self.update_with_retry::<User, _>(stream_id, &env.metadata, |state| {
            let events = user::change_password(state)?;
            let secrets = vec![SecretOp::Put {
                name: PASSWORD_SLOT.into(),
                value: hash.clone().into_bytes(),
            }];
            Ok((
                events,
                Extras {
                    claims: vec![],
                    secrets,
                },
            ))
        })
        .await
    }

    /// Checks a username and password. The answer for an unknown name, a wrong password
    /// and a deactivated user is the same, and costs the same time.
    #[tracing::instrument(skip_all, err(Debug))]
    pub async fn authenticate_password(
        &self,
        env: CommandEnvelope<AuthenticatePassword>,
    ) -> Result<Accepted<AuthenticatedUser>, Failure> {
        let password = self.open(&env.command.password, &AuthenticatePassword::subject())?;
        let user_id = self.user_by_name(&env.command.username).await?;
        let (state, stored) = match user_id {
            Some(id) => {
                let stream_id = user_stream(id.as_uuid());
                let (state, _) = load::<User>(self.store.as_ref(), &stream_id)
                    .await
                    .map_err(load_failure)?;
                let stored = self
                    .store
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
                "invalid_grant",
                "invalid username or password",
            )),
        }
    }

    /// Creates a service account owned by the caller.
    #[tracing::instrument(skip_all, fields(name = %env.command.name), err(Debug))]
    pub async fn create_service_account(
        &self,
        env: CommandEnvelope<CreateServiceAccount>,
    ) -> Result<Accepted<ServiceAccountId>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let c = &env.command;
        let key = Self::idempotency(
            &env.caller,
            &env.idempotency_key,
            CreateServiceAccount::NAME,
            &(&c.name, &c.description, c.role),
        );
        if let Some(done) = self.replay(&key).await? {
            return Ok(done);
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
        match self
            .append(
                service_account_stream(id.as_uuid()),
                0,
                events,
                extras,
                &env.metadata,
                key.clone(),
                &id,
            )
            .await
        {
            Ok(written) => Ok(Accepted {
                written,
                output: id,
            }),
            Err(AppendError::IdempotencyKeyTaken) => self
                .replay(&key)
                .await?
                .ok_or_else(|| Self::map_create_error(AppendError::IdempotencyKeyTaken, &c.name)),
            Err(e) => Err(Self::map_create_error(e, &c.name)),
        }
    }

    /// Changes a service account.
    #[tracing::instrument(skip_all, fields(id = %env.command.id), err(Debug))]
    pub async fn update_service_account(
        &self,
        env: CommandEnvelope<UpdateServiceAccount>,
    ) -> Result<Accepted<()>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let c = &env.command;
        self.update_with_retry::<ServiceAccount, _>(
            service_account_stream(c.id.as_uuid()),
            &env.metadata,
            |state| {
                service_account::update(state, &caller, c.description.clone(), c.active, c.role)
                    .map(|events| (events, Extras::default()))
            },
        )
        .await
    }

    /// Deletes a service account and frees its name.
    #[tracing::instrument(skip_all, fields(id = %env.command.id), err(Debug))]
    pub async fn delete_service_account(
        &self,
        env: CommandEnvelope<DeleteServiceAccount>,
    ) -> Result<Accepted<()>, Failure> {
        let caller = require_caller(env.caller.clone())?;
        let stream_id = service_account_stream(env.command.id.as_uuid());
        self.update_with_retry::<ServiceAccount, _>(stream_id, &env.metadata, |state| {
            let events = service_account::delete(state, &caller)?;
            // Deleting frees the name for reuse, in the same transaction.
            let claims = match state {
                ServiceAccount::Present { name, .. } => vec![UniqueClaim::Release {
                    scope: PRINCIPAL_NAME_SCOPE.into(),
                    value: name.to_string(),
                }],
                _ => vec![],
            };
            Ok((
                events,
                Extras {
                    claims,
                    secrets: vec![],
                },
            ))
        })
        .await
    }
}
