//! Service connectors: the catalogue of connector types, connectors, their verification,
//! what they reach, the credentials they hand out, and grants.
//!
//! A connector exists only for its owner, admins and the principals it was granted to
//! (404 for everyone else); only its owner and admins change it. Secrets go to the
//! connectors service sealed for one command and never come back: every answer shows
//! them as `[HIDDEN]`. Credentials are the one exception, in the answer that hands them
//! out (`Cache-Control: no-store`).

use std::collections::BTreeMap;

use actix_web::{HttpResponse, delete, get, patch, post, web};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use gatehouse_contracts::catalogue::ConnectorTypeSpec;
use gatehouse_contracts::commands::{Caller, Command};
use gatehouse_contracts::connectors::LEASE_VIEW;
use gatehouse_contracts::connectors::{
    CONNECTOR_VIEW, ConnectorDraft, ConnectorGrant, ConnectorView, DeleteConnector, GrantConnector,
    HIDDEN, IssueCredentials, LeasedCredentials, ListConnectorTypes, RegisterConnector,
    ResourceReach, RevokeConnectorGrant, UpdateConnector, Verified, VerifyConnector, VerifyDraft,
};
use gatehouse_contracts::identity::{SERVICE_ACCOUNT_VIEW, USER_VIEW};
use gatehouse_contracts::ids::{ComponentId, PrincipalId};
use gatehouse_contracts::names::Name;
use gatehouse_eventlog::ListQuery;
use gatehouse_secrets::SealedSecret;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::paging::{Page, PageParams};
use super::{decode, find_by_name_or_id};
use crate::auth::Authenticated;
use crate::context::RequestContext;
use crate::errors::{ApiError, ErrorBody};
use crate::lease_cache::{LeaseAnswer, ReuseKey};
use crate::state::AppState;

/// The most connectors one listing scans for a caller who is not an admin (visibility
/// through grants is decided per connector).
const MAX_SCANNED: u64 = 10_000;

/// A connector as the API shows it: secrets as `[HIDDEN]`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectorResponse {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Type (`aws`).
    pub connector_type: String,
    /// Auth method.
    pub auth_method: String,
    /// Resource types it serves; empty: every type its method serves.
    pub resource_types: Vec<String>,
    /// The one resource it serves, if single-instance.
    pub resource_id: Option<String>,
    /// Non-secret configuration.
    #[schema(value_type = Object)]
    pub configuration: Map<String, Value>,
    /// Each secret field set, as `[HIDDEN]`.
    pub secrets: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Description.
    pub description: String,
    /// Lifetime of what it issues (seconds), if not its method's default.
    pub expiration_seconds: Option<u64>,
    /// When the configured credentials themselves expire.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether it hands out long-lived credentials as they are.
    pub issues_long_lived_credentials: bool,
    /// Whether it lends the server's own identity.
    pub implicit: bool,
    /// Who registered it.
    pub owner: Uuid,
    /// Who else may use it.
    pub grants: Vec<ConnectorGrant>,
    /// The components connected to it.
    pub components: Vec<Uuid>,
    /// Registered at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
}

impl ConnectorResponse {
    /// The view as `caller` may see it: grants are the manager's business only.
    fn new(v: ConnectorView, caller: &Caller) -> Self {
        let manages = v.connector.access(caller).may_manage();
        let c = v.connector;
        Self {
            id: v.id.as_uuid(),
            name: c.name,
            connector_type: c.connector_type,
            auth_method: c.auth_method,
            resource_types: c.resource_types,
            resource_id: c.resource_id,
            configuration: c.configuration,
            secrets: c
                .secret_fields
                .into_iter()
                .map(|f| (f, HIDDEN.to_owned()))
                .collect(),
            labels: c.labels,
            description: c.description,
            expiration_seconds: c.expiration_seconds,
            expires_at: c.expires_at,
            issues_long_lived_credentials: c.long_lived,
            implicit: c.implicit,
            owner: c.owner.as_uuid(),
            grants: if manages {
                c.grants
            } else {
                c.grants
                    .into_iter()
                    .filter(|g| g.principal == caller.id)
                    .collect()
            },
            components: c.components.into_iter().map(|c| c.as_uuid()).collect(),
            created: v.created,
            updated: v.updated,
        }
    }
}

