//! The device authorization endpoint of RFC 8628: `POST /oauth/device_authorization`
//! starts a device login. Its polls are the token endpoint's device-code grant
//! ([`crate::routes::oauth::device_code`]).

use actix_web::{HttpRequest, HttpResponse, post, web};
use gatehouse_contracts::commands::{Command, FailureKind};
use gatehouse_contracts::devices::{DeviceMetadata, RequestDeviceAuthorization, display_user_code};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::context::RequestContext;
use crate::errors::{ApiError, OAuthError};
use crate::routes::oauth::parse_form;
use crate::state::AppState;

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
