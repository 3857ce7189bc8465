//! The authenticated principal, as an extractor: bearer token verified locally with the
//! public key (cached), then checked against the in-memory directory for revocation.
//! No database or NATS round trip per request.

use std::sync::Arc;

use actix_web::{FromRequest, HttpRequest, web};
use gatehouse_contracts::commands::Caller;
use gatehouse_contracts::identity::Role;
use gatehouse_tokens::AccessTokenClaims;

use crate::directory::Principal;
use crate::errors::ApiError;
use crate::state::AppState;

/// A request made by a signed-in, active, unrevoked principal.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The principal as the directory knows it now (current role and name).
    pub principal: Arc<Principal>,
    /// The verified token's claims.
    pub claims: Arc<AccessTokenClaims>,
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

/// Authenticates a request against `state`.
pub fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Authenticated, ApiError> {
    let token = bearer(req)?;
    let claims = state.issuer.verify(token, state.clock.now().timestamp())?;
    let id = uuid::Uuid::parse_str(&claims.sub)
        .map_err(|_| ApiError::unauthenticated("invalid token subject"))?;
    let principal = state.directory.principal(&id).ok_or_else(|| {
        ApiError::unauthenticated("the token's principal no longer exists")
            .with_code("token_revoked")
    })?;
    if !principal.active
        || principal.epoch != claims.principal_epoch
        || principal.kind != claims.principal_kind
    {
        return Err(
            ApiError::unauthenticated("the token has been revoked").with_code("token_revoked")
        );
    }
    Ok(Authenticated { principal, claims })
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let result = match req.app_data::<web::Data<AppState>>() {
            Some(state) => authenticate(state, req),
            None => Err(ApiError::internal(&"the application state is missing")),
        };
        std::future::ready(result)
    }
}
