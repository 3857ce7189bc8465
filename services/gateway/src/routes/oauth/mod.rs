//! OAuth 2.0 endpoints: the token endpoint (RFC 6749 §3.2), JWKS and the authorization
//! server metadata (RFC 8414).
//!
//! The token endpoint reads the form and hands it to the grant it names, one module each:
//! [`password`], [`api_key`] and [`device_code`] (RFC 8628; its device authorization
//! endpoint is [`crate::routes::device_flow`]). A grant gets the form and answers with
//! [`token_response`] or an RFC 6749 error.

pub mod api_key;
pub mod device_code;
pub mod password;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::context::RequestContext;
use crate::errors::OAuthError;
use crate::issuer::Session;
use crate::state::AppState;

pub use api_key::API_KEY_GRANT;
pub use device_code::DEVICE_CODE_GRANT;
pub use password::password_session;

/// The form of `POST /oauth/token`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenForm {
    /// `password`, `urn:ietf:params:oauth:grant-type:device_code`, or
    /// `urn:gatehouse:params:oauth:grant-type:api-key` (alias `api_key`).
    #[schema(schema_with = grant_type_schema)]
    pub grant_type: String,
    /// Password grant: the user name.
    #[schema(min_length = 1)]
    pub username: Option<String>,
    /// Password grant: the password.
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
    /// API-key grant: the key.
    #[schema(value_type = Option<String>, format = Password)]
    pub api_key: Option<SecretString>,
    /// Device-code grant (RFC 8628): the device code.
    #[schema(value_type = Option<String>, format = Password)]
    pub device_code: Option<SecretString>,
    /// The client (informational for public clients such as the CLI).
    pub client_id: Option<String>,
    /// Requested scope (currently informational).
    pub scope: Option<String>,
}

/// The grant types the token endpoint supports; any other is answered
/// `unsupported_grant_type` (400).
fn grant_type_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some([
            "password",
            DEVICE_CODE_GRANT,
            API_KEY_GRANT,
            "api_key",
        ]))
        .description(Some("The grant: `password`, `urn:ietf:params:oauth:grant-type:device_code`, or `urn:gatehouse:params:oauth:grant-type:api-key` (alias `api_key`)."))
        .build()
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The access token (an Ed25519-signed JWT, RFC 9068).
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Granted scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Reads an `application/x-www-form-urlencoded` body.
pub fn parse_form<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
) -> Result<T, OAuthError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(OAuthError::new(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|e| OAuthError::new("invalid_request", format!("malformed form: {e}")))
}

/// A required, non-empty form parameter, or `invalid_request`.
pub(crate) fn required(value: Option<String>, name: &str) -> Result<String, OAuthError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::new("invalid_request", format!("missing parameter {name}")))
}

/// Exchanges credentials for an access token.
#[utoipa::path(
    post, path = "/oauth/token", tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, description = "RFC 6749 error", body = OAuthError),
        (status = 429, description = "too many failed attempts from this address", body = OAuthError),
    )
)]
#[post("/oauth/token")]
pub async fn token(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    let form: TokenForm = parse_form(&req, &body)?;
    match form.grant_type.as_str() {
        "password" => password::grant(&state, &ctx, form).await,
        API_KEY_GRANT | "api_key" => api_key::grant(&state, &ctx, form).await,
        DEVICE_CODE_GRANT => device_code::grant(&state, &ctx, form).await,
        other => Err(OAuthError::new(
            "unsupported_grant_type",
            format!("grant type {other:?} is not supported"),
        )),
    }
}

/// Mints the token of `session` and answers RFC 6749 §5.1.
pub fn token_response(state: &AppState, session: Session) -> HttpResponse {
    let scope = session.scope.clone();
    let (access_token, expires_in) = state.issuer.mint(&session, state.clock.now());
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            scope,
        })
}

/// The public keys that verify access tokens (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "oauth", responses((status = 200, description = "JWK set")))]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(state.issuer.jwks())
}

/// Authorization server metadata (RFC 8414).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth", responses((status = 200, description = "RFC 8414 metadata")))]
#[get("/.well-known/oauth-authorization-server")]
pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let base = state.settings.issuer.trim_end_matches('/');
    HttpResponse::Ok().json(serde_json::json!({
        "issuer": state.settings.issuer,
        "token_endpoint": format!("{base}/oauth/token"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "device_authorization_endpoint": format!("{base}/oauth/device_authorization"),
        "grant_types_supported": ["password", API_KEY_GRANT, DEVICE_CODE_GRANT],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": [],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "service_documentation": format!("{base}/openapi.json"),
    }))
}
