//! The password grant (RFC 6749 §4.3), and the password check it shares with the device
//! approval page's sign-in.

use actix_web::HttpResponse;
use gatehouse_contracts::commands::{Command, FailureKind};
use gatehouse_contracts::failures::IdentityFailure;
use gatehouse_contracts::identity::AuthenticatePassword;
use gatehouse_tokens::{PrincipalKind, SessionSource};
use secrecy::SecretString;

use super::{TokenForm, required, token_response};
use crate::context::RequestContext;
use crate::errors::{ApiError, OAuthError};
use crate::issuer::Session;
use crate::state::AppState;

/// The password grant (RFC 6749 §4.3): a user's name and password.
pub(super) async fn grant(
    state: &AppState,
    ctx: &RequestContext,
    form: TokenForm,
) -> Result<HttpResponse, OAuthError> {
    let username = required(form.username, "username")?;
    let password = form
        .password
        .ok_or_else(|| OAuthError::new("invalid_request", "missing parameter password"))?;
    let session = password_session(
        state,
        ctx,
        username,
        &password,
        form.client_id.unwrap_or_else(|| "gatehouse-cli".into()),
        form.scope,
        state.settings.password_token_ttl,
    )
    .await?;
    Ok(token_response(state, session))
}

/// Checks a user's password (under the failed-login limiter) and returns the session to
/// mint: the password grant and the device approval page both sign people in with it.
pub async fn password_session(
    state: &AppState,
    ctx: &RequestContext,
    username: String,
    password: &SecretString,
    client_id: String,
    scope: Option<String>,
    ttl: std::time::Duration,
) -> Result<Session, OAuthError> {
    let subject = username.to_lowercase();
    if let Err(wait) = state.limits.check_login(ctx.client_ip, &subject) {
        return Err(OAuthError::new(
            "too_many_attempts",
            format!("too many failed logins from this address; retry in {wait} s"),
        )
        .status(429)
        .retry_after(wait));
    }
    let sealed = state
        .seal(password, &AuthenticatePassword::subject())
        .map_err(|_| OAuthError::new("server_error", "an unexpected error occurred").status(500))?;
    let result = state
        .command(
            ctx,
            None,
            AuthenticatePassword {
                username,
                password: sealed,
            },
            None,
        )
        .await;
    let user = match result {
        Ok(accepted) => accepted.output,
        Err(e)
            if e.kind == FailureKind::Unauthenticated
                || e.code == IdentityFailure::InvalidGrant =>
        {
            state.limits.login_failed(ctx.client_ip, &subject);
            return Err(OAuthError::new(
                "invalid_grant",
                "invalid username or password",
            ));
        }
        Err(e) if e.kind == FailureKind::Unavailable => {
            return Err(OAuthError::new("temporarily_unavailable", e.message)
                .status(503)
                .retry_after(1));
        }
        Err(e) => {
            return Err(OAuthError::new(
                "invalid_request",
                ApiError::from(e).message,
            ));
        }
    };
    state.limits.login_succeeded(ctx.client_ip, &subject);
    Ok(Session {
        subject: user.user_id.as_uuid(),
        kind: PrincipalKind::User,
        epoch: user.epoch,
        source: SessionSource::Password,
        client_id,
        scope,
        ttl,
    })
}
