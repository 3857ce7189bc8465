//! Service accounts: non-interactive principals. Members manage the accounts they
//! created and see no others (404, not 403); admins manage all.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use gatehouse_contracts::identity::{
    CreateServiceAccount, DeleteServiceAccount, Role, SERVICE_ACCOUNT_VIEW, ServiceAccountView,
    UpdateServiceAccount,
};
use gatehouse_contracts::names::{Description, Name};
use gatehouse_eventlog::ListQuery;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::paging::{Page, PageParams};
use super::{decode, find_by_name_or_id, idempotency_key};
use crate::auth::Authenticated;
use crate::context::RequestContext;
use crate::errors::{ApiError, ErrorBody};
use crate::state::AppState;

/// A service account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceAccountResponse {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Whether it may authenticate.
    pub active: bool,
    /// Role of its sessions.
    pub role: Role,
    /// The principal that created and manages it.
    pub owner: Uuid,
    /// The owner's name (`null` when the owner no longer exists).
    pub owner_name: Option<String>,
    /// Created at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
}

impl ServiceAccountResponse {
    /// With the owner's name, from the gateway's directory: a member may not read other
    /// users, so the answer carries the name beside the id.
    pub(crate) fn named(mut self, state: &AppState) -> Self {
        self.owner_name = state
            .directory
            .principal(&self.owner)
            .map(|p| p.name.clone());
        self
    }
}

impl From<ServiceAccountView> for ServiceAccountResponse {
    fn from(v: ServiceAccountView) -> Self {
        Self {
            id: v.id.as_uuid(),
            name: v.name,
            description: v.description,
            active: v.active,
            role: v.role,
            owner: v.owner.as_uuid(),
            owner_name: None,
            created: v.created,
            updated: v.updated,
        }
    }
}

/// A new service account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServiceAccount {
    /// 1–64 of `[A-Za-z0-9._-]`, unique among users and service accounts.
    pub name: Name,
    /// What it is for (at most 1,024 characters).
    pub description: Option<Description>,
    /// Role (default `member`; only admins may ask for `admin`).
    pub role: Option<Role>,
}

/// Changes to a service account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountUpdate {
    /// New description.
    pub description: Option<Description>,
    /// `false` deactivates it: its tokens are refused at once, everywhere.
    pub active: Option<bool>,
    /// New role (admins only).
    pub role: Option<Role>,
}

/// Listing filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServiceAccountFilters {
    /// Exact name.
    pub name: Option<String>,
    /// Active or not.
    pub active: Option<bool>,
}

/// Loads an account the caller may see, or 404.
pub(crate) async fn visible(
    state: &AppState,
    auth: &Authenticated,
    name_or_id: &str,
) -> Result<ServiceAccountView, ApiError> {
    let not_found = || ApiError::not_found(format!("no service account {name_or_id:?}"));
    let doc = find_by_name_or_id(state.views.as_ref(), SERVICE_ACCOUNT_VIEW, name_or_id)
        .await?
        .ok_or_else(not_found)?;
    let view: ServiceAccountView = decode(&doc)?;
    if !auth.caller().may_manage(view.owner) {
        return Err(not_found());
    }
    Ok(view)
}

/// Creates a service account owned by the caller. Send an `Idempotency-Key` header to make
/// retries safe: a retry with the same key returns the first result, whatever happened to
/// the account since.
#[utoipa::path(post, path = "/api/v1/service_accounts", tag = "service_accounts", security(("bearer" = [])),
    request_body = NewServiceAccount,
    params(super::IdempotencyKey),
    responses((status = 201, body = ServiceAccountResponse),
        (status = 403, description = "only admins may ask for the admin role", body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/service_accounts")]
pub async fn create_service_account(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    req: HttpRequest,
    body: web::Json<NewServiceAccount>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let body = body.into_inner();
    let command = CreateServiceAccount {
        name: body.name,
        description: body.description.unwrap_or_default(),
        role: body.role,
    };
    let created = state
        .command(&ctx, Some(&auth.caller()), command, key)
        .await?;
    Ok(created
        .consistency
        .mark(HttpResponse::Created())
        .json(ServiceAccountResponse::from(created.output).named(&state)))
}

/// Lists the service accounts the caller may see.
#[utoipa::path(get, path = "/api/v1/service_accounts", tag = "service_accounts", security(("bearer" = [])),
    params(PageParams, ServiceAccountFilters),
    responses((status = 200, body = Page<ServiceAccountResponse>)))]
#[get("/service_accounts")]
pub async fn list_service_accounts(
    state: web::Data<AppState>,
    auth: Authenticated,
    paging: web::Query<PageParams>,
    filters: web::Query<ServiceAccountFilters>,
) -> Result<HttpResponse, ApiError> {
    let (offset, limit) = paging.window()?;
    let mut query = ListQuery {
        filters: vec![],
        offset,
        limit,
        ..ListQuery::default()
    };
    if !auth.is_admin() {
        query.filters.push((
            "owner".into(),
            serde_json::Value::String(auth.principal.id.to_string()),
        ));
    }
    if let Some(name) = &filters.name {
        query
            .filters
            .push(("name".into(), serde_json::Value::String(name.clone())));
    }
    if let Some(active) = filters.active {
        query
            .filters
            .push(("active".into(), serde_json::Value::Bool(active)));
    }
    let page = state.views.list(SERVICE_ACCOUNT_VIEW, &query).await?;
    let items = page
        .items
        .iter()
        .map(|d| {
            decode::<ServiceAccountView>(d).map(|v| ServiceAccountResponse::from(v).named(&state))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(Page::new(items, offset, limit, page.total)))
}

/// Describes a service account.
#[utoipa::path(get, path = "/api/v1/service_accounts/{name_or_id}", tag = "service_accounts", security(("bearer" = [])),
    params(("name_or_id" = String, Path, description = "service account name or id")),
    responses((status = 200, body = ServiceAccountResponse), (status = 404, body = ErrorBody)))]
#[get("/service_accounts/{name_or_id}")]
pub async fn get_service_account(
    state: web::Data<AppState>,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(ServiceAccountResponse::from(view).named(&state)))
}

/// Changes a service account; `{"active": false}` deactivates it.
#[utoipa::path(patch, path = "/api/v1/service_accounts/{name_or_id}", tag = "service_accounts", security(("bearer" = [])),
    request_body = ServiceAccountUpdate,
    params(("name_or_id" = String, Path, description = "service account name or id")),
    responses((status = 200, body = ServiceAccountResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/service_accounts/{name_or_id}")]
pub async fn update_service_account(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
    body: web::Json<ServiceAccountUpdate>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner()).await?;
    let body = body.into_inner();
    let command = UpdateServiceAccount {
        id: view.id,
        description: body.description,
        active: body.active,
        role: body.role,
    };
    let updated = state
        .command(&ctx, Some(&auth.caller()), command, None)
        .await?;
    Ok(updated
        .consistency
        .mark(HttpResponse::Ok())
        .json(ServiceAccountResponse::from(updated.output).named(&state)))
}

/// Deletes a service account: its tokens die at once and its name is free again.
#[utoipa::path(delete, path = "/api/v1/service_accounts/{name_or_id}", tag = "service_accounts", security(("bearer" = [])),
    params(("name_or_id" = String, Path, description = "service account name or id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
#[delete("/service_accounts/{name_or_id}")]
pub async fn delete_service_account(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner()).await?;
    state
        .command(
            &ctx,
            Some(&auth.caller()),
            DeleteServiceAccount { id: view.id },
            None,
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
