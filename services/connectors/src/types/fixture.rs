//! `fixture`: a connector type with no cloud behind it, for the broker's own tests (rules,
//! sealing, leases, grants, components) where the cloud is beside the point. It is never
//! in [`super::Catalogue::builtin`]; the broker's behaviour against a real cloud is tested
//! with the real types against their stand-ins (moto for AWS).
//!
//! What it does is decided by its configuration: `buckets` lists what it reaches,
//! `refuse` makes every call fail as a cloud's refusal with that message, `hang` makes
//! every call wait forever (for timeouts). Issued credentials are
//! `{"token": "<secret>/<resource>/<n>", "resource": ...}`, `n` counting issues.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use gatehouse_contracts::catalogue::{
    AuthMethodSpec, ConnectorTypeSpec, ResourceTypeSpec, SecretFieldSpec,
};
use serde_json::{Map, Value, json};

use super::{Connection, ConnectorType, IssueRequest, Issued, UpstreamError};

/// The fixture type; counts its cloud calls.
#[derive(Debug)]
pub struct FixtureType {
    spec: ConnectorTypeSpec,
    issues: AtomicU64,
}

impl Default for FixtureType {
    fn default() -> Self {
        Self::new()
    }
}

fn method(name: &str, implicit: bool, long_lived: bool) -> AuthMethodSpec {
    AuthMethodSpec {
        auth_method: name.into(),
        name: name.into(),
        description: format!("fixture method {name}"),
        config_schema: json!({
            "type": "object",
            "properties": {
                "region": {"type": "string", "minLength": 1, "description": "a region"},
                "buckets": {"type": "array", "items": {"type": "string"}},
                "refuse": {"type": "string"},
                "hang": {"type": "boolean"},
            },
            "required": ["region"],
            "additionalProperties": false,
        }),
        secrets: if implicit {
            Vec::new()
        } else {
            vec![SecretFieldSpec {
                name: "token".into(),
                required: true,
                description: "the long-lived token".into(),
            }]
        },
        implicit,
        long_lived,
        revocable: false,
        min_expiration_seconds: (!long_lived).then_some(60),
        max_expiration_seconds: (!long_lived).then_some(7200),
        default_expiration_seconds: (!long_lived).then_some(600),
    }
}

impl FixtureType {
    /// The type.
    pub fn new() -> Self {
        let all = vec![
            "token".to_owned(),
            "static".to_owned(),
            "ambient".to_owned(),
        ];
        Self {
            spec: ConnectorTypeSpec {
                connector_type: "fixture".into(),
                name: "Fixture".into(),
                description: "no cloud: for the broker's tests".into(),
                auth_methods: vec![
                    method("token", false, false),
                    method("static", false, true),
                    method("ambient", true, false),
                ],
                resource_types: vec![
                    ResourceTypeSpec {
                        resource_type: "bucket".into(),
                        name: "Bucket".into(),
                        description: "a bucket".into(),
                        auth_methods: all.clone(),
                        supports_instances: true,
                        id_forms: vec!["{bucket}".into(), "fx://{bucket}".into()],
                        canonical_form: Some("fx://{bucket}".into()),
                    },
                    ResourceTypeSpec {
                        resource_type: "generic".into(),
                        name: "Generic".into(),
                        description: "the account".into(),
                        auth_methods: all,
                        supports_instances: false,
                        id_forms: Vec::new(),
                        canonical_form: None,
                    },
                ],
            },
            issues: AtomicU64::new(0),
        }
    }

    /// How many credentials it issued (cloud calls, not reuses).
    pub fn issues(&self) -> u64 {
        self.issues.load(Ordering::SeqCst)
    }

    async fn behave(connection: &Connection<'_>) -> Result<(), UpstreamError> {
        if connection.configuration.get("hang") == Some(&Value::Bool(true)) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if let Some(message) = connection.config_str("refuse") {
            return Err(UpstreamError::Refused(message.to_owned()));
        }
        Ok(())
    }

    fn buckets(connection: &Connection<'_>) -> Vec<String> {
        connection
            .configuration
            .get("buckets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|b| format!("fx://{b}"))
            .collect()
    }
}

#[async_trait]
impl ConnectorType for FixtureType {
    fn spec(&self) -> &ConnectorTypeSpec {
        &self.spec
    }

    fn canonical_resource_id(&self, resource_type: &str, raw: &str) -> Result<String, String> {
        if resource_type != "bucket" {
            return Err(format!("{resource_type} has no instances"));
        }
        let name = raw.strip_prefix("fx://").unwrap_or(raw);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            return Err(format!(
                "{raw:?} is not a bucket (lowercase letters and '-')"
            ));
        }
        Ok(format!("fx://{name}"))
    }

    fn check_configuration(
        &self,
        _auth_method: &str,
        configuration: &Map<String, Value>,
    ) -> Result<(), UpstreamError> {
        match configuration.get("region").and_then(Value::as_str) {
            Some(r) if r.starts_with("bad") => Err(UpstreamError::Invalid {
                field: "configuration.region".into(),
                message: format!("{r:?} is not a region"),
            }),
            _ => Ok(()),
        }
    }

    async fn verify(
        &self,
        connection: &Connection<'_>,
        resource: Option<(&str, Option<&str>)>,
    ) -> Result<String, UpstreamError> {
        Self::behave(connection).await?;
        if let Some((_, Some(id))) = resource
            && !Self::buckets(connection).iter().any(|b| b == id)
        {
            return Err(UpstreamError::Refused(format!("NoSuchBucket: {id}")));
        }
        Ok(format!("fixture:{}", connection.auth_method))
    }

    async fn list_resources(
        &self,
        connection: &Connection<'_>,
        resource_type: &str,
    ) -> Result<Vec<String>, UpstreamError> {
        Self::behave(connection).await?;
        Ok(match resource_type {
            "bucket" => Self::buckets(connection),
            _ => vec![
                connection
                    .config_str("region")
                    .unwrap_or_default()
                    .to_owned(),
            ],
        })
    }

    async fn issue(
        &self,
        connection: &Connection<'_>,
        request: &IssueRequest<'_>,
    ) -> Result<Issued, UpstreamError> {
        Self::behave(connection).await?;
        let n = self.issues.fetch_add(1, Ordering::SeqCst) + 1;
        let secret = connection.secrets.get("token").unwrap_or("ambient");
        let resource = request.resource_id.unwrap_or(request.resource_type);
        let mut credentials = Map::new();
        credentials.insert("token".into(), json!(format!("{secret}/{resource}/{n}")));
        credentials.insert("resource".into(), json!(resource));
        let long_lived = self
            .spec
            .auth_method(connection.auth_method)
            .is_some_and(|m| m.long_lived);
        Ok(Issued {
            credentials,
            expires_at: (!long_lived).then(|| {
                Utc::now()
                    + chrono::Duration::from_std(request.lifetime)
                        .unwrap_or(chrono::Duration::zero())
            }),
            revocable: false,
        })
    }
}
