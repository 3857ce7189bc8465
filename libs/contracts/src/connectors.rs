//! The connectors service's contract: service connectors, their leases, and the stack
//! components linked to them.
//!
//! A **connector** keeps long-lived cloud credentials on the server. Its secrets are
//! sealed with a per-connector data key kept in the stream's secret slots, never in an
//! event, a view or a bus message in clear (commands carry them sealed for the one
//! command). A **lease** is one issue of short-lived credentials for one resource; its
//! events say who got what until when, never the credential. A **component** (an
//! artifact store, a container registry, an orchestrator) names a connector and a
//! resource and holds no credentials itself.
//!
//! Who may do what is decided here, once, for the gateway's reads and the service's
//! commands alike: [`ConnectorView::access`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use gatehouse_secrets::SealedSecret;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::aggregate_events;
use crate::catalogue::ConnectorTypeSpec;
use crate::commands::{Caller, Command};
use crate::failures::ConnectorsFailure;
use crate::ids::{ComponentId, ConnectorId, LeaseId, PrincipalId};
use crate::names::Name;

/// The aggregate of connectors (`connector-<id>` streams, `gatehouse.events.connector.*`).
pub const CONNECTOR_AGGREGATE: &str = "connector";
/// The aggregate of leases (`lease-<id>` streams, `gatehouse.events.lease.*`).
pub const LEASE_AGGREGATE: &str = "lease";
/// The aggregate of components (`component-<id>` streams, `gatehouse.events.component.*`).
pub const COMPONENT_AGGREGATE: &str = "component";

/// The unique-name scope of connectors.
pub const CONNECTOR_NAME_SCOPE: &str = "connector_name";
/// The unique-name scope of components (names are unique per component type:
/// `<type>/<name>`).
pub const COMPONENT_NAME_SCOPE: &str = "component_name";

/// What `describe` and every answer show in place of a secret value.
pub const HIDDEN: &str = "[HIDDEN]";

/// The largest configuration (or label set, or secret set) accepted, serialized, in bytes.
pub const MAX_CONFIGURATION_BYTES: usize = 16 * 1024;

/// The stream of a connector.
pub fn connector_stream(id: ConnectorId) -> crate::StreamId {
    crate::StreamId::new(CONNECTOR_AGGREGATE, Uuid::from(id))
}

/// The stream of a lease.
pub fn lease_stream(id: LeaseId) -> crate::StreamId {
    crate::StreamId::new(LEASE_AGGREGATE, Uuid::from(id))
}

/// The stream of a component.
pub fn component_stream(id: ComponentId) -> crate::StreamId {
    crate::StreamId::new(COMPONENT_AGGREGATE, Uuid::from(id))
}

/// The claim value that makes a component's name unique within its type.
pub fn component_name_claim(component_type: ComponentType, name: &str) -> String {
    format!("{}/{name}", component_type.as_str())
}

// ---------------------------------------------------------------------------------------
// Events: connector
// ---------------------------------------------------------------------------------------

/// A principal a connector was granted to, optionally limited to some resources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct ConnectorGrant {
    /// Who may use the connector.
    #[schema(value_type = uuid::Uuid)]
    pub principal: PrincipalId,
    /// The principal's name when the grant was made (for display).
    pub principal_name: String,
    /// The resource ids (canonical) the grant covers; absent: every resource the
    /// connector reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_ids: Option<Vec<String>>,
}

/// `connector.registered`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectorRegistered {
    /// Name, unique among connectors.
    pub name: Name,
    /// The connector type (`aws`).
    pub connector_type: String,
    /// The auth method.
    pub auth_method: String,
    /// The resource types it serves; empty: every type the method serves.
    pub resource_types: Vec<String>,
    /// The one resource it serves (canonical), if single-instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Non-secret configuration.
    pub configuration: Map<String, Value>,
    /// The names of the secret fields set (their values are sealed in a secret slot).
    pub secret_fields: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// What it is for.
    pub description: String,
    /// The lifetime of what it issues (seconds), if not the method's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_seconds: Option<u64>,
    /// When the configured credentials themselves expire (a pasted STS token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether its method hands out the configured long-lived credentials as they are.
    pub long_lived: bool,
    /// Whether its method lends the server's own identity.
    pub implicit: bool,
    /// Who registered it (manages it with admins).
    pub owner: PrincipalId,
}

