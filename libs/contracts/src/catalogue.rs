//! The connector-type catalogue: what each connector type offers, as data.
//!
//! A connector type (`aws`, later `gcp`, `azure`, ...) declares its **auth methods** (how
//! the server authenticates to the cloud, and what that method issues to clients) and
//! its **resource types** (what a client may ask credentials for). The catalogue is code
//! in the connectors service, served as is by `GET /api/v1/service_connector_types`, and
//! it drives the CLI's guided (`-i`) registration and the validation of every request.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One connector type: its auth methods and resource types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct ConnectorTypeSpec {
    /// The type's id (`aws`).
    pub connector_type: String,
    /// A human name (`AWS Service Connector`).
    pub name: String,
    /// What it connects to.
    pub description: String,
    /// How the server may authenticate to the cloud.
    pub auth_methods: Vec<AuthMethodSpec>,
    /// What clients may ask credentials for.
    pub resource_types: Vec<ResourceTypeSpec>,
}

/// One way a connector authenticates, and what it issues.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct AuthMethodSpec {
    /// The method's id (`iam-role`).
    pub auth_method: String,
    /// A human name.
    pub name: String,
    /// When to use it.
    pub description: String,
    /// A JSON Schema (draft 2020-12 subset: `type: object`, `properties`, `required`,
    /// `additionalProperties: false`) of the non-secret configuration.
    #[schema(value_type = Object)]
    pub config_schema: serde_json::Value,
    /// The secret fields: their names, whether each is required, a description.
    pub secrets: Vec<SecretFieldSpec>,
    /// Uses the server's own identity (off unless
    /// `GATEHOUSE_ENABLE_IMPLICIT_AUTH_METHODS=true`; only admins register them).
    pub implicit: bool,
    /// Hands out the configured long-lived credentials as they are (refused when
    /// `GATEHOUSE_FORBID_LONG_LIVED_CREDENTIALS=true`).
    pub long_lived: bool,
    /// Whether credentials it issues can be revoked at the cloud before they expire.
    pub revocable: bool,
    /// The shortest lifetime of what it issues (seconds), when it issues temporary
    /// credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_expiration_seconds: Option<u64>,
    /// The longest lifetime (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expiration_seconds: Option<u64>,
    /// The lifetime when none is asked for (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_expiration_seconds: Option<u64>,
}

/// One secret field of an auth method.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct SecretFieldSpec {
    /// The field name (`aws_secret_access_key`).
    pub name: String,
    /// Whether registering without it is refused.
    pub required: bool,
    /// What it is.
    pub description: String,
}

/// One kind of resource a connector type reaches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct ResourceTypeSpec {
    /// The resource type's id (`s3-bucket`).
    pub resource_type: String,
    /// A human name.
    pub name: String,
    /// What it is and what credentials for it look like.
    pub description: String,
    /// The auth methods that can serve it.
    pub auth_methods: Vec<String>,
    /// Whether it has instances (buckets, clusters) named by a resource id; when not
    /// (`aws-generic`), a resource id is not accepted.
    pub supports_instances: bool,
    /// The accepted forms of a resource id (`s3://{bucket}`, `arn:aws:s3:::{bucket}`).
    pub id_forms: Vec<String>,
    /// The canonical form every accepted id is normalised to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_form: Option<String>,
}

impl ConnectorTypeSpec {
    /// The auth method named `auth_method`.
    pub fn auth_method(&self, auth_method: &str) -> Option<&AuthMethodSpec> {
        self.auth_methods
            .iter()
            .find(|m| m.auth_method == auth_method)
    }

    /// The resource type named `resource_type`.
    pub fn resource_type(&self, resource_type: &str) -> Option<&ResourceTypeSpec> {
        self.resource_types
            .iter()
            .find(|r| r.resource_type == resource_type)
    }

    /// The resource types `auth_method` can serve, in catalogue order.
    pub fn resource_types_of(&self, auth_method: &str) -> Vec<&ResourceTypeSpec> {
        self.resource_types
            .iter()
            .filter(|r| r.auth_methods.iter().any(|m| m == auth_method))
            .collect()
    }
}

impl AuthMethodSpec {
    /// The names of its secret fields.
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.secrets.iter().map(|s| s.name.as_str())
    }

    /// Whether it issues credentials with a lifetime (and so takes `expiration_seconds`).
    pub fn has_lifetime(&self) -> bool {
        self.max_expiration_seconds.is_some()
    }
}