/// A connector to register (or verify before registering).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnector {
    /// 1–64 of `[A-Za-z0-9._-]`, unique among connectors.
    pub name: Name,
    /// The connector type (`aws`).
    pub connector_type: String,
    /// One of the type's auth methods.
    pub auth_method: String,
    /// Limit it to these resource types (default: every type the method serves).
    #[serde(default)]
    pub resource_types: Vec<String>,
    /// Limit it to this one resource (needs exactly one resource type).
    pub resource_id: Option<String>,
    /// The method's non-secret configuration.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub configuration: Map<String, Value>,
    /// The method's secret fields (strings). Stored sealed; never shown again.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Lifetime of what it issues (seconds), within the method's bounds.
    pub expiration_seconds: Option<u64>,
    /// When the configured credentials themselves expire (a pasted STS token).
    pub expires_at: Option<DateTime<Utc>>,
    /// Verify the credentials at the cloud before storing (default true).
    pub verify: Option<bool>,
}

/// Changes to a connector.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorUpdate {
    /// Merged into the configuration; a key set to `null` is removed.
    #[schema(value_type = Option<Object>)]
    pub configuration: Option<Map<String, Value>>,
    /// Merged into the labels; a key set to `null` is removed.
    pub labels: Option<BTreeMap<String, Option<String>>>,
    /// New description.
    pub description: Option<String>,
    /// New resource types.
    pub resource_types: Option<Vec<String>>,
    /// New resource id; `null` makes it multi-instance.
    #[serde(
        default,
        deserialize_with = "gatehouse_contracts::nullable::deserialize"
    )]
    #[schema(value_type = Option<String>)]
    pub resource_id: Option<Option<String>>,
    /// New lifetime; `null` goes back to the method's default.
    #[serde(
        default,
        deserialize_with = "gatehouse_contracts::nullable::deserialize"
    )]
    #[schema(value_type = Option<u64>)]
    pub expiration_seconds: Option<Option<u64>>,
    /// New expiry of the configured credentials; `null` removes it.
    #[serde(
        default,
        deserialize_with = "gatehouse_contracts::nullable::deserialize"
    )]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// A whole new set of secrets (replaces every secret field).
    pub secrets: Option<BTreeMap<String, String>>,
    /// Verify the changed connector at the cloud before storing (default false).
    pub verify: Option<bool>,
}

/// What to verify of a registered connector.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Only this resource type.
    pub resource_type: Option<String>,
    /// Only this resource (needs `resource_type`).
    pub resource_id: Option<String>,
    /// List the resources it reaches.
    pub list_resources: Option<bool>,
}

/// A credentials request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsRequest {
    /// The resource type.
    pub resource_type: String,
    /// The resource (for types with instances; default: the connector's own).
    pub resource_id: Option<String>,
    /// The lifetime asked for (seconds), within the method's bounds.
    pub expiration_seconds: Option<u64>,
}

/// Credentials handed out, and the lease they are.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CredentialsResponse {
    /// The lease.
    pub lease_id: Uuid,
    /// The connector.
    pub connector_id: Uuid,
    /// Its type.
    pub connector_type: String,
    /// The auth method they were issued with.
    pub auth_method: String,
    /// The resource type.
    pub resource_type: String,
    /// The resource.
    pub resource_id: Option<String>,
    /// When they stop working.
    pub expires_at: DateTime<Utc>,
    /// Whether they can be revoked before then.
    pub revocable: bool,
    /// The credentials, in the resource type's shape (AWS: `aws_access_key_id`,
    /// `aws_secret_access_key`, `aws_session_token`, `region`, `endpoint_url`; a registry:
    /// `username`, `password`, `registry`; a cluster: `server`,
    /// `certificate_authority_data`, `token`).
    #[schema(value_type = Object)]
    pub credentials: Map<String, Value>,
}

