//! A typed HTTP client of the Gatehouse gateway.
//!
//! Responses are small structs mirroring the gateway's DTOs. They keep every field the
//! server sends, known or not (`extra`), so that `-o json` prints the server's JSON
//! faithfully even when the server is newer than this CLI.
//!
//! Requests that are safe to repeat (GET, and a create that carries an `Idempotency-Key`:
//! the CLI sends a fresh one with every create of a service account, user or API key)
//! are retried once, after a short backoff, when the connection fails or breaks before the
//! answer, or the gateway answers 503.
//!
//! A client that holds an API key ([`GatehouseClient::with_api_key_renewal`]) exchanges the
//! key again when the gateway refuses its token (401) and repeats the call once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The OAuth client id of this CLI.
pub const CLIENT_ID: &str = "gatehouse-cli";
/// How long a request may take in all.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a retryable request is sent at most.
const ATTEMPTS: u32 = 2;
/// The first backoff; doubled for each further attempt.
const BACKOFF: Duration = Duration::from_millis(250);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What can go wrong talking to Gatehouse. Never carries a token or a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No saved session.
    #[error("not logged in: run `gatehouse login --url {}`", url.as_deref().unwrap_or("URL"))]
    NotLoggedIn {
        /// The URL to suggest, when known.
        url: Option<String>,
    },
    /// The gateway refused the token (401).
    #[error("{}", session_refused(message, code.as_deref()))]
    Unauthenticated {
        /// The server's (or the CLI's) explanation.
        message: String,
        /// The server's code (`device_locked`, `token_revoked`, ...), when it gave one.
        code: Option<String>,
    },
    /// The API answered with its JSON error body.
    #[error("{error}{}: {message}{}", code.as_deref().filter(|c| c != error).map(|c| format!(" ({c})")).unwrap_or_default(),
        request_id.as_deref().map(|r| format!(" [request {r}]")).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// Error class (`conflict`, `not_found`, ...).
        error: String,
        /// Specific code (`name_taken`, ...).
        code: Option<String>,
        /// Message for people.
        message: String,
        /// The request id, to quote to operators.
        request_id: Option<String>,
    },
    /// The token endpoint refused (RFC 6749 §5.2).
    #[error("{description}{}", Some(error).filter(|e| !description.contains(e.as_str())).map(|e| format!(" ({e})")).unwrap_or_default())]
    OAuth {
        /// `invalid_grant`, `too_many_attempts`, ...
        error: String,
        /// Message for people.
        description: String,
    },
    /// The token endpoint refused an API key, saying why (`gatehouse_reason`).
    #[error("{reason}: {}", reason.remedy())]
    ApiKeyRefused {
        /// Why.
        reason: ApiKeyRefusal,
        /// The server's explanation.
        description: String,
    },
    /// Too many failed attempts with this API key or from this address (429).
    #[error("too many failed attempts ({description}): try again{}", retry_after.map(|s| format!(" in {s} s")).unwrap_or_else(|| " later".into()))]
    TooManyAttempts {
        /// Seconds to wait, from `Retry-After`.
        retry_after: Option<u64>,
        /// The server's explanation.
        description: String,
    },
    /// Too many failed logins (429 on the password grant): the gateway counts failures per
    /// user name and address, and per address over all names at a higher limit; its answer
    /// does not say which tripped.
    #[error("too many failed logins as {username:?} from this address: try again{}; the limit \
        counts per user name and address (other names are not affected, unless this address \
        failed for many names)",
        retry_after.map(|s| format!(" in {s} s")).unwrap_or_else(|| " later".into()))]
    LoginLimited {
        /// The user name tried.
        username: String,
        /// Seconds to wait, from `Retry-After`.
        retry_after: Option<u64>,
    },
    /// The server has no device authorization endpoint (an older Gatehouse, or another
    /// server).
    #[error(
        "{url} does not offer device login (no /oauth/device_authorization): log in with \
        `gatehouse login --url {url} --username NAME` instead"
    )]
    DeviceLoginUnsupported {
        /// Base URL.
        url: String,
    },
    /// No such authorized device, or not one the caller may see (404).
    #[error(
        "no authorized device {id} (unknown, deleted, or not yours): `gatehouse \
        authorized-device list` shows yours"
    )]
    DeviceNotFound {
        /// The id asked for.
        id: Uuid,
    },
    /// The user code matches no authorization waiting for approval (404
    /// `invalid_user_code`).
    #[error(
        "the code {user_code} matches no sign-in request waiting for approval: check it \
        against the one the device shows; codes expire after a few minutes and work once"
    )]
    InvalidUserCode {
        /// The code as sent.
        user_code: String,
    },
    /// No connection could be made.
    #[error("cannot reach Gatehouse at {url}: is it running?")]
    Connect {
        /// Base URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The gateway did not answer in time.
    #[error("Gatehouse at {url} did not answer within {} s", TIMEOUT.as_secs())]
    Timeout {
        /// Base URL.
        url: String,
    },
    /// The request failed after connecting (reset connection, TLS failure, ...).
    #[error("request to Gatehouse at {url} failed")]
    Transport {
        /// Base URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not what the API documents (a proxy's error page, a newer or older
    /// server, ...).
    #[error("unexpected answer from Gatehouse (HTTP {status}): {detail}")]
    Decode {
        /// HTTP status.
        status: u16,
        /// What did not fit.
        detail: String,
    },
    /// The base URL is unusable.
    #[error("invalid Gatehouse URL {url:?}: {reason}")]
    InvalidUrl {
        /// What was given.
        url: String,
        /// Why it is refused.
        reason: String,
    },
}

/// What a refused session means for the person, by the server's 401 `code`: what
/// happened, and who can undo it when logging in again does not help.
fn session_refused(message: &str, code: Option<&str>) -> String {
    match code {
        Some("device_locked") => format!(
            "this device is locked ({message}): its owner or an admin locked it, and either can \
             unlock it from another session with `gatehouse authorized-device unlock DEVICE_ID` \
             (`gatehouse authorized-device list --status locked` shows it); until then its \
             session is refused"
        ),
        Some("account_deactivated") => format!(
            "your account is deactivated ({message}): an admin can reactivate it with \
             `gatehouse user update NAME --active true`; then run `gatehouse login`"
        ),
        Some("token_revoked") => format!(
            "your session was revoked ({message}): if an admin deactivated your account, only \
             an admin can undo it (`gatehouse user update NAME --active true`); otherwise (a \
             changed password, a deleted device, a retired signing key) run `gatehouse login`"
        ),
        _ => format!("your session has expired or was revoked ({message}): run `gatehouse login`"),
    }
}

impl ClientError {
    /// The error object of `-o json` (`{"error","code","message","request_id"}`): the
    /// API's own when it answered one, else one in the same shape for what the CLI saw.
    pub fn json(&self) -> serde_json::Value {
        let (error, code, request_id): (&str, Option<&str>, Option<&str>) = match self {
            Self::Api {
                error,
                code,
                request_id,
                ..
            } => (error, code.as_deref(), request_id.as_deref()),
            Self::Unauthenticated { code, .. } => ("unauthenticated", code.as_deref(), None),
            Self::NotLoggedIn { .. } => ("unauthenticated", Some("not_logged_in"), None),
            Self::OAuth { error, .. } => (error, None, None),
            Self::ApiKeyRefused { reason, .. } => ("invalid_grant", Some(reason.code()), None),
            Self::TooManyAttempts { .. } | Self::LoginLimited { .. } => {
                ("too_many_attempts", None, None)
            }
            Self::DeviceLoginUnsupported { .. } => ("not_found", Some("no_device_login"), None),
            Self::DeviceNotFound { .. } => ("not_found", Some("device_not_found"), None),
            Self::InvalidUserCode { .. } => ("not_found", Some("invalid_user_code"), None),
            Self::Connect { .. } => ("unavailable", Some("connection_failed"), None),
            Self::Timeout { .. } => ("unavailable", Some("timeout"), None),
            Self::Transport { .. } => ("unavailable", Some("transport_failed"), None),
            Self::Decode { .. } => ("unexpected_response", None, None),
            Self::InvalidUrl { .. } => ("invalid_usage", Some("invalid_url"), None),
        };
        let message = match self {
            Self::Api { message, .. } => message.clone(),
            other => other.to_string(),
        };
        serde_json::json!({
            "error": error, "code": code, "message": message, "request_id": request_id,
        })
    }

    /// Whether the failure may pass by itself: no connection, a timeout, a broken
    /// connection, or a 5xx answer (an overloaded or restarting gateway, a proxy's 502).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Transport { .. } => true,
            Self::Api { status, .. } | Self::Decode { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Whether a request that reached the gateway may have taken effect although no
    /// result came back: a timeout, a connection lost after sending, a 5xx (the gateway
    /// could not learn the outcome), or a repeat while the first is still in progress.
    /// A 502 `upstream_error` or 504 `upstream_timeout` is an answer, not a lost one: the
    /// service asked the cloud behind a connector first and stored nothing when it refused
    /// or did not answer.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Self::Connect { .. } => false,
            Self::Api { code, .. } if code.as_deref() == Some("idempotency_in_progress") => true,
            Self::Api { error, .. }
                if matches!(error.as_str(), "upstream_error" | "upstream_timeout") =>
            {
                false
            }
            other => other.is_transient(),
        }
    }
}

/// `POST /oauth/token` success (RFC 6749 §5.1).
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: SecretString,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// The OAuth grant type that exchanges an API key for an access token.
pub const API_KEY_GRANT_TYPE: &str = "urn:gatehouse:params:oauth:grant-type:api-key";

/// Why the token endpoint refused an API key (`gatehouse_reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiKeyRefusal {
    /// Unknown, deleted, malformed or wrong secret.
    Invalid,
    /// The key or its service account is deactivated.
    Deactivated,
    /// The key's expiry has passed.
    Expired,
    /// The key was rotated and this secret's retention window has passed.
    Rotated,
    /// A reason this CLI does not know yet.
    Other(String),
}

