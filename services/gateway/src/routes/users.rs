//! Users (admins only).

use actix_web::{HttpRequest, HttpResponse, get, patch, post, web};
use chrono::{DateTime, Utc};
use gatehouse_contracts::commands::Command;
use gatehouse_contracts::identity::{CreateUser, Role, USER_VIEW, UpdateUser, UserView};
use gatehouse_contracts::names::Name;
use gatehouse_eventlog::ListQuery;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::paging::{Page, PageParams};
use super::{decode, find_by_name_or_id, idempotency_key};
use crate::auth::Authenticated;
use crate::context::RequestContext;
use crate::errors::{ApiError, ErrorBody};
use crate::state::AppState;

/// A user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserResponse {
    /// Id.
    pub id: Uuid,
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Whether the user may log in.
    pub active: bool,
    /// Created at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
}

impl From<UserView> for UserResponse {
    fn from(v: UserView) -> Self {
        Self {
            id: v.id.as_uuid(),
            name: v.name,
            role: v.role,
            active: v.active,
            created: v.created,
            updated: v.updated,
        }
    }
}

/// A new user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name: 1–64 of `[A-Za-z0-9._-]`, unique among users and service accounts.
    pub name: Name,
    /// Initial password (8 to 1,024 characters).
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 1024)]
    pub password: SecretString,
    /// Role (default `member`).
    pub role: Option<Role>,
}

/// Changes to a user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// New role.
    pub role: Option<Role>,
    /// Activate or deactivate (deactivation revokes every token at once).
    pub active: Option<bool>,
}

/// Listing filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilters {
    /// Exact name.
    pub name: Option<String>,
    /// Active or not.
    pub active: Option<bool>,
}

async fn load(state: &AppState, name_or_id: &str) -> Result<UserView, ApiError> {
    let doc = find_by_name_or_id(state.views.as_ref(), USER_VIEW, name_or_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {name_or_id:?}")))?;
    decode(&doc)
}

/// Creates a user. Send an `Idempotency-Key` header to make retries safe: a retry with the
/// same key (and the same name and role) returns the first result.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])), request_body = NewUser,
    params(super::IdempotencyKey),
    responses((status = 201, body = UserResponse), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/users")]
pub async fn create_user(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    req: HttpRequest,
    body: web::Json<NewUser>,
) -> Result<HttpResponse, ApiError> {
    auth.require_admin()?;
    let key = idempotency_key(&req)?;
    let body = body.into_inner();
    let password = state.seal(&body.password, &CreateUser::subject())?;
    let command = CreateUser {
        name: body.name,
        role: body.role.unwrap_or(Role::Member),
        password,
    };
    let created = state
        .command(&ctx, Some(&auth.caller()), command, key)
        .await?;
    Ok(created
        .consistency
        .mark(HttpResponse::Created())
        .json(UserResponse::from(created.output)))
}

/// Lists users.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])), params(PageParams, UserFilters),
    responses((status = 200, body = Page<UserResponse>), (status = 403, body = ErrorBody)))]
#[get("/users")]
pub async fn list_users(
    state: web::Data<AppState>,
    auth: Authenticated,
    paging: web::Query<PageParams>,
    filters: web::Query<UserFilters>,
) -> Result<HttpResponse, ApiError> {
    auth.require_admin()?;
    let (offset, limit) = paging.window()?;
    let mut query = ListQuery {
        filters: vec![],
        offset,
        limit,
        ..ListQuery::default()
    };
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
    let page = state.views.list(USER_VIEW, &query).await?;
    let items = page
        .items
        .iter()
        .map(|d| decode::<UserView>(d).map(UserResponse::from))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(Page::new(items, offset, limit, page.total)))
}

/// Describes a user.
#[utoipa::path(get, path = "/api/v1/users/{name_or_id}", tag = "users", security(("bearer" = [])),
    params(("name_or_id" = String, Path, description = "user name or id")),
    responses((status = 200, body = UserResponse), (status = 404, body = ErrorBody)))]
#[get("/users/{name_or_id}")]
pub async fn get_user(
    state: web::Data<AppState>,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name_or_id = path.into_inner();
    let view = load(&state, &name_or_id).await?;
    // Members may look themselves up, nobody else.
    if !auth.is_admin() && view.id.as_uuid() != auth.principal.id {
        return Err(ApiError::not_found(format!("no user {name_or_id:?}")));
    }
    Ok(HttpResponse::Ok().json(UserResponse::from(view)))
}

/// Changes a user's role or active flag.
#[utoipa::path(patch, path = "/api/v1/users/{name_or_id}", tag = "users", security(("bearer" = [])), request_body = UserUpdate,
    params(("name_or_id" = String, Path, description = "user name or id")),
    responses((status = 200, body = UserResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[patch("/users/{name_or_id}")]
pub async fn update_user(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
    body: web::Json<UserUpdate>,
) -> Result<HttpResponse, ApiError> {
    auth.require_admin()?;
    let view = load(&state, &path.into_inner()).await?;
    let body = body.into_inner();
    let command = UpdateUser {
        user_id: view.id,
        role: body.role,
        active: body.active,
    };
    let updated = state
        .command(&ctx, Some(&auth.caller()), command, None)
        .await?;
    Ok(updated
        .consistency
        .mark(HttpResponse::Ok())
        .json(UserResponse::from(updated.output)))
}