/// `connector.updated`: each field present is the new value (configuration and labels
/// whole, after the merge).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectorUpdated {
    /// The new configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Map<String, Value>>,
    /// The new labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The new description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The new resource types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_types: Option<Vec<String>>,
    /// The new resource id: `Some(None)` makes it multi-instance.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::nullable::deserialize"
    )]
    pub resource_id: Option<Option<String>>,
    /// The new lifetime: `Some(None)` goes back to the method's default.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::nullable::deserialize"
    )]
    pub expiration_seconds: Option<Option<u64>>,
    /// The new expiry of the configured credentials.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::nullable::deserialize"
    )]
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// `connector.secrets_replaced`: a new set of secrets, sealed under a new data key (the
/// old key is destroyed with the old secrets).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectorSecretsReplaced {
    /// The names of the secret fields now set.
    pub secret_fields: Vec<String>,
}

/// `connector.grant_revoked`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectorGrantRevoked {
    /// Whose grant ended.
    pub principal: PrincipalId,
}

/// `connector.component_linked` / `connector.component_unlinked`: a component was
/// connected to (or disconnected from) this connector. Kept on the connector's stream so
/// that deleting a connector in use is refused by its own decide.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectorComponentLink {
    /// The component.
    pub component_id: ComponentId,
}

/// `connector.deleted`: the connector is gone and its data key destroyed (its sealed
/// secrets cannot be opened any more, by anyone); its name is free.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectorDeleted {
    /// The name it had.
    pub name: Name,
}

aggregate_events! {
    /// Events of a connector (`connector-<id>` streams).
    pub enum ConnectorEvent: "connector" {
        /// The connector was registered.
        Registered(ConnectorRegistered) = "registered",
        /// Configuration, labels, description or lifetimes changed.
        Updated(ConnectorUpdated) = "updated",
        /// The secrets were replaced (new data key).
        SecretsReplaced(ConnectorSecretsReplaced) = "secrets_replaced",
        /// The connector was granted to a principal (or a grant changed).
        Granted(ConnectorGrant) = "granted",
        /// A grant ended.
        GrantRevoked(ConnectorGrantRevoked) = "grant_revoked",
        /// A component was connected to it.
        ComponentLinked(ConnectorComponentLink) = "component_linked",
        /// A component was disconnected from it.
        ComponentUnlinked(ConnectorComponentLink) = "component_unlinked",
        /// The connector was deleted and its key shredded.
        Deleted(ConnectorDeleted) = "deleted",
    }
}

// ---------------------------------------------------------------------------------------
// Events: lease
// ---------------------------------------------------------------------------------------

/// `lease.issued`: credentials were issued. Never the credential itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LeaseIssued {
    /// The connector that issued it.
    pub connector_id: ConnectorId,
    /// Its name then.
    pub connector_name: String,
    /// Its type.
    pub connector_type: String,
    /// The auth method the credentials were issued with.
    pub auth_method: String,
    /// Who got them.
    pub principal: PrincipalId,
    /// The principal's name.
    pub principal_name: String,
    /// The resource type.
    pub resource_type: String,
    /// The resource (canonical), when the type has instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// The component the credentials were asked for through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_id: Option<ComponentId>,
    /// When they stop working.
    pub expires_at: DateTime<Utc>,
    /// Whether they can be revoked at the cloud before then.
    pub revocable: bool,
}

/// `lease.revoked`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LeaseRevoked {
    /// When.
    pub revoked_at: DateTime<Utc>,
}