impl ApiKeyRefusal {
    /// The refusal named by `gatehouse_reason`.
    pub fn from_reason(reason: &str) -> Self {
        match reason {
            "invalid" => Self::Invalid,
            "deactivated" => Self::Deactivated,
            "expired" => Self::Expired,
            "rotated" => Self::Rotated,
            other => Self::Other(other.to_owned()),
        }
    }

    /// What the person can do about it.
    pub fn remedy(&self) -> &'static str {
        match self {
            Self::Invalid => {
                "check that the whole key was copied; the service account's owner or an admin can \
                 create a new one with `gatehouse service-account api-key ACCOUNT create NAME`"
            }
            Self::Deactivated => {
                "reactivate it with `gatehouse service-account api-key ACCOUNT update KEY --active \
                 true` (or the account with `gatehouse service-account update ACCOUNT --active \
                 true`), or use another key"
            }
            Self::Expired => {
                "extend it with `gatehouse service-account api-key ACCOUNT update KEY --expires-in \
                 30d` (or `--no-expiry`), or create a new key"
            }
            Self::Rotated => {
                "use the new key that `gatehouse service-account api-key ACCOUNT rotate KEY` \
                 printed; rotate with `--retain 1h` (any duration) to keep the old one working while you \
                 roll out the new one"
            }
            Self::Other(_) => "ask an administrator",
        }
    }
}

impl ApiKeyRefusal {
    /// The reason as the server names it (`gatehouse_reason`).
    pub fn code(&self) -> &str {
        match self {
            Self::Invalid => "invalid",
            Self::Deactivated => "deactivated",
            Self::Expired => "expired",
            Self::Rotated => "rotated",
            Self::Other(reason) => reason,
        }
    }
}

impl std::fmt::Display for ApiKeyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid => f.write_str("the API key is invalid (unknown, deleted or mistyped)"),
            Self::Deactivated => {
                f.write_str("the API key is deactivated (or its service account is)")
            }
            Self::Expired => f.write_str("the API key has expired"),
            Self::Rotated => {
                f.write_str("the API key was rotated and this secret's retention window has passed")
            }
            Self::Other(reason) => write!(f, "the API key was refused ({reason})"),
        }
    }
}

/// `GET /api/v1/current-user`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurrentUser {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// `user` or `service_account`.
    pub kind: String,
    /// Role.
    pub role: String,
    /// `password`, `api_key`, `device`.
    pub authenticated_by: String,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// Id.
    pub id: Uuid,
    /// Login name.
    pub name: String,
    /// Role (`admin`, `member`, or one this CLI does not know yet).
    pub role: String,
    /// Whether the user may log in.
    pub active: bool,
    /// Created at (RFC 3339, kept as sent).
    pub created: String,
    /// Last changed at (RFC 3339, kept as sent).
    pub updated: String,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A service account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceAccount {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Whether it may authenticate.
    pub active: bool,
    /// Role of its sessions.
    pub role: String,
    /// The principal that manages it.
    pub owner: Uuid,
    /// The owner's name (absent from older servers, `null` once the owner is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_name: Option<String>,
    /// Created at (RFC 3339, kept as sent).
    pub created: String,
    /// Last changed at (RFC 3339, kept as sent).
    pub updated: String,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    /// This page's number (1-based).
    pub index: u64,
    /// The page size asked for.
    pub max_size: u64,
    /// How many pages there are.
    pub total_pages: u64,
    /// How many items match in all.
    pub total: u64,
    /// The items.
    pub items: Vec<T>,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A previous secret of a rotated API key that still works until `valid_until`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetainedSecret {
    /// The generation the secret belongs to.
    pub generation: u32,
    /// Until when it is accepted (RFC 3339, kept as sent).
    pub valid_until: String,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// An API key of a service account (never the key itself; see [`NewApiKey`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    /// Id (also the key id inside the key string).
    pub id: Uuid,
    /// Name, unique within the service account.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// The service account it authenticates as.
    pub service_account_id: Uuid,
    /// That service account's name (absent from older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Whether it may authenticate.
    pub active: bool,
    /// Whether its expiry has passed.
    #[serde(default)]
    pub expired: bool,
    /// Created at (RFC 3339, kept as sent).
    pub created: String,
    /// Last changed at (RFC 3339, kept as sent).
    pub updated: String,
    /// Last rotated at, if ever.
    #[serde(default)]
    pub last_rotated: Option<String>,
    /// Last used at (updated at most once a minute), if ever.
    #[serde(default)]
    pub last_used: Option<String>,
    /// When it expires, if it does.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// How many times the secret was issued (1 after create, +1 per rotation).
    #[serde(default)]
    pub generation: u32,
    /// Previous secrets still accepted after a rotation.
    #[serde(default)]
    pub retained_secrets: Vec<RetainedSecret>,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What create and rotate return: the key's fields and the key itself, shown this once.
/// `Debug` hides the key.
#[derive(Debug, Clone, Deserialize)]
pub struct NewApiKey {
    /// The complete key, `gatehouse_...`.
    pub key: SecretString,
    /// Everything else.
    #[serde(flatten)]
    pub api_key: ApiKey,
}

impl NewApiKey {
    /// The server's JSON including the key: for printing it the one time it is shown.
    pub fn json_with_key(&self) -> Result<serde_json::Value, serde_json::Error> {
        let mut value = serde_json::to_value(&self.api_key)?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert(
                "key".to_owned(),
                serde_json::Value::String(self.key.expose_secret().to_owned()),
            );
        }
        Ok(value)
    }
}

/// How `PATCH .../api_keys/{key}` changes the expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryChange {
    /// Expire this many seconds from now.
    InSeconds(u64),
    /// Never expire.
    Never,
}

/// The changes of `PATCH .../api_keys/{key}`.
#[derive(Debug, Clone, Default)]
pub struct ApiKeyUpdate {
    /// Activate or deactivate.
    pub active: Option<bool>,
    /// New description.
    pub description: Option<String>,
    /// New expiry.
    pub expiry: Option<ExpiryChange>,
}

impl ApiKeyUpdate {
    /// The request body: only the fields that change; `"expires_at": null` removes the
    /// expiry.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        if let Some(active) = self.active {
            body.insert("active".into(), active.into());
        }
        if let Some(description) = &self.description {
            body.insert("description".into(), description.clone().into());
        }
        match self.expiry {
            Some(ExpiryChange::InSeconds(s)) => {
                body.insert("expires_in_seconds".into(), s.into());
            }
            Some(ExpiryChange::Never) => {
                body.insert("expires_at".into(), serde_json::Value::Null);
            }
            None => {}
        }
        serde_json::Value::Object(body)
    }
}

/// The OAuth grant type of the device authorization grant (RFC 8628 §3.4).
pub const DEVICE_CODE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// What a device says about itself when it asks for authorization (Gatehouse extensions
/// of RFC 8628 §3.1, shown to the person who approves it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceDescription {
    /// Requested scope.
    pub scope: Option<String>,
    /// The device's host name.
    pub hostname: Option<String>,
    /// Its operating system and architecture (`linux x86_64`).
    pub os: Option<String>,
    /// This CLI's version.
    pub client_version: Option<String>,
}

/// `POST /oauth/device_authorization` success (RFC 8628 §3.2). `Debug` hides the device
/// code.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    /// The code the device polls with; never shown.
    pub device_code: SecretString,
    /// The code the person enters (`WDJB-MJHT`).
    pub user_code: String,
    /// Where the person enters it.
    pub verification_uri: String,
    /// The same page with the code filled in.
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds to wait between polls (RFC 8628 §3.2: 5 when absent).
    #[serde(default)]
    pub interval: Option<u64>,
}

/// One answer of the token endpoint to a device's poll (RFC 8628 §3.5).
#[derive(Debug)]
#[non_exhaustive]
pub enum DevicePoll {
    /// Approved: the access token.
    Token(TokenResponse),
    /// `authorization_pending`: nobody decided yet; poll again after the interval.
    Pending,
    /// `slow_down`: poll again, and from now on wait 5 s longer between polls.
    SlowDown,
    /// 429: too many requests; wait `retry_after` seconds (when given) before the next.
    RateLimited {
        /// `Retry-After`, seconds.
        retry_after: Option<u64>,
    },
    /// `access_denied`: the person refused.
    Denied {
        /// The server's explanation.
        description: Option<String>,
    },
    /// `expired_token`: the device code expired before it was approved.
    Expired {
        /// The server's explanation.
        description: Option<String>,
    },
    /// Any other refusal (`invalid_grant`, `invalid_client`, `unsupported_grant_type`,
    /// ...): the flow cannot go on.
    Refused {
        /// The RFC 6749 error code.
        error: String,
        /// The server's explanation.
        description: Option<String>,
    },
}

/// A token-signing key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SigningKey {
    /// The key id (`kid` of the tokens it signs).
    pub kid: String,
    /// `pending`, `signing`, `verifying` or `retired`.
    pub status: String,
    /// From when it signs.
    pub active_from: chrono::DateTime<chrono::Utc>,
    /// When it was retired.
    #[serde(default)]
    pub retired_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The signing keys, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SigningKeyList {
    /// The keys.
    pub items: Vec<SigningKey>,
}

