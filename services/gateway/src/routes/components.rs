//! Stack components: artifact stores, container registries, orchestrators. A component
//! names a connector and a resource and holds no credentials; `credentials` resolves the
//! link and hands out a lease. Its owner and admins manage it; everyone else gets 404.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use gatehouse_contracts::connectors::{
    COMPONENT_VIEW, ComponentLink, ComponentType, ComponentView, ConnectComponent, DeleteComponent,
    DisconnectComponent, RegisterComponent, UpdateComponent, flavors,
};
use gatehouse_contracts::names::Name;
use gatehouse_eventlog::ListQuery;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::connectors::{CredentialsRequest, issue};
use super::decode;
use super::paging::{Page, PageParams};
use crate::auth::Authenticated;
use crate::context::RequestContext;
use crate::errors::{ApiError, ErrorBody};
use crate::state::AppState;

/// A component as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ComponentResponse {
    /// Id.
    pub id: Uuid,
    /// Name, unique within its type.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub component_type: ComponentType,
    /// Flavor (`s3`, `aws`, `kubernetes`).
    pub flavor: String,
    /// Configuration (never credentials).
    #[schema(value_type = Object)]
    pub configuration: Map<String, Value>,
    /// Who registered it.
    pub owner: Uuid,
    /// Its link to a connector and a resource, if connected.
    pub connector: Option<ComponentLink>,
    /// Registered at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
}

impl From<ComponentView> for ComponentResponse {
    fn from(v: ComponentView) -> Self {
        let c = v.component;
        Self {
            id: v.id.as_uuid(),
            name: c.name,
            component_type: c.component_type,
            flavor: c.flavor,
            configuration: c.configuration,
            owner: c.owner.as_uuid(),
            connector: c.connector,
            created: v.created,
            updated: v.updated,
        }
    }
}

/// A component to register.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComponent {
    /// 1–64 of `[A-Za-z0-9._-]`, unique within its type.
    pub name: Name,
    /// `artifact_store`, `container_registry` or `orchestrator`.
    #[serde(rename = "type")]
    pub component_type: ComponentType,
    /// The flavor: `s3` (artifact store), `aws` (container registry), `kubernetes`
    /// (orchestrator).
    pub flavor: String,
    /// Its configuration (an s3 artifact store's `path`: `s3://bucket`; a registry's
    /// `uri`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub configuration: Map<String, Value>,
    /// Connect it at once to this connector (name or id).
    pub connector: Option<String>,
    /// The resource to connect it for (default: what its configuration names, else the
    /// connector's own).
    pub resource_id: Option<String>,
}

/// Changes to a component.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentUpdate {
    /// Merged into the configuration; a key set to `null` is removed.
    #[schema(value_type = Object)]
    pub configuration: Map<String, Value>,
}

/// A connection to make.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// The connector (name or id).
    pub connector: String,
    /// The resource (default: what the component's configuration names, else the
    /// connector's own).
    pub resource_id: Option<String>,
}

/// Optional credentials lifetime for a component.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComponentCredentialsRequest {
    /// The lifetime asked for (seconds), within the connector method's bounds.
    pub expiration_seconds: Option<u64>,
}

/// Listing filters, and the type that disambiguates a name.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ComponentFilters {
    /// Only components of this type.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<ComponentType>)]
    pub component_type: Option<ComponentType>,
}

/// The component `name_or_id` (of `component_type`, when names are ambiguous) if `auth`
/// may manage it, else 404.
async fn visible(
    state: &AppState,
    auth: &Authenticated,
    name_or_id: &str,
    component_type: Option<ComponentType>,
) -> Result<ComponentView, ApiError> {
    let not_found = || ApiError::not_found(format!("no component {name_or_id:?}"));
    let mut candidates = Vec::new();
    if let Ok(id) = Uuid::parse_str(name_or_id) {
        if let Some(doc) = state.views.get(COMPONENT_VIEW, id).await? {
            candidates.push(decode::<ComponentView>(&doc)?);
        }
    } else {
        let mut filters = vec![("name".into(), Value::String(name_or_id.to_owned()))];
        if let Some(t) = component_type {
            filters.push(("component_type".into(), Value::String(t.as_str().into())));
        }
        let query = ListQuery {
            filters,
            offset: 0,
            limit: 10,
            ..ListQuery::default()
        };
        for doc in state.views.list(COMPONENT_VIEW, &query).await?.items {
            candidates.push(decode::<ComponentView>(&doc)?);
        }
    }
    let caller = auth.caller();
    candidates.retain(|c| caller.may_manage(c.component.owner));
    match candidates.len() {
        0 => Err(not_found()),
        1 => Ok(candidates.pop().expect("one")),
        _ => Err(ApiError::invalid(format!(
            "{name_or_id:?} names components of several types; add ?type=..."
        ))),
    }
}

