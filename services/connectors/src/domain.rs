//! The broker's rules, as pure functions: what a connector, a lease and a component may
//! become, and who may make them so. No I/O: the catalogue entry of the connector's type,
//! the caller, the time and the server's gates are arguments; the service loads, calls
//! these, and appends what they return.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use gatehouse_contracts::catalogue::{AuthMethodSpec, ConnectorTypeSpec};
use gatehouse_contracts::commands::Caller;
use gatehouse_contracts::connectors::{
    Component, ComponentConnected, ComponentDeleted, ComponentDisconnected, ComponentEvent,
    ComponentRegistered, ComponentType, ComponentUpdated, Connector, ConnectorAccess,
    ConnectorComponentLink, ConnectorDeleted, ConnectorDraft, ConnectorEvent, ConnectorGrant,
    ConnectorGrantRevoked, ConnectorRegistered, ConnectorSecretsReplaced, ConnectorUpdated, Lease,
    LeaseEvent, LeaseExpired, LeaseIssued, LeaseRevoked, MAX_CONFIGURATION_BYTES, UpdateConnector,
    flavor_requirement, flavors,
};
use gatehouse_contracts::ids::{ComponentId, ConnectorId, PrincipalId};
use gatehouse_contracts::names::Name;
use gatehouse_eventlog::Aggregate;
use serde_json::{Map, Value};

use crate::schema;
use crate::types::ConnectorType;

/// How long before their expiry configured credentials count as expired (clocks drift).
pub const EXPIRY_SKEW_SECONDS: i64 = 60;
/// The most grants a connector keeps.
pub const MAX_GRANTS: usize = 1000;
/// The most labels a connector keeps.
pub const MAX_LABELS: usize = 64;

/// Why the broker refused a command. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No such thing, or the caller may not see it.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller sees it but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// A request field is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field (`configuration.role_arn`, `resource_id`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Implicit auth methods are off.
    #[error(
        "implicit auth method {0:?} is disabled on this server; an operator may enable it with GATEHOUSE_ENABLE_IMPLICIT_AUTH_METHODS=true"
    )]
    ImplicitDisabled(String),
    /// The server refuses long-lived credentials.
    #[error(
        "auth method {0:?} hands out long-lived credentials, which this server refuses (GATEHOUSE_FORBID_LONG_LIVED_CREDENTIALS=true)"
    )]
    LongLivedForbidden(String),
    /// The connector is in use.
    #[error("the connector is used by components: {0}; disconnect or delete them first")]
    InUse(String),
    /// The lease cannot be revoked.
    #[error(
        "lease credentials issued with {auth_method:?} cannot be revoked at the cloud; they expire at {expires_at}"
    )]
    NotRevocable {
        /// The method.
        auth_method: String,
        /// When they expire.
        expires_at: DateTime<Utc>,
    },
    /// The component has no connector.
    #[error("the component is not connected to a service connector")]
    NotConnected,
    /// The name is taken.
    #[error("a {0} with this name already exists")]
    NameTaken(&'static str),
}

impl Rejection {
    /// An invalid `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Rejection::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What the server allows, from its settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gates {
    /// `GATEHOUSE_ENABLE_IMPLICIT_AUTH_METHODS`.
    pub implicit_enabled: bool,
    /// `GATEHOUSE_FORBID_LONG_LIVED_CREDENTIALS`.
    pub forbid_long_lived: bool,
}

// ---------------------------------------------------------------------------------------
// Aggregates
// ---------------------------------------------------------------------------------------

/// A connector's state (`None` before registration and after deletion).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectorState(pub Option<Connector>);

impl Aggregate for ConnectorState {
    type Event = ConnectorEvent;
    fn evolve(self, event: &ConnectorEvent) -> Self {
        ConnectorState(Connector::evolve(self.0, event))
    }
}

/// A lease's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeaseState(pub Option<Lease>);

impl Aggregate for LeaseState {
    type Event = LeaseEvent;
    fn evolve(self, event: &LeaseEvent) -> Self {
        LeaseState(Lease::evolve(self.0, event))
    }
}

/// A component's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ComponentState(pub Option<Component>);

impl Aggregate for ComponentState {
    type Event = ComponentEvent;
    fn evolve(self, event: &ComponentEvent) -> Self {
        ComponentState(Component::evolve(self.0, event))
    }
}

/// The connector `caller` may use, with what it may do: 404 for anyone else.
pub fn usable<'a>(
    state: &'a ConnectorState,
    caller: &Caller,
) -> Result<(&'a Connector, ConnectorAccess<'a>), Rejection> {
    let connector = state.0.as_ref().ok_or(Rejection::NotFound("connector"))?;
    let access = connector.access(caller);
    if !access.may_use() {
        return Err(Rejection::NotFound("connector"));
    }
    Ok((connector, access))
}

/// The connector `caller` may manage: 404 for those who may not see it, 403 for
/// grantees (they see it, and are told what they may do instead).
pub fn managed<'a>(state: &'a ConnectorState, caller: &Caller) -> Result<&'a Connector, Rejection> {
    let (connector, access) = usable(state, caller)?;
    if !access.may_manage() {
        return Err(Rejection::Forbidden(
            "only the connector's owner and admins may change it; a grant lets you use it".into(),
        ));
    }
    Ok(connector)
}

// ---------------------------------------------------------------------------------------
// Connectors
// ---------------------------------------------------------------------------------------

/// A draft that passed every check: canonical resource id, the method's entry.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedDraft {
    /// The event to append on registration.
    pub registered: ConnectorRegistered,
    /// The secrets to seal.
    pub secrets: BTreeMap<String, String>,
}