/// An authorized device (a device authorization, from request to deletion).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Device {
    /// Id.
    pub id: Uuid,
    /// `pending`, `verified`, `active`, `locked`, `denied`, `expired` (or one this CLI
    /// does not know yet).
    pub status: String,
    /// Whether its owner trusts it (longer-lived tokens).
    #[serde(default)]
    pub trusted: bool,
    /// Its owner's id, once approved.
    #[serde(default)]
    pub owner_id: Option<Uuid>,
    /// Its owner's name, once approved.
    #[serde(default)]
    pub owner: Option<String>,
    /// The OAuth client that asked (`gatehouse-cli`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// The scope asked for.
    #[serde(default)]
    pub scope: Option<String>,
    /// The host name the device gave.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The operating system the device gave.
    #[serde(default)]
    pub os: Option<String>,
    /// The client version the device gave.
    #[serde(default)]
    pub client_version: Option<String>,
    /// The address it asked from.
    #[serde(default)]
    pub ip_address: Option<String>,
    /// Requested at (RFC 3339, kept as sent).
    pub created: String,
    /// Approved at.
    #[serde(default)]
    pub verified_at: Option<String>,
    /// Last token issued at.
    #[serde(default)]
    pub last_login: Option<String>,
    /// The authorization's expiry while pending or verified, the token's once active.
    #[serde(default)]
    pub expires: Option<String>,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Device statuses, to filter listings by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceStatus {
    /// Waiting for a person to approve or deny it.
    Pending,
    /// Approved, not yet redeemed by the device.
    Verified,
    /// Holds a working token.
    Active,
    /// Its token is refused until it is unlocked.
    Locked,
    /// A person refused it.
    Denied,
    /// The authorization or the token ran out.
    Expired,
}

impl DeviceStatus {
    /// The status as the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Verified => "verified",
            Self::Active => "active",
            Self::Locked => "locked",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }
}

/// Filters of `GET /api/v1/devices`.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilters {
    /// Only devices with this status.
    pub status: Option<DeviceStatus>,
    /// 1-based page (server default 1).
    pub page: Option<u64>,
    /// Page size (server default 20).
    pub size: Option<u64>,
}

/// A person's answer to a device asking to sign in (`POST /api/v1/devices/verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceDecision {
    /// Approve; a trusted device gets longer-lived tokens.
    Approve {
        /// Trust the device.
        trusted: bool,
    },
    /// Refuse.
    Deny,
}

impl DeviceDecision {
    /// The request body for `user_code`.
    pub fn body(self, user_code: &str) -> serde_json::Value {
        match self {
            Self::Approve { trusted } => {
                serde_json::json!({"user_code": user_code, "trusted_device": trusted})
            }
            Self::Deny => serde_json::json!({"user_code": user_code, "deny": true}),
        }
    }
}

/// What a client does when the gateway refuses its token: exchange the API key again,
/// hand the new token to `on_renew` (which saves it), and repeat the call once.
pub struct KeyRenewal {
    key: SecretString,
    on_renew: Box<dyn Fn(&TokenResponse) + Send + Sync>,
}

impl KeyRenewal {
    /// Renews with `key`, telling `on_renew` about each new token.
    pub fn new(
        key: SecretString,
        on_renew: impl Fn(&TokenResponse) + Send + Sync + 'static,
    ) -> Self {
        Self {
            key,
            on_renew: Box::new(on_renew),
        }
    }
}

impl std::fmt::Debug for KeyRenewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRenewal")
            .field("key", &"[HIDDEN]")
            .finish_non_exhaustive()
    }
}

/// A role, as sent to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages every user and service account.
    Admin,
    /// Manages the service accounts it created.
    Member,
}

/// Listing filters.
#[derive(Debug, Clone, Default)]
pub struct ListFilters {
    /// Exact name.
    pub name: Option<String>,
    /// Active or not.
    pub active: Option<bool>,
    /// 1-based page (server default 1).
    pub page: Option<u64>,
    /// Page size (server default 20, at most 1000).
    pub size: Option<u64>,
}

/// A client of one gateway, optionally authenticated.
#[derive(Debug, Clone)]
pub struct GatehouseClient {
    http: reqwest::Client,
    base: Url,
    token: Arc<Mutex<Option<SecretString>>>,
    renewal: Option<Arc<KeyRenewal>>,
}

/// Checks and normalises a base URL: http or https, a host, no credentials, query or
/// fragment, no trailing slash.
fn parse_base(input: &str) -> Result<Url, ClientError> {
    let invalid = |reason: String| ClientError::InvalidUrl {
        url: input.to_owned(),
        reason,
    };
    let trimmed = input.trim();
    if !trimmed.contains("://") {
        return Err(invalid(format!(
            "it must start with http:// or https:// (did you mean http://{trimmed}?)"
        )));
    }
    let url = Url::parse(trimmed).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "the scheme must be http or https, not {}",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must not contain credentials".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment".into()));
    }
    let mut url = url;
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

fn display_base(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// Whether a failed attempt may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Repeating it changes nothing (GET, keyed create).
    Safe,
    /// Send once.
    Never,
}

impl Retry {
    /// A create is safe to repeat when it carries an `Idempotency-Key`.
    fn keyed(idempotency_key: Option<&str>) -> Self {
        if idempotency_key.is_some() {
            Retry::Safe
        } else {
            Retry::Never
        }
    }
}

/// `request` with the `Idempotency-Key` header, when there is one.
fn with_idempotency_key(request: RequestBuilder, idempotency_key: Option<&str>) -> RequestBuilder {
    match idempotency_key {
        Some(key) => request.header("Idempotency-Key", key),
        None => request,
    }
}

