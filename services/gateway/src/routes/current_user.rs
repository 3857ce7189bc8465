//! The caller itself.

use actix_web::{HttpResponse, get, post, web};
use gatehouse_contracts::commands::Command;
use gatehouse_contracts::failures::IdentityFailure;
use gatehouse_contracts::identity::{ChangePassword, Role};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::context::RequestContext;
use crate::errors::{ApiError, ErrorBody};
use crate::state::AppState;

/// The authenticated principal.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CurrentUser {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// `user` or `service_account`.
    pub kind: &'static str,
    /// Role.
    pub role: Role,
    /// How this session was authenticated (`password`, `api_key`, `device`).
    pub authenticated_by: &'static str,
}

/// Who am I?
#[utoipa::path(get, path = "/api/v1/current-user", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = CurrentUser)))]
#[get("/current-user")]
pub async fn get_current_user(auth: Authenticated) -> HttpResponse {
    let p = &auth.principal;
    HttpResponse::Ok().json(CurrentUser {
        id: p.id,
        name: p.name.clone(),
        kind: p.kind.as_str(),
        role: p.role,
        authenticated_by: match auth.source {
            gatehouse_tokens::SessionSource::Password => "password",
            gatehouse_tokens::SessionSource::ApiKey { .. } => "api_key",
            gatehouse_tokens::SessionSource::Device { .. } => "device",
        },
    })
}

/// A password change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The current password.
    #[schema(value_type = String, format = Password, min_length = 1)]
    pub current_password: SecretString,
    /// The new password (8 to 1,024 characters).
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 1024)]
    pub new_password: SecretString,
}

/// Changes the caller's password. Every existing session of the user ends, including
/// this one: log in again with the new password. Wrong current passwords count as failed
/// logins (429 with Retry-After past the allowance).
#[utoipa::path(post, path = "/api/v1/current-user/password", tag = "users", security(("bearer" = [])),
    request_body = PasswordChange,
    responses((status = 204), (status = 403, description = "only users have passwords", body = ErrorBody), (status = 422, description = "the current password is wrong, or the new one breaks the policy", body = ErrorBody),
        (status = 429, description = "too many wrong passwords (counted with failed logins)", body = ErrorBody)))]
#[post("/current-user/password")]
pub async fn change_password(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    body: web::Json<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    // A wrong current password is a failed login: the same counts (per address and user
    // name, on every replica), so a stolen session cannot guess its way past them.
    let subject = auth.principal.name.to_lowercase();
    state
        .limits
        .check_login(ctx.client_ip, &subject)
        .map_err(ApiError::rate_limited)?;
    let context = ChangePassword::subject();
    let command = ChangePassword {
        current_password: state.seal(&body.current_password, &context)?,
        new_password: state.seal(&body.new_password, &context)?,
    };
    match state
        .command(&ctx, Some(&auth.caller()), command, None)
        .await
    {
        Ok(_) => state.limits.login_succeeded(ctx.client_ip, &subject),
        Err(e) if e.code == IdentityFailure::WrongPassword => {
            state.limits.login_failed(ctx.client_ip, &subject);
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    }
    Ok(HttpResponse::NoContent().finish())
}