/// A grant to make.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// A user's or service account's name or id.
    pub principal: String,
    /// Limit the grant to these resources (default: every resource the connector
    /// reaches).
    pub resource_ids: Option<Vec<String>>,
}

/// Listing filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectorFilters {
    /// Only this type.
    pub connector_type: Option<String>,
    /// Only connectors that serve this resource type.
    pub resource_type: Option<String>,
    /// Only connectors with this label, as `key:value` (repeatable).
    #[param(value_type = Option<Vec<String>>)]
    pub label: Option<String>,
}

/// What one connector reaches.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectorResources {
    /// The connector.
    pub connector_id: Uuid,
    /// Its name.
    pub connector_name: String,
    /// Its type.
    pub connector_type: String,
    /// Per resource type.
    pub resources: Vec<ResourceReach>,
    /// Why the connector could not be checked at all, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Filters of `GET /service_connector_resources`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResourceFilters {
    /// Only connectors of this type.
    pub connector_type: Option<String>,
    /// Only this resource type.
    pub resource_type: Option<String>,
    /// Only this resource.
    pub resource_id: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The connector `name_or_id` if `auth` may see it (owner, admin, grantee), else 404.
pub(crate) async fn visible(
    state: &AppState,
    auth: &Authenticated,
    name_or_id: &str,
) -> Result<ConnectorView, ApiError> {
    let not_found = || ApiError::not_found(format!("no service connector {name_or_id:?}"));
    let doc = find_by_name_or_id(state.views.as_ref(), CONNECTOR_VIEW, name_or_id)
        .await?
        .ok_or_else(not_found)?;
    let view: ConnectorView = decode(&doc)?;
    if !view.connector.access(&auth.caller()).may_use() {
        return Err(not_found());
    }
    Ok(view)
}

/// Seals a secret map for command `C`.
fn seal_secrets<C: Command>(
    state: &AppState,
    secrets: &BTreeMap<String, String>,
) -> Result<Option<SealedSecret>, ApiError> {
    if secrets.is_empty() {
        return Ok(None);
    }
    let json = SecretString::from(serde_json::to_string(secrets).unwrap_or_default());
    state
        .sealer
        .seal(&json, &C::seal_context("secrets"))
        .map(Some)
        .map_err(|e| ApiError::internal(&e))
}

fn draft<C: Command>(state: &AppState, body: NewConnector) -> Result<ConnectorDraft, ApiError> {
    Ok(ConnectorDraft {
        secrets: seal_secrets::<C>(state, &body.secrets)?,
        name: body.name,
        connector_type: body.connector_type,
        auth_method: body.auth_method,
        resource_types: body.resource_types,
        resource_id: body.resource_id,
        configuration: body.configuration,
        labels: body.labels,
        description: body.description,
        expiration_seconds: body.expiration_seconds,
        expires_at: body.expires_at,
    })
}

/// Opens credentials sealed by the connectors service and shapes the answer.
pub(crate) fn credentials_response(
    state: &AppState,
    leased: LeasedCredentials,
) -> Result<CredentialsResponse, ApiError> {
    let opened = state
        .sealer
        .open(
            &leased.credentials,
            &IssueCredentials::seal_context("credentials"),
        )
        .map_err(|e| ApiError::internal(&e))?;
    let credentials: Map<String, Value> =
        serde_json::from_str(opened.expose_secret()).map_err(|e| ApiError::internal(&e))?;
    let lease = leased.lease;
    Ok(CredentialsResponse {
        lease_id: lease.id.as_uuid(),
        connector_id: lease.lease.issued.connector_id.as_uuid(),
        connector_type: lease.lease.issued.connector_type,
        auth_method: lease.lease.issued.auth_method,
        resource_type: lease.lease.issued.resource_type,
        resource_id: lease.lease.issued.resource_id,
        expires_at: lease.lease.issued.expires_at,
        revocable: lease.lease.issued.revocable,
        credentials,
    })
}

