//! Leases: every issue of credentials through a connector. A lease is visible to whoever
//! holds it, to the owner of the connector it came from, and to admins; never its
//! credentials.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use gatehouse_contracts::connectors::{
    CONNECTOR_VIEW, ConnectorView, LEASE_VIEW, LeaseStatus, LeaseView, RevokeLease,
};
use gatehouse_eventlog::ListQuery;
use gatehouse_eventlog::views::TimeBound;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::paging::{Page, PageParams};
use super::{decode, find_by_name_or_id};
use crate::auth::Authenticated;
use crate::context::RequestContext;
use crate::errors::{ApiError, ErrorBody};
use crate::state::AppState;

/// A lease as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LeaseResponse {
    /// Id.
    pub id: Uuid,
    /// The connector that issued it.
    pub connector_id: Uuid,
    /// Its name then.
    pub connector_name: String,
    /// Its type.
    pub connector_type: String,
    /// The auth method the credentials were issued with.
    pub auth_method: String,
    /// Who got them.
    pub principal: Uuid,
    /// Their name.
    pub principal_name: String,
    /// The resource type.
    pub resource_type: String,
    /// The resource.
    pub resource_id: Option<String>,
    /// The component asked through, if any.
    pub component_id: Option<Uuid>,
    /// Issued at.
    pub issued_at: DateTime<Utc>,
    /// When the credentials stop working.
    pub expires_at: DateTime<Utc>,
    /// Whether they can be revoked at the cloud before then.
    pub revocable: bool,
    /// Active, revoked or expired.
    pub status: LeaseStatus,
    /// Revoked at.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last handed out again (at most one-minute resolution).
    pub last_used: Option<DateTime<Utc>>,
}

impl LeaseResponse {
    fn new(v: LeaseView, last_used: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Self {
        let status = v.lease.status(now);
        let i = v.lease.issued;
        Self {
            id: v.id.as_uuid(),
            connector_id: i.connector_id.as_uuid(),
            connector_name: i.connector_name,
            connector_type: i.connector_type,
            auth_method: i.auth_method,
            principal: i.principal.as_uuid(),
            principal_name: i.principal_name,
            resource_type: i.resource_type,
            resource_id: i.resource_id,
            component_id: i.component_id.map(|c| c.as_uuid()),
            issued_at: v.issued_at,
            expires_at: i.expires_at,
            revocable: i.revocable,
            status,
            revoked_at: v.lease.revoked_at,
            last_used,
        }
    }
}

/// Listing filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeaseFilters {
    /// Only leases of this connector (name or id).
    pub connector: Option<String>,
    /// Only leases held by this principal (name or id).
    pub principal: Option<String>,
    /// Only active (`true`) or only ended (`false`) leases.
    pub active: Option<bool>,
}

async fn connector_owner(state: &AppState, id: Uuid) -> Result<Option<ConnectorView>, ApiError> {
    Ok(match state.views.get(CONNECTOR_VIEW, id).await? {
        Some(doc) => Some(decode(&doc)?),
        None => None,
    })
}

/// The lease `id` if `auth` may see it, else 404.
async fn visible(state: &AppState, auth: &Authenticated, id: &str) -> Result<LeaseView, ApiError> {
    let not_found = || ApiError::not_found(format!("no lease {id:?}"));
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    let doc = state
        .views
        .get(LEASE_VIEW, id)
        .await?
        .ok_or_else(not_found)?;
    let view: LeaseView = decode(&doc)?;
    let owner = connector_owner(state, view.lease.issued.connector_id.as_uuid())
        .await?
        .map(|c| c.connector.owner);
    if !view.lease.visible_to(&auth.caller(), owner) {
        return Err(not_found());
    }
    Ok(view)
}

async fn respond(state: &AppState, view: LeaseView) -> Result<LeaseResponse, ApiError> {
    let id = view.id.as_uuid();
    let used = state.views.last_used(LEASE_VIEW, &[id]).await?;
    Ok(LeaseResponse::new(
        view,
        used.get(&id).copied(),
        state.clock.now(),
    ))
}

/// The leases the caller may see, newest first.
#[utoipa::path(get, path = "/api/v1/leases", tag = "leases", security(("bearer" = [])),
    params(PageParams, LeaseFilters),
    responses((status = 200, body = Page<LeaseResponse>), (status = 422, body = ErrorBody)))]