/// Registers a component, connected at once when `connector` is given.
#[utoipa::path(post, path = "/api/v1/components", tag = "components", security(("bearer" = [])),
    request_body = NewComponent,
    responses((status = 201, body = ComponentResponse), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 504, body = ErrorBody)))]
#[post("/components")]
pub async fn register_component(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    body: web::Json<NewComponent>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if flavors(body.component_type)
        .iter()
        .all(|f| *f != body.flavor)
    {
        return Err(ApiError::invalid(format!(
            "flavor: {:?} is not a flavor of {}; it has: {}",
            body.flavor,
            body.component_type,
            flavors(body.component_type).join(", ")
        )));
    }
    let connector = match &body.connector {
        Some(name) => Some(super::connectors::visible(&state, &auth, name).await?.id),
        None => None,
    };
    let command = RegisterComponent {
        name: body.name,
        component_type: body.component_type,
        flavor: body.flavor,
        configuration: body.configuration,
        connector,
        resource_id: body.resource_id,
    };
    let created = state
        .command(&ctx, Some(&auth.caller()), command, None)
        .await?;
    Ok(created
        .consistency
        .mark(HttpResponse::Created())
        .json(ComponentResponse::from(created.output)))
}

/// The caller's components (all, for admins).
#[utoipa::path(get, path = "/api/v1/components", tag = "components", security(("bearer" = [])),
    params(PageParams, ComponentFilters),
    responses((status = 200, body = Page<ComponentResponse>)))]
#[get("/components")]
pub async fn list_components(
    state: web::Data<AppState>,
    auth: Authenticated,
    paging: web::Query<PageParams>,
    filters: web::Query<ComponentFilters>,
) -> Result<HttpResponse, ApiError> {
    let (offset, limit) = paging.window()?;
    let mut query = ListQuery {
        filters: Vec::new(),
        offset,
        limit,
        ..ListQuery::default()
    };
    if !auth.is_admin() {
        query
            .filters
            .push(("owner".into(), Value::String(auth.principal.id.to_string())));
    }
    if let Some(t) = filters.component_type {
        query
            .filters
            .push(("component_type".into(), Value::String(t.as_str().into())));
    }
    let page = state.views.list(COMPONENT_VIEW, &query).await?;
    let items = page
        .items
        .iter()
        .map(|d| decode::<ComponentView>(d).map(ComponentResponse::from))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(Page::new(items, offset, limit, page.total)))
}

/// One component.
#[utoipa::path(get, path = "/api/v1/components/{component}", tag = "components", security(("bearer" = [])),
    params(("component" = String, Path, description = "name or id"), ComponentFilters),
    responses((status = 200, body = ComponentResponse), (status = 404, body = ErrorBody)))]
#[get("/components/{component}")]
pub async fn get_component(
    state: web::Data<AppState>,
    auth: Authenticated,
    path: web::Path<String>,
    filters: web::Query<ComponentFilters>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner(), filters.component_type).await?;
    Ok(HttpResponse::Ok().json(ComponentResponse::from(view)))
}

