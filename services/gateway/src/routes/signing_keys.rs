//! The token-signing keys (admins only): list, add (rotate), retire.
//!
//! Rotation is two steps so that no replica signs with a key another cannot verify yet:
//! a new key verifies everywhere as soon as it is added (the call returns once every
//! replica has it) and signs from `active_from` on. Retiring a key refuses every token it
//! signed, on every replica, before the call returns — the answer to a leaked key.

use actix_web::{HttpResponse, get, post, web};
use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::auth::Authenticated;
use crate::context::RequestContext;
use crate::errors::{ApiError, ErrorBody};
use crate::issuer::SigningKeyInfo;
use crate::state::AppState;
use gatehouse_contracts::keyring::{AddSigningKey, RetireSigningKey};

/// The longest delay before a new key signs (a day).
const MAX_ACTIVATE_IN_SECONDS: u32 = 86_400;

/// The signing keys, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SigningKeyList {
    /// The keys.
    pub items: Vec<SigningKeyInfo>,
}

/// A new signing key.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSigningKey {
    /// Seconds until it signs new tokens (0 to 86400; default 60). It verifies at once.
    #[serde(default)]
    #[schema(maximum = 86_400)]
    pub activate_in_seconds: Option<u32>,
}

/// Lists the signing keys.
#[utoipa::path(get, path = "/api/v1/signing-keys", tag = "signing_keys", security(("bearer" = [])),
    responses((status = 200, body = SigningKeyList), (status = 403, body = ErrorBody)))]
#[get("/signing-keys")]
pub async fn list_signing_keys(
    state: web::Data<AppState>,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    auth.require_admin()?;
    Ok(HttpResponse::Ok().json(SigningKeyList {
        items: state.issuer.list(state.clock.now()),
    }))
}

/// Adds a signing key: it verifies at once and signs new tokens from `active_from` on.
#[utoipa::path(post, path = "/api/v1/signing-keys", tag = "signing_keys", security(("bearer" = [])),
    request_body = NewSigningKey,
    responses((status = 201, body = SigningKeyInfo), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/signing-keys")]
pub async fn add_signing_key(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    auth.require_admin()?;
    // The body is optional (`{}` and nothing mean the defaults), but a body must be right.
    let body: NewSigningKey = if body.iter().all(u8::is_ascii_whitespace) {
        NewSigningKey::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            if e.is_data() {
                ApiError::invalid(e.to_string())
            } else {
                ApiError::bad_request(format!("malformed JSON: {e}"))
            }
        })?
    };
    let delay = body.activate_in_seconds.unwrap_or(60);
    if delay > MAX_ACTIVATE_IN_SECONDS {
        return Err(ApiError::invalid(format!(
            "activate_in_seconds must be between 0 and {MAX_ACTIVATE_IN_SECONDS}"
        )));
    }
    let active_from = state.clock.now() + Duration::seconds(i64::from(delay));
    let added = state
        .command(
            &ctx,
            Some(&auth.caller()),
            AddSigningKey { active_from },
            None,
        )
        .await?;
    let info = state
        .issuer
        .info(&added.output.kid, state.clock.now())
        .ok_or_else(|| ApiError::internal(&"the new key is not in the keyring"))?;
    Ok(HttpResponse::Created().json(info))
}

/// Retires a signing key: every token it signed is refused from now on, on every replica.
#[utoipa::path(post, path = "/api/v1/signing-keys/{kid}/retire", tag = "signing_keys", security(("bearer" = [])),
    params(("kid" = String, Path, description = "the key id")),
    responses((status = 200, body = SigningKeyInfo), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "no other key could sign now", body = ErrorBody)))]
#[post("/signing-keys/{kid}/retire")]
pub async fn retire_signing_key(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    kid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require_admin()?;
    let kid = kid.into_inner();
    state
        .command(
            &ctx,
            Some(&auth.caller()),
            RetireSigningKey { kid: kid.clone() },
            None,
        )
        .await?;
    let info = state
        .issuer
        .info(&kid, state.clock.now())
        .ok_or_else(|| ApiError::not_found(format!("no signing key {kid}")))?;
    Ok(HttpResponse::Ok().json(info))
}
