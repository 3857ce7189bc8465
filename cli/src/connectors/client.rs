//! The REST calls of service connectors, leases and components, and their answers, as an
//! extension of [`GatehouseClient`] (same auth, retries and errors as every other call).
//!
//! Answers keep every field the server sends (`extra`), so that `-o json` prints the
//! server's JSON faithfully. Secret values travel in two places only: a register or update
//! request ([`SecretFields`]) and a credentials answer ([`CredentialFields`]); both print
//! `[HIDDEN]` in `Debug`.

use std::collections::BTreeMap;

use gatehouse_contracts::catalogue::ConnectorTypeSpec;
use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::client::{ClientError, GatehouseClient, Page};

/// What the API shows in place of a secret value.
pub const HIDDEN: &str = "[HIDDEN]";

/// A field the server may send as `null` where it means "none": read as its default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Secret fields of a connector, as given by the user. `Debug` hides the values.
#[derive(Clone, Default)]
pub struct SecretFields(BTreeMap<String, SecretString>);

impl SecretFields {
    /// Sets field `name`.
    pub fn insert(&mut self, name: impl Into<String>, value: SecretString) {
        self.0.insert(name.into(), value);
    }

    /// Whether field `name` is set.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The value of field `name`, if set.
    pub fn get(&self, name: &str) -> Option<&SecretString> {
        self.0.get(name)
    }

    /// The names of the fields set.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The JSON object sent to the server: the only place the values are exposed.
    fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.expose_secret().to_owned())))
                .collect(),
        )
    }
}

impl std::fmt::Debug for SecretFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, HIDDEN)))
            .finish()
    }
}