/// An answer that must not be cached (it carries credentials).
pub(crate) fn no_store(mut b: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    b.insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"));
    b
}

/// Issues credentials through `connector` (optionally asked through `component`), and
/// keeps the answer for reuse by this replica.
pub(crate) async fn issue(
    state: &AppState,
    ctx: &RequestContext,
    auth: &Authenticated,
    connector: &ConnectorView,
    body: CredentialsRequest,
    component: Option<ComponentId>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let key = ReuseKey {
        principal: caller.id.as_uuid(),
        connector: connector.id.as_uuid(),
        resource_type: body.resource_type.clone(),
        resource_id: body.resource_id.clone(),
        component: component.map(|c| c.as_uuid()),
    };
    let asked_lifetime = body.expiration_seconds.is_some();
    let command = IssueCredentials {
        connector: connector.id,
        resource_type: body.resource_type,
        resource_id: body.resource_id,
        expiration_seconds: body.expiration_seconds,
        component,
    };
    let issued = state.command(ctx, Some(&caller), command, None).await?;
    let lease = issued.output.lease.clone();
    let answer = credentials_response(state, issued.output)?;
    let bytes = Bytes::from(serde_json::to_vec(&answer).map_err(|e| ApiError::internal(&e))?);
    // Kept only when this replica's directory has the connector exactly as the read
    // model had it, so that any later change is seen as one.
    if !asked_lifetime
        && let Some(known) = state.directory.connector(&connector.id.to_string())
        && known.updated == connector.updated
    {
        state.leases.remember(
            key,
            &known,
            LeaseAnswer {
                lease_id: lease.id.as_uuid(),
                resource_id: lease.lease.issued.resource_id.clone(),
                issued_at: lease.issued_at,
                expires_at: lease.lease.issued.expires_at,
                body: bytes.clone(),
            },
            lease.lease.issued.revocable,
            state.clock.now(),
        );
    }
    Ok(issued
        .consistency
        .mark(no_store(HttpResponse::Ok()))
        .content_type("application/json")
        .body(bytes))
}

/// The answer of a live lease of the caller's for the same request, from this replica's
/// memory, if there is one and nothing has changed since (`lease_cache`).
fn reused(
    state: &AppState,
    caller: &Caller,
    name_or_id: &str,
    body: &CredentialsRequest,
) -> Option<HttpResponse> {
    if body.expiration_seconds.is_some() {
        return None;
    }
    let connector = state.directory.connector(name_or_id)?;
    let key = ReuseKey {
        principal: caller.id.as_uuid(),
        connector: connector.id.as_uuid(),
        resource_type: body.resource_type.clone(),
        resource_id: body.resource_id.clone(),
        component: None,
    };
    let now = state.clock.now();
    let hit = state.leases.reuse(&key, &connector, caller, now)?;
    if hit.record_use {
        let views = state.views.clone();
        let lease = hit.answer.lease_id;
        tokio::spawn(async move {
            if let Err(e) = views.record_use(LEASE_VIEW, lease, now).await {
                tracing::warn!(%lease, error = %e, "recording a lease's use failed");
            }
        });
    }
    Some(
        no_store(HttpResponse::Ok())
            .content_type("application/json")
            .body(hit.answer.body),
    )
}

/// The principal named (or identified) `name_or_id`: a user or a service account.
async fn principal(state: &AppState, name_or_id: &str) -> Result<(PrincipalId, String), ApiError> {
    for kind in [USER_VIEW, SERVICE_ACCOUNT_VIEW] {
        if let Some(doc) = find_by_name_or_id(state.views.as_ref(), kind, name_or_id).await? {
            let name = doc
                .doc
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            return Ok((PrincipalId::from_uuid(doc.id), name));
        }
    }
    Err(ApiError::invalid(format!(
        "principal: no user or service account {name_or_id:?}"
    )))
}