impl GatehouseClient {
    /// A client of the gateway at `base_url`, sending `token` as bearer when given.
    pub fn new(base_url: &str, token: Option<SecretString>) -> Result<Self, ClientError> {
        let base = parse_base(base_url)?;
        // reqwest is built without a default crypto provider; installing one is idempotent.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("gatehouse-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ClientError::Transport {
                url: display_base(&base),
                source,
            })?;
        Ok(Self {
            http,
            base,
            token: Arc::new(Mutex::new(token)),
            renewal: None,
        })
    }

    /// The normalised base URL (no trailing slash).
    pub fn url(&self) -> String {
        display_base(&self.base)
    }

    /// The same client with another token.
    pub fn with_token(mut self, token: SecretString) -> Self {
        self.token = Arc::new(Mutex::new(Some(token)));
        self
    }

    /// The same client, renewing its token with an API key when the gateway refuses it.
    pub fn with_api_key_renewal(mut self, renewal: KeyRenewal) -> Self {
        self.renewal = Some(Arc::new(renewal));
        self
    }

    fn set_token(&self, token: SecretString) {
        if let Ok(mut slot) = self.token.lock() {
            *slot = Some(token);
        }
    }

    fn current_token(&self) -> Option<SecretString> {
        self.token.lock().ok().and_then(|slot| slot.clone())
    }

    /// The API-key grant: exchanges `key` for an access token. Safe to repeat, so retried
    /// once on connection failures and 503.
    pub async fn login_api_key(&self, key: &SecretString) -> Result<TokenResponse, ClientError> {
        let url = self.endpoint(&["oauth", "token"]);
        let response = self
            .send(Retry::Safe, || {
                self.http.post(url.clone()).form(&[
                    ("grant_type", API_KEY_GRANT_TYPE),
                    ("api_key", key.expose_secret()),
                    ("client_id", CLIENT_ID),
                ])
            })
            .await?;
        let status = response.status();
        let wait = retry_after_secs(response.headers());
        let body = self.body(response).await?;
        if !status.is_success() {
            return Err(decode_api_key_grant_error(status.as_u16(), wait, &body));
        }
        decode_token(status, &body)
    }

    /// The password grant.
    pub async fn login_password(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<TokenResponse, ClientError> {
        let url = self.endpoint(&["oauth", "token"]);
        let response = self
            .send(Retry::Never, || {
                self.http.post(url.clone()).form(&[
                    ("grant_type", "password"),
                    ("username", username),
                    ("password", password.expose_secret()),
                    ("client_id", CLIENT_ID),
                ])
            })
            .await?;
        let status = response.status();
        let retry_after = retry_after_secs(response.headers());
        let body = self.body(response).await?;
        if !status.is_success() {
            return Err(match decode_oauth_error(status.as_u16(), &body) {
                ClientError::OAuth { error, .. }
                    if status == StatusCode::TOO_MANY_REQUESTS || error == "too_many_attempts" =>
                {
                    ClientError::LoginLimited {
                        username: username.to_owned(),
                        retry_after,
                    }
                }
                other => other,
            });
        }
        decode_token(status, &body)
    }

    /// `GET /api/v1/current-user`.
    pub async fn current_user(&self) -> Result<CurrentUser, ClientError> {
        self.get(self.api(&["current-user"])).await
    }

    /// `POST /api/v1/current-user/password`. Ends every session of the user, this one too.
    pub async fn change_password(
        &self,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            current_password: &'a str,
            new_password: &'a str,
        }
        let body = Body {
            current_password: current.expose_secret(),
            new_password: new.expose_secret(),
        };
        let url = self.api(&["current-user", "password"]);
        let response = self
            .send_api(Retry::Never, || {
                self.authorized(Method::POST, url.clone()).json(&body)
            })
            .await?;
        self.expect_empty(response).await
    }

    /// `POST /api/v1/users`. With an idempotency key the request is retried on connection
    /// failures and 503, and the server answers a repeat with the first result.
    pub async fn create_user(
        &self,
        name: &str,
        password: &SecretString,
        role: Option<Role>,
        idempotency_key: Option<&str>,
    ) -> Result<User, ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            name: &'a str,
            password: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            role: Option<Role>,
        }
        let body = Body {
            name,
            password: password.expose_secret(),
            role,
        };
        let url = self.api(&["users"]);
        let response = self
            .send_api(Retry::keyed(idempotency_key), || {
                with_idempotency_key(
                    self.authorized(Method::POST, url.clone()).json(&body),
                    idempotency_key,
                )
            })
            .await?;
        self.expect_json(response).await
    }

    /// `GET /api/v1/users`.
    pub async fn list_users(&self, filters: &ListFilters) -> Result<Page<User>, ClientError> {
        self.get(with_filters(self.api(&["users"]), filters)).await
    }

    /// `GET /api/v1/users/{name_or_id}`.
    pub async fn get_user(&self, name_or_id: &str) -> Result<User, ClientError> {
        self.get(self.api(&["users", name_or_id])).await
    }

    /// `PATCH /api/v1/users/{name_or_id}`.
    pub async fn update_user(
        &self,
        name_or_id: &str,
        role: Option<Role>,
        active: Option<bool>,
    ) -> Result<User, ClientError> {
        #[derive(Serialize)]
        struct Body {
            #[serde(skip_serializing_if = "Option::is_none")]
            role: Option<Role>,
            #[serde(skip_serializing_if = "Option::is_none")]
            active: Option<bool>,
        }
        let url = self.api(&["users", name_or_id]);
        let body = Body { role, active };
        let response = self
            .send_api(Retry::Never, || {
                self.authorized(Method::PATCH, url.clone()).json(&body)
            })
            .await?;
        self.expect_json(response).await
    }

    /// `POST /api/v1/service_accounts`. With an idempotency key the request is retried on
    /// connection failures and 503, and the server answers a repeat with the first result.
    pub async fn create_service_account(
        &self,
        name: &str,
        description: Option<&str>,
        role: Option<Role>,
        idempotency_key: Option<&str>,
    ) -> Result<ServiceAccount, ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            role: Option<Role>,
        }
        let url = self.api(&["service_accounts"]);
        let body = Body {
            name,
            description,
            role,
        };
        let response = self
            .send_api(Retry::keyed(idempotency_key), || {
                with_idempotency_key(
                    self.authorized(Method::POST, url.clone()).json(&body),
                    idempotency_key,
                )
            })
            .await?;
        self.expect_json(response).await
    }

    /// `GET /api/v1/service_accounts`.
    pub async fn list_service_accounts(
        &self,
        filters: &ListFilters,
    ) -> Result<Page<ServiceAccount>, ClientError> {
        self.get(with_filters(self.api(&["service_accounts"]), filters))
            .await
    }

    /// `GET /api/v1/service_accounts/{name_or_id}`.
    pub async fn get_service_account(
        &self,
        name_or_id: &str,
    ) -> Result<ServiceAccount, ClientError> {
        self.get(self.api(&["service_accounts", name_or_id])).await
    }

    /// `PATCH /api/v1/service_accounts/{name_or_id}`.
    pub async fn update_service_account(
        &self,
        name_or_id: &str,
        description: Option<&str>,
        active: Option<bool>,
        role: Option<Role>,
    ) -> Result<ServiceAccount, ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            active: Option<bool>,
            #[serde(skip_serializing_if = "Option::is_none")]
            role: Option<Role>,
        }
        let url = self.api(&["service_accounts", name_or_id]);
        let body = Body {
            description,
            active,
            role,
        };
        let response = self
            .send_api(Retry::Never, || {
                self.authorized(Method::PATCH, url.clone()).json(&body)
            })
            .await?;
        self.expect_json(response).await
    }

    /// `DELETE /api/v1/service_accounts/{name_or_id}`.
    pub async fn delete_service_account(&self, name_or_id: &str) -> Result<(), ClientError> {
        let url = self.api(&["service_accounts", name_or_id]);
        let response = self
            .send_api(Retry::Never, || {
                self.authorized(Method::DELETE, url.clone())
            })
            .await?;
        self.expect_empty(response).await
    }

    /// `POST /api/v1/service_accounts/{account}/api_keys`: the answer carries the key, the
    /// only time it is shown. With an idempotency key the request is retried on connection
    /// failures and 503, and the server answers a repeat with the first result, the same
    /// key (kept sealed for 24 h), so a lost answer does not lose the key. Without one it is
    /// sent once (a repeat would conflict).
    pub async fn create_api_key(
        &self,
        account: &str,
        name: &str,
        description: Option<&str>,
        expires_in_seconds: Option<u64>,
        idempotency_key: Option<&str>,
    ) -> Result<NewApiKey, ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            name: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            description: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            expires_in_seconds: Option<u64>,
        }
        let url = self.api(&["service_accounts", account, "api_keys"]);
        let body = Body {
            name,
            description,
            expires_in_seconds,
        };
        let response = self
            .send_api(Retry::keyed(idempotency_key), || {
                with_idempotency_key(
                    self.authorized(Method::POST, url.clone()).json(&body),
                    idempotency_key,
                )
            })
            .await?;
        self.expect_json(response).await
    }

    /// `GET /api/v1/service_accounts/{account}/api_keys`.
    pub async fn list_api_keys(
        &self,
        account: &str,
        filters: &ListFilters,
    ) -> Result<Page<ApiKey>, ClientError> {
        self.get(with_filters(
            self.api(&["service_accounts", account, "api_keys"]),
            filters,
        ))
        .await
    }

    /// `GET /api/v1/service_accounts/{account}/api_keys/{key_name_or_id}`.
    pub async fn get_api_key(&self, account: &str, key: &str) -> Result<ApiKey, ClientError> {
        self.get(self.api(&["service_accounts", account, "api_keys", key]))
            .await
    }

    /// `PATCH /api/v1/service_accounts/{account}/api_keys/{key_name_or_id}`.
    pub async fn update_api_key(
        &self,
        account: &str,
        key: &str,
        update: &ApiKeyUpdate,
    ) -> Result<ApiKey, ClientError> {
        let url = self.api(&["service_accounts", account, "api_keys", key]);
        let body = update.body();
        let response = self
            .send_api(Retry::Never, || {
                self.authorized(Method::PATCH, url.clone()).json(&body)
            })
            .await?;
        self.expect_json(response).await
    }

    /// `POST /api/v1/service_accounts/{account}/api_keys/{key}/rotate`: a new secret, shown
    /// this once; the previous one keeps working for `retain_period_seconds`.
    pub async fn rotate_api_key(
        &self,
        account: &str,
        key: &str,
        retain_period_seconds: u64,
    ) -> Result<NewApiKey, ClientError> {
        #[derive(Serialize)]
        struct Body {
            retain_period_seconds: u64,
        }
        let url = self.api(&["service_accounts", account, "api_keys", key, "rotate"]);
        let body = Body {
            retain_period_seconds,
        };
        let response = self
            .send_api(Retry::Never, || {
                self.authorized(Method::POST, url.clone()).json(&body)
            })
            .await?;
        self.expect_json(response).await
    }

    /// `DELETE /api/v1/service_accounts/{account}/api_keys/{key}`.
    pub async fn delete_api_key(&self, account: &str, key: &str) -> Result<(), ClientError> {
        let url = self.api(&["service_accounts", account, "api_keys", key]);
        let response = self
            .send_api(Retry::Never, || {
                self.authorized(Method::DELETE, url.clone())
            })
            .await?;
        self.expect_empty(response).await
    }

    /// `POST /oauth/device_authorization` (RFC 8628 §3.1): starts a device login. Sent
    /// once (a repeat would start a second authorization).
    pub async fn request_device_authorization(
        &self,
        device: &DeviceDescription,
    ) -> Result<DeviceAuthorization, ClientError> {
        let url = self.endpoint(&["oauth", "device_authorization"]);
        let mut form = vec![("client_id", CLIENT_ID)];
        for (name, value) in [
            ("scope", &device.scope),
            ("hostname", &device.hostname),
            ("os", &device.os),
            ("client_version", &device.client_version),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                form.push((name, value));
            }
        }
        let response = self
            .send(Retry::Never, || self.http.post(url.clone()).form(&form))
            .await?;
        let status = response.status();
        let wait = retry_after_secs(response.headers());
        let body = self.body(response).await?;
        if status.is_success() {
            return decode_json(status, &body);
        }
        Err(match status.as_u16() {
            404 | 405 => ClientError::DeviceLoginUnsupported { url: self.url() },
            429 => ClientError::TooManyAttempts {
                retry_after: wait,
                description: oauth_description(&body)
                    .unwrap_or_else(|| "too many device login requests".into()),
            },
            other => decode_oauth_error(other, &body),
        })
    }

    /// One poll of the token endpoint with `device_code` (RFC 8628 §3.4). Sent once:
    /// the caller decides when to poll again.
    pub async fn poll_device_token(
        &self,
        device_code: &SecretString,
    ) -> Result<DevicePoll, ClientError> {
        let url = self.endpoint(&["oauth", "token"]);
        let response = self
            .send(Retry::Never, || {
                self.http.post(url.clone()).form(&[
                    ("grant_type", DEVICE_CODE_GRANT_TYPE),
                    ("device_code", device_code.expose_secret()),
                    ("client_id", CLIENT_ID),
                ])
            })
            .await?;
        let status = response.status();
        let wait = retry_after_secs(response.headers());
        let body = self.body(response).await?;
        if status.is_success() {
            return decode_token(status, &body).map(DevicePoll::Token);
        }
        decode_device_poll_error(status.as_u16(), wait, &body)
    }

    /// `GET /api/v1/devices`: the caller's devices (an admin's: everyone's).
    pub async fn list_devices(&self, filters: &DeviceFilters) -> Result<Page<Device>, ClientError> {
        let mut url = self.api(&["devices"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(status) = filters.status {
                query.append_pair("status", status.as_str());
            }
            if let Some(page) = filters.page {
                query.append_pair("page", &page.to_string());
            }
            if let Some(size) = filters.size {
                query.append_pair("size", &size.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.get(url).await
    }

    /// `GET /api/v1/devices/{id}`.
    pub async fn get_device(&self, id: Uuid) -> Result<Device, ClientError> {
        let url = self.api(&["devices", &id.to_string()]);
        let response = self
            .send_api(Retry::Safe, || self.authorized(Method::GET, url.clone()))
            .await?;
        device_not_found(id, self.expect_json(response).await)
    }

    /// `POST /api/v1/devices/{id}/lock`: the device's token is refused at once.
    pub async fn lock_device(&self, id: Uuid) -> Result<Device, ClientError> {
        self.device_action(id, "lock").await
    }

    /// `POST /api/v1/devices/{id}/unlock`: the device's token, if not expired, works
    /// again.
    pub async fn unlock_device(&self, id: Uuid) -> Result<Device, ClientError> {
        self.device_action(id, "unlock").await
    }

    async fn device_action(&self, id: Uuid, action: &str) -> Result<Device, ClientError> {
        let url = self.api(&["devices", &id.to_string(), action]);
        // Locking or unlocking twice ends in the same state: safe to repeat.
        let response = self
            .send_api(Retry::Safe, || self.authorized(Method::POST, url.clone()))
            .await?;
        device_not_found(id, self.expect_json(response).await)
    }

    /// `DELETE /api/v1/devices/{id}`: the device and its token are gone.
    pub async fn delete_device(&self, id: Uuid) -> Result<(), ClientError> {
        let url = self.api(&["devices", &id.to_string()]);
        let response = self
            .send_api(Retry::Never, || {
                self.authorized(Method::DELETE, url.clone())
            })
            .await?;
        device_not_found(id, self.expect_empty(response).await)
    }

    /// `GET /api/v1/signing-keys` (admins).
    pub async fn list_signing_keys(&self) -> Result<SigningKeyList, ClientError> {
        self.get(self.api(&["signing-keys"])).await
    }

    /// `POST /api/v1/signing-keys`: a key that verifies at once and signs after
    /// `activate_in_seconds`. Sent once (a retry would add a second key).
    pub async fn add_signing_key(
        &self,
        activate_in_seconds: u32,
    ) -> Result<SigningKey, ClientError> {
        let url = self.api(&["signing-keys"]);
        let body = serde_json::json!({ "activate_in_seconds": activate_in_seconds });
        let response = self
            .send_api(Retry::Never, || {
                self.authorized(Method::POST, url.clone()).json(&body)
            })
            .await?;
        self.expect_json(response).await
    }

    /// `POST /api/v1/signing-keys/{kid}/retire`: tokens the key signed are refused.
    /// Retiring twice ends the same way: safe to repeat.
    pub async fn retire_signing_key(&self, kid: &str) -> Result<SigningKey, ClientError> {
        let url = self.api(&["signing-keys", kid, "retire"]);
        let response = self
            .send_api(Retry::Safe, || self.authorized(Method::POST, url.clone()))
            .await?;
        self.expect_json(response).await
    }

    /// `POST /api/v1/devices/lookup`: the pending device that shows `user_code` (what is
    /// asking), without deciding. Counts as a guess, like a decision.
    pub async fn lookup_device(&self, user_code: &str) -> Result<Device, ClientError> {
        let body = serde_json::json!({ "user_code": user_code });
        self.user_code_request("lookup", &body, user_code).await
    }

    /// `POST /api/v1/devices/verify`: approves (optionally trusting) or denies the device
    /// that shows `user_code`, for the caller's account. Sent once: a wrong code counts
    /// against the caller.
    pub async fn verify_device(
        &self,
        user_code: &str,
        decision: DeviceDecision,
    ) -> Result<Device, ClientError> {
        let body = decision.body(user_code);
        self.user_code_request("verify", &body, user_code).await
    }

    /// A `POST /api/v1/devices/{action}` naming a user code: sent once (a wrong code counts
    /// against the caller); 404 and 429 read as what they mean for a code.
    async fn user_code_request(
        &self,
        action: &str,
        body: &serde_json::Value,
        user_code: &str,
    ) -> Result<Device, ClientError> {
        let url = self.api(&["devices", action]);
        let response = self
            .send_api(Retry::Never, || {
                self.authorized(Method::POST, url.clone()).json(body)
            })
            .await?;
        let wait = retry_after_secs(response.headers());
        match self.expect_json(response).await {
            Err(ClientError::Api { status: 404, .. }) => Err(ClientError::InvalidUserCode {
                user_code: user_code.to_owned(),
            }),
            Err(ClientError::Api {
                status: 429,
                message,
                ..
            }) => Err(ClientError::TooManyAttempts {
                retry_after: wait,
                description: message,
            }),
            other => other,
        }
    }

    // ---- plumbing ----

    /// `base/segments...`, each segment percent-encoded (names and ids are path segments).
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn api(&self, segments: &[&str]) -> Url {
        let mut all = vec!["api", "v1"];
        all.extend_from_slice(segments);
        self.endpoint(&all)
    }

    fn authorized(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.http.request(method, url);
        match self.current_token() {
            Some(token) => request.bearer_auth(token.expose_secret()),
            None => request,
        }
    }

    async fn get<T: DeserializeOwned>(&self, url: Url) -> Result<T, ClientError> {
        let response = self
            .send_api(Retry::Safe, || self.authorized(Method::GET, url.clone()))
            .await?;
        self.expect_json(response).await
    }

    /// [`send`](Self::send) for API calls: when the gateway refuses the token (401) and the
    /// client holds an API key, exchanges the key again and repeats the call once (the
    /// refused call did nothing, so repeating it is safe).
    async fn send_api(
        &self,
        retry: Retry,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let response = self.send(retry, &build).await?;
        let Some(renewal) = &self.renewal else {
            return Ok(response);
        };
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        tracing::debug!("the gateway refused the token; exchanging the API key again");
        let token = self.login_api_key(&renewal.key).await?;
        (renewal.on_renew)(&token);
        self.set_token(token.access_token);
        self.send(retry, &build).await
    }

    /// Sends the request `build` makes, once more after a backoff when `retry` allows it and
    /// the connection failed or broke before the answer, or the gateway answered 503.
    async fn send(
        &self,
        retry: Retry,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let attempts = if retry == Retry::Safe { ATTEMPTS } else { 1 };
        let mut attempt = 1;
        loop {
            let last = attempt >= attempts;
            let backoff = BACKOFF * 2u32.pow(attempt - 1);
            match build().send().await {
                Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE && !last => {
                    let wait = retry_after(response.headers()).unwrap_or(backoff);
                    tracing::debug!(url = %response.url(), ?wait, "gateway unavailable; retrying");
                    tokio::time::sleep(wait).await;
                }
                Ok(response) => {
                    tracing::debug!(url = %response.url(), status = response.status().as_u16(), "answered");
                    return Ok(response);
                }
                // A connection that failed, or broke before the answer (not one that timed
                // out: that already took the whole TIMEOUT).
                Err(e) if (e.is_connect() || (e.is_request() && !e.is_timeout())) && !last => {
                    tracing::debug!(error = %e, ?backoff, "connection failed or lost; retrying");
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(self.transport_error(e)),
            }
            attempt += 1;
        }
    }

    fn transport_error(&self, source: reqwest::Error) -> ClientError {
        let url = self.url();
        if source.is_timeout() {
            ClientError::Timeout { url }
        } else if source.is_connect() {
            ClientError::Connect { url, source }
        } else {
            ClientError::Transport { url, source }
        }
    }

    async fn body(&self, response: Response) -> Result<Vec<u8>, ClientError> {
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| self.transport_error(e))
    }

    /// `GET /api/v1/events` (admins): the open Server-Sent Events response, to be read
    /// chunk by chunk. `since`: after this log position (`Some(0)`: everything); `None`:
    /// only new events.
    pub async fn events(
        &self,
        since: Option<i64>,
        aggregates: &[String],
        types: &[String],
    ) -> Result<Response, ClientError> {
        let mut url = self.api(&["events"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(since) = since {
                query.append_pair("since", &since.to_string());
            }
            if !aggregates.is_empty() {
                query.append_pair("aggregate", &aggregates.join(","));
            }
            if !types.is_empty() {
                query.append_pair("type", &types.join(","));
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        // A feed stays open: no overall deadline (the client's default would cut it).
        const FOLLOW: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);
        let response = self
            .send_api(Retry::Safe, || {
                self.authorized(Method::GET, url.clone())
                    .header(reqwest::header::ACCEPT, "text/event-stream")
                    .timeout(FOLLOW)
            })
            .await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let request_id = request_id_header(response.headers());
        let body = self.body(response).await?;
        Err(decode_api_error(status.as_u16(), request_id, &body))
    }

    async fn expect_json<T: DeserializeOwned>(&self, response: Response) -> Result<T, ClientError> {
        let status = response.status();
        let request_id = request_id_header(response.headers());
        let body = self.body(response).await?;
        if status.is_success() {
            decode_json(status, &body)
        } else {
            Err(decode_api_error(status.as_u16(), request_id, &body))
        }
    }

    async fn expect_empty(&self, response: Response) -> Result<(), ClientError> {
        let status = response.status();
        let request_id = request_id_header(response.headers());
        let body = self.body(response).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(decode_api_error(status.as_u16(), request_id, &body))
        }
    }
}

/// The hook for modules that add API calls outside this file (`crate::connectors`): the
/// same URL building, bearer auth, retries, API-key renewal and error decoding as every
/// call above.
impl GatehouseClient {
    /// `/api/v1/{segments...}` (each segment percent-encoded) with `query` pairs.
    pub(crate) fn api_url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.api(segments);
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        url
    }

    /// Sends one API call with an optional JSON body and returns the raw answer. A call
    /// that is `repeatable` (a GET, or a change that ends in the same state when sent
    /// twice), or that carries an `idempotency_key`, is retried once as [`Self::get`] is.
    async fn call_raw(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        repeatable: bool,
        idempotency_key: Option<&str>,
    ) -> Result<Response, ClientError> {
        let retry = if repeatable {
            Retry::Safe
        } else {
            Retry::keyed(idempotency_key)
        };
        self.send_api(retry, || {
            let request = self.authorized(method.clone(), url.clone());
            let request = match body {
                Some(body) => request.json(body),
                None => request,
            };
            with_idempotency_key(request, idempotency_key)
        })
        .await
    }

    /// [`Self::call_raw`], decoding the JSON answer.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        repeatable: bool,
        idempotency_key: Option<&str>,
    ) -> Result<T, ClientError> {
        let response = self
            .call_raw(method, url, body, repeatable, idempotency_key)
            .await?;
        self.expect_json(response).await
    }

    /// [`Self::call_raw`] for an answer without a body (204).
    pub(crate) async fn call_empty(
        &self,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        repeatable: bool,
    ) -> Result<(), ClientError> {
        let response = self.call_raw(method, url, body, repeatable, None).await?;
        self.expect_empty(response).await
    }
}

fn with_filters(mut url: Url, filters: &ListFilters) -> Url {
    {
        let mut query = url.query_pairs_mut();
        if let Some(name) = &filters.name {
            query.append_pair("name", name);
        }
        if let Some(active) = filters.active {
            query.append_pair("active", if active { "true" } else { "false" });
        }
        if let Some(page) = filters.page {
            query.append_pair("page", &page.to_string());
        }
        if let Some(size) = filters.size {
            query.append_pair("size", &size.to_string());
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    url
}

fn retry_after_secs(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

fn request_id_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn decode_json<T: DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode {
        status: status.as_u16(),
        detail: e.to_string(),
    })
}

/// A successful token endpoint answer; only bearer tokens are usable.
fn decode_token(status: StatusCode, body: &[u8]) -> Result<TokenResponse, ClientError> {
    let token: TokenResponse = decode_json(status, body)?;
    if !token.token_type.eq_ignore_ascii_case("bearer") {
        return Err(ClientError::Decode {
            status: status.as_u16(),
            detail: format!("unsupported token type {:?}", token.token_type),
        });
    }
    Ok(token)
}

/// The first bytes of a body that is not the documented JSON, for the error message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "empty body".into();
    }
    let mut cut: String = text
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > 200 {
        cut.push('…');
    }
    cut
}

/// Turns a non-2xx API answer into an error: 401 is a dead session, anything else carries
/// the JSON error body (`{"error","code","message","request_id"}`).
pub fn decode_api_error(
    status: u16,
    request_id_header: Option<String>,
    body: &[u8],
) -> ClientError {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
        #[serde(default)]
        code: Option<String>,
        message: String,
        #[serde(default)]
        request_id: Option<String>,
    }
    let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) else {
        if status == 401 {
            return ClientError::Unauthenticated {
                message: "the gateway refused the token".into(),
                code: None,
            };
        }
        return ClientError::Decode {
            status,
            detail: snippet(body),
        };
    };
    let message = without_parser_position(&parsed.message);
    if status == 401 {
        return ClientError::Unauthenticated {
            message,
            code: parsed.code.filter(|c| !c.is_empty()),
        };
    }
    let request_id = parsed
        .request_id
        .filter(|r| !r.is_empty())
        .or(request_id_header);
    ClientError::Api {
        status,
        error: parsed.error,
        code: parsed.code.filter(|c| !c.is_empty()),
        message,
        request_id,
    }
}

