//! API keys of a service account. Whoever may manage the account may manage its keys;
//! everyone else gets 404 for both. A key's secret appears in exactly two responses: the
//! one that creates it (answered again to a retry with the same `Idempotency-Key`) and the
//! one that rotates it.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use gatehouse_contracts::commands::Command;
use gatehouse_contracts::identity::ServiceAccountView;
use gatehouse_contracts::keys::{
    API_KEY_VIEW, ApiKeyView, CreateApiKey, DeleteApiKey, IssuedKey, RetainedSecret, RotateApiKey,
    UpdateApiKey,
};
use gatehouse_contracts::names::{Description, Name};
use gatehouse_eventlog::ListQuery;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::paging::{Page, PageParams};
use super::service_accounts::visible;
use super::{decode, find_by_name_or_id, idempotency_key};
use crate::auth::Authenticated;
use crate::context::RequestContext;
use crate::errors::{ApiError, ErrorBody};
use crate::state::AppState;

/// An API key (never its secret or a hash of it).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyResponse {
    /// Id (also the public part of the key string).
    pub id: Uuid,
    /// Name, unique within the service account.
    pub name: String,
    /// Description.
    pub description: String,
    /// The service account whose sessions it opens.
    pub service_account_id: Uuid,
    /// That service account's name.
    pub service_account_name: Option<String>,
    /// Whether it works now (false when deactivated or expired).
    pub active: bool,
    /// Whether it has reached its expiry.
    pub expired: bool,
    /// Created at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
    /// Last rotated at.
    pub last_rotated: Option<DateTime<Utc>>,
    /// Last used to authenticate (at most one-minute resolution).
    pub last_used: Option<DateTime<Utc>>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// The current secret's generation (1, then +1 per rotation); in a create or rotate
    /// response, the generation of the key in that response.
    pub generation: u32,
    /// Previous secrets still inside their retention window.
    pub retained_secrets: Vec<RetainedSecret>,
}

impl ApiKeyResponse {
    /// With the service account's name, from the gateway's directory.
    fn named(mut self, state: &AppState) -> Self {
        self.service_account_name = state
            .directory
            .principal(&self.service_account_id)
            .map(|p| p.name.clone());
        self
    }

    fn new(v: ApiKeyView, last_used: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        let expired = v.expired || v.validity.expires_at.is_some_and(|at| at <= now);
        Self {
            id: v.id.as_uuid(),
            name: v.name,
            description: v.description,
            service_account_id: v.service_account_id.as_uuid(),
            service_account_name: None,
            active: v.validity.active && !expired,
            expired,
            created: v.created,
            updated: v.updated,
            last_rotated: v.last_rotated,
            last_used,
            expires_at: v.validity.expires_at,
            generation: v.validity.generation,
            retained_secrets: v
                .validity
                .retained
                .into_iter()
                .filter(|r| r.valid_until > now)
                .collect(),
        }
    }
}

/// A key together with its secret: shown once, at creation or rotation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeyWithSecret {
    /// The key.
    #[serde(flatten)]
    pub key: ApiKeyResponse,
    /// The API key string. Store it now: it cannot be retrieved again.
    #[serde(rename = "key")]
    pub secret: String,
}

/// A new key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// 1–64 of `[A-Za-z0-9._-]`, unique within the service account.
    pub name: Name,
    /// What it is for.
    pub description: Option<Description>,
    /// Lifetime in seconds (default: no expiry; at most ten years).
    #[schema(minimum = 1, maximum = 316_224_000)]
    pub expires_in_seconds: Option<u64>,
}