/// Every connector `caller` may see, with the filters applied.
async fn visible_connectors(
    state: &AppState,
    caller: &Caller,
    connector_type: Option<&str>,
    resource_type: Option<&str>,
    labels: &[(String, String)],
) -> Result<Vec<ConnectorView>, ApiError> {
    let mut query = ListQuery {
        filters: Vec::new(),
        offset: 0,
        limit: MAX_SCANNED,
        ..ListQuery::default()
    };
    if let Some(t) = connector_type {
        query
            .filters
            .push(("connector_type".into(), Value::String(t.to_owned())));
    }
    let page = state.views.list(CONNECTOR_VIEW, &query).await?;
    let mut out = Vec::new();
    for doc in &page.items {
        let view: ConnectorView = decode(doc)?;
        let c = &view.connector;
        if !c.access(caller).may_use()
            || resource_type.is_some_and(|rt| !c.serves(rt))
            || labels.iter().any(|(k, v)| c.labels.get(k) != Some(v))
        {
            continue;
        }
        out.push(view);
    }
    Ok(out)
}

/// `key:value` label filters, from a query string where `label` may repeat.
fn label_filters(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|e| ApiError::bad_request(e.to_string()))?;
    pairs
        .into_iter()
        .filter(|(k, _)| k == "label")
        .map(|(_, v)| {
            v.split_once(':')
                .or_else(|| v.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| ApiError::bad_request(format!("label {v:?} is not key:value")))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The catalogue
// ---------------------------------------------------------------------------------------

/// The connector types this server offers, with their auth methods and resource types.
#[utoipa::path(get, path = "/api/v1/service_connector_types", tag = "service_connectors", security(("bearer" = [])),
    responses((status = 200, body = Vec<ConnectorTypeSpec>)))]
#[get("/service_connector_types")]
pub async fn list_connector_types(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let types = state
        .command(&ctx, Some(&auth.caller()), ListConnectorTypes {}, None)
        .await?;
    Ok(HttpResponse::Ok().json(types.output))
}

/// One connector type.
#[utoipa::path(get, path = "/api/v1/service_connector_types/{type}", tag = "service_connectors", security(("bearer" = [])),
    params(("type" = String, Path, description = "the type's id (`aws`)")),
    responses((status = 200, body = ConnectorTypeSpec), (status = 404, body = ErrorBody)))]
#[get("/service_connector_types/{type}")]
pub async fn get_connector_type(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let wanted = path.into_inner();
    let types = state
        .command(&ctx, Some(&auth.caller()), ListConnectorTypes {}, None)
        .await?;
    let found = types
        .output
        .into_iter()
        .find(|t| t.connector_type == wanted)
        .ok_or_else(|| ApiError::not_found(format!("no connector type {wanted:?}")))?;
    Ok(HttpResponse::Ok().json(found))
}

// ---------------------------------------------------------------------------------------
// Connectors
// ---------------------------------------------------------------------------------------

/// Registers a connector. Its credentials are verified at the cloud first unless
/// `verify` is false; a refusal is answered with the cloud's message (502).
#[utoipa::path(post, path = "/api/v1/service_connectors", tag = "service_connectors", security(("bearer" = [])),
    request_body = NewConnector,
    responses((status = 201, body = ConnectorResponse), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, description = "the cloud refused the credentials", body = ErrorBody),
        (status = 504, description = "the cloud did not answer in time", body = ErrorBody)))]