/// A principal a connector is granted to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    /// The principal's id.
    pub principal: String,
    /// Its name.
    #[serde(default)]
    pub principal_name: String,
    /// The resources the grant covers; `None`: all the connector reaches.
    #[serde(default)]
    pub resource_ids: Option<Vec<String>>,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A service connector, as the API shows it (secret values as `[HIDDEN]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connector {
    /// Id.
    pub id: String,
    /// Name, unique among connectors.
    pub name: String,
    /// The connector type (`aws`).
    pub connector_type: String,
    /// The auth method (`iam-role`).
    pub auth_method: String,
    /// The resource types it serves (empty: all its method serves).
    #[serde(default, deserialize_with = "null_as_default")]
    pub resource_types: Vec<String>,
    /// The one resource it serves, when single-instance.
    #[serde(default)]
    pub resource_id: Option<String>,
    /// Non-secret configuration.
    #[serde(default, deserialize_with = "null_as_default")]
    pub configuration: Map<String, Value>,
    /// The secret fields set, each `[HIDDEN]`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub secrets: Map<String, Value>,
    /// Labels.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The lifetime of what it issues (seconds), if not the method's default.
    #[serde(default)]
    pub expiration_seconds: Option<u64>,
    /// When the configured credentials themselves expire.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Whether it hands out its long-lived credentials as they are.
    #[serde(default)]
    pub issues_long_lived_credentials: bool,
    /// Whether it lends the server's own identity.
    #[serde(default)]
    pub implicit: bool,
    /// Who registered it.
    #[serde(default)]
    pub owner: Option<String>,
    /// Who else may use it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub grants: Vec<Grant>,
    /// The components linked to it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub components: Vec<String>,
    /// Created at (RFC 3339, kept as sent).
    #[serde(default)]
    pub created: Option<String>,
    /// Last changed at.
    #[serde(default)]
    pub updated: Option<String>,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The resources of one type a connector reaches, or why it could not list them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResourceList {
    /// The resource type.
    pub resource_type: String,
    /// The resource ids (empty for a type without instances).
    #[serde(default)]
    pub resource_ids: Option<Vec<String>>,
    /// Why listing failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What a verification found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verification {
    /// Who the connector authenticates as (`arn:aws:iam::...`).
    #[serde(default)]
    pub identity: Option<String>,
    /// What it reaches.
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: Vec<ResourceList>,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One connector's resources (`GET /service_connector_resources`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectorResources {
    /// The connector's id.
    pub connector_id: String,
    /// Its name.
    pub connector_name: String,
    /// Its type.
    #[serde(default)]
    pub connector_type: String,
    /// What it reaches, per resource type.
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: Vec<ResourceList>,
    /// Why the connector could not be checked (the cloud's refusal, ...), if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The credential fields of a credentials answer. `Debug` hides the values.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CredentialFields(pub Map<String, Value>);

impl CredentialFields {
    /// The string field `name`, if present and not empty.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The field names, in the server's order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for CredentialFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, HIDDEN)))
            .finish()
    }
}

/// Short-lived credentials for one resource (`POST .../credentials`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedCredentials {
    /// The lease they belong to.
    pub lease_id: String,
    /// The connector that issued them.
    #[serde(default)]
    pub connector_id: Option<String>,
    /// Its type.
    #[serde(default)]
    pub connector_type: Option<String>,
    /// Its auth method.
    #[serde(default)]
    pub auth_method: Option<String>,
    /// The resource type.
    pub resource_type: String,
    /// The resource, when the type has instances.
    #[serde(default)]
    pub resource_id: Option<String>,
    /// When they expire (RFC 3339), if they do.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Whether they can be revoked before they expire.
    #[serde(default)]
    pub revocable: bool,
    /// The credentials themselves.
    #[serde(default, deserialize_with = "null_as_default")]
    pub credentials: CredentialFields,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One issue of credentials (never the credentials).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// Id.
    pub id: String,
    /// The connector's id.
    #[serde(default)]
    pub connector_id: Option<String>,
    /// The connector's name.
    #[serde(default)]
    pub connector_name: Option<String>,
    /// The connector's type.
    #[serde(default)]
    pub connector_type: Option<String>,
    /// The auth method.
    #[serde(default)]
    pub auth_method: Option<String>,
    /// Who got the credentials (id).
    #[serde(default)]
    pub principal: Option<String>,
    /// Their name.
    #[serde(default)]
    pub principal_name: Option<String>,
    /// The resource type.
    #[serde(default)]
    pub resource_type: Option<String>,
    /// The resource.
    #[serde(default)]
    pub resource_id: Option<String>,
    /// The component they were asked for through, if any.
    #[serde(default)]
    pub component_id: Option<String>,
    /// Issued at.
    #[serde(default)]
    pub issued_at: Option<String>,
    /// Expires at.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Whether it can be revoked early.
    #[serde(default)]
    pub revocable: bool,
    /// `active`, `revoked` or `expired`.
    #[serde(default)]
    pub status: String,
    /// When it was revoked.
    #[serde(default)]
    pub revoked_at: Option<String>,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The connector and resource a component is linked to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentLink {
    /// The connector's id.
    pub connector_id: String,
    /// Its name.
    #[serde(default)]
    pub connector_name: String,
    /// The resource type the flavor needs.
    #[serde(default)]
    pub resource_type: String,
    /// The resource.
    #[serde(default)]
    pub resource_id: Option<String>,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A stack component (holds no credentials).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Component {
    /// Id.
    pub id: String,
    /// Name, unique within its type.
    pub name: String,
    /// `artifact_store`, `container_registry`, `orchestrator`.
    #[serde(rename = "type")]
    pub component_type: String,
    /// The flavor (`s3`).
    pub flavor: String,
    /// Its configuration.
    #[serde(default, deserialize_with = "null_as_default")]
    pub configuration: Map<String, Value>,
    /// Who registered it.
    #[serde(default)]
    pub owner: Option<String>,
    /// The connector it is linked to.
    #[serde(default)]
    pub connector: Option<ComponentLink>,
    /// Created at.
    #[serde(default)]
    pub created: Option<String>,
    /// Last changed at.
    #[serde(default)]
    pub updated: Option<String>,
    /// Fields this CLI does not know yet.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /service_connectors` (and `.../verify` of an unsaved connector).
#[derive(Debug, Clone, Default)]
pub struct NewConnector {
    /// Name.
    pub name: String,
    /// Type.
    pub connector_type: String,
    /// Auth method.
    pub auth_method: String,
    /// Resource types (empty: all the method serves).
    pub resource_types: Vec<String>,
    /// The one resource.
    pub resource_id: Option<String>,
    /// Non-secret configuration.
    pub configuration: Map<String, Value>,
    /// Secret fields.
    pub secrets: SecretFields,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Description.
    pub description: Option<String>,
    /// Lifetime of issued credentials (seconds).
    pub expiration_seconds: Option<u64>,
    /// When the configured credentials expire (RFC 3339).
    pub expires_at: Option<String>,
    /// Whether the server verifies before saving (`None`: its default).
    pub verify: Option<bool>,
}

impl NewConnector {
    /// The request body (it carries the secret values).
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("name".into(), self.name.clone().into());
        body.insert("connector_type".into(), self.connector_type.clone().into());
        body.insert("auth_method".into(), self.auth_method.clone().into());
        if !self.resource_types.is_empty() {
            body.insert("resource_types".into(), self.resource_types.clone().into());
        }
        if let Some(id) = &self.resource_id {
            body.insert("resource_id".into(), id.clone().into());
        }
        if !self.configuration.is_empty() {
            body.insert(
                "configuration".into(),
                Value::Object(self.configuration.clone()),
            );
        }
        if !self.secrets.is_empty() {
            body.insert("secrets".into(), self.secrets.to_json());
        }
        if !self.labels.is_empty() {
            let labels = self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            body.insert("labels".into(), Value::Object(labels));
        }
        if let Some(d) = &self.description {
            body.insert("description".into(), d.clone().into());
        }
        if let Some(s) = self.expiration_seconds {
            body.insert("expiration_seconds".into(), s.into());
        }
        if let Some(t) = &self.expires_at {
            body.insert("expires_at".into(), t.clone().into());
        }
        if let Some(v) = self.verify {
            body.insert("verify".into(), v.into());
        }
        Value::Object(body)
    }
}