/// `lease.expired`: recorded for audit (the credentials stopped working at `expires_at`
/// whether or not this was written yet).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LeaseExpired {
    /// The expiry that was reached.
    pub expires_at: DateTime<Utc>,
}

aggregate_events! {
    /// Events of a lease (`lease-<id>` streams).
    pub enum LeaseEvent: "lease" {
        /// Credentials were issued.
        Issued(LeaseIssued) = "issued",
        /// They were revoked at the cloud.
        Revoked(LeaseRevoked) = "revoked",
        /// They reached their expiry.
        Expired(LeaseExpired) = "expired",
    }
}

// ---------------------------------------------------------------------------------------
// Events: component
// ---------------------------------------------------------------------------------------

/// What a component is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ComponentType {
    /// Where pipelines keep artifacts (`s3`).
    ArtifactStore,
    /// Where images are pushed (`aws`: ECR).
    ContainerRegistry,
    /// Where pipelines run (`kubernetes`).
    Orchestrator,
}

impl ComponentType {
    /// The type as it travels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ComponentType::ArtifactStore => "artifact_store",
            ComponentType::ContainerRegistry => "container_registry",
            ComponentType::Orchestrator => "orchestrator",
        }
    }
}

impl std::fmt::Display for ComponentType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a flavor of component needs from a connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FlavorRequirement {
    /// The connector type it needs.
    pub connector_type: &'static str,
    /// The resource type it needs.
    pub resource_type: &'static str,
}

/// The flavors this build knows, per component type, and what each needs.
pub fn flavor_requirement(
    component_type: ComponentType,
    flavor: &str,
) -> Option<FlavorRequirement> {
    let (connector_type, resource_type) = match (component_type, flavor) {
        (ComponentType::ArtifactStore, "s3") => ("aws", "s3-bucket"),
        (ComponentType::ContainerRegistry, "aws") => ("aws", "docker-registry"),
        (ComponentType::Orchestrator, "kubernetes") => ("aws", "kubernetes-cluster"),
        _ => return None,
    };
    Some(FlavorRequirement {
        connector_type,
        resource_type,
    })
}

/// The flavors of a component type (for error messages and help).
pub fn flavors(component_type: ComponentType) -> &'static [&'static str] {
    match component_type {
        ComponentType::ArtifactStore => &["s3"],
        ComponentType::ContainerRegistry => &["aws"],
        ComponentType::Orchestrator => &["kubernetes"],
    }
}

/// The resource id a component's own configuration names, if its flavor takes one from
/// it (an s3 artifact store's bucket is its `path`; a registry's is its `uri`).
pub fn component_resource_id(
    component_type: ComponentType,
    flavor: &str,
    configuration: &Map<String, Value>,
) -> Option<String> {
    let key = match (component_type, flavor) {
        (ComponentType::ArtifactStore, "s3") => "path",
        (ComponentType::ContainerRegistry, "aws") => "uri",
        _ => return None,
    };
    configuration
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// `component.registered`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComponentRegistered {
    /// Name, unique within its type.
    pub name: Name,
    /// The component type.
    pub component_type: ComponentType,
    /// The flavor (`s3`).
    pub flavor: String,
    /// Its configuration (never credentials).
    pub configuration: Map<String, Value>,
    /// Who registered it.
    pub owner: PrincipalId,
}

/// `component.updated`: the new configuration (whole, after the merge).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComponentUpdated {
    /// The new configuration.
    pub configuration: Map<String, Value>,
}

/// `component.connected`: linked to a connector for one resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComponentConnected {
    /// The connector.
    pub connector_id: ConnectorId,
    /// Its name then.
    pub connector_name: String,
    /// The resource type the flavor needs.
    pub resource_type: String,
    /// The resource (canonical), when the type has instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
}

/// `component.disconnected`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComponentDisconnected {
    /// The connector it was linked to.
    pub connector_id: ConnectorId,
}

