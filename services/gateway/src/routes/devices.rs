//! `/api/v1/devices`: a person's authorized devices (admins see every device), and the
//! approval of a pending device by its user code — the same function the `/device` page
//! uses.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use gatehouse_contracts::commands::CommandFailure;
use gatehouse_contracts::devices::{
    DEVICE_VIEW, DecideDevice, DeleteDevice, DeviceDecision, DeviceStatus, DeviceView,
    DeviceViewer, FindPendingDevice, SetDeviceLock, USER_CODE_ALPHABET, USER_CODE_LEN,
};
use gatehouse_contracts::failures::DevicesFailure;
use gatehouse_contracts::ids::DeviceId;
use gatehouse_eventlog::ListQuery;
use gatehouse_readmodels::devices::status_query;
use gatehouse_tokens::PrincipalKind;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::context::RequestContext;
use crate::errors::{ApiError, ErrorBody};
use crate::routes::decode;
use crate::routes::paging::{Page, PageParams};
use crate::state::AppState;

/// A device as the API shows it. Never a code or a hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceResponse {
    /// Id.
    pub id: Uuid,
    /// `pending`, `verified`, `active`, `locked`, `denied` or `expired`.
    #[schema(value_type = String)]
    pub status: DeviceStatus,
    /// Whether the owner trusts it (30-day instead of 24-hour tokens).
    pub trusted: bool,
    /// The owner's id, once approved.
    pub owner_id: Option<Uuid>,
    /// The owner's name, once approved.
    pub owner: Option<String>,
    /// The OAuth client that asked.
    pub client_id: String,
    /// The scope asked for.
    pub scope: Option<String>,
    /// The device's host name, as it said.
    pub hostname: Option<String>,
    /// Its operating system, as it said.
    pub os: Option<String>,
    /// The client's version, as it said.
    pub client_version: Option<String>,
    /// The address it asked from.
    pub ip_address: Option<String>,
    /// When it asked.
    pub created: DateTime<Utc>,
    /// When a person approved it.
    pub verified_at: Option<DateTime<Utc>>,
    /// When it logged in (redeemed its code).
    pub last_login: Option<DateTime<Utc>>,
    /// When the authorization lapses (pending, verified) or the session ends (active).
    pub expires: DateTime<Utc>,
}

impl DeviceResponse {
    fn new(state: &AppState, v: DeviceView, now: DateTime<Utc>) -> Self {
        let owner_id = v.facts.owner.map(|o| o.as_uuid());
        let owner = owner_id
            .and_then(|id| state.directory.principal(&id))
            .map(|p| p.name.clone());
        Self {
            id: v.id.as_uuid(),
            status: v.facts.status(now),
            trusted: v.facts.trusted,
            owner_id,
            owner,
            client_id: v.client_id,
            scope: v.scope,
            hostname: v.metadata.hostname,
            os: v.metadata.os,
            client_version: v.metadata.client_version,
            ip_address: v.metadata.ip_address,
            created: v.created,
            verified_at: v.facts.verified_at,
            last_login: v.facts.activated_at,
            expires: v.facts.ends_at(),
        }
    }
}

/// Listing filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceFilters {
    /// Only devices in this status.
    #[param(value_type = Option<DeviceStatus>, inline)]
    pub status: Option<String>,
}

/// What a user code can be (see `normalize_user_code`): eight letters of the user-code
/// alphabet, in any case, with dashes and spaces anywhere.
fn user_code_schema() -> utoipa::openapi::Object {
    let letters = String::from_utf8_lossy(USER_CODE_ALPHABET);
    let letter = format!("[{letters}{}]", letters.to_ascii_lowercase());
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(format!("^[- ]*({letter}[- ]*){{{USER_CODE_LEN}}}$")))
        .description(Some(
            "The code the device shows, `XXXX-XXXX` (case, dashes and spaces do not matter).",
        ))
        .build()
}

/// A person's answer to a pending device, by its user code.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    /// The code the device shows, `XXXX-XXXX` (case and dash do not matter).
    #[schema(schema_with = user_code_schema)]
    pub user_code: String,
    /// Trust the device: its token lives 30 days instead of 24 hours.
    #[serde(default)]
    pub trusted_device: bool,
    /// Refuse the device instead of approving it.
    #[serde(default)]
    pub deny: bool,
}