#[get("/leases")]
pub async fn list_leases(
    state: web::Data<AppState>,
    auth: Authenticated,
    paging: web::Query<PageParams>,
    filters: web::Query<LeaseFilters>,
) -> Result<HttpResponse, ApiError> {
    let (offset, limit) = paging.window()?;
    let caller = auth.caller();
    let now = state.clock.now();
    let mut query = ListQuery {
        filters: Vec::new(),
        newest_first: true,
        offset,
        limit,
        ..ListQuery::default()
    };
    let mut manages_connector = false;
    if let Some(name) = &filters.connector {
        let doc = find_by_name_or_id(state.views.as_ref(), CONNECTOR_VIEW, name).await?;
        let Some(doc) = doc else {
            return Err(ApiError::invalid(format!(
                "connector: no service connector {name:?}"
            )));
        };
        let view: ConnectorView = decode(&doc)?;
        manages_connector = view.connector.access(&caller).may_manage();
        query
            .filters
            .push(("connector_id".into(), Value::String(doc.id.to_string())));
    }
    if let Some(who) = &filters.principal {
        let id = match Uuid::parse_str(who) {
            Ok(id) => id,
            Err(_) => {
                let mut found = None;
                for kind in [
                    gatehouse_contracts::identity::USER_VIEW,
                    gatehouse_contracts::identity::SERVICE_ACCOUNT_VIEW,
                ] {
                    if let Some(doc) = find_by_name_or_id(state.views.as_ref(), kind, who).await? {
                        found = Some(doc.id);
                        break;
                    }
                }
                found.ok_or_else(|| {
                    ApiError::invalid(format!("principal: no user or service account {who:?}"))
                })?
            }
        };
        query
            .filters
            .push(("principal".into(), Value::String(id.to_string())));
    }
    // Others see their own leases, and every lease of a connector they manage.
    if !caller.is_admin() && !manages_connector {
        query.filters.retain(|(k, _)| k != "principal");
        query
            .filters
            .push(("principal".into(), Value::String(caller.id.to_string())));
    }
    if filters.active == Some(true) {
        query.filters.push(("expired".into(), Value::Bool(false)));
        query.filters.push(("revoked_at".into(), Value::Null));
        query
            .time_bounds
            .push(TimeBound::After("expires_at".into(), now));
    }
    let page = state.views.list(LEASE_VIEW, &query).await?;
    let views = page
        .items
        .iter()
        .map(decode::<LeaseView>)
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<Uuid> = views.iter().map(|v| v.id.as_uuid()).collect();
    let used = state.views.last_used(LEASE_VIEW, &ids).await?;
    let mut items: Vec<LeaseResponse> = views
        .into_iter()
        .map(|v| {
            let last = used.get(&v.id.as_uuid()).copied();
            LeaseResponse::new(v, last, now)
        })
        .collect();
    let mut total = page.total;
    if filters.active == Some(false) {
        let before = items.len();
        items.retain(|l| l.status != LeaseStatus::Active);
        total -= (before - items.len()) as u64;
    }
    Ok(HttpResponse::Ok().json(Page::new(items, offset, limit, total)))
}

/// One lease.
#[utoipa::path(get, path = "/api/v1/leases/{id}", tag = "leases", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = LeaseResponse), (status = 404, body = ErrorBody)))]
#[get("/leases/{id}")]
pub async fn get_lease(
    state: web::Data<AppState>,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(respond(&state, view).await?))
}

/// Revokes a lease's credentials at the cloud. Credentials the cloud cannot revoke (an
/// AWS STS session) are refused with 409 `not_revocable`, saying when they expire.
#[utoipa::path(post, path = "/api/v1/leases/{id}/revoke", tag = "leases", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = LeaseResponse), (status = 404, body = ErrorBody),
        (status = 409, description = "the credentials cannot be revoked at the cloud", body = ErrorBody)))]
#[post("/leases/{id}/revoke")]
pub async fn revoke_lease(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner()).await?;
    let revoked = state
        .command(
            &ctx,
            Some(&auth.caller()),
            RevokeLease { lease: view.id },
            None,
        )
        .await?;
    let answer = respond(&state, revoked.output).await?;
    Ok(revoked.consistency.mark(HttpResponse::Ok()).json(answer))
}