#[post("/service_connectors")]
pub async fn register_connector(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    body: web::Json<NewConnector>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let verify = body.verify.unwrap_or(true);
    let command = RegisterConnector {
        draft: draft::<RegisterConnector>(&state, body)?,
        verify,
    };
    let caller = auth.caller();
    let created = state.command(&ctx, Some(&caller), command, None).await?;
    Ok(created
        .consistency
        .mark(HttpResponse::Created())
        .json(ConnectorResponse::new(created.output, &caller)))
}

/// Verifies a connector that is not registered (nothing is stored).
#[utoipa::path(post, path = "/api/v1/service_connectors/verify", tag = "service_connectors", security(("bearer" = [])),
    request_body = NewConnector,
    responses((status = 200, body = Verified),
        (status = 403, description = "an implicit method on a server that does not allow them", body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody), (status = 504, body = ErrorBody)))]
#[post("/service_connectors/verify")]
pub async fn verify_new_connector(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    body: web::Json<NewConnector>,
) -> Result<HttpResponse, ApiError> {
    let command = VerifyDraft {
        draft: draft::<VerifyDraft>(&state, body.into_inner())?,
        list_resources: true,
    };
    let verified = state
        .command(&ctx, Some(&auth.caller()), command, None)
        .await?;
    Ok(HttpResponse::Ok().json(verified.output))
}

/// The connectors the caller may see: its own, those granted to it (all, for admins).
#[utoipa::path(get, path = "/api/v1/service_connectors", tag = "service_connectors", security(("bearer" = [])),
    params(PageParams, ConnectorFilters),
    responses((status = 200, body = Page<ConnectorResponse>)))]
#[get("/service_connectors")]
pub async fn list_connectors(
    state: web::Data<AppState>,
    auth: Authenticated,
    req: actix_web::HttpRequest,
    paging: web::Query<PageParams>,
    filters: web::Query<ConnectorFilters>,
) -> Result<HttpResponse, ApiError> {
    let (offset, limit) = paging.window()?;
    let labels = label_filters(req.query_string())?;
    let caller = auth.caller();
    let all = visible_connectors(
        &state,
        &caller,
        filters.connector_type.as_deref(),
        filters.resource_type.as_deref(),
        &labels,
    )
    .await?;
    let total = all.len() as u64;
    let items = all
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|v| ConnectorResponse::new(v, &caller))
        .collect();
    Ok(HttpResponse::Ok().json(Page::new(items, offset, limit, total)))
}

/// One connector (secrets as `[HIDDEN]`).
#[utoipa::path(get, path = "/api/v1/service_connectors/{connector}", tag = "service_connectors", security(("bearer" = [])),
    params(("connector" = String, Path, description = "name or id")),
    responses((status = 200, body = ConnectorResponse), (status = 404, body = ErrorBody)))]
#[get("/service_connectors/{connector}")]
pub async fn get_connector(
    state: web::Data<AppState>,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(ConnectorResponse::new(view, &auth.caller())))
}

/// Changes a connector: `configuration` and `labels` merge (`null` removes a key);
/// `secrets`, when given, replace the whole set (under a new data key).
#[utoipa::path(patch, path = "/api/v1/service_connectors/{connector}", tag = "service_connectors", security(("bearer" = [])),
    request_body = ConnectorUpdate,
    params(("connector" = String, Path, description = "name or id")),
    responses((status = 200, body = ConnectorResponse), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 504, body = ErrorBody)))]
#[patch("/service_connectors/{connector}")]
pub async fn update_connector(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
    body: web::Json<ConnectorUpdate>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner()).await?;
    let body = body.into_inner();
    let secrets = match &body.secrets {
        Some(s) if s.is_empty() => {
            return Err(ApiError::invalid(
                "secrets: an empty set would remove every secret; give the new set",
            ));
        }
        Some(s) => seal_secrets::<UpdateConnector>(&state, s)?,
        None => None,
    };
    let command = UpdateConnector {
        connector: view.id,
        configuration: body.configuration,
        labels: body.labels,
        description: body.description,
        resource_types: body.resource_types,
        resource_id: body.resource_id,
        expiration_seconds: body.expiration_seconds,
        expires_at: body.expires_at,
        secrets,
        verify: body.verify.unwrap_or(false),
    };
    let caller = auth.caller();
    let updated = state.command(&ctx, Some(&caller), command, None).await?;
    Ok(updated
        .consistency
        .mark(HttpResponse::Ok())
        .json(ConnectorResponse::new(updated.output, &caller)))
}

