//! The authenticated principal, as an extractor: bearer token verified locally with the
//! public key (cached), then checked against the in-memory directory for revocation.
//! No database or NATS round trip per request. A raw API key is accepted as the bearer
//! credential too (see [`crate::apikeys`]): its first use costs a round trip to the keys
//! service, later uses a digest and the same directory checks.

use std::sync::Arc;

use actix_web::{FromRequest, HttpRequest, web};
use futures::future::LocalBoxFuture;
use gatehouse_contracts::commands::Caller;
use gatehouse_contracts::devices::DeviceStatus;
use gatehouse_contracts::identity::Role;
use gatehouse_contracts::keys::KeyRefusal;
use gatehouse_tokens::{PrincipalKind, SessionSource};
use secrecy::SecretString;

use crate::apikeys::{KeyError, looks_like_api_key};
use crate::context::RequestContext;
use crate::directory::Principal;
use crate::errors::ApiError;
use crate::state::AppState;

/// A request made by a signed-in, active, unrevoked principal.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The principal as the directory knows it now (current role and name).
    pub principal: Arc<Principal>,
    /// How the session was established (for an API key used directly: the key).
    pub source: SessionSource,
}

impl Authenticated {
    /// The caller sent with commands.
    pub fn caller(&self) -> Caller {
        self.principal.caller()
    }

    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.principal.role == Role::Admin
    }

    /// Refuses non-admins with 403.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs the admin role"))
        }
    }
}

/// Pulls the bearer credential out of the `Authorization` header.
pub fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthenticated("missing Authorization header").with_code("missing_token")
        })?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthenticated("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthenticated("expected 'Authorization: Bearer <token>'"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthenticated(
            "expected 'Authorization: Bearer <token>'",
        ));
    }
    Ok(token.trim())
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::RateLimited(wait) => ApiError::rate_limited(wait),
            KeyError::Unavailable(m) => ApiError::unavailable(m),
            KeyError::Invalid => {
                ApiError::unauthenticated(e.message()).with_code("invalid_api_key")
            }
            KeyError::Refused(refusal) => {
                let code = match refusal {
                    KeyRefusal::Deactivated => "api_key_deactivated",
                    KeyRefusal::Expired => "api_key_expired",
                    KeyRefusal::Rotated => "api_key_rotated",
                    KeyRefusal::Revoked => "api_key_revoked",
                };
                ApiError::unauthenticated(e.message()).with_code(code)
            }
        }
    }
}

/// Authenticates a request that carries a token (not an API key) against `state`.
pub fn authenticate_token(state: &AppState, token: &str) -> Result<Authenticated, ApiError> {
    state.directory.loaded()?;
    let claims = state.issuer.verify(token, state.clock.now().timestamp())?;
    let id = uuid::Uuid::parse_str(&claims.sub)
        .map_err(|_| ApiError::unauthenticated("invalid token subject"))?;
    let principal = state.directory.principal(&id).ok_or_else(|| {
        ApiError::unauthenticated("the token's principal no longer exists")
            .with_code("token_revoked")
    })?;
    if !principal.active {
        // Say what happened: the holder can do nothing about it but ask an admin.
        return Err(ApiError::unauthenticated(
            "the account is deactivated; an admin can reactivate it",
        )
        .with_code("account_deactivated"));
    }
    if principal.epoch != claims.principal_epoch || principal.kind != claims.principal_kind {
        return Err(
            ApiError::unauthenticated("the token has been revoked").with_code("token_revoked")
        );
    }
    if let SessionSource::ApiKey {
        id,
        generation,
        epoch,
    } = &claims.source
    {
        let now = state.clock.now();
        let key = state
            .directory
            .api_key(id)
            .filter(|k| k.service_account_id == principal.id)
            .ok_or_else(|| {
                ApiError::unauthenticated("the token's API key no longer exists")
                    .with_code("token_revoked")
            })?;
        key.validity
            .check_token(*generation, *epoch, now)
            .map_err(|r| {
                ApiError::unauthenticated(format!("the token has been revoked: {r}"))
                    .with_code("token_revoked")
            })?;
    }
    if let SessionSource::Device { id } = &claims.source {
        // A locked, deleted or lapsed device's token is refused; unlocking restores it.
        let now = state.clock.now();
        let device = state
            .directory
            .device(&id.as_uuid())
            .filter(|d| d.facts.owner.map(|o| o.as_uuid()) == Some(principal.id))
            .ok_or_else(|| {
                ApiError::unauthenticated("the token's device no longer exists")
                    .with_code("token_revoked")
            })?;
        match device.facts.status(now) {
            DeviceStatus::Active => {}
            DeviceStatus::Locked => {
                return Err(
                    ApiError::unauthenticated("this device is locked").with_code("device_locked")
                );
            }
            _ => {
                return Err(ApiError::unauthenticated("the device's session has ended")
                    .with_code("token_revoked"));
            }
        }
    }
    Ok(Authenticated {
        principal,
        source: claims.source.clone(),
    })
}

/// Authenticates a request whose bearer credential is an API key.
pub async fn authenticate_api_key(
    state: &AppState,
    ctx: &RequestContext,
    key: &SecretString,
) -> Result<Authenticated, ApiError> {
    let verified = state.api_keys.authenticate(ctx, key).await?;
    debug_assert_eq!(verified.principal.kind, PrincipalKind::ServiceAccount);
    Ok(Authenticated {
        principal: verified.principal,
        source: SessionSource::ApiKey {
            id: verified.id,
            generation: verified.generation,
            epoch: verified.epoch,
        },
    })
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
            let error = ApiError::internal(&"the application state is missing");
            return Box::pin(std::future::ready(Err(error)));
        };
        let credential = match bearer(req) {
            Ok(c) => c,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        if !looks_like_api_key(credential) {
            // The hot path: no allocation beyond the claims, no await.
            return Box::pin(std::future::ready(authenticate_token(&state, credential)));
        }
        let key = SecretString::from(credential.to_owned());
        let ctx = RequestContext::from_request(req, payload).into_inner();
        Box::pin(async move {
            let ctx = ctx.map_err(|e| ApiError::bad_request(e.to_string()))?;
            authenticate_api_key(&state, &ctx, &key).await
        })
    }
}