/// `component.deleted`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComponentDeleted {
    /// The name it had.
    pub name: Name,
    /// Its type.
    pub component_type: ComponentType,
}

aggregate_events! {
    /// Events of a component (`component-<id>` streams).
    pub enum ComponentEvent: "component" {
        /// The component was registered.
        Registered(ComponentRegistered) = "registered",
        /// Its configuration changed.
        Updated(ComponentUpdated) = "updated",
        /// It was linked to a connector.
        Connected(ComponentConnected) = "connected",
        /// Its link was removed.
        Disconnected(ComponentDisconnected) = "disconnected",
        /// It was deleted.
        Deleted(ComponentDeleted) = "deleted",
    }
}

// ---------------------------------------------------------------------------------------
// Read models, and who may see and use what
// ---------------------------------------------------------------------------------------

/// The view kind of connectors.
pub const CONNECTOR_VIEW: &str = "connector";
/// The view kind of leases.
pub const LEASE_VIEW: &str = "lease";
/// The view kind of components.
pub const COMPONENT_VIEW: &str = "component";

/// A connector as its events leave it: what the service decides on and the read model
/// shows (secret field names only, never values).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Connector {
    /// Name.
    pub name: String,
    /// Type.
    pub connector_type: String,
    /// Auth method.
    pub auth_method: String,
    /// Resource types it serves; empty: every type its method serves.
    pub resource_types: Vec<String>,
    /// The one resource it serves, if single-instance.
    pub resource_id: Option<String>,
    /// Non-secret configuration.
    pub configuration: Map<String, Value>,
    /// The secret fields set.
    pub secret_fields: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Description.
    pub description: String,
    /// Lifetime of what it issues, if not the method's default.
    pub expiration_seconds: Option<u64>,
    /// When the configured credentials expire.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether it hands out long-lived credentials as they are.
    pub long_lived: bool,
    /// Whether it lends the server's own identity.
    pub implicit: bool,
    /// Who registered it.
    pub owner: PrincipalId,
    /// Who else may use it.
    pub grants: Vec<ConnectorGrant>,
    /// The components connected to it.
    pub components: Vec<ComponentId>,
}

/// What a caller may do with a connector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectorAccess<'a> {
    /// Manage it (its owner, an admin) and use it for anything it reaches.
    Manage,
    /// Use it (a grantee), for these resource ids only when limited.
    Use {
        /// The resource ids the grant covers; `None`: every one.
        resource_ids: Option<&'a [String]>,
    },
    /// Nothing: to this caller it does not exist (404).
    None,
}

impl ConnectorAccess<'_> {
    /// Whether the caller may see and use the connector at all.
    pub fn may_use(&self) -> bool {
        !matches!(self, ConnectorAccess::None)
    }

    /// Whether the caller may change, grant or delete it.
    pub fn may_manage(&self) -> bool {
        matches!(self, ConnectorAccess::Manage)
    }

    /// Whether the caller may use it for `resource_id` (canonical; `None` for a resource
    /// type without instances, which a limited grant does not cover).
    pub fn covers(&self, resource_id: Option<&str>) -> bool {
        match self {
            ConnectorAccess::Manage => true,
            ConnectorAccess::Use { resource_ids: None } => true,
            ConnectorAccess::Use {
                resource_ids: Some(ids),
            } => resource_id.is_some_and(|id| ids.iter().any(|r| r == id)),
            ConnectorAccess::None => false,
        }
    }
}