/// Changes to a key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyUpdate {
    /// `false` deactivates it: it and its tokens are refused at once, everywhere.
    pub active: Option<bool>,
    /// New description.
    pub description: Option<Description>,
    /// New lifetime from now, in seconds (at most ten years).
    #[schema(minimum = 1, maximum = 316_224_000)]
    pub expires_in_seconds: Option<u64>,
    /// New expiry; `null` removes it.
    #[serde(
        default,
        deserialize_with = "gatehouse_contracts::nullable::deserialize"
    )]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// A rotation.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// How many minutes the previous secret keeps working (default 0: not at all; at
    /// most 30 days).
    #[schema(maximum = 43_200)]
    pub retain_period_minutes: Option<u32>,
    /// The same in seconds, for short overlaps; give one of the two, not both.
    #[schema(maximum = 2_592_000)]
    pub retain_period_seconds: Option<u32>,
}

impl Rotation {
    /// The retention window in seconds.
    fn retain_seconds(&self) -> Result<u32, ApiError> {
        match (self.retain_period_minutes, self.retain_period_seconds) {
            (Some(_), Some(_)) => Err(ApiError::bad_request(
                "give retain_period_minutes or retain_period_seconds, not both",
            )),
            (Some(minutes), None) => minutes
                .checked_mul(60)
                .ok_or_else(|| ApiError::bad_request("retain_period_minutes is too large")),
            (None, seconds) => Ok(seconds.unwrap_or(0)),
        }
    }
}

/// Listing filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApiKeyFilters {
    /// Exact name.
    pub name: Option<String>,
    /// Active or not.
    pub active: Option<bool>,
}

/// A key of an account the caller may see, or 404.
async fn visible_key(
    state: &AppState,
    account: &ServiceAccountView,
    name_or_id: &str,
) -> Result<ApiKeyView, ApiError> {
    let not_found = || ApiError::not_found(format!("no API key {name_or_id:?}"));
    let found = match Uuid::parse_str(name_or_id) {
        Ok(_) => find_by_name_or_id(state.views.as_ref(), API_KEY_VIEW, name_or_id).await?,
        Err(_) => {
            let name = Name::parse(name_or_id).map_err(|_| not_found())?;
            let query = ListQuery {
                filters: vec![
                    ("service_account_id".into(), serde_json::json!(account.id)),
                    ("name".into(), serde_json::json!(name.to_string())),
                ],
                offset: 0,
                limit: 1,
                ..ListQuery::default()
            };
            state.views.list(API_KEY_VIEW, &query).await?.items.pop()
        }
    };
    let view: ApiKeyView = decode(&found.ok_or_else(not_found)?)?;
    if view.service_account_id != account.id {
        return Err(not_found());
    }
    Ok(view)
}

async fn respond(state: &AppState, view: ApiKeyView) -> Result<ApiKeyResponse, ApiError> {
    let id = view.id.as_uuid();
    let used = state.views.last_used(API_KEY_VIEW, &[id]).await?;
    Ok(ApiKeyResponse::new(view, used.get(&id).copied(), state.clock.now()).named(state))
}

/// The answer to a command that handed out a secret, built from its own output: `key`
/// (the key as the command left it) and the secret, opened from its seal.
fn with_secret<C: Command>(
    state: &AppState,
    key: ApiKeyResponse,
    issued: &IssuedKey,
) -> Result<ApiKeyWithSecret, ApiError> {
    let secret = state
        .sealer
        .open(&issued.key, &C::seal_context("reply"))
        .map_err(|e| ApiError::internal(&e))?;
    Ok(ApiKeyWithSecret {
        key,
        secret: secrecy::ExposeSecret::expose_secret(&secret).to_owned(),
    })
}

