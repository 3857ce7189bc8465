//! The device-code grant of RFC 8628 (`urn:ietf:params:oauth:grant-type:device_code`,
//! §3.4 and §3.5): a device polls with the code `POST /oauth/device_authorization` gave it.
//!
//! Polls are the load a device flow puts on a server, so a poll is answered from this
//! replica's memory: the device code is checked against the keyed hash the directory holds,
//! the status comes from the directory (decided by `DeviceFacts::poll`, the rule the devices
//! service applies too), and the polling pace from [`crate::pacer::PollPacer`]. Only the one
//! poll that finds the device approved goes to the devices service, which activates the
//! device (an event) exactly once.

use std::time::Instant;

use actix_web::HttpResponse;
use gatehouse_contracts::commands::Command;
use gatehouse_contracts::devices::{PollRefusal, RedeemDeviceCode};
use gatehouse_contracts::failures::DevicesFailure;
use gatehouse_tokens::{DEVICE_CODE_FORMAT, PrincipalKind, SessionSource};
use secrecy::{ExposeSecret, SecretString};

use super::{TokenForm, token_response};
use crate::context::RequestContext;
use crate::errors::{ApiError, OAuthError};
use crate::issuer::Session;
use crate::state::AppState;

/// The grant type of RFC 8628.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The device-code grant: RFC 8628 §3.4 and §3.5.
pub(super) async fn grant(
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