/// A server message without the JSON parser's position (`... at line 1 column 17`), which
/// points into a request body the person never wrote.
fn without_parser_position(message: &str) -> String {
    let Some((head, tail)) = message.rsplit_once(" at line ") else {
        return message.to_owned();
    };
    let position = tail.split_once(" column ").is_some_and(|(line, column)| {
        !line.is_empty()
            && !column.is_empty()
            && line.chars().all(|c| c.is_ascii_digit())
            && column.chars().all(|c| c.is_ascii_digit())
    });
    if position {
        head.trim_end().to_owned()
    } else {
        message.to_owned()
    }
}

/// Turns a non-2xx token endpoint answer into an error (`{"error","error_description"}`).
pub fn decode_oauth_error(status: u16, body: &[u8]) -> ClientError {
    #[derive(Deserialize)]
    struct OAuthBody {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    }
    match serde_json::from_slice::<OAuthBody>(body) {
        Ok(b) => {
            let description = b
                .error_description
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "login refused".into());
            ClientError::OAuth {
                error: b.error,
                description,
            }
        }
        Err(_) => ClientError::Decode {
            status,
            detail: snippet(body),
        },
    }
}

/// A 404 about device `id` is [`ClientError::DeviceNotFound`].
fn device_not_found<T>(id: Uuid, result: Result<T, ClientError>) -> Result<T, ClientError> {
    match result {
        Err(ClientError::Api { status: 404, .. }) => Err(ClientError::DeviceNotFound { id }),
        other => other,
    }
}