/// Creates a key; the response is the only place its secret ever appears. Send an
/// `Idempotency-Key` header to make retries safe: a retry with the same key within 24 hours
/// returns the same key (and secret) again; without it a retry gets 409.
#[utoipa::path(post, path = "/api/v1/service_accounts/{sa}/api_keys", tag = "api_keys", security(("bearer" = [])),
    request_body = NewApiKey,
    params(("sa" = String, Path, description = "service account name or id"),
        ("Idempotency-Key" = Option<String>, Header, description = "makes retries safe: the same key is answered again for 24 h")),
    responses((status = 201, body = ApiKeyWithSecret), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
#[post("/service_accounts/{sa}/api_keys")]
pub async fn create_api_key(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<NewApiKey>,
) -> Result<HttpResponse, ApiError> {
    let idempotency = idempotency_key(&req)?;
    let account = visible(&state, &auth, &path.into_inner()).await?;
    let body = body.into_inner();
    let command = CreateApiKey {
        service_account_id: account.id,
        name: body.name,
        description: body.description.unwrap_or_default(),
        expires_in_seconds: body.expires_in_seconds,
    };
    let created = state
        .command(&ctx, Some(&auth.caller()), command, idempotency)
        .await?;
    // A new key was never used; a replay describes it as it was created, too.
    let key = ApiKeyResponse::new(created.output.key, None, state.clock.now()).named(&state);
    let answer = with_secret::<CreateApiKey>(&state, key, &created.output.issued)?;
    Ok(created
        .consistency
        .mark(no_store(HttpResponse::Created()))
        .json(answer))
}

fn no_store(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    builder.insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"));
    builder
}

/// Lists an account's keys.
#[utoipa::path(get, path = "/api/v1/service_accounts/{sa}/api_keys", tag = "api_keys", security(("bearer" = [])),
    params(("sa" = String, Path, description = "service account name or id"), PageParams, ApiKeyFilters),
    responses((status = 200, body = Page<ApiKeyResponse>), (status = 404, body = ErrorBody)))]
#[get("/service_accounts/{sa}/api_keys")]
pub async fn list_api_keys(
    state: web::Data<AppState>,
    auth: Authenticated,
    path: web::Path<String>,
    paging: web::Query<PageParams>,
    filters: web::Query<ApiKeyFilters>,
) -> Result<HttpResponse, ApiError> {
    let account = visible(&state, &auth, &path.into_inner()).await?;
    let (offset, limit) = paging.window()?;
    let mut query = ListQuery {
        filters: vec![("service_account_id".into(), serde_json::json!(account.id))],
        offset,
        limit,
        ..ListQuery::default()
    };
    if let Some(name) = &filters.name {
        query.filters.push(("name".into(), serde_json::json!(name)));
    }
    if let Some(active) = filters.active {
        query
            .filters
            .push(("active".into(), serde_json::json!(active)));
    }
    let page = state.views.list(API_KEY_VIEW, &query).await?;
    let views = page
        .items
        .iter()
        .map(decode::<ApiKeyView>)
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<Uuid> = views.iter().map(|v| v.id.as_uuid()).collect();
    let used = state.views.last_used(API_KEY_VIEW, &ids).await?;
    let now = state.clock.now();
    let items = views
        .into_iter()
        .map(|v| {
            let last_used = used.get(&v.id.as_uuid()).copied();
            ApiKeyResponse::new(v, last_used, now).named(&state)
        })
        .collect();
    Ok(HttpResponse::Ok().json(Page::new(items, offset, limit, page.total)))
}

/// Describes a key.
#[utoipa::path(get, path = "/api/v1/service_accounts/{sa}/api_keys/{key}", tag = "api_keys", security(("bearer" = [])),
    params(("sa" = String, Path, description = "service account name or id"), ("key" = String, Path, description = "key name or id")),
    responses((status = 200, body = ApiKeyResponse), (status = 404, body = ErrorBody)))]
#[get("/service_accounts/{sa}/api_keys/{key}")]
pub async fn get_api_key(
    state: web::Data<AppState>,
    auth: Authenticated,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (sa, key) = path.into_inner();
    let account = visible(&state, &auth, &sa).await?;
    let view = visible_key(&state, &account, &key).await?;
    Ok(HttpResponse::Ok().json(respond(&state, view).await?))
}