/// The auth method `name` of `spec`, passed through the server's gates and the caller's
/// role.
pub fn auth_method<'a>(
    spec: &'a ConnectorTypeSpec,
    name: &str,
    gates: Gates,
) -> Result<&'a AuthMethodSpec, Rejection> {
    let method = spec.auth_method(name).ok_or_else(|| {
        Rejection::invalid(
            "auth_method",
            format!(
                "{name:?} is not an auth method of {:?}; it has: {}",
                spec.connector_type,
                spec.auth_methods
                    .iter()
                    .map(|m| m.auth_method.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    if method.implicit && !gates.implicit_enabled {
        return Err(Rejection::ImplicitDisabled(name.to_owned()));
    }
    Ok(method)
}

/// Checks the resource types a connector of `method` may be limited to.
fn check_resource_types(
    spec: &ConnectorTypeSpec,
    method: &AuthMethodSpec,
    resource_types: &[String],
) -> Result<Vec<String>, Rejection> {
    let mut seen = BTreeSet::new();
    for rt in resource_types {
        let known = spec.resource_type(rt).ok_or_else(|| {
            Rejection::invalid(
                "resource_types",
                format!(
                    "{rt:?} is not a resource type of {:?}; it has: {}",
                    spec.connector_type,
                    spec.resource_types
                        .iter()
                        .map(|r| r.resource_type.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        if !known.auth_methods.contains(&method.auth_method) {
            return Err(Rejection::invalid(
                "resource_types",
                format!(
                    "auth method {:?} cannot serve resource type {rt:?}",
                    method.auth_method
                ),
            ));
        }
        if !seen.insert(rt.clone()) {
            return Err(Rejection::invalid(
                "resource_types",
                format!("{rt:?} is listed twice"),
            ));
        }
    }
    Ok(resource_types.to_vec())
}

/// The canonical form of `raw`, a resource id of `resource_type`.
pub fn canonical_resource_id(
    kind: &dyn ConnectorType,
    resource_type: &str,
    raw: &str,
    field: &str,
) -> Result<String, Rejection> {
    let spec = kind.spec();
    let rt = spec.resource_type(resource_type).ok_or_else(|| {
        Rejection::invalid(
            "resource_type",
            format!(
                "{resource_type:?} is not a resource type of {:?}",
                spec.connector_type
            ),
        )
    })?;
    if !rt.supports_instances {
        return Err(Rejection::invalid(
            field,
            format!("resource type {resource_type:?} has no instances; leave the resource id out"),
        ));
    }
    kind.canonical_resource_id(resource_type, raw)
        .map_err(|message| Rejection::invalid(field, message))
}

/// Checks a single-instance connector's resource id against its resource types.
fn check_resource_id(
    kind: &dyn ConnectorType,
    resource_types: &[String],
    raw: Option<&str>,
) -> Result<Option<String>, Rejection> {
    let Some(raw) = raw else { return Ok(None) };
    let [resource_type] = resource_types else {
        return Err(Rejection::invalid(
            "resource_id",
            "a connector limited to one resource needs exactly one resource type",
        ));
    };
    canonical_resource_id(kind, resource_type, raw, "resource_id").map(Some)
}

/// Checks a lifetime against the method's bounds.
pub fn check_lifetime(
    method: &AuthMethodSpec,
    seconds: Option<u64>,
    field: &str,
) -> Result<Option<u64>, Rejection> {
    let Some(seconds) = seconds else {
        return Ok(None);
    };
    let (Some(min), Some(max)) = (method.min_expiration_seconds, method.max_expiration_seconds)
    else {
        if method.long_lived {
            // A long-lived method's leases run for the connector's lifetime setting:
            // bounded only by sanity.
            return if (1..=MAX_LONG_LIVED_LEASE_SECONDS).contains(&seconds) {
                Ok(Some(seconds))
            } else {
                Err(Rejection::invalid(
                    field,
                    format!("must be between 1 and {MAX_LONG_LIVED_LEASE_SECONDS} seconds"),
                ))
            };
        }
        return Err(Rejection::invalid(
            field,
            format!(
                "auth method {:?} issues nothing with a lifetime",
                method.auth_method
            ),
        ));
    };
    if seconds < min || seconds > max {
        return Err(Rejection::invalid(
            field,
            format!(
                "{seconds} s is outside what auth method {:?} allows: {min} to {max} seconds",
                method.auth_method
            ),
        ));
    }
    Ok(Some(seconds))
}

/// The longest lease of a long-lived method (its credentials live on at the cloud; the
/// lease only says how long the client should keep them): a day.
pub const MAX_LONG_LIVED_LEASE_SECONDS: u64 = 86_400;
/// A long-lived method's lease when the connector sets no lifetime: an hour.
pub const DEFAULT_LONG_LIVED_LEASE_SECONDS: u64 = 3_600;

/// Checks the secret fields given against the method's.
fn check_secrets(
    method: &AuthMethodSpec,
    secrets: &BTreeMap<String, String>,
) -> Result<(), Rejection> {
    for name in secrets.keys() {
        if !method.secret_names().any(|s| s == name) {
            let allowed: Vec<&str> = method.secret_names().collect();
            return Err(Rejection::invalid(
                format!("secrets.{name}"),
                if allowed.is_empty() {
                    format!("auth method {:?} takes no secrets", method.auth_method)
                } else {
                    format!(
                        "not a secret of auth method {:?}; it takes: {}",
                        method.auth_method,
                        allowed.join(", ")
                    )
                },
            ));
        }
        if secrets[name].is_empty() {
            return Err(Rejection::invalid(format!("secrets.{name}"), "is empty"));
        }
    }
    for field in &method.secrets {
        if field.required && !secrets.contains_key(&field.name) {
            return Err(Rejection::invalid(
                format!("secrets.{}", field.name),
                format!("is required by auth method {:?}", method.auth_method),
            ));
        }
    }
    let size: usize = secrets.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_CONFIGURATION_BYTES {
        return Err(Rejection::invalid(
            "secrets",
            format!("too large: at most {MAX_CONFIGURATION_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Checks a configuration against the method's schema and the type's own rules.
fn check_configuration(
    kind: &dyn ConnectorType,
    method: &AuthMethodSpec,
    configuration: &Map<String, Value>,
) -> Result<(), Rejection> {
    let size = serde_json::to_vec(configuration).map_or(usize::MAX, |v| v.len());
    if size > MAX_CONFIGURATION_BYTES {
        return Err(Rejection::invalid(
            "configuration",
            format!("too large: at most {MAX_CONFIGURATION_BYTES} bytes"),
        ));
    }
    schema::check_object(&method.config_schema, configuration, "configuration")?;
    kind.check_configuration(&method.auth_method, configuration)
        .map_err(|e| match e {
            crate::types::UpstreamError::Invalid { field, message } => {
                Rejection::invalid(field, message)
            }
            other => Rejection::invalid("configuration", other.to_string()),
        })
}

/// Checks labels: at most [`MAX_LABELS`], keys non-empty.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), Rejection> {
    if labels.len() > MAX_LABELS {
        return Err(Rejection::invalid(
            "labels",
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    if let Some((k, _)) = labels
        .iter()
        .find(|(k, v)| k.is_empty() || k.len() > 128 || v.len() > 1024)
    {
        return Err(Rejection::invalid(
            format!("labels.{k}"),
            "keys are 1 to 128 characters, values at most 1024",
        ));
    }
    Ok(())
}

/// Checks when configured credentials expire.
fn check_expires_at(
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    match expires_at {
        Some(at) if at <= now + Duration::seconds(EXPIRY_SKEW_SECONDS) => Err(Rejection::invalid(
            "expires_at",
            "the configured credentials have expired (or expire within a minute)",
        )),
        _ => Ok(()),
    }
}

/// Checks a proposed connector, every field of it, before anything is stored or sent.
pub fn check_draft(
    kind: &dyn ConnectorType,
    draft: &ConnectorDraft,
    secrets: BTreeMap<String, String>,
    caller: &Caller,
    gates: Gates,
    now: DateTime<Utc>,
) -> Result<CheckedDraft, Rejection> {
    let spec = kind.spec();
    let method = auth_method(spec, &draft.auth_method, gates)?;
    if method.implicit && !caller.is_admin() {
        return Err(Rejection::Forbidden(
            "only admins may register connectors with an implicit auth method: they lend the server's own identity".into(),
        ));
    }
    let resource_types = check_resource_types(spec, method, &draft.resource_types)?;
    let resource_id = check_resource_id(kind, &resource_types, draft.resource_id.as_deref())?;
    check_configuration(kind, method, &draft.configuration)?;
    check_secrets(method, &secrets)?;
    check_labels(&draft.labels)?;
    let expiration_seconds =
        check_lifetime(method, draft.expiration_seconds, "expiration_seconds")?;
    check_expires_at(draft.expires_at, now)?;
    Ok(CheckedDraft {
        registered: ConnectorRegistered {
            name: draft.name.clone(),
            connector_type: spec.connector_type.clone(),
            auth_method: method.auth_method.clone(),
            resource_types,
            resource_id,
            configuration: draft.configuration.clone(),
            secret_fields: secrets.keys().cloned().collect(),
            labels: draft.labels.clone(),
            description: draft.description.clone(),
            expiration_seconds,
            expires_at: draft.expires_at,
            long_lived: method.long_lived,
            implicit: method.implicit,
            owner: caller.id,
        },
        secrets,
    })
}

/// Merges `changes` into `base`: a `null` value removes the key.
pub fn merge(base: &Map<String, Value>, changes: &Map<String, Value>) -> Map<String, Value> {
    let mut merged = base.clone();
    for (k, v) in changes {
        if v.is_null() {
            merged.remove(k);
        } else {
            merged.insert(k.clone(), v.clone());
        }
    }
    merged
}

/// What an update leaves: the events, and the new secrets when they are replaced.
#[derive(Debug, PartialEq)]
pub struct CheckedUpdate {
    /// `connector.updated` and/or `connector.secrets_replaced` (none: nothing changes).
    pub events: Vec<ConnectorEvent>,
    /// The connector as it will be.
    pub after: Connector,
    /// The new secrets, when replaced.
    pub secrets: Option<BTreeMap<String, String>>,
}

/// Decides an update: merges, re-checks the whole result, and says what changed.
pub fn update(
    kind: &dyn ConnectorType,
    state: &ConnectorState,
    change: &UpdateConnector,
    secrets: Option<BTreeMap<String, String>>,
    caller: &Caller,
    gates: Gates,
    now: DateTime<Utc>,
) -> Result<CheckedUpdate, Rejection> {
    let current = managed(state, caller)?;
    let spec = kind.spec();
    let method = auth_method(spec, &current.auth_method, gates)?;
    let mut updated = ConnectorUpdated::default();
    if let Some(changes) = &change.configuration {
        let merged = merge(&current.configuration, changes);
        check_configuration(kind, method, &merged)?;
        if merged != current.configuration {
            updated.configuration = Some(merged);
        }
    }
    if let Some(changes) = &change.labels {
        let mut labels = current.labels.clone();
        for (k, v) in changes {
            match v {
                Some(v) => labels.insert(k.clone(), v.clone()),
                None => labels.remove(k),
            };
        }
        check_labels(&labels)?;
        if labels != current.labels {
            updated.labels = Some(labels);
        }
    }
    if let Some(d) = &change.description
        && *d != current.description
    {
        updated.description = Some(d.clone());
    }
    let resource_types = match &change.resource_types {
        Some(types) => check_resource_types(spec, method, types)?,
        None => current.resource_types.clone(),
    };
    let raw_id = match &change.resource_id {
        Some(id) => id.clone(),
        None => current.resource_id.clone(),
    };
    let resource_id = check_resource_id(kind, &resource_types, raw_id.as_deref())?;
    if resource_types != current.resource_types {
        updated.resource_types = Some(resource_types);
    }
    if resource_id != current.resource_id {
        updated.resource_id = Some(resource_id);
    }
    if let Some(seconds) = change.expiration_seconds {
        let checked = check_lifetime(method, seconds, "expiration_seconds")?;
        if checked != current.expiration_seconds {
            updated.expiration_seconds = Some(checked);
        }
    }
    if let Some(at) = change.expires_at {
        check_expires_at(at, now)?;
        if at != current.expires_at {
            updated.expires_at = Some(at);
        }
    }
    let mut events = Vec::new();
    if updated != ConnectorUpdated::default() {
        events.push(ConnectorEvent::Updated(updated));
    }
    if let Some(secrets) = &secrets {
        check_secrets(method, secrets)?;
        events.push(ConnectorEvent::SecretsReplaced(ConnectorSecretsReplaced {
            secret_fields: secrets.keys().cloned().collect(),
        }));
    }
    let after = events
        .iter()
        .fold(state.clone(), |s, e| s.evolve(e))
        .0
        .expect("an update keeps the connector");
    Ok(CheckedUpdate {
        events,
        after,
        secrets,
    })
}

/// Decides a grant (replacing an earlier grant to the same principal).
pub fn grant(
    kind: &dyn ConnectorType,
    state: &ConnectorState,
    mut grant: ConnectorGrant,
    caller: &Caller,
) -> Result<Vec<ConnectorEvent>, Rejection> {
    let connector = managed(state, caller)?;
    if grant.principal == connector.owner {
        return Err(Rejection::invalid(
            "principal",
            "the connector's owner may use it already",
        ));
    }
    if connector.grants.len() >= MAX_GRANTS
        && !connector
            .grants
            .iter()
            .any(|g| g.principal == grant.principal)
    {
        return Err(Rejection::invalid(
            "principal",
            format!("a connector has at most {MAX_GRANTS} grants"),
        ));
    }
    if let Some(ids) = &grant.resource_ids {
        if ids.is_empty() {
            return Err(Rejection::invalid(
                "resource_ids",
                "an empty list would grant nothing; leave it out to grant every resource",
            ));
        }
        let types = serving_types(kind.spec(), connector);
        let mut canonical = BTreeSet::new();
        for (i, raw) in ids.iter().enumerate() {
            let field = format!("resource_ids[{i}]");
            let id = types
                .iter()
                .filter(|rt| {
                    kind.spec()
                        .resource_type(rt)
                        .is_some_and(|r| r.supports_instances)
                })
                .find_map(|rt| kind.canonical_resource_id(rt, raw).ok())
                .ok_or_else(|| {
                    Rejection::invalid(
                        &field,
                        format!(
                            "{raw:?} is not a resource id this connector's resource types accept"
                        ),
                    )
                })?;
            if let Some(only) = &connector.resource_id
                && *only != id
            {
                return Err(Rejection::invalid(
                    field,
                    format!("the connector reaches {only} only"),
                ));
            }
            canonical.insert(id);
        }
        grant.resource_ids = Some(canonical.into_iter().collect());
    }
    if connector.grants.contains(&grant) {
        return Ok(Vec::new());
    }
    Ok(vec![ConnectorEvent::Granted(grant)])
}

/// The resource types a connector serves (its own list, else all of its method's).
pub fn serving_types(spec: &ConnectorTypeSpec, connector: &Connector) -> Vec<String> {
    if connector.resource_types.is_empty() {
        spec.resource_types_of(&connector.auth_method)
            .into_iter()
            .map(|r| r.resource_type.clone())
            .collect()
    } else {
        connector.resource_types.clone()
    }
}

/// Decides ending a grant.
pub fn revoke_grant(
    state: &ConnectorState,
    principal: PrincipalId,
    caller: &Caller,
) -> Result<Vec<ConnectorEvent>, Rejection> {
    let connector = managed(state, caller)?;
    if !connector.grants.iter().any(|g| g.principal == principal) {
        return Err(Rejection::NotFound("grant"));
    }
    Ok(vec![ConnectorEvent::GrantRevoked(ConnectorGrantRevoked {
        principal,
    })])
}

/// Decides a deletion: refused while components (`users`: id and name of each still
/// connected) use it.
pub fn delete(
    state: &ConnectorState,
    users: &[(ComponentId, String)],
    caller: &Caller,
) -> Result<Vec<ConnectorEvent>, Rejection> {
    let connector = managed(state, caller)?;
    if !users.is_empty() {
        return Err(Rejection::InUse(
            users
                .iter()
                .map(|(_, name)| name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    Ok(vec![ConnectorEvent::Deleted(ConnectorDeleted {
        name: Name::parse(&connector.name).unwrap_or_else(|_| unreachable_name()),
    })])
}

/// A stored name always parses (it was a `Name` when registered).
fn unreachable_name() -> Name {
    Name::parse("deleted").expect("a valid name")
}

// ---------------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------------

/// What a credentials request resolved to: everything the type needs and the lease
/// records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialsPlan {
    /// The resource type.
    pub resource_type: String,
    /// The resource (canonical), for types with instances.
    pub resource_id: Option<String>,
    /// The lifetime to ask the cloud for (seconds), or the lease's for long-lived
    /// credentials.
    pub lifetime_seconds: u64,
    /// Whether the method hands out long-lived credentials.
    pub long_lived: bool,
}

/// Decides whether `caller` may have credentials for `resource_type`/`raw_id` through
/// the connector, and for how long.
#[allow(clippy::too_many_arguments)]
pub fn plan_credentials(
    kind: &dyn ConnectorType,
    state: &ConnectorState,
    resource_type: &str,
    raw_id: Option<&str>,
    expiration_seconds: Option<u64>,
    caller: &Caller,
    gates: Gates,
    now: DateTime<Utc>,
) -> Result<CredentialsPlan, Rejection> {
    let (connector, access) = usable(state, caller)?;
    let spec = kind.spec();
    let method = auth_method(spec, &connector.auth_method, gates)?;
    if method.long_lived && gates.forbid_long_lived {
        return Err(Rejection::LongLivedForbidden(method.auth_method.clone()));
    }
    let rt = spec.resource_type(resource_type).ok_or_else(|| {
        Rejection::invalid(
            "resource_type",
            format!(
                "{resource_type:?} is not a resource type of {:?}",
                spec.connector_type
            ),
        )
    })?;
    if !connector.serves(resource_type) || !rt.auth_methods.contains(&connector.auth_method) {
        return Err(Rejection::invalid(
            "resource_type",
            format!(
                "connector {:?} does not serve {resource_type:?}; it serves: {}",
                connector.name,
                serving_types(spec, connector).join(", ")
            ),
        ));
    }
    let resource_id = match (rt.supports_instances, raw_id, &connector.resource_id) {
        (false, Some(_), _) => {
            return Err(Rejection::invalid(
                "resource_id",
                format!("resource type {resource_type:?} has no instances; leave it out"),
            ));
        }
        (false, None, _) => None,
        (true, Some(raw), only) => {
            let id = canonical_resource_id(kind, resource_type, raw, "resource_id")?;
            if let Some(only) = only
                && *only != id
            {
                return Err(Rejection::invalid(
                    "resource_id",
                    format!("connector {:?} reaches {only} only", connector.name),
                ));
            }
            Some(id)
        }
        (true, None, Some(only)) => Some(only.clone()),
        (true, None, None) => {
            return Err(Rejection::invalid(
                "resource_id",
                format!("resource type {resource_type:?} needs a resource id"),
            ));
        }
    };
    if !access.covers(resource_id.as_deref()) {
        let covered = match access {
            ConnectorAccess::Use {
                resource_ids: Some(ids),
            } => ids.join(", "),
            _ => String::new(),
        };
        return Err(Rejection::Forbidden(format!(
            "your grant on connector {:?} covers these resources only: {covered}",
            connector.name
        )));
    }
    if let Some(at) = connector.expires_at
        && at <= now + Duration::seconds(EXPIRY_SKEW_SECONDS)
    {
        return Err(Rejection::invalid(
            "connector",
            format!(
                "the credentials configured in connector {:?} expired at {at}; update its secrets",
                connector.name
            ),
        ));
    }
    let asked = check_lifetime(method, expiration_seconds, "expiration_seconds")?;
    let lifetime_seconds = asked
        .or(connector.expiration_seconds)
        .or(method.default_expiration_seconds)
        .unwrap_or(DEFAULT_LONG_LIVED_LEASE_SECONDS);
    Ok(CredentialsPlan {
        resource_type: resource_type.to_owned(),
        resource_id,
        lifetime_seconds,
        long_lived: method.long_lived,
    })
}

/// The lease event of credentials issued under `plan`. A lease never outlives what it
/// hands out: for long-lived credentials it runs the planned lifetime, capped by the
/// configured credentials' own expiry.
#[allow(clippy::too_many_arguments)]
pub fn issued(
    connector_id: ConnectorId,
    connector: &Connector,
    plan: &CredentialsPlan,
    caller: &Caller,
    component: Option<ComponentId>,
    cloud_expiry: Option<DateTime<Utc>>,
    revocable: bool,
    now: DateTime<Utc>,
) -> LeaseEvent {
    let planned =
        now + Duration::seconds(i64::try_from(plan.lifetime_seconds).unwrap_or(i64::MAX / 2));
    let expires_at = match (cloud_expiry, connector.expires_at) {
        (Some(cloud), _) => cloud,
        (None, Some(configured)) => planned.min(configured),
        (None, None) => planned,
    };
    LeaseEvent::Issued(LeaseIssued {
        connector_id,
        connector_name: connector.name.clone(),
        connector_type: connector.connector_type.clone(),
        auth_method: connector.auth_method.clone(),
        principal: caller.id,
        principal_name: caller.name.clone(),
        resource_type: plan.resource_type.clone(),
        resource_id: plan.resource_id.clone(),
        component_id: component,
        expires_at,
        revocable,
    })
}

/// Whether a live lease may be handed out again at `now` (the contract's one rule).
pub use gatehouse_contracts::connectors::lease_reusable as reusable;

/// Decides revoking a lease: its holder, the connector's owner and admins may; a lease
/// the cloud cannot revoke is refused, saying when it expires.
pub fn revoke_lease(
    state: &LeaseState,
    connector_owner: Option<PrincipalId>,
    caller: &Caller,
    now: DateTime<Utc>,
) -> Result<Vec<LeaseEvent>, Rejection> {
    let lease = state.0.as_ref().ok_or(Rejection::NotFound("lease"))?;
    if !lease.visible_to(caller, connector_owner) {
        return Err(Rejection::NotFound("lease"));
    }
    if !lease.issued.revocable {
        return Err(Rejection::NotRevocable {
            auth_method: lease.issued.auth_method.clone(),
            expires_at: lease.issued.expires_at,
        });
    }
    if lease.status(now) != gatehouse_contracts::connectors::LeaseStatus::Active {
        return Ok(Vec::new());
    }
    Ok(vec![LeaseEvent::Revoked(LeaseRevoked { revoked_at: now })])
}

/// Decides recording a lease's expiry (idempotent).
pub fn expire_lease(state: &LeaseState, now: DateTime<Utc>) -> Result<Vec<LeaseEvent>, Rejection> {
    let lease = state.0.as_ref().ok_or(Rejection::NotFound("lease"))?;
    if lease.expired || lease.revoked_at.is_some() || lease.issued.expires_at > now {
        return Ok(Vec::new());
    }
    Ok(vec![LeaseEvent::Expired(LeaseExpired {
        expires_at: lease.issued.expires_at,
    })])
}

// ---------------------------------------------------------------------------------------
// Components
// ---------------------------------------------------------------------------------------

/// Checks a component's type and flavor.
pub fn check_flavor(component_type: ComponentType, flavor: &str) -> Result<(), Rejection> {
    if flavor_requirement(component_type, flavor).is_none() {
        return Err(Rejection::invalid(
            "flavor",
            format!(
                "{flavor:?} is not a flavor of {component_type}; it has: {}",
                flavors(component_type).join(", ")
            ),
        ));
    }
    Ok(())
}

/// Decides registering a component.
pub fn register_component(
    name: Name,
    component_type: ComponentType,
    flavor: &str,
    configuration: &Map<String, Value>,
    caller: &Caller,
) -> Result<ComponentEvent, Rejection> {
    check_flavor(component_type, flavor)?;
    check_component_configuration(configuration)?;
    Ok(ComponentEvent::Registered(ComponentRegistered {
        name,
        component_type,
        flavor: flavor.to_owned(),
        configuration: configuration.clone(),
        owner: caller.id,
    }))
}

fn check_component_configuration(configuration: &Map<String, Value>) -> Result<(), Rejection> {
    let size = serde_json::to_vec(configuration).map_or(usize::MAX, |v| v.len());
    if size > MAX_CONFIGURATION_BYTES {
        return Err(Rejection::invalid(
            "configuration",
            format!("too large: at most {MAX_CONFIGURATION_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// The component `caller` may manage (owner or admin); 404 for anyone else.
pub fn owned<'a>(state: &'a ComponentState, caller: &Caller) -> Result<&'a Component, Rejection> {
    match &state.0 {
        Some(c) if caller.may_manage(c.owner) => Ok(c),
        _ => Err(Rejection::NotFound("component")),
    }
}

/// Decides a configuration change of a component.
pub fn update_component(
    state: &ComponentState,
    changes: &Map<String, Value>,
    caller: &Caller,
) -> Result<Vec<ComponentEvent>, Rejection> {
    let component = owned(state, caller)?;
    let merged = merge(&component.configuration, changes);
    check_component_configuration(&merged)?;
    if merged == component.configuration {
        return Ok(Vec::new());
    }
    Ok(vec![ComponentEvent::Updated(ComponentUpdated {
        configuration: merged,
    })])
}

/// What connecting a component to a connector needs checked at the cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionPlan {
    /// The resource type the flavor needs.
    pub resource_type: String,
    /// The resource (canonical).
    pub resource_id: Option<String>,
}

/// Decides whether a component may be connected to a connector for a resource (before
/// the verification at the cloud): the flavor's requirement, the caller's rights on both.
pub fn plan_connection(
    kind: &dyn ConnectorType,
    component: &ComponentState,
    connector: &ConnectorState,
    raw_id: Option<&str>,
    caller: &Caller,
) -> Result<ConnectionPlan, Rejection> {
    let comp = owned(component, caller)?;
    let (conn, access) = usable(connector, caller)?;
    let need = flavor_requirement(comp.component_type, &comp.flavor)
        .ok_or_else(|| Rejection::invalid("flavor", "unknown flavor"))?;
    if conn.connector_type != need.connector_type {
        return Err(Rejection::invalid(
            "connector",
            format!(
                "a {} of flavor {:?} needs a {:?} connector; {:?} is {:?}",
                comp.component_type,
                comp.flavor,
                need.connector_type,
                conn.name,
                conn.connector_type
            ),
        ));
    }
    let rt = kind
        .spec()
        .resource_type(need.resource_type)
        .ok_or_else(|| {
            Rejection::invalid("connector", "the connector type lacks the resource type")
        })?;
    if !conn.serves(need.resource_type) || !rt.auth_methods.contains(&conn.auth_method) {
        return Err(Rejection::invalid(
            "connector",
            format!(
                "connector {:?} does not serve {:?}, which a {} of flavor {:?} needs",
                conn.name, need.resource_type, comp.component_type, comp.flavor
            ),
        ));
    }
    let from_config = gatehouse_contracts::connectors::component_resource_id(
        comp.component_type,
        &comp.flavor,
        &comp.configuration,
    );
    let raw = raw_id
        .map(str::to_owned)
        .or(from_config)
        .or_else(|| conn.resource_id.clone());
    let resource_id = match (rt.supports_instances, raw) {
        (false, _) => None,
        (true, Some(raw)) => Some(canonical_resource_id(
            kind,
            need.resource_type,
            &raw,
            "resource_id",
        )?),
        (true, None) => {
            return Err(Rejection::invalid(
                "resource_id",
                format!(
                    "a {} needs a {:?} resource id",
                    comp.component_type, need.resource_type
                ),
            ));
        }
    };
    if let (Some(only), Some(id)) = (&conn.resource_id, &resource_id)
        && only != id
    {
        return Err(Rejection::invalid(
            "resource_id",
            format!("connector {:?} reaches {only} only", conn.name),
        ));
    }
    if !access.covers(resource_id.as_deref()) {
        return Err(Rejection::Forbidden(format!(
            "your grant on connector {:?} does not cover {}",
            conn.name,
            resource_id.as_deref().unwrap_or("this resource")
        )));
    }
    Ok(ConnectionPlan {
        resource_type: need.resource_type.to_owned(),
        resource_id,
    })
}

/// The events of connecting: `component.connected` (and the link on the connector,
/// appended by the service to the connector's stream first).
pub fn connected(
    connector_id: ConnectorId,
    connector: &Connector,
    plan: &ConnectionPlan,
) -> ComponentEvent {
    ComponentEvent::Connected(ComponentConnected {
        connector_id,
        connector_name: connector.name.clone(),
        resource_type: plan.resource_type.clone(),
        resource_id: plan.resource_id.clone(),
    })
}

/// The connector-side record of a link.
pub fn linked(component_id: ComponentId) -> ConnectorEvent {
    ConnectorEvent::ComponentLinked(ConnectorComponentLink { component_id })
}

/// The connector-side record of an unlink.
pub fn unlinked(component_id: ComponentId) -> ConnectorEvent {
    ConnectorEvent::ComponentUnlinked(ConnectorComponentLink { component_id })
}

/// Decides disconnecting a component.
pub fn disconnect(
    state: &ComponentState,
    caller: &Caller,
) -> Result<Vec<ComponentEvent>, Rejection> {
    let component = owned(state, caller)?;
    match &component.connector {
        Some(link) => Ok(vec![ComponentEvent::Disconnected(ComponentDisconnected {
            connector_id: link.connector_id,
        })]),
        None => Err(Rejection::NotConnected),
    }
}

/// Decides deleting a component.
pub fn delete_component(
    state: &ComponentState,
    caller: &Caller,
) -> Result<Vec<ComponentEvent>, Rejection> {
    let component = owned(state, caller)?;
    let mut events = Vec::new();
    if let Some(link) = &component.connector {
        events.push(ComponentEvent::Disconnected(ComponentDisconnected {
            connector_id: link.connector_id,
        }));
    }
    events.push(ComponentEvent::Deleted(ComponentDeleted {
        name: Name::parse(&component.name).unwrap_or_else(|_| unreachable_name()),
        component_type: component.component_type,
    }));
    Ok(events)
}

#[cfg(test)]
mod tests {
    use gatehouse_contracts::connectors::{ComponentLink, ConnectorEvent};
    use gatehouse_contracts::identity::Role;
    use gatehouse_contracts::ids::PrincipalKind;
    use serde_json::json;

    use super::*;
    use crate::types::fixture::FixtureType;

    fn caller(name: &str, role: Role) -> Caller {
        Caller {
            id: PrincipalId::new(),
            kind: PrincipalKind::User,
            name: name.into(),
            role,
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-03T12:00:00Z".parse().unwrap()
    }

    fn draft(method: &str, config: Value) -> ConnectorDraft {
        ConnectorDraft {
            name: Name::parse("conn").unwrap(),
            connector_type: "fixture".into(),
            auth_method: method.into(),
            resource_types: Vec::new(),
            resource_id: None,
            configuration: config.as_object().unwrap().clone(),
            secrets: None,
            labels: BTreeMap::new(),
            description: String::new(),
            expiration_seconds: None,
            expires_at: None,
        }
    }

    fn token() -> BTreeMap<String, String> {
        BTreeMap::from([("token".to_owned(), "t0k3n".to_owned())])
    }

    fn field(r: Result<impl std::fmt::Debug, Rejection>) -> String {
        match r {
            Err(Rejection::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    /// A registered connector owned by `owner`.
    fn registered(owner: &Caller) -> ConnectorState {
        let checked = check_draft(
            &FixtureType::new(),
            &draft("token", json!({"region": "r1", "buckets": ["a", "b"]})),
            token(),
            owner,
            Gates::default(),
            now(),
        )
        .unwrap();
        ConnectorState::default().evolve(&ConnectorEvent::Registered(checked.registered))
    }

    #[test]
    fn a_valid_draft_becomes_a_registration_that_names_its_secrets_but_holds_none() {
        let owner = caller("ann", Role::Member);
        let checked = check_draft(
            &FixtureType::new(),
            &draft("token", json!({"region": "r1"})),
            token(),
            &owner,
            Gates::default(),
            now(),
        )
        .unwrap();
        assert_eq!(checked.registered.secret_fields, vec!["token"]);
        assert_eq!(checked.registered.owner, owner.id);
        let event = serde_json::to_string(&checked.registered).unwrap();
        assert!(
            !event.contains("t0k3n"),
            "no secret value in the event: {event}"
        );
    }

    #[test]
    fn every_bad_field_is_named() {
        let kind = FixtureType::new();
        let owner = caller("ann", Role::Member);
        let check = |d: ConnectorDraft, s: BTreeMap<String, String>| {
            check_draft(&kind, &d, s, &owner, Gates::default(), now())
        };
        assert_eq!(
            field(check(draft("nope", json!({"region": "r"})), token())),
            "auth_method"
        );
        assert_eq!(
            field(check(draft("token", json!({})), token())),
            "configuration.region"
        );
        assert_eq!(
            field(check(
                draft("token", json!({"region": "r", "x": 1})),
                token()
            )),
            "configuration.x"
        );
        assert_eq!(
            field(check(draft("token", json!({"region": "bad-1"})), token())),
            "configuration.region"
        );
        assert_eq!(
            field(check(
                draft("token", json!({"region": "r"})),
                BTreeMap::new()
            )),
            "secrets.token"
        );
        let mut extra = token();
        extra.insert("password".into(), "x".into());
        assert_eq!(
            field(check(draft("token", json!({"region": "r"})), extra)),
            "secrets.password"
        );
        let mut d = draft("token", json!({"region": "r"}));
        d.resource_types = vec!["nope".into()];
        assert_eq!(field(check(d, token())), "resource_types");
        let mut d = draft("token", json!({"region": "r"}));
        d.resource_id = Some("a".into());
        assert_eq!(
            field(check(d, token())),
            "resource_id",
            "needs one resource type"
        );
        let mut d = draft("token", json!({"region": "r"}));
        d.resource_types = vec!["bucket".into()];
        d.resource_id = Some("Not_A_Bucket".into());
        assert_eq!(field(check(d, token())), "resource_id");
        for seconds in [59, 7201] {
            let mut d = draft("token", json!({"region": "r"}));
            d.expiration_seconds = Some(seconds);
            assert_eq!(field(check(d, token())), "expiration_seconds", "{seconds}");
        }
        let mut d = draft("token", json!({"region": "r"}));
        d.expires_at = Some(now());
        assert_eq!(field(check(d, token())), "expires_at");
        let big = "x".repeat(MAX_CONFIGURATION_BYTES);
        assert_eq!(
            field(check(draft("token", json!({"region": big})), token())),
            "configuration"
        );
    }

    #[test]
    fn a_single_instance_connector_keeps_its_canonical_resource_id() {
        let mut d = draft("token", json!({"region": "r"}));
        d.resource_types = vec!["bucket".into()];
        d.resource_id = Some("data".into());
        let checked = check_draft(
            &FixtureType::new(),
            &d,
            token(),
            &caller("ann", Role::Member),
            Gates::default(),
            now(),
        )
        .unwrap();
        assert_eq!(checked.registered.resource_id.as_deref(), Some("fx://data"));
    }

    #[test]
    fn implicit_methods_are_off_unless_enabled_and_then_for_admins_only() {
        let kind = FixtureType::new();
        let d = draft("ambient", json!({"region": "r"}));
        let admin = caller("root", Role::Admin);
        let member = caller("ann", Role::Member);
        let off = check_draft(&kind, &d, BTreeMap::new(), &admin, Gates::default(), now());
        match off {
            Err(r @ Rejection::ImplicitDisabled(_)) => {
                assert!(
                    r.to_string()
                        .contains("GATEHOUSE_ENABLE_IMPLICIT_AUTH_METHODS")
                )
            }
            other => panic!("{other:?}"),
        }
        let on = Gates {
            implicit_enabled: true,
            ..Gates::default()
        };
        assert!(matches!(
            check_draft(&kind, &d, BTreeMap::new(), &member, on, now()),
            Err(Rejection::Forbidden(_))
        ));
        check_draft(&kind, &d, BTreeMap::new(), &admin, on, now()).unwrap();
    }

    #[test]
    fn owner_and_admins_manage_grantees_use_everyone_else_gets_not_found() {
        let kind = FixtureType::new();
        let owner = caller("ann", Role::Member);
        let admin = caller("root", Role::Admin);
        let grantee = caller("ci-bot", Role::Member);
        let stranger = caller("eve", Role::Member);
        let state = registered(&owner);
        let granted = grant(
            &kind,
            &state,
            ConnectorGrant {
                principal: grantee.id,
                principal_name: grantee.name.clone(),
                resource_ids: Some(vec!["a".into()]),
            },
            &owner,
        )
        .unwrap();
        let state = granted.iter().fold(state, |s, e| s.evolve(e));
        assert!(managed(&state, &owner).is_ok());
        assert!(managed(&state, &admin).is_ok());
        assert!(matches!(
            managed(&state, &grantee),
            Err(Rejection::Forbidden(_))
        ));
        assert!(matches!(
            managed(&state, &stranger),
            Err(Rejection::NotFound(_))
        ));
        assert!(matches!(
            usable(&state, &stranger),
            Err(Rejection::NotFound(_))
        ));
        // The grant was stored canonical; the grantee may use it for that bucket only.
        let plan = |who: &Caller, id: &str| {
            plan_credentials(
                &kind,
                &state,
                "bucket",
                Some(id),
                None,
                who,
                Gates::default(),
                now(),
            )
        };
        assert_eq!(
            plan(&grantee, "fx://a").unwrap().resource_id.as_deref(),
            Some("fx://a")
        );
        match plan(&grantee, "b") {
            Err(Rejection::Forbidden(m)) => assert!(m.contains("fx://a"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(plan(&owner, "b").is_ok());
        assert!(matches!(plan(&stranger, "a"), Err(Rejection::NotFound(_))));
        // A limited grant does not cover a resource type without instances.
        assert!(matches!(
            plan_credentials(
                &kind,
                &state,
                "generic",
                None,
                None,
                &grantee,
                Gates::default(),
                now()
            ),
            Err(Rejection::Forbidden(_))
        ));
    }

    #[test]
    fn credentials_plans_check_type_id_and_lifetime() {
        let kind = FixtureType::new();
        let owner = caller("ann", Role::Member);
        let state = registered(&owner);
        let plan = |rt: &str, id: Option<&str>, secs: Option<u64>| {
            plan_credentials(&kind, &state, rt, id, secs, &owner, Gates::default(), now())
        };
        assert_eq!(field(plan("nope", None, None)), "resource_type");
        assert_eq!(field(plan("bucket", None, None)), "resource_id");
        assert_eq!(field(plan("generic", Some("x"), None)), "resource_id");
        assert_eq!(
            field(plan("bucket", Some("a"), Some(10))),
            "expiration_seconds"
        );
        assert_eq!(
            plan("bucket", Some("a"), None).unwrap().lifetime_seconds,
            600
        );
        assert_eq!(
            plan("bucket", Some("a"), Some(900))
                .unwrap()
                .lifetime_seconds,
            900
        );
    }

    #[test]
    fn long_lived_methods_can_be_forbidden() {
        let kind = FixtureType::new();
        let owner = caller("ann", Role::Member);
        let checked = check_draft(
            &kind,
            &draft("static", json!({"region": "r"})),
            token(),
            &owner,
            Gates::default(),
            now(),
        )
        .unwrap();
        assert!(checked.registered.long_lived);
        let state =
            ConnectorState::default().evolve(&ConnectorEvent::Registered(checked.registered));
        let forbid = Gates {
            forbid_long_lived: true,
            ..Gates::default()
        };
        assert!(matches!(
            plan_credentials(&kind, &state, "generic", None, None, &owner, forbid, now()),
            Err(Rejection::LongLivedForbidden(_))
        ));
        let plan = plan_credentials(
            &kind,
            &state,
            "generic",
            None,
            None,
            &owner,
            Gates::default(),
            now(),
        )
        .unwrap();
        assert_eq!(plan.lifetime_seconds, DEFAULT_LONG_LIVED_LEASE_SECONDS);
    }

    #[test]
    fn updates_merge_and_remove_and_recheck_the_result() {
        let kind = FixtureType::new();
        let owner = caller("ann", Role::Member);
        let state = registered(&owner);
        let change = UpdateConnector {
            configuration: Some(
                json!({"buckets": null, "refuse": "x"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            labels: Some(BTreeMap::from([("team".to_owned(), Some("ml".to_owned()))])),
            ..UpdateConnector::default()
        };
        let updated = update(
            &kind,
            &state,
            &change,
            None,
            &owner,
            Gates::default(),
            now(),
        )
        .unwrap();
        assert_eq!(
            Value::Object(updated.after.configuration.clone()),
            json!({"region": "r1", "refuse": "x"})
        );
        assert_eq!(updated.after.labels["team"], "ml");
        let removing_required = UpdateConnector {
            configuration: Some(json!({"region": null}).as_object().unwrap().clone()),
            ..UpdateConnector::default()
        };
        assert_eq!(
            field(update(
                &kind,
                &state,
                &removing_required,
                None,
                &owner,
                Gates::default(),
                now()
            )),
            "configuration.region"
        );
        let nothing = update(
            &kind,
            &state,
            &UpdateConnector::default(),
            None,
            &owner,
            Gates::default(),
            now(),
        )
        .unwrap();
        assert!(nothing.events.is_empty());
        let secrets = update(
            &kind,
            &state,
            &UpdateConnector::default(),
            Some(token()),
            &owner,
            Gates::default(),
            now(),
        )
        .unwrap();
        assert!(matches!(
            secrets.events.as_slice(),
            [ConnectorEvent::SecretsReplaced(_)]
        ));
    }

    #[test]
    fn deleting_a_connector_in_use_is_refused_naming_the_components() {
        let owner = caller("ann", Role::Member);
        let state = registered(&owner);
        let users = vec![(ComponentId::new(), "artifact_store s3-files".to_owned())];
        match delete(&state, &users, &owner) {
            Err(r @ Rejection::InUse(_)) => assert!(r.to_string().contains("s3-files")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            delete(&state, &[], &owner).unwrap().as_slice(),
            [ConnectorEvent::Deleted(_)]
        ));
        assert!(matches!(
            delete(&state, &[], &caller("eve", Role::Member)),
            Err(Rejection::NotFound(_))
        ));
    }

    #[test]
    fn a_lease_is_reused_while_more_than_a_quarter_of_its_life_is_left() {
        let issued = now();
        let expires = issued + Duration::seconds(400);
        assert!(reusable(issued, expires, issued + Duration::seconds(299)));
        assert!(!reusable(issued, expires, issued + Duration::seconds(300)));
        assert!(!reusable(issued, expires, expires));
    }

    #[test]
    fn a_lease_that_cannot_be_revoked_says_when_it_expires() {
        let owner = caller("ann", Role::Member);
        let state = registered(&owner);
        let plan = plan_credentials(
            &FixtureType::new(),
            &state,
            "bucket",
            Some("a"),
            None,
            &owner,
            Gates::default(),
            now(),
        )
        .unwrap();
        let event = issued(
            ConnectorId::new(),
            state.0.as_ref().unwrap(),
            &plan,
            &owner,
            None,
            Some(now() + Duration::seconds(600)),
            false,
            now(),
        );
        let lease = LeaseState::default().evolve(&event);
        match revoke_lease(&lease, None, &owner, now()) {
            Err(r @ Rejection::NotRevocable { .. }) => {
                assert!(r.to_string().contains("2026-12-03 12:10:00"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            revoke_lease(&lease, None, &caller("eve", Role::Member), now()),
            Err(Rejection::NotFound(_))
        ));
        assert!(expire_lease(&lease, now()).unwrap().is_empty());
        assert_eq!(
            expire_lease(&lease, now() + Duration::seconds(600))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn components_connect_only_where_their_flavor_is_served() {
        let kind = FixtureType::new();
        let owner = caller("ann", Role::Member);
        let event = register_component(
            Name::parse("files").unwrap(),
            ComponentType::ArtifactStore,
            "s3",
            &Map::new(),
            &owner,
        )
        .unwrap();
        let component = ComponentState::default().evolve(&event);
        // An s3 artifact store needs an aws connector; the fixture is not one.
        assert_eq!(
            field(plan_connection(
                &kind,
                &component,
                &registered(&owner),
                Some("a"),
                &owner
            )),
            "connector"
        );
        assert_eq!(
            field(register_component(
                Name::parse("x").unwrap(),
                ComponentType::ArtifactStore,
                "gcs",
                &Map::new(),
                &owner
            )),
            "flavor"
        );
        assert!(matches!(
            owned(&component, &caller("eve", Role::Member)),
            Err(Rejection::NotFound(_))
        ));
        let connected = component
            .clone()
            .evolve(&ComponentEvent::Connected(ComponentConnected {
                connector_id: ConnectorId::new(),
                connector_name: "c".into(),
                resource_type: "s3-bucket".into(),
                resource_id: None,
            }));
        assert!(matches!(
            connected.0.as_ref().unwrap().connector,
            Some(ComponentLink { .. })
        ));
        assert_eq!(delete_component(&connected, &owner).unwrap().len(), 2);
        assert!(matches!(
            disconnect(&component, &owner),
            Err(Rejection::NotConnected)
        ));
    }
}