impl Connector {
    /// What `caller` may do with this connector: the one rule for the gateway's reads and
    /// the service's commands.
    pub fn access(&self, caller: &Caller) -> ConnectorAccess<'_> {
        if caller.may_manage(self.owner) {
            return ConnectorAccess::Manage;
        }
        match self.grants.iter().find(|g| g.principal == caller.id) {
            Some(grant) => ConnectorAccess::Use {
                resource_ids: grant.resource_ids.as_deref(),
            },
            None => ConnectorAccess::None,
        }
    }

    /// Whether it serves `resource_type` (of the types its method serves, which the
    /// caller checks against the catalogue).
    pub fn serves(&self, resource_type: &str) -> bool {
        self.resource_types.is_empty() || self.resource_types.iter().any(|t| t == resource_type)
    }

    /// The fold shared by the aggregate and the read model: `None` before registration
    /// and after deletion.
    pub fn evolve(state: Option<Self>, event: &ConnectorEvent) -> Option<Self> {
        if let ConnectorEvent::Registered(e) = event {
            return Some(Connector {
                name: e.name.to_string(),
                connector_type: e.connector_type.clone(),
                auth_method: e.auth_method.clone(),
                resource_types: e.resource_types.clone(),
                resource_id: e.resource_id.clone(),
                configuration: e.configuration.clone(),
                secret_fields: e.secret_fields.clone(),
                labels: e.labels.clone(),
                description: e.description.clone(),
                expiration_seconds: e.expiration_seconds,
                expires_at: e.expires_at,
                long_lived: e.long_lived,
                implicit: e.implicit,
                owner: e.owner,
                grants: Vec::new(),
                components: Vec::new(),
            });
        }
        let mut c = state?;
        match event {
            ConnectorEvent::Registered(_) => unreachable!("handled above"),
            ConnectorEvent::Updated(e) => {
                if let Some(v) = &e.configuration {
                    c.configuration = v.clone();
                }
                if let Some(v) = &e.labels {
                    c.labels = v.clone();
                }
                if let Some(v) = &e.description {
                    c.description = v.clone();
                }
                if let Some(v) = &e.resource_types {
                    c.resource_types = v.clone();
                }
                if let Some(v) = &e.resource_id {
                    c.resource_id = v.clone();
                }
                if let Some(v) = e.expiration_seconds {
                    c.expiration_seconds = v;
                }
                if let Some(v) = e.expires_at {
                    c.expires_at = v;
                }
            }
            ConnectorEvent::SecretsReplaced(e) => c.secret_fields = e.secret_fields.clone(),
            ConnectorEvent::Granted(g) => {
                c.grants.retain(|old| old.principal != g.principal);
                c.grants.push(g.clone());
            }
            ConnectorEvent::GrantRevoked(e) => c.grants.retain(|g| g.principal != e.principal),
            ConnectorEvent::ComponentLinked(e) => {
                if !c.components.contains(&e.component_id) {
                    c.components.push(e.component_id);
                }
            }
            ConnectorEvent::ComponentUnlinked(e) => c.components.retain(|x| *x != e.component_id),
            ConnectorEvent::Deleted(_) => return None,
        }
        Some(c)
    }
}

/// A connector in the read store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectorView {
    /// Id.
    pub id: ConnectorId,
    /// The connector.
    #[serde(flatten)]
    pub connector: Connector,
    /// Registered at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
}

/// Where a lease stands.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LeaseStatus {
    /// Issued and not yet expired or revoked.
    Active,
    /// Revoked at the cloud.
    Revoked,
    /// Past its expiry.
    Expired,
}

/// A lease as its events leave it (never the credential).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// What was issued to whom.
    #[serde(flatten)]
    pub issued: LeaseIssued,
    /// Revoked, when.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether `lease.expired` was recorded.
    pub expired: bool,
}

impl Lease {
    /// Where it stands at `now` (an expiry counts from `expires_at`, recorded or not).
    pub fn status(&self, now: DateTime<Utc>) -> LeaseStatus {
        if self.revoked_at.is_some() {
            LeaseStatus::Revoked
        } else if self.expired || self.issued.expires_at <= now {
            LeaseStatus::Expired
        } else {
            LeaseStatus::Active
        }
    }

    /// Whether `caller` may see it: whoever holds it, admins, and the owner of the
    /// connector it was issued through (`connector_owner`, when known).
    pub fn visible_to(&self, caller: &Caller, connector_owner: Option<PrincipalId>) -> bool {
        caller.may_manage(self.issued.principal)
            || connector_owner.is_some_and(|owner| caller.may_manage(owner))
    }

