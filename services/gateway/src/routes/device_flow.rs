//! The device authorization grant (RFC 8628): `POST /oauth/device_authorization` and the
//! `urn:ietf:params:oauth:grant-type:device_code` grant of the token endpoint.
//!
//! Polls are the load a device flow puts on a server, so a poll is answered from this
//! replica's memory: the device code is checked against the keyed hash the directory holds,
//! the status comes from the directory, and the polling pace from [`crate::pacer::PollPacer`]. Only the
//! one poll that finds the device approved goes to the devices service, which activates
//! the device (an event) exactly once.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, post, web};
use gatehouse_contracts::commands::{Command, FailureKind};
use gatehouse_contracts::devices::{
    DeviceMetadata, PollRefusal, RedeemDeviceCode, RequestDeviceAuthorization, display_user_code,
};
use gatehouse_contracts::failures::DevicesFailure;
use gatehouse_tokens::{DEVICE_CODE_FORMAT, PrincipalKind, SessionSource};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::context::RequestContext;
use crate::errors::{ApiError, OAuthError};
use crate::issuer::Session;
use crate::routes::oauth::{TokenForm, parse_form, token_response};
use crate::state::AppState;

/// The grant type of RFC 8628.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The form of `POST /oauth/device_authorization`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeviceAuthorizationForm {
    /// The client asking (the Gatehouse CLI sends `gatehouse-cli`).
    pub client_id: Option<String>,
    /// Requested scope.
    pub scope: Option<String>,
    /// Gatehouse extension: the device's host name, shown to the approver.
    pub hostname: Option<String>,
    /// Gatehouse extension: the device's operating system.
    pub os: Option<String>,
    /// Gatehouse extension: the client's version.
    pub client_version: Option<String>,
}

/// RFC 8628 §3.2.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceAuthorizationResponse {
    /// The code the device polls with.
    pub device_code: String,
    /// The code the person types, `XXXX-XXXX`.
    pub user_code: String,
    /// Where the person goes.
    pub verification_uri: String,
    /// The same with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds until the codes lapse.
    pub expires_in: u64,
    /// Seconds to wait between polls.
    pub interval: u32,
}

/// Starts a device authorization (RFC 8628 §3.1).
#[utoipa::path(
    post, path = "/oauth/device_authorization", tag = "oauth",
    request_body(content = DeviceAuthorizationForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = DeviceAuthorizationResponse),
        (status = 400, description = "RFC 6749 error", body = OAuthError),
        (status = 429, description = "too many new authorizations from this address (`slow_down`, with Retry-After)", body = OAuthError),
    )
)]
#[post("/oauth/device_authorization")]
pub async fn device_authorization(
    state: web::Data<AppState>,
    ctx: RequestContext,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    let form: DeviceAuthorizationForm = parse_form(&req, &body)?;
    let client_id = form
        .client_id
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| OAuthError::new("invalid_client", "client_id is required"))?;
    if let Err(wait) = state.limits.start_device(ctx.client_ip) {
        return Err(OAuthError::new(
            "slow_down",
            format!("too many device authorizations from this address: try again in {wait} s"),
        )
        .status(429)
        .retry_after(wait));
    }
    let command = RequestDeviceAuthorization {
        client_id,
        scope: form.scope,
        metadata: DeviceMetadata {
            hostname: form.hostname,
            os: form.os,
            client_version: form.client_version,
            ip_address: ctx.client_ip.map(|ip| ip.to_string()),
        },
    };
    let accepted = state
        .command(&ctx, None, command, None)
        .await
        .map_err(|e| match e.kind {
            // What the device sent is not acceptable (e.g. a client_id that is only control
            // characters, which the service strips): the client's error, not ours.
            FailureKind::Invalid => OAuthError::new("invalid_request", e.message),
            _ => OAuthError::new("temporarily_unavailable", ApiError::from(e).message).status(503),
        })?;
    let issued = accepted.output;
    let device_code = state
        .sealer
        .open(
            &issued.device_code,
            &RequestDeviceAuthorization::seal_context("device_code"),
        )
        .map_err(|_| {
            OAuthError::new("server_error", "the device code cannot be read").status(500)
        })?;
    let base = state.settings.issuer.trim_end_matches('/');
    let user_code = display_user_code(&issued.user_code);
    // Rounded up: the command took a few milliseconds of the lifetime already.
    let left_ms = (issued.expires_at - state.clock.now())
        .num_milliseconds()
        .max(0)
        .unsigned_abs();
    let expires_in = left_ms.div_ceil(1000);
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(DeviceAuthorizationResponse {
            device_code: device_code.expose_secret().to_owned(),
            verification_uri: format!("{base}/device"),
            verification_uri_complete: format!("{base}/device?user_code={user_code}"),
            user_code,
            expires_in,
            interval: issued.interval_seconds,
        }))
}