/// Changes a component's configuration (merged; `null` removes a key).
#[utoipa::path(patch, path = "/api/v1/components/{component}", tag = "components", security(("bearer" = [])),
    request_body = ComponentUpdate,
    params(("component" = String, Path, description = "name or id"), ComponentFilters),
    responses((status = 200, body = ComponentResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[patch("/components/{component}")]
pub async fn update_component(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
    filters: web::Query<ComponentFilters>,
    body: web::Json<ComponentUpdate>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner(), filters.component_type).await?;
    let command = UpdateComponent {
        component: view.id,
        configuration: body.into_inner().configuration,
    };
    let updated = state
        .command(&ctx, Some(&auth.caller()), command, None)
        .await?;
    Ok(updated
        .consistency
        .mark(HttpResponse::Ok())
        .json(ComponentResponse::from(updated.output)))
}

/// Deletes a component.
#[utoipa::path(delete, path = "/api/v1/components/{component}", tag = "components", security(("bearer" = [])),
    params(("component" = String, Path, description = "name or id"), ComponentFilters),
    responses((status = 204), (status = 404, body = ErrorBody)))]
#[delete("/components/{component}")]
pub async fn delete_component(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
    filters: web::Query<ComponentFilters>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner(), filters.component_type).await?;
    let deleted = state
        .command(
            &ctx,
            Some(&auth.caller()),
            DeleteComponent { component: view.id },
            None,
        )
        .await?;
    Ok(deleted.consistency.mark(HttpResponse::NoContent()).finish())
}

/// Links a component to a connector for one resource, after checking at the cloud that
/// the connector reaches it (422 with the reason when it does not).
#[utoipa::path(post, path = "/api/v1/components/{component}/connect", tag = "components", security(("bearer" = [])),
    request_body = ConnectRequest,
    params(("component" = String, Path, description = "name or id"), ComponentFilters),
    responses((status = 200, body = ComponentResponse), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 504, body = ErrorBody)))]
#[post("/components/{component}/connect")]
pub async fn connect_component(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
    filters: web::Query<ComponentFilters>,
    body: web::Json<ConnectRequest>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner(), filters.component_type).await?;
    let body = body.into_inner();
    let connector = super::connectors::visible(&state, &auth, &body.connector).await?;
    let command = ConnectComponent {
        component: view.id,
        connector: connector.id,
        resource_id: body.resource_id,
    };
    let connected = state
        .command(&ctx, Some(&auth.caller()), command, None)
        .await?;
    Ok(connected
        .consistency
        .mark(HttpResponse::Ok())
        .json(ComponentResponse::from(connected.output)))
}

/// Removes a component's link to its connector.
#[utoipa::path(post, path = "/api/v1/components/{component}/disconnect", tag = "components", security(("bearer" = [])),
    params(("component" = String, Path, description = "name or id"), ComponentFilters),
    responses((status = 200, body = ComponentResponse), (status = 404, body = ErrorBody),
        (status = 409, description = "not connected", body = ErrorBody)))]
#[post("/components/{component}/disconnect")]
pub async fn disconnect_component(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
    filters: web::Query<ComponentFilters>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner(), filters.component_type).await?;
    let done = state
        .command(
            &ctx,
            Some(&auth.caller()),
            DisconnectComponent { component: view.id },
            None,
        )
        .await?;
    Ok(done
        .consistency
        .mark(HttpResponse::Ok())
        .json(ComponentResponse::from(done.output)))
}

/// Credentials for the component's resource, through its connector, as a lease.
#[utoipa::path(post, path = "/api/v1/components/{component}/credentials", tag = "components", security(("bearer" = [])),
    request_body = ComponentCredentialsRequest,
    params(("component" = String, Path, description = "name or id"), ComponentFilters),
    responses((status = 200, body = super::connectors::CredentialsResponse), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "not connected", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 504, body = ErrorBody)))]
#[post("/components/{component}/credentials")]
pub async fn component_credentials(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
    filters: web::Query<ComponentFilters>,
    body: Option<web::Json<ComponentCredentialsRequest>>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner(), filters.component_type).await?;
    let link = view.component.connector.clone().ok_or_else(|| {
        ApiError::conflict("the component is not connected to a service connector")
            .with_code("not_connected")
    })?;
    let connector =
        super::connectors::visible(&state, &auth, &link.connector_id.to_string()).await?;
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    let request = CredentialsRequest {
        resource_type: link.resource_type,
        resource_id: link.resource_id,
        expiration_seconds: body.expiration_seconds,
    };
    issue(&state, &ctx, &auth, &connector, request, Some(view.id)).await
}