    /// The fold shared by the aggregate and the read model.
    pub fn evolve(state: Option<Self>, event: &LeaseEvent) -> Option<Self> {
        match event {
            LeaseEvent::Issued(e) => Some(Lease {
                issued: e.clone(),
                revoked_at: None,
                expired: false,
            }),
            LeaseEvent::Revoked(e) => state.map(|l| Lease {
                revoked_at: Some(e.revoked_at),
                ..l
            }),
            LeaseEvent::Expired(_) => state.map(|l| Lease { expired: true, ..l }),
        }
    }
}

/// Whether a live lease issued at `issued_at` and expiring at `expires_at` may be handed
/// out again at `now`: while more than a quarter of its lifetime is left. The one rule for
/// the connectors service and every gateway replica.
pub fn lease_reusable(
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> bool {
    expires_at - now > (expires_at - issued_at) / 4
}

/// A lease in the read store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaseView {
    /// Id.
    pub id: LeaseId,
    /// The lease.
    #[serde(flatten)]
    pub lease: Lease,
    /// Issued at.
    pub issued_at: DateTime<Utc>,
}

/// A component's link to a connector and a resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentLink {
    /// The connector.
    #[schema(value_type = uuid::Uuid)]
    pub connector_id: ConnectorId,
    /// Its name when connected.
    pub connector_name: String,
    /// The resource type.
    pub resource_type: String,
    /// The resource.
    pub resource_id: Option<String>,
}

/// A component as its events leave it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// Name.
    pub name: String,
    /// Type.
    pub component_type: ComponentType,
    /// Flavor.
    pub flavor: String,
    /// Configuration.
    pub configuration: Map<String, Value>,
    /// Who registered it.
    pub owner: PrincipalId,
    /// The link, if connected.
    pub connector: Option<ComponentLink>,
}

impl Component {
    /// The fold shared by the aggregate and the read model.
    pub fn evolve(state: Option<Self>, event: &ComponentEvent) -> Option<Self> {
        if let ComponentEvent::Registered(e) = event {
            return Some(Component {
                name: e.name.to_string(),
                component_type: e.component_type,
                flavor: e.flavor.clone(),
                configuration: e.configuration.clone(),
                owner: e.owner,
                connector: None,
            });
        }
        let mut c = state?;
        match event {
            ComponentEvent::Registered(_) => unreachable!("handled above"),
            ComponentEvent::Updated(e) => c.configuration = e.configuration.clone(),
            ComponentEvent::Connected(e) => {
                c.connector = Some(ComponentLink {
                    connector_id: e.connector_id,
                    connector_name: e.connector_name.clone(),
                    resource_type: e.resource_type.clone(),
                    resource_id: e.resource_id.clone(),
                })
            }
            ComponentEvent::Disconnected(_) => c.connector = None,
            ComponentEvent::Deleted(_) => return None,
        }
        Some(c)
    }
}

/// A component in the read store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentView {
    /// Id.
    pub id: ComponentId,
    /// The component.
    #[serde(flatten)]
    pub component: Component,
    /// Registered at.
    pub created: DateTime<Utc>,
    /// Last changed at.
    pub updated: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// A connector as proposed: for registering, and for verifying before registering.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnectorDraft {
    /// Name.
    pub name: Name,
    /// Type.
    pub connector_type: String,
    /// Auth method.
    pub auth_method: String,
    /// Resource types (empty: any of the method's).
    #[serde(default)]
    pub resource_types: Vec<String>,
    /// The one resource (raw; the service canonicalises it).
    #[serde(default)]
    pub resource_id: Option<String>,
    /// Non-secret configuration.
    #[serde(default)]
    pub configuration: Map<String, Value>,
    /// The secrets, sealed for the command (a JSON object of strings).
    #[serde(default)]
    pub secrets: Option<SealedSecret>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Lifetime of what it issues.
    #[serde(default)]
    pub expiration_seconds: Option<u64>,
    /// When the configured credentials expire.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Lists the connector-type catalogue. Appends nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListConnectorTypes {}