/// The `error_description` of an RFC 6749 error body, when there is one.
fn oauth_description(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("error_description")?
        .as_str()
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
}

/// Classifies a refused device poll (RFC 8628 §3.5). Only a body that is not the RFC 6749
/// error shape is an error: every documented refusal is an answer for the poller.
pub fn decode_device_poll_error(
    status: u16,
    retry_after: Option<u64>,
    body: &[u8],
) -> Result<DevicePoll, ClientError> {
    #[derive(Deserialize)]
    struct OAuthBody {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    }
    if status == 429 {
        return Ok(DevicePoll::RateLimited { retry_after });
    }
    if status >= 500 {
        // The gateway's own error body, or a proxy's page: for the poller to judge.
        return Err(decode_api_error(status, None, body));
    }
    let Ok(parsed) = serde_json::from_slice::<OAuthBody>(body) else {
        return Err(ClientError::Decode {
            status,
            detail: snippet(body),
        });
    };
    let description = parsed.error_description.filter(|d| !d.is_empty());
    Ok(match parsed.error.as_str() {
        "authorization_pending" => DevicePoll::Pending,
        "slow_down" => DevicePoll::SlowDown,
        "access_denied" => DevicePoll::Denied { description },
        "expired_token" => DevicePoll::Expired { description },
        _ => DevicePoll::Refused {
            error: parsed.error,
            description,
        },
    })
}