/// `PATCH /service_connectors/{c}`: only what changes.
#[derive(Debug, Clone, Default)]
pub struct ConnectorUpdate {
    /// Configuration changes: a value sets, `null` removes.
    pub configuration: Map<String, Value>,
    /// Label changes: a value sets, `null` removes.
    pub labels: Map<String, Value>,
    /// New description.
    pub description: Option<String>,
    /// New lifetime (seconds).
    pub expiration_seconds: Option<u64>,
    /// A new secret set (replaces the whole set).
    pub secrets: Option<SecretFields>,
    /// Verify before saving.
    pub verify: bool,
}

impl ConnectorUpdate {
    /// Whether anything changes.
    pub fn changes_something(&self) -> bool {
        !self.configuration.is_empty()
            || !self.labels.is_empty()
            || self.description.is_some()
            || self.expiration_seconds.is_some()
            || self.secrets.is_some()
    }

    /// The request body.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        if !self.configuration.is_empty() {
            body.insert(
                "configuration".into(),
                Value::Object(self.configuration.clone()),
            );
        }
        if !self.labels.is_empty() {
            body.insert("labels".into(), Value::Object(self.labels.clone()));
        }
        if let Some(d) = &self.description {
            body.insert("description".into(), d.clone().into());
        }
        if let Some(s) = self.expiration_seconds {
            body.insert("expiration_seconds".into(), s.into());
        }
        if let Some(secrets) = &self.secrets {
            body.insert("secrets".into(), secrets.to_json());
        }
        if self.verify {
            body.insert("verify".into(), true.into());
        }
        Value::Object(body)
    }
}

/// Filters of `GET /service_connectors`.
#[derive(Debug, Clone, Default)]
pub struct ConnectorFilters {
    /// Connector type.
    pub connector_type: Option<String>,
    /// Resource type served.
    pub resource_type: Option<String>,
    /// Labels (`key`, `value`), all of which must match.
    pub labels: Vec<(String, String)>,
    /// Page (1-based).
    pub page: Option<u64>,
    /// Page size.
    pub size: Option<u64>,
}

impl ConnectorFilters {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(t) = &self.connector_type {
            query.push(("connector_type", t.clone()));
        }
        if let Some(t) = &self.resource_type {
            query.push(("resource_type", t.clone()));
        }
        for (k, v) in &self.labels {
            query.push(("label", format!("{k}:{v}")));
        }
        paging(&mut query, self.page, self.size);
        query
    }
}

/// Filters of `GET /leases`.
#[derive(Debug, Clone, Default)]
pub struct LeaseFilters {
    /// Connector name or id.
    pub connector: Option<String>,
    /// Principal name or id.
    pub principal: Option<String>,
    /// Only active leases.
    pub active: bool,
    /// Page (1-based).
    pub page: Option<u64>,
    /// Page size.
    pub size: Option<u64>,
}