/// The device `id` if `auth` may see it (its owner, or an admin); 404 otherwise.
async fn visible(
    state: &AppState,
    auth: &Authenticated,
    id: DeviceId,
) -> Result<DeviceView, ApiError> {
    let not_found = || ApiError::not_found("no such device");
    let doc = state
        .views
        .get(DEVICE_VIEW, id.as_uuid())
        .await?
        .ok_or_else(not_found)?;
    let view: DeviceView = decode(&doc)?;
    if DeviceViewer::of(&auth.caller()).may_see(&view.facts) {
        Ok(view)
    } else {
        Err(not_found())
    }
}

async fn respond(
    state: &AppState,
    auth: &Authenticated,
    id: DeviceId,
) -> Result<HttpResponse, ApiError> {
    let view = visible(state, auth, id).await?;
    Ok(HttpResponse::Ok().json(DeviceResponse::new(state, view, state.clock.now())))
}

/// Lists the caller's devices (an admin's: every device), newest first.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])),
    params(PageParams, DeviceFilters),
    responses((status = 200, body = Page<DeviceResponse>), (status = 422, description = "unknown status", body = ErrorBody)))]
#[get("/devices")]
pub async fn list_devices(
    state: web::Data<AppState>,
    auth: Authenticated,
    paging: web::Query<PageParams>,
    filters: web::Query<DeviceFilters>,
) -> Result<HttpResponse, ApiError> {
    let (offset, limit) = paging.window()?;
    let wanted = match filters.status.as_deref() {
        None => None,
        Some(s) => Some(
            serde_json::from_value::<DeviceStatus>(serde_json::Value::String(s.to_owned()))
                .map_err(|_| {
                    ApiError::invalid(format!(
                        "unknown status {s:?}: use pending, verified, active, locked, denied or expired"
                    ))
                })?,
        ),
    };
    let now = state.clock.now();
    let mut query = ListQuery {
        newest_first: true,
        offset,
        limit,
        ..ListQuery::default()
    };
    if let Some(owner) = DeviceViewer::of(&auth.caller()).listed_owner() {
        query
            .filters
            .push(("owner_id".to_owned(), serde_json::json!(owner)));
    }
    if let Some(wanted) = wanted {
        status_query(&mut query, wanted, now);
    }
    let page = state.views.list(DEVICE_VIEW, &query).await?;
    let total = page.total;
    let items = page
        .items
        .iter()
        .map(|doc| decode(doc).map(|view| DeviceResponse::new(&state, view, now)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(Page::new(items, offset, limit, total)))
}

/// Describes a device.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "device id")),
    responses((status = 200, body = DeviceResponse), (status = 404, body = ErrorBody)))]
#[get("/devices/{id}")]
pub async fn get_device(
    state: web::Data<AppState>,
    auth: Authenticated,
    path: web::Path<DeviceId>,
) -> Result<HttpResponse, ApiError> {
    respond(&state, &auth, path.into_inner()).await
}

async fn set_lock(
    state: &AppState,
    ctx: &RequestContext,
    auth: &Authenticated,
    id: DeviceId,
    locked: bool,
) -> Result<HttpResponse, ApiError> {
    visible(state, auth, id).await?;
    state
        .command(
            ctx,
            Some(&auth.caller()),
            SetDeviceLock { id, locked },
            None,
        )
        .await?;
    respond(state, auth, id).await
}