/// Turns a refused API-key exchange into an error that says why: `invalid_grant` with a
/// `gatehouse_reason`, 429 `too_many_attempts` (with `Retry-After` seconds), else the plain
/// OAuth error.
pub fn decode_api_key_grant_error(
    status: u16,
    retry_after: Option<u64>,
    body: &[u8],
) -> ClientError {
    #[derive(Deserialize)]
    struct GrantError {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
        #[serde(default)]
        gatehouse_reason: Option<String>,
    }
    let Ok(parsed) = serde_json::from_slice::<GrantError>(body) else {
        return decode_oauth_error(status, body);
    };
    let description = parsed
        .error_description
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| parsed.error.clone());
    if status == 429 || parsed.error == "too_many_attempts" {
        return ClientError::TooManyAttempts {
            retry_after,
            description,
        };
    }
    match parsed.gatehouse_reason.filter(|r| !r.is_empty()) {
        Some(reason) if parsed.error == "invalid_grant" => ClientError::ApiKeyRefused {
            reason: ApiKeyRefusal::from_reason(&reason),
            description,
        },
        _ => decode_oauth_error(status, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_error_body_decodes_with_a_readable_message() {
        let body = br#"{"error":"conflict","code":"name_taken","message":"a user or service account named \"x\" already exists","request_id":"1234"}"#;
        let error = decode_api_error(409, None, body);
        assert!(
            matches!(&error, ClientError::Api { status: 409, error, code: Some(code), request_id: Some(id), .. }
                if error == "conflict" && code == "name_taken" && id == "1234"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            r#"conflict (name_taken): a user or service account named "x" already exists [request 1234]"#
        );
    }

    #[test]
    fn an_api_error_without_code_omits_it_and_falls_back_to_the_request_id_header() {
        let body = br#"{"error":"not_found","message":"no user \"bob\"","request_id":""}"#;
        let error = decode_api_error(404, Some("abc".into()), body);
        assert_eq!(
            error.to_string(),
            r#"not_found: no user "bob" [request abc]"#
        );
    }

    #[test]
    fn a_401_means_the_session_is_over() {
        let body =
            br#"{"error":"unauthenticated","message":"the token was revoked","request_id":"1"}"#;
        let error = decode_api_error(401, None, body);
        assert!(matches!(error, ClientError::Unauthenticated { .. }));
        let text = error.to_string();
        assert!(
            text.contains("expired or was revoked")
                && text.contains("gatehouse login")
                && text.contains("the token was revoked"),
            "{text}"
        );
        assert!(matches!(
            decode_api_error(401, None, b""),
            ClientError::Unauthenticated { .. }
        ));
    }

    #[test]
    fn messages_carry_no_parser_positions_or_doubled_labels() {
        let body = br#"{"error":"bad_request","code":"bad_request","message":"invalid name \"a b\": letters, digits, . _ - (found ' ') at line 1 column 17","request_id":"r1"}"#;
        let text = decode_api_error(400, None, body).to_string();
        assert_eq!(
            text,
            "bad_request: invalid name \"a b\": letters, digits, . _ - (found ' ') [request r1]"
        );
        assert_eq!(without_parser_position("at line 3"), "at line 3");
        assert_eq!(
            without_parser_position("the line at line one column 2"),
            "the line at line one column 2"
        );
        let oauth =
            decode_oauth_error(400, br#"{"error":"invalid","error_description":"invalid"}"#);
        assert_eq!(oauth.to_string(), "invalid");
        let oauth = decode_oauth_error(
            400,
            br#"{"error":"invalid_grant","error_description":"invalid username or password"}"#,
        );
        assert_eq!(
            oauth.to_string(),
            "invalid username or password (invalid_grant)"
        );
    }

    #[test]
    fn the_json_error_object_is_the_apis_or_has_its_shape() {
        let body =
            br#"{"error":"conflict","code":"name_taken","message":"taken","request_id":"r1"}"#;
        assert_eq!(
            decode_api_error(409, None, body).json(),
            serde_json::json!({"error": "conflict", "code": "name_taken", "message": "taken", "request_id": "r1"})
        );
        let limited = ClientError::LoginLimited {
            username: "alice".into(),
            retry_after: Some(42),
        };
        let json = limited.json();
        assert_eq!(json["error"], "too_many_attempts");
        let message = json["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("per user name") && message.contains("in 42 s"),
            "{message}"
        );
    }

    #[test]
    fn a_locked_device_or_a_revoked_session_says_who_can_undo_it() {
        let refused = |code: &str| {
            let body = serde_json::json!({"error": "unauthenticated", "code": code,
                "message": "refused", "request_id": "1"});
            decode_api_error(401, None, body.to_string().as_bytes()).to_string()
        };
        let locked = refused("device_locked");
        assert!(
            locked.contains("this device is locked")
                && locked.contains("gatehouse authorized-device unlock")
                && !locked.contains("run `gatehouse login`"),
            "{locked}"
        );
        let deactivated = refused("account_deactivated");
        assert!(
            deactivated.contains("an admin can reactivate it")
                && deactivated.contains("gatehouse user update NAME --active true"),
            "{deactivated}"
        );
        let revoked = refused("token_revoked");
        assert!(
            revoked.contains("deactivated") && revoked.contains("only an admin can undo it"),
            "{revoked}"
        );
    }

    #[test]
    fn a_body_that_is_not_the_error_shape_is_a_decode_error_quoting_it() {
        let error = decode_api_error(502, None, b"<html>Bad Gateway</html>");
        assert!(matches!(error, ClientError::Decode { status: 502, .. }));
        assert_eq!(
            error.to_string(),
            "unexpected answer from Gatehouse (HTTP 502): <html>Bad Gateway</html>"
        );
        assert_eq!(
            decode_api_error(500, None, b"").to_string(),
            "unexpected answer from Gatehouse (HTTP 500): empty body"
        );
    }

    #[test]
    fn an_oauth_error_decodes() {
        let error = decode_oauth_error(
            400,
            br#"{"error":"invalid_grant","error_description":"invalid username or password"}"#,
        );
        assert!(matches!(&error, ClientError::OAuth { error, .. } if error == "invalid_grant"));
        assert_eq!(
            error.to_string(),
            "invalid username or password (invalid_grant)"
        );
    }

    fn normalize_url(url: &str) -> Result<String, ClientError> {
        GatehouseClient::new(url, None).map(|c| c.url())
    }

    #[test]
    fn urls_are_normalised() -> Result<(), ClientError> {
        assert_eq!(
            normalize_url("http://127.0.0.1:8080/")?,
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            normalize_url(" https://gatehouse.example.com ")?,
            "https://gatehouse.example.com"
        );
        assert_eq!(
            normalize_url("https://example.com/gatehouse//")?,
            "https://example.com/gatehouse"
        );
        assert_eq!(
            normalize_url("HTTP://Example.COM:80")?,
            "http://example.com"
        );
        Ok(())
    }

    #[test]
    fn unusable_urls_are_refused_clearly() {
        for (input, expected) in [
            ("localhost:8080", "did you mean http://localhost:8080?"),
            ("ftp://example.com", "must be http or https"),
            ("http://user:pw@example.com", "must not contain credentials"),
            ("http://example.com/?a=b", "query or fragment"),
            ("http://", "invalid Gatehouse URL"),
        ] {
            let error = normalize_url(input).expect_err(input);
            assert!(
                matches!(error, ClientError::InvalidUrl { .. }),
                "{input}: {error:?}"
            );
            assert!(error.to_string().contains(expected), "{input}: {error}");
        }
    }

    #[test]
    fn path_segments_are_encoded_and_prefixes_kept() -> Result<(), ClientError> {
        let client = GatehouseClient::new("https://example.com/gh/", None)?;
        assert_eq!(
            client.api(&["users", "a b/c"]).as_str(),
            "https://example.com/gh/api/v1/users/a%20b%2Fc"
        );
        let client = GatehouseClient::new("http://127.0.0.1:8080", None)?;
        assert_eq!(
            client.endpoint(&["oauth", "token"]).as_str(),
            "http://127.0.0.1:8080/oauth/token"
        );
        Ok(())
    }

    #[test]
    fn filters_become_query_parameters() -> Result<(), ClientError> {
        let client = GatehouseClient::new("http://h", None)?;
        let url = with_filters(client.api(&["users"]), &ListFilters::default());
        assert_eq!(url.as_str(), "http://h/api/v1/users");
        let filters = ListFilters {
            name: Some("a&b".into()),
            active: Some(false),
            page: Some(2),
            size: Some(50),
        };
        let url = with_filters(client.api(&["users"]), &filters);
        assert_eq!(
            url.as_str(),
            "http://h/api/v1/users?name=a%26b&active=false&page=2&size=50"
        );
        Ok(())
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() -> Result<(), serde_json::Error> {
        let server = serde_json::json!({
            "id": "0190f0a8-3b1c-7000-8000-000000000001", "name": "ci", "description": "", "active": true,
            "role": "member", "owner": "0190f0a8-3b1c-7000-8000-000000000002",
            "created": "2025-01-01T00:00:00.5Z", "updated": "2025-01-02T00:00:00Z", "api_keys": 2,
        });
        let account: ServiceAccount = serde_json::from_value(server.clone())?;
        assert_eq!(serde_json::to_value(&account)?, server);
        Ok(())
    }

    #[test]
    fn debug_of_a_token_response_hides_the_token() -> Result<(), serde_json::Error> {
        let token: TokenResponse = serde_json::from_str(
            r#"{"access_token":"very-secret","token_type":"Bearer","expires_in":3600}"#,
        )?;
        assert!(!format!("{token:?}").contains("very-secret"));
        Ok(())
    }

    /// The device endpoints against a stand-in gateway.
    mod devices {
        use super::*;
        use crate::testing::{MockServer, Reply, Request};

        const ID: &str = "0190f0a8-3b1c-7000-8000-00000000d001";

        fn id() -> Uuid {
            Uuid::parse_str(ID).expect("uuid")
        }

        fn device(status: &str) -> serde_json::Value {
            serde_json::json!({
                "id": ID, "status": status, "trusted": false, "owner_id": null, "owner": "alice",
                "client_id": "gatehouse-cli", "scope": null, "hostname": "laptop",
                "os": "linux x86_64", "client_version": "0.1.0", "ip_address": "192.0.2.7",
                "created": "2025-01-01T10:00:00Z", "verified_at": null, "last_login": null,
                "expires": "2025-01-01T10:10:00Z",
            })
        }

        fn authorization() -> serde_json::Value {
            serde_json::json!({
                "device_code": "gatehouse_dc_secret-device-code", "user_code": "WDJB-MJHT",
                "verification_uri": "http://host/device",
                "verification_uri_complete": "http://host/device?user_code=WDJB-MJHT",
                "expires_in": 600, "interval": 5,
            })
        }

        async fn server(
            handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
        ) -> (MockServer, GatehouseClient) {
            let server = MockServer::start(handler).await.expect("server");
            let client =
                GatehouseClient::new(&server.url, Some(SecretString::from("tok"))).expect("client");
            (server, client)
        }

        #[tokio::test]
        async fn a_device_authorization_sends_what_the_device_says_about_itself() {
            let (server, client) = server(|_| Reply::json(200, authorization())).await;
            let asked = DeviceDescription {
                scope: None,
                hostname: Some("laptop".into()),
                os: Some("linux x86_64".into()),
                client_version: Some("0.1.0".into()),
            };
            let answer = client
                .request_device_authorization(&asked)
                .await
                .expect("authorization");
            assert_eq!(answer.user_code, "WDJB-MJHT");
            assert_eq!(answer.interval, Some(5));
            assert_eq!(answer.expires_in, 600);
            assert_eq!(
                answer.device_code.expose_secret(),
                "gatehouse_dc_secret-device-code"
            );
            assert!(!format!("{answer:?}").contains("secret-device-code"));
            let sent = &server.requests()[0];
            assert_eq!(sent.route(), "POST /oauth/device_authorization");
            assert_eq!(
                sent.form(),
                vec![
                    ("client_id".to_owned(), "gatehouse-cli".to_owned()),
                    ("hostname".to_owned(), "laptop".to_owned()),
                    ("os".to_owned(), "linux x86_64".to_owned()),
                    ("client_version".to_owned(), "0.1.0".to_owned()),
                ]
            );
            // Nobody is logged in yet: no bearer token goes to the OAuth endpoint.
            assert_eq!(sent.header("authorization"), None);
        }

        #[tokio::test]
        async fn a_refused_device_authorization_says_why() {
            let (_s, client) =
                server(|_| Reply::api_error(404, "not_found", None, "no such resource")).await;
            let error = client
                .request_device_authorization(&DeviceDescription::default())
                .await
                .expect_err("404");
            assert!(matches!(error, ClientError::DeviceLoginUnsupported { .. }));
            assert!(error.to_string().contains("--username NAME"), "{error}");

            let (_s, client) = server(|_| {
                Reply::oauth_error(429, "slow_down", "too many device authorizations")
                    .header("retry-after", "7")
            })
            .await;
            let error = client
                .request_device_authorization(&DeviceDescription::default())
                .await
                .expect_err("429");
            assert_eq!(
                error.to_string(),
                "too many failed attempts (too many device authorizations): try again in 7 s"
            );

            let (_s, client) =
                server(|_| Reply::oauth_error(400, "invalid_client", "unknown client")).await;
            let error = client
                .request_device_authorization(&DeviceDescription::default())
                .await
                .expect_err("400");
            assert_eq!(error.to_string(), "unknown client (invalid_client)");
        }

        #[tokio::test]
        async fn polls_send_the_device_grant_and_classify_every_answer() {
            let (server, client) = server(|request| {
                match request.form_value("device_code").as_deref() {
                    Some("pending") => {
                        Reply::oauth_error(400, "authorization_pending", "not yet")
                    }
                    Some("slow") => Reply::oauth_error(400, "slow_down", "easy"),
                    Some("denied") => Reply::oauth_error(400, "access_denied", "denied by alice"),
                    Some("expired") => Reply::oauth_error(400, "expired_token", "too late"),
                    Some("invalid") => Reply::oauth_error(400, "invalid_grant", "unknown code"),
                    Some("limited") => Reply::empty(429).header("retry-after", "9"),
                    Some("down") => Reply::api_error(503, "unavailable", None, "restarting"),
                    Some("html") => Reply::empty(400),
                    _ => Reply::json(
                        200,
                        serde_json::json!({"access_token": "eyJ.a.b", "token_type": "Bearer", "expires_in": 86400}),
                    ),
                }
            })
            .await;
            let poll = |code: &'static str| client.poll_device_token_for_test(code);
            assert!(matches!(poll("pending").await, Ok(DevicePoll::Pending)));
            assert!(matches!(poll("slow").await, Ok(DevicePoll::SlowDown)));
            assert!(matches!(poll("denied").await,
                Ok(DevicePoll::Denied { description: Some(d) }) if d == "denied by alice"));
            assert!(matches!(
                poll("expired").await,
                Ok(DevicePoll::Expired { .. })
            ));
            assert!(matches!(poll("invalid").await,
                Ok(DevicePoll::Refused { error, .. }) if error == "invalid_grant"));
            assert!(matches!(
                poll("limited").await,
                Ok(DevicePoll::RateLimited {
                    retry_after: Some(9)
                })
            ));
            let down = poll("down").await.expect_err("503");
            assert!(down.is_transient(), "{down:?}");
            let html = poll("html").await.expect_err("empty 400");
            assert!(!html.is_transient(), "{html:?}");
            match poll("good").await {
                Ok(DevicePoll::Token(token)) => {
                    assert_eq!(token.access_token.expose_secret(), "eyJ.a.b");
                }
                other => panic!("{other:?}"),
            }
            let sent = &server.requests()[0];
            assert_eq!(sent.route(), "POST /oauth/token");
            assert_eq!(
                sent.form(),
                vec![
                    ("grant_type".to_owned(), DEVICE_CODE_GRANT_TYPE.to_owned()),
                    ("device_code".to_owned(), "pending".to_owned()),
                    ("client_id".to_owned(), "gatehouse-cli".to_owned()),
                ]
            );
            // One request per poll: polls are never retried behind the poller's back.
            assert_eq!(server.requests().len(), 9);
        }

        #[tokio::test]
        async fn a_keyed_create_whose_answer_was_lost_is_sent_again_with_the_same_key() {
            let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let seen = calls.clone();
            let (server, client) = server(move |_| {
                if seen
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    .is_multiple_of(2)
                {
                    return Reply::hang_up();
                }
                Reply::json(
                    201,
                    serde_json::json!({"id": ID, "name": "alice", "role": "member", "active": true,
                        "created": "2025-01-01T10:00:00Z", "updated": "2025-01-01T10:00:00Z"}),
                )
            })
            .await;
            let password = SecretString::from("alice-password-1");
            let created = client
                .create_user("alice", &password, None, Some("k-1"))
                .await
                .expect("the second attempt is answered");
            assert_eq!(created.name, "alice");
            let keys: Vec<_> = server
                .requests()
                .iter()
                .map(|r| r.header("idempotency-key").map(str::to_owned))
                .collect();
            assert_eq!(keys, vec![Some("k-1".to_owned()); 2]);
            // Without a key a create is sent once: its outcome is unknown, and it says so.
            let lost = client
                .create_user("alice", &password, None, None)
                .await
                .expect_err("the answer was lost");
            assert!(lost.outcome_unknown(), "{lost:?}");
            assert_eq!(server.requests().len(), 3);
        }

        #[test]
        fn a_cloud_refusal_is_a_known_outcome_and_a_server_error_is_not() {
            let api = |status: u16, error: &str| ClientError::Api {
                status,
                error: error.to_owned(),
                code: Some(error.to_owned()),
                message: "m".to_owned(),
                request_id: None,
            };
            assert!(!api(502, "upstream_error").outcome_unknown());
            assert!(!api(504, "upstream_timeout").outcome_unknown());
            assert!(api(500, "internal").outcome_unknown());
            assert!(api(503, "unavailable").outcome_unknown());
        }

        #[tokio::test]
        async fn device_calls_use_the_documented_routes() {
            let (server, client) = server(|request| match request.route().as_str() {
                "GET /api/v1/devices" => Reply::json(
                    200,
                    serde_json::json!({"index": 2, "max_size": 5, "total_pages": 3, "total": 11,
                        "items": [device("active")]}),
                ),
                "POST /api/v1/devices/verify" => Reply::json(200, device("verified")),
                r if r.ends_with("/lock") => Reply::json(200, device("locked")),
                r if r.ends_with("/unlock") => Reply::json(200, device("active")),
                r if r.starts_with("DELETE ") => Reply::empty(204),
                _ => Reply::json(200, device("active")),
            })
            .await;
            let filters = DeviceFilters {
                status: Some(DeviceStatus::Active),
                page: Some(2),
                size: Some(5),
            };
            let page = client.list_devices(&filters).await.expect("list");
            assert_eq!((page.index, page.total_pages, page.items.len()), (2, 3, 1));
            assert_eq!(client.get_device(id()).await.expect("get").status, "active");
            assert_eq!(
                client.lock_device(id()).await.expect("lock").status,
                "locked"
            );
            assert_eq!(
                client.unlock_device(id()).await.expect("unlock").status,
                "active"
            );
            client.delete_device(id()).await.expect("delete");
            client.lookup_device("WDJB-MJHT").await.expect("lookup");
            let verified = client
                .verify_device("WDJB-MJHT", DeviceDecision::Approve { trusted: true })
                .await
                .expect("verify");
            assert_eq!(verified.status, "verified");
            client
                .list_devices(&DeviceFilters::default())
                .await
                .expect("list");

            let requests = server.requests();
            let routes: Vec<String> = requests.iter().map(Request::route).collect();
            assert_eq!(
                routes,
                vec![
                    "GET /api/v1/devices".to_owned(),
                    format!("GET /api/v1/devices/{ID}"),
                    format!("POST /api/v1/devices/{ID}/lock"),
                    format!("POST /api/v1/devices/{ID}/unlock"),
                    format!("DELETE /api/v1/devices/{ID}"),
                    "POST /api/v1/devices/lookup".to_owned(),
                    "POST /api/v1/devices/verify".to_owned(),
                    "GET /api/v1/devices".to_owned(),
                ]
            );
            assert_eq!(requests[0].query(), Some("status=active&page=2&size=5"));
            assert_eq!(requests[7].query(), None);
            assert_eq!(
                requests[5].json(),
                serde_json::json!({"user_code": "WDJB-MJHT"})
            );
            assert_eq!(
                requests[6].json(),
                serde_json::json!({"user_code": "WDJB-MJHT", "trusted_device": true})
            );
            assert!(
                requests
                    .iter()
                    .all(|r| r.header("authorization") == Some("Bearer tok"))
            );
        }

        #[tokio::test]
        async fn unknown_devices_and_wrong_codes_read_clearly() {
            let (_s, client) = server(|request| {
                if request.path().ends_with("/verify") {
                    if request.json()["user_code"] == "BBBB-BBBB" {
                        return Reply::api_error(429, "rate_limited", None, "too many wrong codes")
                            .header("retry-after", "60");
                    }
                    return Reply::api_error(
                        404,
                        "not_found",
                        Some("invalid_user_code"),
                        "no such code",
                    );
                }
                Reply::api_error(404, "not_found", None, "no device")
            })
            .await;
            let error = client.get_device(id()).await.expect_err("404");
            assert_eq!(
                error.to_string(),
                format!(
                    "no authorized device {ID} (unknown, deleted, or not yours): `gatehouse \
                     authorized-device list` shows yours"
                )
            );
            assert!(matches!(
                client.lock_device(id()).await,
                Err(ClientError::DeviceNotFound { .. })
            ));
            assert!(matches!(
                client.unlock_device(id()).await,
                Err(ClientError::DeviceNotFound { .. })
            ));
            assert!(matches!(
                client.delete_device(id()).await,
                Err(ClientError::DeviceNotFound { .. })
            ));
            let error = client
                .verify_device("WDJB-MJHT", DeviceDecision::Deny)
                .await
                .expect_err("wrong code");
            assert!(
                error
                    .to_string()
                    .starts_with("the code WDJB-MJHT matches no sign-in request"),
                "{error}"
            );
            let error = client
                .verify_device("BBBB-BBBB", DeviceDecision::Deny)
                .await
                .expect_err("429");
            assert_eq!(
                error.to_string(),
                "too many failed attempts (too many wrong codes): try again in 60 s"
            );
        }

        #[test]
        fn poll_errors_that_are_not_the_oauth_shape_are_decode_errors() {
            assert!(matches!(
                decode_device_poll_error(400, None, b"<html>"),
                Err(ClientError::Decode { status: 400, .. })
            ));
            assert!(matches!(
                decode_device_poll_error(502, None, b"<html>Bad Gateway</html>"),
                Err(ref e) if e.is_transient()
            ));
            assert!(matches!(
                decode_device_poll_error(
                    400,
                    None,
                    br#"{"error":"unsupported_grant_type"}"#
                ),
                Ok(DevicePoll::Refused { ref error, description: None }) if error == "unsupported_grant_type"
            ));
        }
    }

    impl GatehouseClient {
        /// `poll_device_token` with a plain code, for tests.
        async fn poll_device_token_for_test(
            &self,
            code: &'static str,
        ) -> Result<DevicePoll, ClientError> {
            self.poll_device_token(&SecretString::from(code)).await
        }
    }
}