/// Changes a key: `{"active": false}` deactivates it (its tokens die at once, everywhere),
/// `{"active": true}` reactivates it (older tokens stay dead).
#[utoipa::path(patch, path = "/api/v1/service_accounts/{sa}/api_keys/{key}", tag = "api_keys", security(("bearer" = [])),
    request_body = ApiKeyUpdate,
    params(("sa" = String, Path, description = "service account name or id"), ("key" = String, Path, description = "key name or id")),
    responses((status = 200, body = ApiKeyResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/service_accounts/{sa}/api_keys/{key}")]
pub async fn update_api_key(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<(String, String)>,
    body: web::Json<ApiKeyUpdate>,
) -> Result<HttpResponse, ApiError> {
    let (sa, key) = path.into_inner();
    let account = visible(&state, &auth, &sa).await?;
    let view = visible_key(&state, &account, &key).await?;
    let body = body.into_inner();
    let expires_at = match (body.expires_in_seconds, body.expires_at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give expires_in_seconds or expires_at, not both",
            ));
        }
        (Some(0), None) => return Err(ApiError::invalid("expires_in_seconds must be positive")),
        (Some(seconds), None) => {
            let seconds = i64::try_from(seconds)
                .ok()
                .and_then(chrono::Duration::try_seconds)
                .ok_or_else(|| ApiError::invalid("expires_in_seconds is too large"))?;
            let at = state
                .clock
                .now()
                .checked_add_signed(seconds)
                .ok_or_else(|| ApiError::invalid("expires_in_seconds is too large"))?;
            Some(Some(at))
        }
        (None, at) => at,
    };
    let command = UpdateApiKey {
        service_account_id: account.id,
        id: view.id,
        active: body.active,
        description: body.description,
        expires_at,
    };
    let updated = state
        .command(&ctx, Some(&auth.caller()), command, None)
        .await?;
    let answer = respond(&state, updated.output).await?;
    Ok(updated.consistency.mark(HttpResponse::Ok()).json(answer))
}

/// Rotates a key: the response carries the new secret, once. The previous secret (and
/// tokens obtained with it) keeps working for `retain_period_minutes` (or
/// `retain_period_seconds`), each retained
/// secret for its own window.
#[utoipa::path(post, path = "/api/v1/service_accounts/{sa}/api_keys/{key}/rotate", tag = "api_keys", security(("bearer" = [])),
    request_body = Rotation,
    params(("sa" = String, Path, description = "service account name or id"), ("key" = String, Path, description = "key name or id")),
    responses((status = 200, body = ApiKeyWithSecret), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/service_accounts/{sa}/api_keys/{key}/rotate")]
pub async fn rotate_api_key(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<(String, String)>,
    body: Option<web::Json<Rotation>>,
) -> Result<HttpResponse, ApiError> {
    let (sa, key) = path.into_inner();
    let account = visible(&state, &auth, &sa).await?;
    let view = visible_key(&state, &account, &key).await?;
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    let command = RotateApiKey {
        service_account_id: account.id,
        id: view.id,
        retain_seconds: body.retain_seconds()?,
    };
    let rotated = state
        .command(&ctx, Some(&auth.caller()), command, None)
        .await?;
    let key = respond(&state, rotated.output.key).await?;
    let answer = with_secret::<RotateApiKey>(&state, key, &rotated.output.issued)?;
    Ok(rotated
        .consistency
        .mark(no_store(HttpResponse::Ok()))
        .json(answer))
}

/// Deletes a key: it and its tokens die at once, and its name is free again.
#[utoipa::path(delete, path = "/api/v1/service_accounts/{sa}/api_keys/{key}", tag = "api_keys", security(("bearer" = [])),
    params(("sa" = String, Path, description = "service account name or id"), ("key" = String, Path, description = "key name or id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
#[delete("/service_accounts/{sa}/api_keys/{key}")]
pub async fn delete_api_key(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (sa, key) = path.into_inner();
    let account = visible(&state, &auth, &sa).await?;
    let view = visible_key(&state, &account, &key).await?;
    let command = DeleteApiKey {
        service_account_id: account.id,
        id: view.id,
    };
    state
        .command(&ctx, Some(&auth.caller()), command, None)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
