//! The API-key grant (`urn:gatehouse:params:oauth:grant-type:api-key`, alias `api_key`): a
//! service account exchanges one of its API keys for an access token.

use actix_web::HttpResponse;
use gatehouse_tokens::{PrincipalKind, SessionSource};

use super::{TokenForm, token_response};
use crate::apikeys::KeyError;
use crate::context::RequestContext;
use crate::errors::OAuthError;
use crate::issuer::Session;
use crate::state::AppState;

/// The grant type of the API-key exchange.
pub const API_KEY_GRANT: &str = "urn:gatehouse:params:oauth:grant-type:api-key";

/// Exchanges a service account's API key for an access token that never outlives the key.
pub(super) async fn grant(
    state: &AppState,
    ctx: &RequestContext,
    form: TokenForm,
) -> Result<HttpResponse, OAuthError> {
    let key = form
        .api_key
        .ok_or_else(|| OAuthError::new("invalid_request", "missing parameter api_key"))?;
    let verified = state
        .api_keys
        .authenticate(ctx, &key)
        .await
        .map_err(|e| match e {
            KeyError::RateLimited(wait) => OAuthError::new("too_many_attempts", e.message())
                .status(429)
                .retry_after(wait),
            KeyError::Unavailable(m) => OAuthError::new("temporarily_unavailable", m)
                .status(503)
                .retry_after(1),
            e => OAuthError::new("invalid_grant", e.message()).reason(e.reason()),
        })?;
    let now = state.clock.now();
    // A token never outlives the key it came from.
    let ttl = match verified.expires_at {
        Some(at) => {
            let left = (at - now).to_std().unwrap_or_default();
            state.settings.api_key_token_ttl.min(left)
        }
        None => state.settings.api_key_token_ttl,
    };
    let session = Session {
        subject: verified.principal.id,
        kind: PrincipalKind::ServiceAccount,
        epoch: verified.principal.epoch,
        source: SessionSource::ApiKey {
            id: verified.id,
            generation: verified.generation,
            epoch: verified.epoch,
        },
        client_id: form.client_id.unwrap_or_else(|| "gatehouse-cli".into()),
        scope: form.scope,
        ttl,
    };
    Ok(token_response(state, session))
}