/// Locks a device: its token is refused on every gateway replica when this returns.
#[utoipa::path(post, path = "/api/v1/devices/{id}/lock", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "device id")),
    responses((status = 200, body = DeviceResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/devices/{id}/lock")]
pub async fn lock_device(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<DeviceId>,
) -> Result<HttpResponse, ApiError> {
    set_lock(&state, &ctx, &auth, path.into_inner(), true).await
}

/// Unlocks a device: its token, if not expired, works again.
#[utoipa::path(post, path = "/api/v1/devices/{id}/unlock", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "device id")),
    responses((status = 200, body = DeviceResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/devices/{id}/unlock")]
pub async fn unlock_device(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<DeviceId>,
) -> Result<HttpResponse, ApiError> {
    set_lock(&state, &ctx, &auth, path.into_inner(), false).await
}

/// Deletes a device: its token is refused everywhere when this returns.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "device id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
#[delete("/devices/{id}")]
pub async fn delete_device(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<DeviceId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    visible(&state, &auth, id).await?;
    state
        .command(&ctx, Some(&auth.caller()), DeleteDevice { id }, None)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Approves or denies the pending device showing `user_code`, as the signed-in person.
/// Wrong codes are counted per person and address and answered 429 past a few.
pub async fn decide_device(
    state: &AppState,
    ctx: &RequestContext,
    auth: &Authenticated,
    user_code: &str,
    decision: DeviceDecision,
) -> Result<DeviceId, ApiError> {
    let subject = guessing_subject(auth)?;
    let command = DecideDevice {
        user_code: user_code.to_owned(),
        decision,
    };
    counted(
        state,
        ctx,
        &subject,
        state.command(ctx, Some(&auth.caller()), command, None),
    )
    .await
    .map(|accepted| accepted.output)
}

/// The pending device showing `user_code`, to show the person what is asking. Counts as
/// a guess like a decision.
pub async fn find_pending_device(
    state: &AppState,
    ctx: &RequestContext,
    auth: &Authenticated,
    user_code: &str,
) -> Result<DeviceView, ApiError> {
    let subject = guessing_subject(auth)?;
    let command = FindPendingDevice {
        user_code: user_code.to_owned(),
    };
    let id = counted(
        state,
        ctx,
        &subject,
        state.command(ctx, Some(&auth.caller()), command, None),
    )
    .await?
    .output;
    let doc = state
        .views
        .get(DEVICE_VIEW, id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("no such device"))?;
    decode(&doc)
}

fn guessing_subject(auth: &Authenticated) -> Result<String, ApiError> {
    if auth.principal.kind != PrincipalKind::User {
        return Err(ApiError::forbidden("only a person can approve a device"));
    }
    Ok(format!("user-code:{}", auth.principal.id))
}

/// Runs a user-code command under the wrong-code limiter (`subject`: the person).
async fn counted<T>(
    state: &AppState,
    ctx: &RequestContext,
    subject: &str,
    command: impl std::future::Future<Output = Result<T, CommandFailure<DevicesFailure>>>,
) -> Result<T, ApiError> {
    if let Err(wait) = state.limits.check_user_code(ctx.client_ip, subject) {
        return Err(ApiError {
            message: "too many wrong codes".to_owned(),
            ..ApiError::rate_limited(wait)
        });
    }
    match command.await {
        Err(e) if e.code == DevicesFailure::InvalidUserCode => {
            state.limits.user_code_failed(ctx.client_ip, subject);
            Err(e.into())
        }
        other => Ok(other?),
    }
}

/// Approves (optionally trusting the device) or denies a pending device by its user code.
#[utoipa::path(post, path = "/api/v1/devices/verify", tag = "devices", security(("bearer" = [])),
    request_body = Verification,
    responses((status = 200, body = DeviceResponse), (status = 403, description = "only a person can approve a device", body = ErrorBody),
        (status = 404, description = "no pending device has this code", body = ErrorBody)))]
#[post("/devices/verify")]
pub async fn verify_device(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    body: web::Json<Verification>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let decision = if body.deny {
        DeviceDecision::Deny
    } else {
        DeviceDecision::Approve {
            trusted: body.trusted_device,
        }
    };
    let id = decide_device(&state, &ctx, &auth, &body.user_code, decision).await?;
    let doc = state
        .views
        .get(DEVICE_VIEW, id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("no such device"))?;
    let view: DeviceView = decode(&doc)?;
    Ok(HttpResponse::Ok().json(DeviceResponse::new(&state, view, state.clock.now())))
}

/// A user code to look up.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    /// The code the device shows, `XXXX-XXXX` (case and dash do not matter).
    #[schema(schema_with = user_code_schema)]
    pub user_code: String,
}

/// Shows the pending device with `user_code` (what is asking: host, OS, client, address,
/// when) without deciding, so that a terminal can show what it is about to approve. Counts
/// as a guess, like a decision.
#[utoipa::path(post, path = "/api/v1/devices/lookup", tag = "devices", security(("bearer" = [])),
    request_body = Lookup,
    responses((status = 200, body = DeviceResponse), (status = 403, description = "only a person can approve a device", body = ErrorBody),
        (status = 404, description = "no pending device has this code", body = ErrorBody)))]
#[post("/devices/lookup")]
pub async fn lookup_device(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    body: web::Json<Lookup>,
) -> Result<HttpResponse, ApiError> {
    let view = find_pending_device(&state, &ctx, &auth, &body.user_code).await?;
    Ok(HttpResponse::Ok().json(DeviceResponse::new(&state, view, state.clock.now())))
}
