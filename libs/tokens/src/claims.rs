//! Claims carried by Gatehouse access tokens.

use gatehouse_contracts::ids::DeviceId;
pub use gatehouse_contracts::ids::PrincipalKind;
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
/// tagged by `method`, e.g. `{"method":"api_key","id":"…","generation":2,"epoch":0}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
        /// The key's epoch (bumped on deactivation) when the token was issued.
        #[serde(default)]
        epoch: u64,
    },
    /// Device authorization grant.
    Device {
        /// The device authorization id.
        id: DeviceId,
    },
}

impl AccessTokenClaims {
    /// The claims as compact JSON, byte for byte what `serde_json::to_vec`
    /// produces (tests check this), but infallible: signing never has to
    /// handle a serialization error. The exhaustive destructuring makes adding
    /// a field without updating this writer a compile error.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let AccessTokenClaims {
            iss,
            sub,
            aud,
            exp,
            iat,
            nbf,
            jti,
            client_id,
            scope,
            principal_kind,
            source,
            principal_epoch,
        } = self;
        let mut out = String::with_capacity(384);
        out.push_str("{\"iss\":");
        push_json_string(&mut out, iss);
        out.push_str(",\"sub\":");
        push_json_string(&mut out, sub);
        out.push_str(",\"aud\":");
        push_json_string(&mut out, aud);
        out.push_str(",\"exp\":");
        out.push_str(&exp.to_string());
        out.push_str(",\"iat\":");
        out.push_str(&iat.to_string());
        out.push_str(",\"nbf\":");
        out.push_str(&nbf.to_string());
        out.push_str(",\"jti\":");
        push_json_string(&mut out, jti);
        out.push_str(",\"client_id\":");
        push_json_string(&mut out, client_id);
        if let Some(scope) = scope {
            out.push_str(",\"scope\":");
            push_json_string(&mut out, scope);
        }
        out.push_str(",\"gh_kind\":");
        out.push_str(match principal_kind {
            PrincipalKind::User => "\"user\"",
            PrincipalKind::ServiceAccount => "\"service_account\"",
        });
        out.push_str(",\"gh_src\":");
        match source {
            SessionSource::Password => out.push_str("{\"method\":\"password\"}"),
            SessionSource::ApiKey {
                id,
                generation,
                epoch,
            } => {
                out.push_str("{\"method\":\"api_key\",\"id\":\"");
                out.push_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
                out.push_str("\",\"generation\":");
                out.push_str(&generation.to_string());
                out.push_str(",\"epoch\":");
                out.push_str(&epoch.to_string());
                out.push('}');
            }
            SessionSource::Device { id } => {
                out.push_str("{\"method\":\"device\",\"id\":\"");
                out.push_str(
                    id.as_uuid()
                        .hyphenated()
                        .encode_lower(&mut Uuid::encode_buffer()),
                );
                out.push_str("\"}");
            }
        }
        out.push_str(",\"gh_ep\":");
        out.push_str(&principal_epoch.to_string());
        out.push('}');
        out.into_bytes()
    }
}

/// Appends `value` as a JSON string literal, escaping exactly like serde_json
/// (`\"`, `\\`, `\b \f \n \r \t`, other control characters as `\u00xx`).
fn push_json_string(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let byte = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