/// The device-code grant: RFC 8628 §3.4 and §3.5.
pub async fn device_code_grant(
    state: &AppState,
    ctx: &RequestContext,
    form: TokenForm,
) -> Result<HttpResponse, OAuthError> {
    let code = form
        .device_code
        .ok_or_else(|| OAuthError::new("invalid_request", "missing parameter device_code"))?;
    let client_id = form
        .client_id
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::new("invalid_client", "client_id is required"))?;
    let invalid = || {
        OAuthError::new(
            "invalid_grant",
            "the device code is invalid or was already used",
        )
    };
    let id = DEVICE_CODE_FORMAT
        .parse(code.expose_secret())
        .map_err(|_| invalid())?
        .key_id;
    state.directory.loaded()?;
    let device = state.directory.device(&id).ok_or_else(invalid)?;
    if !state
        .device_codes
        .check_device_code(code.expose_secret(), &device.device_code_hash)
    {
        return Err(invalid());
    }
    if device.client_id != client_id {
        return Err(OAuthError::new(
            "invalid_client",
            "the device code was issued to another client",
        ));
    }
    if let Err(interval) = state
        .device_polls
        .poll(id, device.interval_seconds, Instant::now())
    {
        return Err(OAuthError::new(
            "slow_down",
            format!("polling too fast: wait {interval} s between polls"),
        ));
    }
    if let Err(refusal) = device.facts.poll(state.clock.now()) {
        let description = match refusal {
            PollRefusal::AuthorizationPending => "the person has not approved this device yet",
            PollRefusal::AccessDenied => "the authorization was denied",
            PollRefusal::ExpiredToken => "the device code has expired",
            PollRefusal::InvalidGrant => return Err(invalid()),
        };
        return Err(OAuthError::new(refusal.as_str(), description));
    }
    redeem(state, ctx, &code, client_id, form.scope).await
}

async fn redeem(
    state: &AppState,
    ctx: &RequestContext,
    code: &SecretString,
    client_id: String,
    scope: Option<String>,
) -> Result<HttpResponse, OAuthError> {
    let sealed = state
        .seal(code, &RedeemDeviceCode::seal_context("device_code"))
        .map_err(|_| OAuthError::new("server_error", "an unexpected error occurred").status(500))?;
    let redeemed = state
        .command(
            ctx,
            None,
            RedeemDeviceCode {
                device_code: sealed,
            },
            None,
        )
        .await
        .map_err(|e| match e.code {
            DevicesFailure::AuthorizationPending => {
                OAuthError::new("authorization_pending", e.message)
            }
            DevicesFailure::AccessDenied => OAuthError::new("access_denied", e.message),
            DevicesFailure::ExpiredToken => OAuthError::new("expired_token", e.message),
            DevicesFailure::InvalidGrant => OAuthError::new("invalid_grant", e.message),
            _ => OAuthError::new("temporarily_unavailable", ApiError::from(e).message)
                .status(503)
                .retry_after(1),
        })?
        .output;
    state.device_polls.forget(&redeemed.device_id.as_uuid());
    let owner = redeemed.owner.as_uuid();
    let principal = state
        .directory
        .principal(&owner)
        .filter(|p| p.active && p.kind == PrincipalKind::User)
        .ok_or_else(|| {
            OAuthError::new("access_denied", "the approving user is no longer active")
        })?;
    let ttl = (redeemed.token_expires_at - state.clock.now())
        .to_std()
        .unwrap_or_default();
    let session = Session {
        subject: owner,
        kind: PrincipalKind::User,
        epoch: principal.epoch,
        source: SessionSource::Device {
            id: redeemed.device_id,
        },
        client_id,
        scope,
        ttl,
    };
    Ok(token_response(state, session))
}