fn paging(query: &mut Vec<(&'static str, String)>, page: Option<u64>, size: Option<u64>) {
    if let Some(page) = page {
        query.push(("page", page.to_string()));
    }
    if let Some(size) = size {
        query.push(("size", size.to_string()));
    }
}

/// What a credentials request asks for.
#[derive(Debug, Clone, Default)]
pub struct CredentialsRequest {
    /// The resource type.
    pub resource_type: Option<String>,
    /// The resource.
    pub resource_id: Option<String>,
    /// The lifetime asked for (seconds).
    pub expiration_seconds: Option<u64>,
}

impl CredentialsRequest {
    fn body(&self) -> Value {
        let mut body = Map::new();
        if let Some(t) = &self.resource_type {
            body.insert("resource_type".into(), t.clone().into());
        }
        if let Some(id) = &self.resource_id {
            body.insert("resource_id".into(), id.clone().into());
        }
        if let Some(s) = self.expiration_seconds {
            body.insert("expiration_seconds".into(), s.into());
        }
        Value::Object(body)
    }
}

/// `POST /components`.
#[derive(Debug, Clone)]
pub struct NewComponent {
    /// Name.
    pub name: String,
    /// `artifact_store`, ...
    pub component_type: String,
    /// Flavor.
    pub flavor: String,
    /// Configuration.
    pub configuration: Map<String, Value>,
    /// The connector to link it to.
    pub connector: Option<String>,
    /// The resource to link it to.
    pub resource_id: Option<String>,
}

impl GatehouseClient {
    /// `GET /api/v1/service_connector_types`.
    pub async fn list_connector_types(&self) -> Result<Vec<ConnectorTypeSpec>, ClientError> {
        let url = self.api_url(&["service_connector_types"], &[]);
        self.call(Method::GET, url, None, true, None).await
    }

    /// `GET /api/v1/service_connector_types/{type}`.
    pub async fn get_connector_type(
        &self,
        connector_type: &str,
    ) -> Result<ConnectorTypeSpec, ClientError> {
        let url = self.api_url(&["service_connector_types", connector_type], &[]);
        self.call(Method::GET, url, None, true, None).await
    }

    /// `POST /api/v1/service_connectors`: 201 with the connector. With an idempotency key
    /// it is retried on connection failures and 503.
    pub async fn register_connector(
        &self,
        connector: &NewConnector,
        idempotency_key: Option<&str>,
    ) -> Result<Connector, ClientError> {
        let url = self.api_url(&["service_connectors"], &[]);
        let body = connector.body();
        self.call(Method::POST, url, Some(&body), false, idempotency_key)
            .await
    }

    /// `POST /api/v1/service_connectors/verify`: verifies a connector without saving it.
    pub async fn verify_new_connector(
        &self,
        connector: &NewConnector,
    ) -> Result<Verification, ClientError> {
        let url = self.api_url(&["service_connectors", "verify"], &[]);
        let body = connector.body();
        self.call(Method::POST, url, Some(&body), true, None).await
    }

    /// `GET /api/v1/service_connectors`.
    pub async fn list_connectors(
        &self,
        filters: &ConnectorFilters,
    ) -> Result<Page<Connector>, ClientError> {
        let url = self.api_url(&["service_connectors"], &filters.query());
        self.call(Method::GET, url, None, true, None).await
    }

    /// `GET /api/v1/service_connectors/{name_or_id}`.
    pub async fn get_connector(&self, name_or_id: &str) -> Result<Connector, ClientError> {
        let url = self.api_url(&["service_connectors", name_or_id], &[]);
        self.call(Method::GET, url, None, true, None).await
    }

    /// `PATCH /api/v1/service_connectors/{name_or_id}`.
    pub async fn update_connector(
        &self,
        name_or_id: &str,
        update: &ConnectorUpdate,
    ) -> Result<Connector, ClientError> {
        let url = self.api_url(&["service_connectors", name_or_id], &[]);
        let body = update.body();
        self.call(Method::PATCH, url, Some(&body), false, None)
            .await
    }

    /// `DELETE /api/v1/service_connectors/{name_or_id}` (409 `in_use` while components
    /// are linked to it).
    pub async fn delete_connector(&self, name_or_id: &str) -> Result<(), ClientError> {
        let url = self.api_url(&["service_connectors", name_or_id], &[]);
        self.call_empty(Method::DELETE, url, None, false).await
    }

    /// `POST /api/v1/service_connectors/{c}/verify`.
    pub async fn verify_connector(
        &self,
        name_or_id: &str,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
        list_resources: bool,
    ) -> Result<Verification, ClientError> {
        let url = self.api_url(&["service_connectors", name_or_id, "verify"], &[]);
        let mut body = Map::new();
        if let Some(t) = resource_type {
            body.insert("resource_type".into(), t.into());
        }
        if let Some(id) = resource_id {
            body.insert("resource_id".into(), id.into());
        }
        if list_resources {
            body.insert("list_resources".into(), true.into());
        }
        self.call(Method::POST, url, Some(&Value::Object(body)), true, None)
            .await
    }

    /// `GET /api/v1/service_connector_resources`.
    pub async fn list_connector_resources(
        &self,
        connector_type: Option<&str>,
        resource_type: Option<&str>,
        resource_id: Option<&str>,
    ) -> Result<Vec<ConnectorResources>, ClientError> {
        let mut query = Vec::new();
        for (key, value) in [
            ("connector_type", connector_type),
            ("resource_type", resource_type),
            ("resource_id", resource_id),
        ] {
            if let Some(v) = value {
                query.push((key, v.to_owned()));
            }
        }
        let url = self.api_url(&["service_connector_resources"], &query);
        self.call(Method::GET, url, None, true, None).await
    }

    /// `POST /api/v1/service_connectors/{c}/credentials`: a lease. Sent once (each call
    /// is a new lease).
    pub async fn connector_credentials(
        &self,
        name_or_id: &str,
        request: &CredentialsRequest,
    ) -> Result<IssuedCredentials, ClientError> {
        let url = self.api_url(&["service_connectors", name_or_id, "credentials"], &[]);
        let body = request.body();
        self.call(Method::POST, url, Some(&body), false, None).await
    }

    /// `POST /api/v1/service_connectors/{c}/grants`. Granting twice ends the same way.
    pub async fn grant_connector(
        &self,
        name_or_id: &str,
        principal: &str,
        resource_ids: &[String],
    ) -> Result<Connector, ClientError> {
        let url = self.api_url(&["service_connectors", name_or_id, "grants"], &[]);
        let mut body = Map::new();
        body.insert("principal".into(), principal.into());
        if !resource_ids.is_empty() {
            body.insert("resource_ids".into(), resource_ids.to_vec().into());
        }
        self.call(Method::POST, url, Some(&Value::Object(body)), true, None)
            .await
    }

    /// `GET /api/v1/service_connectors/{c}/grants`.
    pub async fn list_grants(&self, name_or_id: &str) -> Result<Vec<Grant>, ClientError> {
        let url = self.api_url(&["service_connectors", name_or_id, "grants"], &[]);
        self.call(Method::GET, url, None, true, None).await
    }

    /// `DELETE /api/v1/service_connectors/{c}/grants/{principal}`.
    pub async fn revoke_grant(&self, name_or_id: &str, principal: &str) -> Result<(), ClientError> {
        let url = self.api_url(
            &["service_connectors", name_or_id, "grants", principal],
            &[],
        );
        self.call_empty(Method::DELETE, url, None, false).await
    }

    /// `GET /api/v1/leases`.
    pub async fn list_leases(&self, filters: &LeaseFilters) -> Result<Page<Lease>, ClientError> {
        let mut query = Vec::new();
        if let Some(c) = &filters.connector {
            query.push(("connector", c.clone()));
        }
        if let Some(p) = &filters.principal {
            query.push(("principal", p.clone()));
        }
        if filters.active {
            query.push(("active", "true".to_owned()));
        }
        paging(&mut query, filters.page, filters.size);
        let url = self.api_url(&["leases"], &query);
        self.call(Method::GET, url, None, true, None).await
    }

    /// `GET /api/v1/leases/{id}`.
    pub async fn get_lease(&self, id: &str) -> Result<Lease, ClientError> {
        let url = self.api_url(&["leases", id], &[]);
        self.call(Method::GET, url, None, true, None).await
    }

    /// `POST /api/v1/leases/{id}/revoke` (409 `not_revocable` when the cloud cannot).
    pub async fn revoke_lease(&self, id: &str) -> Result<Lease, ClientError> {
        let url = self.api_url(&["leases", id, "revoke"], &[]);
        self.call(Method::POST, url, None, true, None).await
    }

    /// `POST /api/v1/components`.
    pub async fn register_component(
        &self,
        component: &NewComponent,
        idempotency_key: Option<&str>,
    ) -> Result<Component, ClientError> {
        let url = self.api_url(&["components"], &[]);
        let mut body = Map::new();
        body.insert("name".into(), component.name.clone().into());
        body.insert("type".into(), component.component_type.clone().into());
        body.insert("flavor".into(), component.flavor.clone().into());
        body.insert(
            "configuration".into(),
            Value::Object(component.configuration.clone()),
        );
        if let Some(c) = &component.connector {
            body.insert("connector".into(), c.clone().into());
        }
        if let Some(id) = &component.resource_id {
            body.insert("resource_id".into(), id.clone().into());
        }
        self.call(
            Method::POST,
            url,
            Some(&Value::Object(body)),
            false,
            idempotency_key,
        )
        .await
    }

    /// `GET /api/v1/components?type=`.
    pub async fn list_components(
        &self,
        component_type: &str,
        page: Option<u64>,
        size: Option<u64>,
    ) -> Result<Page<Component>, ClientError> {
        let mut query = vec![("type", component_type.to_owned())];
        paging(&mut query, page, size);
        let url = self.api_url(&["components"], &query);
        self.call(Method::GET, url, None, true, None).await
    }

    /// `/api/v1/components/{name}[/action]?type=`.
    fn component_url(
        &self,
        component_type: &str,
        name: &str,
        action: Option<&str>,
    ) -> reqwest::Url {
        let mut segments = vec!["components", name];
        segments.extend(action);
        self.api_url(&segments, &[("type", component_type.to_owned())])
    }

    /// `GET /api/v1/components/{name}?type=`.
    pub async fn get_component(
        &self,
        component_type: &str,
        name: &str,
    ) -> Result<Component, ClientError> {
        let url = self.component_url(component_type, name, None);
        self.call(Method::GET, url, None, true, None).await
    }

    /// `PATCH /api/v1/components/{name}?type=` (`configuration`: a value sets, `null`
    /// removes).
    pub async fn update_component(
        &self,
        component_type: &str,
        name: &str,
        configuration: &Map<String, Value>,
    ) -> Result<Component, ClientError> {
        let url = self.component_url(component_type, name, None);
        let body = serde_json::json!({ "configuration": configuration });
        self.call(Method::PATCH, url, Some(&body), false, None)
            .await
    }

    /// `DELETE /api/v1/components/{name}?type=`.
    pub async fn delete_component(
        &self,
        component_type: &str,
        name: &str,
    ) -> Result<(), ClientError> {
        let url = self.component_url(component_type, name, None);
        self.call_empty(Method::DELETE, url, None, false).await
    }

    /// `POST /api/v1/components/{name}/connect?type=`. Connecting twice ends the same way.
    pub async fn connect_component(
        &self,
        component_type: &str,
        name: &str,
        connector: &str,
        resource_id: Option<&str>,
    ) -> Result<Component, ClientError> {
        let url = self.component_url(component_type, name, Some("connect"));
        let mut body = Map::new();
        body.insert("connector".into(), connector.into());
        if let Some(id) = resource_id {
            body.insert("resource_id".into(), id.into());
        }
        self.call(Method::POST, url, Some(&Value::Object(body)), true, None)
            .await
    }

    /// `POST /api/v1/components/{name}/disconnect?type=`.
    pub async fn disconnect_component(
        &self,
        component_type: &str,
        name: &str,
    ) -> Result<Component, ClientError> {
        let url = self.component_url(component_type, name, Some("disconnect"));
        self.call(Method::POST, url, None, true, None).await
    }

    /// `POST /api/v1/components/{name}/credentials?type=`: a lease for the component's
    /// resource.
    pub async fn component_credentials(
        &self,
        component_type: &str,
        name: &str,
        expiration_seconds: Option<u64>,
    ) -> Result<IssuedCredentials, ClientError> {
        let url = self.component_url(component_type, name, Some("credentials"));
        let body = CredentialsRequest {
            expiration_seconds,
            ..CredentialsRequest::default()
        }
        .body();
        self.call(Method::POST, url, Some(&body), false, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_connector_sends_only_what_is_set() {
        let mut secrets = SecretFields::default();
        secrets.insert("aws_secret_access_key", SecretString::from("s3cr3t"));
        let connector = NewConnector {
            name: "aws-ml".into(),
            connector_type: "aws".into(),
            auth_method: "iam-role".into(),
            resource_types: vec!["s3-bucket".into()],
            secrets,
            verify: Some(false),
            ..NewConnector::default()
        };
        assert_eq!(
            connector.body(),
            serde_json::json!({"name": "aws-ml", "connector_type": "aws", "auth_method": "iam-role",
                "resource_types": ["s3-bucket"], "secrets": {"aws_secret_access_key": "s3cr3t"},
                "verify": false})
        );
        let debug = format!("{connector:?}");
        assert!(
            !debug.contains("s3cr3t") && debug.contains(HIDDEN),
            "{debug}"
        );
    }

    #[test]
    fn an_update_removes_with_null_and_replaces_secrets_whole() {
        let mut update = ConnectorUpdate::default();
        assert!(!update.changes_something());
        update.configuration.insert("region".into(), Value::Null);
        update.labels.insert("team".into(), "ml".into());
        update.secrets = Some(SecretFields::default());
        assert!(update.changes_something());
        assert_eq!(
            update.body(),
            serde_json::json!({"configuration": {"region": null}, "labels": {"team": "ml"},
                "secrets": {}})
        );
    }

    #[test]
    fn label_filters_are_key_colon_value_and_repeat() {
        let filters = ConnectorFilters {
            connector_type: Some("aws".into()),
            labels: vec![("team".into(), "ml".into()), ("env".into(), "prod".into())],
            ..ConnectorFilters::default()
        };
        assert_eq!(
            filters.query(),
            vec![
                ("connector_type", "aws".to_owned()),
                ("label", "team:ml".to_owned()),
                ("label", "env:prod".to_owned())
            ]
        );
    }

    #[test]
    fn credentials_decode_and_debug_hides_their_values() -> Result<(), serde_json::Error> {
        let issued: IssuedCredentials = serde_json::from_value(serde_json::json!({
            "lease_id": "l1", "connector_id": "c1", "connector_type": "aws", "auth_method": "iam-role",
            "resource_type": "s3-bucket", "resource_id": "s3://b", "expires_at": "2026-12-03T12:00:00Z",
            "revocable": false, "credentials": {"aws_access_key_id": "ASIA1", "aws_secret_access_key": "wJalr"},
            "new_field": 1}))?;
        assert_eq!(issued.credentials.str("aws_access_key_id"), Some("ASIA1"));
        let debug = format!("{issued:?}");
        assert!(
            !debug.contains("wJalr") && !debug.contains("ASIA1"),
            "{debug}"
        );
        // -o json prints the answer as it came, unknown fields included.
        let back = serde_json::to_value(&issued)?;
        assert_eq!(back["credentials"]["aws_secret_access_key"], "wJalr");
        assert_eq!(back["new_field"], 1);
        Ok(())
    }

    #[test]
    fn a_connector_decodes_with_unknown_fields_kept() -> Result<(), serde_json::Error> {
        let connector: Connector = serde_json::from_value(serde_json::json!({
            "id": "0190f0a8-3b1c-7000-8000-000000000001", "name": "aws-ml", "connector_type": "aws",
            "auth_method": "iam-role", "resource_types": ["s3-bucket"], "resource_id": null,
            "configuration": {"region": "us-east-1"}, "secrets": {"aws_secret_access_key": "[HIDDEN]"},
            "labels": {"team": "ml"}, "description": "", "expiration_seconds": null, "expires_at": null,
            "issues_long_lived_credentials": false, "implicit": false, "owner": "u",
            "grants": [{"principal": "p", "principal_name": "ci-bot", "resource_ids": null}],
            "components": [], "created": "2026-12-03T11:00:00Z", "updated": "2026-12-03T11:00:00Z",
            "health": "ok"}))?;
        let sparse: Connector = serde_json::from_value(serde_json::json!({
            "id": "c", "name": "n", "connector_type": "aws", "auth_method": "m",
            "resource_types": null, "configuration": null, "labels": null, "grants": null}))?;
        assert!(sparse.resource_types.is_empty() && sparse.grants.is_empty());
        assert_eq!(connector.grants[0].principal_name, "ci-bot");
        assert_eq!(connector.extra["health"], "ok");
        Ok(())
    }
}
