//! Commands travel from the gateway to the owning service as NATS request/reply on
//! `gatehouse.cmd.<service>.<command>`. Each carries the authenticated caller and the
//! request metadata; each reply is either an acceptance (with where the resulting events
//! landed, so the gateway can wait for its read models) or a typed failure.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::envelope::{Actor, EventMetadata, StreamId};
use crate::failures::FailureCode;
use crate::identity::Role;
use crate::ids::{PrincipalId, PrincipalKind, UserId};

/// A command a service accepts.
pub trait Command: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The owning service (`identity`).
    const SERVICE: &'static str;
    /// The command's name on the bus (`create_service_account`).
    const NAME: &'static str;
    /// What an accepted command returns besides its write position.
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The failure codes of the owning service (e.g. [`crate::failures::KeysFailure`]).
    type Code: FailureCode;

    /// `gatehouse.cmd.<service>.<command>`.
    fn subject() -> String {
        format!("gatehouse.cmd.{}.{}", Self::SERVICE, Self::NAME)
    }

    /// The context a secret carried by this command (or by its reply) is sealed under for
    /// the bus: `<subject>#<what>`, so a sealed value opens only where it was meant to
    /// (`what` names the secret: `reply`, `device_code`).
    fn seal_context(what: &str) -> String {
        format!("{}#{what}", Self::subject())
    }
}

/// The authenticated principal on whose behalf a command runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// Principal id.
    pub id: PrincipalId,
    /// `user` or `service_account`.
    pub kind: PrincipalKind,
    /// Principal name.
    pub name: String,
    /// Role at the time of the request.
    pub role: Role,
}

impl Caller {
    /// Whether the caller may manage everything.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may manage something `owner` created (a service account and its
    /// API keys): admins, and its creator. One rule for the identity service (accounts),
    /// the keys service (their keys) and the gateway (what a caller sees).
    pub fn may_manage(&self, owner: PrincipalId) -> bool {
        self.is_admin() || self.id == owner
    }

    /// The caller's user id, when the caller is a user (a person).
    pub fn user_id(&self) -> Option<UserId> {
        (self.kind == PrincipalKind::User).then(|| UserId::from_uuid(self.id.as_uuid()))
    }

    /// The actor recorded in event metadata.
    pub fn actor(&self) -> Actor {
        Actor {
            id: Some(self.id),
            kind: self.kind.into(),
            name: self.name.clone(),
        }
    }
}

/// A command with its context, as sent over the bus.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommandEnvelope<C> {
    /// The command itself.
    pub command: C,
    /// The caller, `None` for unauthenticated commands (login, bootstrap).
    pub caller: Option<Caller>,
    /// Request metadata recorded with the resulting events.
    pub metadata: EventMetadata,
    /// Client-chosen key that makes a creating command safe to retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// Where an accepted command's last event landed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// The stream written.
    pub stream_id: StreamId,
    /// The stream's version after the write.
    pub version: i64,
    /// The global position of the last event written.
    pub position: i64,
}

/// An accepted command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accepted<T> {
    /// Where the events landed; `None` when the command appended nothing.
    pub written: Option<Written>,
    /// The command's result.
    pub output: T,
}

/// Why a command failed. Forward compatible: an unknown kind from a newer service
/// decodes as [`FailureKind::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The input is well-formed but not acceptable (HTTP 422).
    Invalid,
    /// The caller could not be authenticated (HTTP 401).
    Unauthenticated,
    /// The caller may not do this (HTTP 403).
    Forbidden,
    /// The target does not exist or the caller may not see it (HTTP 404).
    NotFound,
    /// The request conflicts with the current state (HTTP 409).
    Conflict,
    /// Too many attempts (HTTP 429).
    RateLimited,
    /// A dependency is down; retry later (HTTP 503).
    Unavailable,
    /// A bug or an unexpected failure (HTTP 500).
    Internal,
    /// A cloud behind a connector answered with an error (HTTP 502).
    Upstream,
    /// A cloud behind a connector did not answer in time (HTTP 504).
    UpstreamTimeout,
    /// A kind this build does not know.
    #[serde(other)]
    Unknown,
}

impl FailureKind {
    /// Whether the failure is ours (a bug, a dependency down, or a kind this build does not
    /// know) rather than a rejection of the client's request. Only ours belong in the error
    /// log: anyone can send requests that are rejected.
    pub fn is_ours(self) -> bool {
        matches!(
            self,
            FailureKind::Internal | FailureKind::Unavailable | FailureKind::Unknown
        )
    }
}

/// A failed command: a stable machine-readable kind and code plus a human message.
///
/// The code is a string on the wire and a service's [`FailureCode`] enum in Rust: a
/// failure is built from a variant ([`Failure::new`]) and read as one ([`Failure::code`],
/// or [`CommandFailure`] for a command's reply).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct Failure {
    /// The class of failure; decides the HTTP status.
    pub kind: FailureKind,
    /// A stable code, e.g. `name_taken`.
    code: String,
    /// A message for people; never contains secrets.
    pub message: String,
}

impl Failure {
    /// Builds a failure.
    pub fn new(kind: FailureKind, code: impl FailureCode, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.as_str().to_owned(),
            message: message.into(),
        }
    }

    /// The code, decoded as `C` (a code `C` does not know is its catch-all).
    pub fn code<C: FailureCode>(&self) -> C {
        C::from_code(&self.code)
    }

    /// Whether the code is `code`.
    pub fn is<C: FailureCode>(&self, code: &C) -> bool {
        self.code == code.as_str()
    }

    /// The code as it travels, for logs and for passing it on unchanged.
    pub fn wire_code(&self) -> &str {
        &self.code
    }
}

/// A command's failure with its code decoded as the command's service's enum: what the
/// gateway matches on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?} {code}: {message}")]
pub struct CommandFailure<C: FailureCode> {
    /// The class of failure; decides the HTTP status.
    pub kind: FailureKind,
    /// The code.
    pub code: C,
    /// A message for people; never contains secrets.
    pub message: String,
}

impl<C: FailureCode> From<Failure> for CommandFailure<C> {
    fn from(f: Failure) -> Self {
        Self {
            kind: f.kind,
            code: f.code(),
            message: f.message,
        }
    }
}

impl<C: FailureCode> From<CommandFailure<C>> for Failure {
    fn from(f: CommandFailure<C>) -> Self {
        Self {
            kind: f.kind,
            code: f.code.as_str().to_owned(),
            message: f.message,
        }
    }
}

/// The reply to a command, as sent over the bus.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reply<T> {
    /// The command was accepted.
    Ok(Accepted<T>),
    /// The command failed.
    Err(Failure),
}

impl<T> From<Result<Accepted<T>, Failure>> for Reply<T> {
    fn from(r: Result<Accepted<T>, Failure>) -> Self {
        match r {
            Ok(a) => Reply::Ok(a),
            Err(f) => Reply::Err(f),
        }
    }
}

impl<T> From<Reply<T>> for Result<Accepted<T>, Failure> {
    fn from(r: Reply<T>) -> Self {
        match r {
            Reply::Ok(a) => Ok(a),
            Reply::Err(f) => Err(f),
        }
    }
}
