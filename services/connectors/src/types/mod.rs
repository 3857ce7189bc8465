//! Connector types: one module per cloud behind [`ConnectorType`].
//!
//! A type never sees the event log, the bus or another connector's secrets: the broker
//! hands it one connector's decrypted configuration and secrets for one call
//! ([`Connection`]) and bounds the call in time. What a type declares
//! ([`ConnectorType::spec`]) is the catalogue entry, served as is. Adding a cloud is one
//! module here, its entry in [`Catalogue::builtin`], and its tests against a real
//! stand-in; nothing in the broker changes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gatehouse_contracts::catalogue::ConnectorTypeSpec;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

pub mod aws;
pub mod fixture;

/// One connector's secret fields, decrypted for one call. Never printed.
#[derive(Clone, Default)]
pub struct Secrets(BTreeMap<String, SecretString>);

impl Secrets {
    /// Secrets from `(name, value)` pairs.
    pub fn new(fields: impl IntoIterator<Item = (String, SecretString)>) -> Self {
        Self(fields.into_iter().collect())
    }

    /// The value of field `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.expose_secret())
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "[HIDDEN]")))
            .finish()
    }
}

/// What a type is given for one call: one connector, as registered (or as proposed, for
/// verifying an unsaved configuration).
#[derive(Debug)]
pub struct Connection<'a> {
    /// The auth method (one of the type's, already checked).
    pub auth_method: &'a str,
    /// The non-secret configuration (already checked against the method's schema).
    pub configuration: &'a Map<String, Value>,
    /// The secret fields (already checked against the method's secret fields).
    pub secrets: &'a Secrets,
    /// When the configured credentials themselves expire (a pasted STS token), if known.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Connection<'_> {
    /// The configuration field `name` as a string, if set.
    pub fn config_str(&self, name: &str) -> Option<&str> {
        self.configuration.get(name).and_then(Value::as_str)
    }
}

/// What a client asked credentials for, as the broker decided it may have them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueRequest<'a> {
    /// The resource type (one the connector serves).
    pub resource_type: &'a str,
    /// The resource, in canonical form; `None` for a type without instances.
    pub resource_id: Option<&'a str>,
    /// The lifetime to ask for, within the method's bounds.
    pub lifetime: Duration,
    /// Who the credentials are for, as a name the cloud can record (an STS session
    /// name, a federated user name): the broker passes the principal's name.
    pub session_name: &'a str,
}

/// Credentials a type issued. Never printed, never stored in clear, never in an event.
pub struct Issued {
    /// The credential fields, in the shape the resource type documents (AWS keys; a
    /// registry's `username`/`password`/`registry`; a cluster's
    /// `server`/`certificate_authority_data`/`token`).
    pub credentials: Map<String, Value>,
    /// When they stop working; `None` for long-lived credentials handed out as they are
    /// (then the lease runs for the connector's own `expiration_seconds`).
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether [`ConnectorType::revoke`] can end them early.
    pub revocable: bool,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("credentials", &"[HIDDEN]")
            .field("expires_at", &self.expires_at)
            .field("revocable", &self.revocable)
            .finish()
    }
}

/// Why a call to the cloud did not give what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The cloud answered with an error (502 `upstream_error`). The message is the
    /// cloud's, and never holds a secret.
    #[error("{0}")]
    Refused(String),
    /// The cloud did not answer in time (504 `upstream_timeout`).
    #[error("the cloud did not answer within {0:?}")]
    Timeout(Duration),
    /// The request cannot be served as asked (422, naming the field): e.g. a resource
    /// type this method cannot reach, a configuration value the cloud's API rejects
    /// before any call.
    #[error("{field}: {message}")]
    Invalid {
        /// The request field at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A connector type: one cloud.
#[async_trait]
pub trait ConnectorType: Send + Sync + 'static {
    /// The catalogue entry: auth methods (schemas, secret fields, lifetimes, implicit,
    /// long-lived, revocable) and resource types.
    fn spec(&self) -> &ConnectorTypeSpec;

    /// Parses and normalises a resource id of `resource_type` (`b`, `s3://b`,
    /// `arn:aws:s3:::b` → `s3://b`); `Err` says what is wrong with it.
    fn canonical_resource_id(&self, resource_type: &str, raw: &str) -> Result<String, String>;

    /// Checks what the schema cannot (an ARN's syntax, a policy's JSON); `Err` names
    /// the field. Called before anything is stored or sent.
    fn check_configuration(
        &self,
        auth_method: &str,
        configuration: &Map<String, Value>,
    ) -> Result<(), UpstreamError>;

    /// Checks the credentials work (and, when given, reach `resource`: a resource type
    /// and, for types with instances, a canonical id). Returns who the cloud says they
    /// are (an ARN), for the answer.
    async fn verify(
        &self,
        connection: &Connection<'_>,
        resource: Option<(&str, Option<&str>)>,
    ) -> Result<String, UpstreamError>;

    /// The instances of `resource_type` the credentials reach (canonical ids); for a type
    /// without instances, the one implicit resource (e.g. the region).
    async fn list_resources(
        &self,
        connection: &Connection<'_>,
        resource_type: &str,
    ) -> Result<Vec<String>, UpstreamError>;

    /// Issues short-lived credentials for one resource, down-scoped to it.
    async fn issue(
        &self,
        connection: &Connection<'_>,
        request: &IssueRequest<'_>,
    ) -> Result<Issued, UpstreamError>;
}

/// Every connector type this build knows, by id.
#[derive(Clone)]
pub struct Catalogue {
    types: BTreeMap<String, Arc<dyn ConnectorType>>,
}

impl Catalogue {
    /// A catalogue of exactly `types`.
    pub fn of(types: impl IntoIterator<Item = Arc<dyn ConnectorType>>) -> Self {
        Self {
            types: types
                .into_iter()
                .map(|t| (t.spec().connector_type.clone(), t))
                .collect(),
        }
    }

    /// The type `connector_type`.
    pub fn get(&self, connector_type: &str) -> Option<&Arc<dyn ConnectorType>> {
        self.types.get(connector_type)
    }

    /// Every type's catalogue entry, by id.
    pub fn specs(&self) -> Vec<ConnectorTypeSpec> {
        self.types.values().map(|t| t.spec().clone()).collect()
    }

    /// Every type this build has: `aws`.
    pub fn builtin(settings: TypeSettings) -> Self {
        Self::of([Arc::new(aws::AwsConnectorType::new(settings)) as Arc<dyn ConnectorType>])
    }
}

/// What every built-in type is configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeSettings {
    /// The bound on one call to a cloud (connecting included): past it, the call fails
    /// with [`UpstreamError::Timeout`].
    pub timeout: Duration,
}

impl fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.types.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every configuration schema the shipped types declare uses only what
    /// `crate::schema` checks: a keyword outside it would be declared and not enforced.
    #[test]
    fn the_builtin_catalogue_uses_only_the_checked_schema_subset() {
        let catalogue = Catalogue::builtin(TypeSettings {
            timeout: Duration::from_secs(1),
        });
        let specs = catalogue.specs();
        assert!(!specs.is_empty());
        for spec in specs {
            for method in &spec.auth_methods {
                crate::schema::supported(&method.config_schema).unwrap_or_else(|e| {
                    panic!("{} {}: {e}", spec.connector_type, method.auth_method)
                });
            }
        }
    }
}