impl Command for ListConnectorTypes {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "list_connector_types";
    type Output = Vec<ConnectorTypeSpec>;
    type Code = ConnectorsFailure;
}

/// Registers a connector; verifies its credentials first unless `verify` is false.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegisterConnector {
    /// The connector.
    pub draft: ConnectorDraft,
    /// Verify the credentials before storing anything.
    pub verify: bool,
}

impl Command for RegisterConnector {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "register_connector";
    type Output = ConnectorView;
    type Code = ConnectorsFailure;
}

/// What a verification found, per resource type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceReach {
    /// The resource type.
    pub resource_type: String,
    /// The resources of that type the connector reaches (those the caller may use), when
    /// listed or named.
    pub resource_ids: Vec<String>,
    /// Why the connector cannot reach resources of this type, if it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer to a verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verified {
    /// Who the cloud says the credentials are (an ARN).
    pub identity: String,
    /// Per resource type.
    pub resources: Vec<ResourceReach>,
}

/// Verifies an unsaved connector. Appends nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerifyDraft {
    /// The connector.
    pub draft: ConnectorDraft,
    /// List what it reaches.
    pub list_resources: bool,
}

impl Command for VerifyDraft {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "verify_draft";
    type Output = Verified;
    type Code = ConnectorsFailure;
}

/// Verifies a registered connector, optionally for one resource type or resource, and
/// optionally lists what it reaches. Appends nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VerifyConnector {
    /// The connector.
    pub connector: ConnectorId,
    /// Only this resource type.
    #[serde(default)]
    pub resource_type: Option<String>,
    /// Only this resource (raw).
    #[serde(default)]
    pub resource_id: Option<String>,
    /// List what it reaches.
    #[serde(default)]
    pub list_resources: bool,
}

impl Command for VerifyConnector {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "verify_connector";
    type Output = Verified;
    type Code = ConnectorsFailure;
}

/// Changes a connector. `configuration` and `labels` merge (a key set to `null` is
/// removed); `secrets`, when given, replace the whole set under a new data key.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UpdateConnector {
    /// The connector.
    pub connector: ConnectorId,
    /// Configuration to merge.
    #[serde(default)]
    pub configuration: Option<Map<String, Value>>,
    /// Labels to merge (`null` removes).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, Option<String>>>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New resource types.
    #[serde(default)]
    pub resource_types: Option<Vec<String>>,
    /// New resource id (`null`: multi-instance).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::nullable::deserialize"
    )]
    pub resource_id: Option<Option<String>>,
    /// New lifetime (`null`: the method's default).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::nullable::deserialize"
    )]
    pub expiration_seconds: Option<Option<u64>>,
    /// New expiry of the configured credentials.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::nullable::deserialize"
    )]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// A whole new set of secrets, sealed for the command.
    #[serde(default)]
    pub secrets: Option<SealedSecret>,
    /// Verify the changed connector before storing the change.
    #[serde(default)]
    pub verify: bool,
}

impl Command for UpdateConnector {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "update_connector";
    type Output = ConnectorView;
    type Code = ConnectorsFailure;
}

/// Deletes a connector and shreds its key; refused while components use it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeleteConnector {
    /// The connector.
    pub connector: ConnectorId,
}

impl Command for DeleteConnector {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "delete_connector";
    type Output = ();
    type Code = ConnectorsFailure;
}

/// Grants a connector to a principal (replacing an earlier grant to them).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GrantConnector {
    /// The connector.
    pub connector: ConnectorId,
    /// The grant (resource ids raw; the service canonicalises them).
    pub grant: ConnectorGrant,
}

impl Command for GrantConnector {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "grant_connector";
    type Output = ConnectorView;
    type Code = ConnectorsFailure;
}

