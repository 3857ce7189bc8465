//! Claims carried by Gatehouse access tokens.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The JWT claims of a Gatehouse access token (RFC 9068 profile plus
/// Gatehouse-specific `gh_*` claims).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer: the Gatehouse deployment's issuer URL.
    pub iss: String,
    /// Subject: the principal id (a UUID string).
    pub sub: String,
    /// Audience: the resource server the token is meant for.
    pub aud: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issued-at, seconds since the Unix epoch.
    pub iat: i64,
    /// Not-before, seconds since the Unix epoch.
    pub nbf: i64,
    /// Token id (a UUID v4 string), for revocation and audit.
    pub jti: String,
    /// The OAuth client the token was issued to.
    pub client_id: String,
    /// Space-separated scopes, if the token is scoped.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scope: Option<String>,
    /// Kind of principal the subject is.
    #[serde(rename = "gh_kind")]
    pub principal_kind: PrincipalKind,
    /// How the session behind this token was established.
    #[serde(rename = "gh_src")]
    pub source: SessionSource,
    /// The principal's epoch when the token was issued; bumping the epoch
    /// revokes all older tokens of the principal.
    #[serde(rename = "gh_ep", default)]
    pub principal_epoch: u64,
}

/// How the session behind a token was established. Serialized as an object
/// tagged by `method`, e.g. `{"method":"api_key","id":"…","generation":2}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum SessionSource {
    /// Interactive password login.
    Password,
    /// Exchange of an API key.
    ApiKey {
        /// The API key id.
        id: Uuid,
        /// The key's generation (bumped on rotation).
        generation: u32,
    },
    /// Device authorization grant.
    Device {
        /// The device authorization id.
        id: Uuid,
    },
}

/// Kind of principal a token's subject is (`"user"` or `"service_account"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A human user.
    User,
    /// A non-human service account.
    ServiceAccount,
}