/// Deletes a connector and destroys its key; refused (409) while components use it.
#[utoipa::path(delete, path = "/api/v1/service_connectors/{connector}", tag = "service_connectors", security(("bearer" = [])),
    params(("connector" = String, Path, description = "name or id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "components use it (named)", body = ErrorBody)))]
#[delete("/service_connectors/{connector}")]
pub async fn delete_connector(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner()).await?;
    let deleted = state
        .command(
            &ctx,
            Some(&auth.caller()),
            DeleteConnector { connector: view.id },
            None,
        )
        .await?;
    Ok(deleted.consistency.mark(HttpResponse::NoContent()).finish())
}

/// Verifies a registered connector, optionally for one resource type or resource, and
/// optionally lists what it reaches (what the caller's grant covers).
#[utoipa::path(post, path = "/api/v1/service_connectors/{connector}/verify", tag = "service_connectors", security(("bearer" = [])),
    request_body = VerifyRequest,
    params(("connector" = String, Path, description = "name or id")),
    responses((status = 200, body = Verified), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 502, body = ErrorBody), (status = 504, body = ErrorBody)))]
#[post("/service_connectors/{connector}/verify")]
pub async fn verify_connector(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
    body: Option<web::Json<VerifyRequest>>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner()).await?;
    let body = body.map(web::Json::into_inner).unwrap_or_default();
    let command = VerifyConnector {
        connector: view.id,
        resource_type: body.resource_type,
        resource_id: body.resource_id,
        list_resources: body.list_resources.unwrap_or(false),
    };
    let verified = state
        .command(&ctx, Some(&auth.caller()), command, None)
        .await?;
    Ok(HttpResponse::Ok().json(verified.output))
}

/// What every connector the caller may use reaches, per resource type.
#[utoipa::path(get, path = "/api/v1/service_connector_resources", tag = "service_connectors", security(("bearer" = [])),
    params(ResourceFilters),
    responses((status = 200, body = Vec<ConnectorResources>),
        (status = 422, description = "a resource id without its resource type", body = ErrorBody)))]
#[get("/service_connector_resources")]
pub async fn list_resources(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    filters: web::Query<ResourceFilters>,
) -> Result<HttpResponse, ApiError> {
    let caller = auth.caller();
    let filters = filters.into_inner();
    if filters.resource_id.is_some() && filters.resource_type.is_none() {
        return Err(ApiError::invalid("resource_id: needs resource_type"));
    }
    let connectors = visible_connectors(
        &state,
        &caller,
        filters.connector_type.as_deref(),
        filters.resource_type.as_deref(),
        &[],
    )
    .await?;
    let checks = connectors.into_iter().map(|view| {
        let state = &state;
        let ctx = &ctx;
        let caller = &caller;
        let filters = &filters;
        async move {
            let command = VerifyConnector {
                connector: view.id,
                resource_type: filters.resource_type.clone(),
                resource_id: filters.resource_id.clone(),
                list_resources: true,
            };
            let (resources, error) = match state.command(ctx, Some(caller), command, None).await {
                Ok(v) => (v.output.resources, None),
                Err(f) => (Vec::new(), Some(f.message)),
            };
            ConnectorResources {
                connector_id: view.id.as_uuid(),
                connector_name: view.connector.name,
                connector_type: view.connector.connector_type,
                resources,
                error,
            }
        }
    });
    Ok(HttpResponse::Ok().json(futures::future::join_all(checks).await))
}