/// Ends a principal's grant.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RevokeConnectorGrant {
    /// The connector.
    pub connector: ConnectorId,
    /// Whose grant.
    pub principal: PrincipalId,
}

impl Command for RevokeConnectorGrant {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "revoke_connector_grant";
    type Output = ConnectorView;
    type Code = ConnectorsFailure;
}

/// Asks a connector for credentials for one resource. A live lease of the caller for
/// the same resource with more than a quarter of its lifetime left is handed out again
/// (no cloud call, no event).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssueCredentials {
    /// The connector.
    pub connector: ConnectorId,
    /// The resource type.
    pub resource_type: String,
    /// The resource (raw).
    #[serde(default)]
    pub resource_id: Option<String>,
    /// The lifetime asked for, within the method's bounds.
    #[serde(default)]
    pub expiration_seconds: Option<u64>,
    /// The component asked through (the gateway checked the caller may use it).
    #[serde(default)]
    pub component: Option<ComponentId>,
}

/// Credentials handed out: the lease and the credentials, sealed for the gateway.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeasedCredentials {
    /// The lease.
    pub lease: LeaseView,
    /// The credential fields (a JSON object), sealed for this command.
    pub credentials: SealedSecret,
}

impl Command for IssueCredentials {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "issue_credentials";
    type Output = LeasedCredentials;
    type Code = ConnectorsFailure;
}

/// Revokes a lease at the cloud; refused (409 `not_revocable`) when the cloud cannot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RevokeLease {
    /// The lease.
    pub lease: LeaseId,
}

impl Command for RevokeLease {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "revoke_lease";
    type Output = LeaseView;
    type Code = ConnectorsFailure;
}

/// Records that a lease reached its expiry (the sweeper). Idempotent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExpireLease {
    /// The lease.
    pub lease: LeaseId,
}

impl Command for ExpireLease {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "expire_lease";
    type Output = ();
    type Code = ConnectorsFailure;
}

/// Registers a component, optionally connected at once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegisterComponent {
    /// Name.
    pub name: Name,
    /// Type.
    pub component_type: ComponentType,
    /// Flavor.
    pub flavor: String,
    /// Configuration.
    #[serde(default)]
    pub configuration: Map<String, Value>,
    /// Connect to this connector at once.
    #[serde(default)]
    pub connector: Option<ConnectorId>,
    /// The resource to connect for (raw).
    #[serde(default)]
    pub resource_id: Option<String>,
}

impl Command for RegisterComponent {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "register_component";
    type Output = ComponentView;
    type Code = ConnectorsFailure;
}

/// Merges into a component's configuration (`null` removes a key).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpdateComponent {
    /// The component.
    pub component: ComponentId,
    /// Configuration to merge.
    pub configuration: Map<String, Value>,
}

impl Command for UpdateComponent {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "update_component";
    type Output = ComponentView;
    type Code = ConnectorsFailure;
}

/// Links a component to a connector for one resource, after checking the connector can
/// serve it (a verification).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnectComponent {
    /// The component.
    pub component: ComponentId,
    /// The connector.
    pub connector: ConnectorId,
    /// The resource (raw); absent: the one the component's configuration names, or the
    /// connector's own.
    #[serde(default)]
    pub resource_id: Option<String>,
}

impl Command for ConnectComponent {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "connect_component";
    type Output = ComponentView;
    type Code = ConnectorsFailure;
}

/// Removes a component's link.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DisconnectComponent {
    /// The component.
    pub component: ComponentId,
}

impl Command for DisconnectComponent {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "disconnect_component";
    type Output = ComponentView;
    type Code = ConnectorsFailure;
}

/// Deletes a component.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeleteComponent {
    /// The component.
    pub component: ComponentId,
}

impl Command for DeleteComponent {
    const SERVICE: &'static str = "connectors";
    const NAME: &'static str = "delete_component";
    type Output = ();
    type Code = ConnectorsFailure;
}