/// Credentials for one resource, as a lease: a live lease of the caller's for the same
/// resource is handed out again while it has more than a quarter of its life left.
#[utoipa::path(post, path = "/api/v1/service_connectors/{connector}/credentials", tag = "service_connectors", security(("bearer" = [])),
    request_body = CredentialsRequest,
    params(("connector" = String, Path, description = "name or id")),
    responses((status = 200, body = CredentialsResponse),
        (status = 403, description = "the caller's grant does not cover the resource (says which it covers)", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 504, body = ErrorBody)))]
#[post("/service_connectors/{connector}/credentials")]
pub async fn connector_credentials(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
    body: web::Json<CredentialsRequest>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let body = body.into_inner();
    if let Some(answer) = reused(&state, &auth.caller(), &name, &body) {
        return Ok(answer);
    }
    let view = visible(&state, &auth, &name).await?;
    issue(&state, &ctx, &auth, &view, body, None).await
}

// ---------------------------------------------------------------------------------------
// Grants
// ---------------------------------------------------------------------------------------

/// Grants the connector to a user or service account (replacing an earlier grant to
/// them), optionally limited to some resources.
#[utoipa::path(post, path = "/api/v1/service_connectors/{connector}/grants", tag = "service_connectors", security(("bearer" = [])),
    request_body = NewGrant,
    params(("connector" = String, Path, description = "name or id")),
    responses((status = 200, body = ConnectorResponse), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[post("/service_connectors/{connector}/grants")]
pub async fn grant_connector(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<String>,
    body: web::Json<NewGrant>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner()).await?;
    let body = body.into_inner();
    let (principal, principal_name) = principal(&state, &body.principal).await?;
    let command = GrantConnector {
        connector: view.id,
        grant: ConnectorGrant {
            principal,
            principal_name,
            resource_ids: body.resource_ids,
        },
    };
    let caller = auth.caller();
    let granted = state.command(&ctx, Some(&caller), command, None).await?;
    Ok(granted
        .consistency
        .mark(HttpResponse::Ok())
        .json(ConnectorResponse::new(granted.output, &caller)))
}

/// The connector's grants (a grantee sees its own only).
#[utoipa::path(get, path = "/api/v1/service_connectors/{connector}/grants", tag = "service_connectors", security(("bearer" = [])),
    params(("connector" = String, Path, description = "name or id")),
    responses((status = 200, body = Vec<ConnectorGrant>), (status = 404, body = ErrorBody)))]
#[get("/service_connectors/{connector}/grants")]
pub async fn list_grants(
    state: web::Data<AppState>,
    auth: Authenticated,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = visible(&state, &auth, &path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(ConnectorResponse::new(view, &auth.caller()).grants))
}

/// Ends a principal's grant.
#[utoipa::path(delete, path = "/api/v1/service_connectors/{connector}/grants/{principal}", tag = "service_connectors", security(("bearer" = [])),
    params(("connector" = String, Path, description = "name or id"),
        ("principal" = String, Path, description = "the grantee's name or id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/service_connectors/{connector}/grants/{principal}")]
pub async fn revoke_grant(
    state: web::Data<AppState>,
    ctx: RequestContext,
    auth: Authenticated,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (connector, who) = path.into_inner();
    let view = visible(&state, &auth, &connector).await?;
    let principal = match view
        .connector
        .grants
        .iter()
        .find(|g| g.principal_name == who || g.principal.to_string() == who)
    {
        Some(g) => g.principal,
        None => {
            principal(&state, &who)
                .await
                .map_err(|_| ApiError::not_found(format!("no grant to {who:?}")))?
                .0
        }
    };
    let revoked = state
        .command(
            &ctx,
            Some(&auth.caller()),
            RevokeConnectorGrant {
                connector: view.id,
                principal,
            },
            None,
        )
        .await?;
    Ok(revoked.consistency.mark(HttpResponse::NoContent()).finish())
}
