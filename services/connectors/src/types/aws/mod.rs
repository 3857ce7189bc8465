//! The `aws` connector type (issue 12): six auth methods (`implicit`, `secret-key`,
//! `sts-token`, `iam-role`, `session-token`, `federation-token`) and four resource types
//! (`aws-generic`, `s3-bucket`, `docker-registry` for ECR, `kubernetes-cluster` for EKS).
//!
//! - [`catalogue`]: the catalogue entry (schemas, secret fields, lifetimes).
//! - [`resources`]: resource ids, parsed and normalised.
//! - [`policy`]: the generated session policies and the IAM syntax checks.
//! - [`client`]: the calls to AWS, their timeout and their errors.
//!
//! **Configuration.** `region` (required), `role_arn` (iam-role: required; implicit:
//! optional), `policy_arns` (managed policies that bound the session), `policy` (an
//! inline session policy: a JSON document **as a string**, passed to STS as given),
//! `endpoint_url` (every AWS call goes there when set; S3 then uses path-style URLs).
//!
//! **Issuing.** `secret-key` and `sts-token` hand out the configured keys (for ECR and
//! EKS they sign the registry login and the cluster token with them). `iam-role` and
//! `implicit` with a role call AssumeRole, `session-token` GetSessionToken,
//! `federation-token` GetFederationToken; `implicit` without a role hands out the chain's
//! own session, or calls GetSessionToken when the chain's keys are long-lived.
//!
//! **Down-scoping.** AssumeRole and GetFederationToken carry the resource's generated
//! session policy ([`policy::session_policy`]) unless the connector configures `policy`
//! (then that document instead); `policy_arns` are passed either way. For `aws-generic`
//! an assumed role gets no session policy (the role's own permissions), and a federation
//! token gets an allow-all one (a federated user without a policy has no permissions at
//! all; the IAM user's own policies bound it). GetSessionToken takes no policy.

pub mod catalogue;
pub mod client;
pub mod policy;
pub mod resources;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::SharedCredentialsProvider;
use chrono::{DateTime, Utc};
use gatehouse_contracts::catalogue::ConnectorTypeSpec;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use self::catalogue::{
    FEDERATION_TOKEN, IAM_ROLE, IMPLICIT, MIN_LIFETIME, SECRET_KEY, SESSION_TOKEN, STS_TOKEN,
};
use self::client::{Keys, Target, Upstream, provider};
use self::resources::{AWS_GENERIC, DOCKER_REGISTRY, KUBERNETES_CLUSTER, Resource, S3_BUCKET};
use super::{Connection, ConnectorType, IssueRequest, Issued, TypeSettings, UpstreamError};

/// The session name of the role sessions `verify` and `list_resources` assume.
const INSPECT_SESSION: &str = "gatehouse-verify";

/// The `aws` connector type.
#[derive(Debug)]
pub struct AwsConnectorType {
    spec: ConnectorTypeSpec,
    upstream: Upstream,
}

impl AwsConnectorType {
    /// The type, its calls bounded by `settings.timeout`.
    pub fn new(settings: TypeSettings) -> Self {
        Self {
            spec: catalogue::spec(),
            upstream: Upstream::new(settings.timeout),
        }
    }
}

/// A connector's configuration, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct AwsConfig {
    region: String,
    role_arn: Option<String>,
    policy_arns: Vec<String>,
    policy: Option<String>,
    endpoint_url: Option<String>,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> UpstreamError {
    UpstreamError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl AwsConfig {
    /// Parses and checks every field (syntax only: nothing is sent).
    fn parse(configuration: &Map<String, Value>) -> Result<AwsConfig, UpstreamError> {
        let string = |name: &str| -> Result<Option<String>, UpstreamError> {
            match configuration.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
                Some(_) => Err(invalid(name, "must be a string")),
            }
        };
        let region = string("region")?.ok_or_else(|| invalid("region", "is required"))?;
        if !resources::is_region(&region) {
            return Err(invalid(
                "region",
                format!("{region:?} is not an AWS region (us-east-1)"),
            ));
        }
        let role_arn = string("role_arn")?;
        if let Some(arn) = &role_arn {
            policy::check_role_arn(arn).map_err(|e| invalid("role_arn", e))?;
        }
        let policy_arns = match configuration.get("policy_arns") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let field = format!("policy_arns[{i}]");
                    let arn = item
                        .as_str()
                        .ok_or_else(|| invalid(&field, "must be a string"))?;
                    policy::check_policy_arn(arn).map_err(|e| invalid(&field, e))?;
                    Ok(arn.to_owned())
                })
                .collect::<Result<_, UpstreamError>>()?,
            Some(_) => return Err(invalid("policy_arns", "must be an array of policy ARNs")),
        };
        if policy_arns.len() > 10 {
            return Err(invalid(
                "policy_arns",
                "STS accepts at most 10 managed policies",
            ));
        }
        let policy = string("policy")?;
        if let Some(document) = &policy {
            policy::check_policy_document(document).map_err(|e| invalid("policy", e))?;
        }
        let endpoint_url = string("endpoint_url")?;
        if let Some(url) = &endpoint_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .ok_or_else(|| invalid("endpoint_url", "must be an http:// or https:// URL"))?;
            if rest.is_empty() || rest.starts_with('/') || url.parse::<http::Uri>().is_err() {
                return Err(invalid("endpoint_url", format!("{url:?} is not a URL")));
            }
        }
        Ok(AwsConfig {
            region,
            role_arn,
            policy_arns,
            policy,
            endpoint_url,
        })
    }

    fn target(&self) -> Target<'_> {
        Target {
            region: &self.region,
            endpoint_url: self.endpoint_url.as_deref(),
        }
    }

    /// The account of `role_arn` (checked syntax: the fifth field).
    fn role_account(&self) -> Option<&str> {
        self.role_arn
            .as_deref()
            .and_then(|arn| arn.split(':').nth(4))
    }
}

/// The configured keys of a method that has them.
fn configured_keys(connection: &Connection<'_>) -> Result<Keys, UpstreamError> {
    let field = |name: &str| {
        connection
            .secrets
            .get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid(name, "is required"))
    };
    let token = match connection.auth_method {
        STS_TOKEN => Some(field("aws_session_token")?),
        _ => None,
    };
    let expires_at = match connection.auth_method {
        STS_TOKEN => connection.expires_at,
        _ => None,
    };
    Ok(Keys::new(
        field("aws_access_key_id")?,
        field("aws_secret_access_key")?,
        token,
        expires_at,
    ))
}

/// The earlier of two optional instants.
fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl AwsConnectorType {
    fn method_spec(
        &self,
        auth_method: &str,
    ) -> Result<&gatehouse_contracts::catalogue::AuthMethodSpec, UpstreamError> {
        self.spec.auth_method(auth_method).ok_or_else(|| {
            invalid(
                "auth_method",
                format!("the aws type has no auth method {auth_method:?}"),
            )
        })
    }

    /// The base credentials the method authenticates with: the configured keys, or for
    /// `implicit` the server's chain.
    async fn base(
        &self,
        connection: &Connection<'_>,
        config: &AwsConfig,
    ) -> Result<SharedCredentialsProvider, UpstreamError> {
        match connection.auth_method {
            IMPLICIT => self.upstream.default_chain(config.target()).await,
            _ => Ok(provider(&configured_keys(connection)?)),
        }
    }

    /// Credentials to inspect with (verify, list): no down-scoping, shortest session.
    async fn inspecting_keys(
        &self,
        connection: &Connection<'_>,
        config: &AwsConfig,
    ) -> Result<Keys, UpstreamError> {
        match (connection.auth_method, &config.role_arn) {
            (IAM_ROLE | IMPLICIT, Some(role_arn)) => {
                let base = self.base(connection, config).await?;
                let (keys, _arn) = self
                    .upstream
                    .assume_role(
                        config.target(),
                        base,
                        role_arn,
                        INSPECT_SESSION,
                        Duration::from_secs(MIN_LIFETIME),
                        None,
                        &[],
                    )
                    .await?;
                Ok(keys)
            }
            (IAM_ROLE, None) => Err(invalid("role_arn", "is required for iam-role")),
            (IMPLICIT, None) => {
                let chain = self.base(connection, config).await?;
                self.upstream.resolve(&chain).await
            }
            _ => configured_keys(connection),
        }
    }

    /// The session policy for `resource`: the configured `policy`, else the generated one.
    fn policy_for(&self, config: &AwsConfig, resource: &Resource, account: &str) -> Option<String> {
        config.policy.clone().or_else(|| {
            policy::session_policy(resource, &config.region, account).map(|p| p.to_string())
        })
    }

    /// The keys to issue (for aws-generic and s3) or to sign with (ECR, EKS).
    async fn issuing_keys(
        &self,
        connection: &Connection<'_>,
        config: &AwsConfig,
        resource: &Resource,
        request: &IssueRequest<'_>,
    ) -> Result<Keys, UpstreamError> {
        let target = config.target();
        let lifetime = request.lifetime;
        match connection.auth_method {
            SECRET_KEY | STS_TOKEN => configured_keys(connection),
            IAM_ROLE | IMPLICIT if config.role_arn.is_some() => {
                let role_arn = config.role_arn.as_deref().unwrap_or_default();
                let account = config.role_account().unwrap_or_default();
                let base = self.base(connection, config).await?;
                let (keys, _arn) = self
                    .upstream
                    .assume_role(
                        target,
                        base,
                        role_arn,
                        &policy::sts_name(request.session_name, 64),
                        lifetime,
                        self.policy_for(config, resource, account),
                        &config.policy_arns,
                    )
                    .await?;
                Ok(keys)
            }
            IAM_ROLE => Err(invalid("role_arn", "is required for iam-role")),
            IMPLICIT => {
                let chain = self.base(connection, config).await?;
                let own = self.upstream.resolve(&chain).await?;
                if own.session_token().is_some() {
                    // Already a session (an instance or task role): GetSessionToken would
                    // be refused; hand it out with its own expiry.
                    Ok(own)
                } else {
                    self.upstream
                        .session_token(target, provider(&own), lifetime)
                        .await
                }
            }
            SESSION_TOKEN => {
                let base = self.base(connection, config).await?;
                self.upstream.session_token(target, base, lifetime).await
            }
            FEDERATION_TOKEN => {
                let base = self.base(connection, config).await?;
                let policy = match (&config.policy, resource) {
                    (Some(document), _) => document.clone(),
                    (None, Resource::Generic) => policy::federation_generic_policy().to_string(),
                    (None, Resource::Cluster(_)) => {
                        let me = self.upstream.caller_identity(target, base.clone()).await?;
                        self.policy_for(config, resource, &me.account)
                            .unwrap_or_default()
                    }
                    (None, _) => self.policy_for(config, resource, "").unwrap_or_default(),
                };
                self.upstream
                    .federation_token(
                        target,
                        base,
                        &policy::sts_name(request.session_name, 32),
                        lifetime,
                        Some(policy),
                        &config.policy_arns,
                    )
                    .await
            }
            other => Err(invalid(
                "auth_method",
                format!("the aws type has no auth method {other:?}"),
            )),
        }
    }

    /// Checks that `keys` reach `resource`.
    async fn reach(
        &self,
        config: &AwsConfig,
        keys: &Keys,
        resource: &Resource,
    ) -> Result<(), UpstreamError> {
        let target = config.target();
        match resource {
            Resource::Generic => Ok(()),
            Resource::Bucket(bucket) => self.upstream.check_bucket(target, keys, bucket).await,
            Resource::Registry(registry) => {
                let target = Target {
                    region: &registry.region,
                    endpoint_url: config.endpoint_url.as_deref(),
                };
                self.upstream.registry_login(target, keys).await.map(|_| ())
            }
            Resource::Cluster(name) => self
                .upstream
                .describe_cluster(target, keys, name)
                .await
                .map(|_| ()),
        }
    }
}

fn resource_of(resource_type: &str, id: Option<&str>) -> Result<Resource, UpstreamError> {
    Resource::parse(resource_type, id).map_err(|e| invalid("resource_id", e))
}

/// The AWS keys shape of `aws-generic` and `s3-bucket`.
fn aws_credentials(config: &AwsConfig, keys: &Keys) -> Map<String, Value> {
    let mut credentials = Map::new();
    credentials.insert("aws_access_key_id".into(), keys.access_key_id().into());
    credentials.insert(
        "aws_secret_access_key".into(),
        keys.secret_access_key().into(),
    );
    if let Some(token) = keys.session_token() {
        credentials.insert("aws_session_token".into(), token.into());
    }
    credentials.insert("region".into(), config.region.clone().into());
    if let Some(url) = &config.endpoint_url {
        credentials.insert("endpoint_url".into(), url.clone().into());
    }
    credentials
}

#[async_trait]
impl ConnectorType for AwsConnectorType {
    fn spec(&self) -> &ConnectorTypeSpec {
        &self.spec
    }

    fn canonical_resource_id(&self, resource_type: &str, raw: &str) -> Result<String, String> {
        Resource::parse(resource_type, Some(raw))?
            .canonical_id()
            .ok_or_else(|| format!("{resource_type} has no instances"))
    }

    fn check_configuration(
        &self,
        auth_method: &str,
        configuration: &Map<String, Value>,
    ) -> Result<(), UpstreamError> {
        let method = self.method_spec(auth_method)?;
        let known = method.config_schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        if let Some(unknown) = configuration.keys().find(|k| !known.contains(k)) {
            return Err(invalid(
                unknown.as_str(),
                format!("is not a setting of {auth_method}"),
            ));
        }
        let config = AwsConfig::parse(configuration)?;
        match auth_method {
            IAM_ROLE if config.role_arn.is_none() => {
                Err(invalid("role_arn", "is required for iam-role"))
            }
            IMPLICIT if config.role_arn.is_none() && config.policy.is_some() => Err(invalid(
                "policy",
                "a session policy needs role_arn (GetSessionToken takes none)",
            )),
            IMPLICIT if config.role_arn.is_none() && !config.policy_arns.is_empty() => {
                Err(invalid(
                    "policy_arns",
                    "managed session policies need role_arn (GetSessionToken takes none)",
                ))
            }
            _ => Ok(()),
        }
    }

    async fn verify(
        &self,
        connection: &Connection<'_>,
        resource: Option<(&str, Option<&str>)>,
    ) -> Result<String, UpstreamError> {
        let config = AwsConfig::parse(connection.configuration)?;
        let resource = resource
            .map(|(resource_type, id)| resource_of(resource_type, id))
            .transpose()?;
        let keys = self.inspecting_keys(connection, &config).await?;
        let me = self
            .upstream
            .caller_identity(config.target(), provider(&keys))
            .await?;
        if let Some(resource) = &resource {
            self.reach(&config, &keys, resource).await?;
        }
        Ok(me.arn)
    }

    async fn list_resources(
        &self,
        connection: &Connection<'_>,
        resource_type: &str,
    ) -> Result<Vec<String>, UpstreamError> {
        let config = AwsConfig::parse(connection.configuration)?;
        if resource_type == AWS_GENERIC {
            return Ok(vec![config.region.clone()]);
        }
        if ![S3_BUCKET, DOCKER_REGISTRY, KUBERNETES_CLUSTER].contains(&resource_type) {
            return Err(invalid(
                "resource_type",
                format!("the aws type has no resource type {resource_type:?}"),
            ));
        }
        let keys = self.inspecting_keys(connection, &config).await?;
        let target = config.target();
        match resource_type {
            S3_BUCKET => Ok(self
                .upstream
                .list_buckets(target, &keys)
                .await?
                .into_iter()
                .map(|name| format!("s3://{name}"))
                .collect()),
            KUBERNETES_CLUSTER => self.upstream.list_clusters(target, &keys).await,
            _ => {
                let me = self
                    .upstream
                    .caller_identity(target, provider(&keys))
                    .await?;
                let registry = resources::Registry {
                    account: me.account,
                    region: config.region.clone(),
                };
                Ok(vec![registry.to_string()])
            }
        }
    }

    async fn issue(
        &self,
        connection: &Connection<'_>,
        request: &IssueRequest<'_>,
    ) -> Result<Issued, UpstreamError> {
        let config = AwsConfig::parse(connection.configuration)?;
        let resource = resource_of(request.resource_type, request.resource_id)?;
        let keys = self
            .issuing_keys(connection, &config, &resource, request)
            .await?;
        let (credentials, expires_at) = match &resource {
            Resource::Generic | Resource::Bucket(_) => {
                (aws_credentials(&config, &keys), keys.expires_at())
            }
            Resource::Registry(registry) => {
                let target = Target {
                    region: &registry.region,
                    endpoint_url: config.endpoint_url.as_deref(),
                };
                let (username, password, token_expiry) =
                    self.upstream.registry_login(target, &keys).await?;
                let mut credentials = Map::new();
                credentials.insert("username".into(), username.into());
                credentials.insert("password".into(), password.expose_secret().into());
                credentials.insert("registry".into(), registry.to_string().into());
                (credentials, earliest(token_expiry, keys.expires_at()))
            }
            Resource::Cluster(name) => {
                let cluster = self
                    .upstream
                    .describe_cluster(config.target(), &keys, name)
                    .await?;
                let now = SystemTime::now();
                let token = client::eks_token(config.target(), &keys, name, now)?;
                let mut credentials = Map::new();
                credentials.insert("server".into(), cluster.server.into());
                credentials.insert(
                    "certificate_authority_data".into(),
                    cluster.certificate_authority_data.into(),
                );
                credentials.insert("token".into(), token.expose_secret().into());
                let token_expiry = DateTime::<Utc>::from(now + client::EKS_TOKEN_LIFETIME);
                (credentials, earliest(Some(token_expiry), keys.expires_at()))
            }
        };
        Ok(Issued {
            credentials,
            expires_at,
            revocable: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn aws() -> AwsConnectorType {
        AwsConnectorType::new(TypeSettings {
            timeout: Duration::from_secs(5),
        })
    }

    fn config(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    fn field_of(result: Result<(), UpstreamError>) -> String {
        match result {
            Err(UpstreamError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_good_configuration_of_each_method_passes() {
        let aws = aws();
        let cases = [
            (SECRET_KEY, json!({"region": "eu-west-1"})),
            (
                STS_TOKEN,
                json!({"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:5000"}),
            ),
            (
                IAM_ROLE,
                json!({
                    "region": "us-east-1",
                    "role_arn": "arn:aws:iam::123456789012:role/deploy",
                    "policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
                    "policy": "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"s3:GetObject\",\"Resource\":\"arn:aws:s3:::b/*\"}]}",
                }),
            ),
            (SESSION_TOKEN, json!({"region": "us-gov-west-1"})),
            (
                FEDERATION_TOKEN,
                json!({"region": "cn-north-1", "policy_arns": []}),
            ),
            (IMPLICIT, json!({"region": "eu-central-1"})),
            (
                IMPLICIT,
                json!({"region": "eu-central-1", "role_arn": "arn:aws:iam::123456789012:role/x"}),
            ),
        ];
        for (method, value) in cases {
            assert_eq!(
                aws.check_configuration(method, &config(value.clone())),
                Ok(()),
                "{method} {value}"
            );
        }
    }

    #[test]
    fn each_bad_setting_is_refused_naming_its_field() {
        let aws = aws();
        let role = "arn:aws:iam::123456789012:role/deploy";
        let cases = [
            (SECRET_KEY, json!({}), "region"),
            (SECRET_KEY, json!({"region": "Europe"}), "region"),
            (SECRET_KEY, json!({"region": 1}), "region"),
            (IAM_ROLE, json!({"region": "us-east-1"}), "role_arn"),
            (
                IAM_ROLE,
                json!({"region": "us-east-1", "role_arn": "deploy"}),
                "role_arn",
            ),
            (
                IAM_ROLE,
                json!({"region": "us-east-1", "role_arn": role, "policy": "{not json"}),
                "policy",
            ),
            (
                IAM_ROLE,
                json!({"region": "us-east-1", "role_arn": role, "policy": "[1]"}),
                "policy",
            ),
            (
                IAM_ROLE,
                json!({"region": "us-east-1", "role_arn": role, "policy_arns": ["arn:aws:iam::aws:policy/A", "nope"]}),
                "policy_arns[1]",
            ),
            (
                IAM_ROLE,
                json!({"region": "us-east-1", "role_arn": role, "policy_arns": "x"}),
                "policy_arns",
            ),
            (
                FEDERATION_TOKEN,
                json!({"region": "us-east-1", "endpoint_url": "127.0.0.1:5000"}),
                "endpoint_url",
            ),
            (
                SECRET_KEY,
                json!({"region": "us-east-1", "role_arn": role}),
                "role_arn",
            ),
            (
                SESSION_TOKEN,
                json!({"region": "us-east-1", "policy": "{}"}),
                "policy",
            ),
            (
                IMPLICIT,
                json!({"region": "us-east-1", "policy": "{\"Statement\":{}}"}),
                "policy",
            ),
            (
                IMPLICIT,
                json!({"region": "us-east-1", "policy_arns": ["arn:aws:iam::aws:policy/A"]}),
                "policy_arns",
            ),
            ("password", json!({"region": "us-east-1"}), "auth_method"),
        ];
        for (method, value, field) in cases {
            assert_eq!(
                field_of(aws.check_configuration(method, &config(value.clone()))),
                field,
                "{method} {value}"
            );
        }
    }

    #[test]
    fn lifetimes_are_those_of_the_spec() {
        let spec = catalogue::spec();
        let bounds = |m: &str| {
            let m = spec.auth_method(m).expect("method");
            (
                m.min_expiration_seconds,
                m.default_expiration_seconds,
                m.max_expiration_seconds,
            )
        };
        assert_eq!(bounds(IAM_ROLE), (Some(900), Some(3600), Some(43_200)));
        assert_eq!(
            bounds(SESSION_TOKEN),
            (Some(900), Some(43_200), Some(129_600))
        );
        assert_eq!(
            bounds(FEDERATION_TOKEN),
            (Some(900), Some(43_200), Some(129_600))
        );
        assert_eq!(bounds(IMPLICIT), (Some(900), Some(3600), Some(43_200)));
        assert_eq!(bounds(SECRET_KEY), (None, None, None));
        assert_eq!(bounds(STS_TOKEN), (None, None, None));
        for m in &spec.auth_methods {
            assert!(!m.revocable, "{} is not revocable at AWS", m.auth_method);
            assert_eq!(
                m.long_lived,
                [SECRET_KEY, STS_TOKEN].contains(&m.auth_method.as_str()),
                "{}",
                m.auth_method
            );
            assert_eq!(m.implicit, m.auth_method == IMPLICIT);
            assert_eq!(
                m.config_schema["additionalProperties"], false,
                "{}",
                m.auth_method
            );
            assert!(
                m.config_schema["required"]
                    .as_array()
                    .expect("required")
                    .contains(&json!("region"))
            );
        }
    }

    #[test]
    fn secrets_are_the_keys_and_for_sts_token_the_session_token() {
        let spec = catalogue::spec();
        let required = |m: &str| -> Vec<String> {
            spec.auth_method(m)
                .expect("method")
                .secrets
                .iter()
                .filter(|s| s.required)
                .map(|s| s.name.clone())
                .collect()
        };
        assert!(required(IMPLICIT).is_empty());
        assert_eq!(
            required(STS_TOKEN),
            [
                "aws_access_key_id",
                "aws_secret_access_key",
                "aws_session_token"
            ]
        );
        for m in [SECRET_KEY, IAM_ROLE, SESSION_TOKEN, FEDERATION_TOKEN] {
            assert_eq!(
                required(m),
                ["aws_access_key_id", "aws_secret_access_key"],
                "{m}"
            );
        }
        assert_eq!(
            spec.auth_method(IAM_ROLE).expect("iam-role").config_schema["required"],
            json!(["region", "role_arn"])
        );
    }

    #[test]
    fn every_method_serves_every_resource_type() {
        let spec = catalogue::spec();
        for m in catalogue::AUTH_METHODS {
            let served: Vec<&str> = spec
                .resource_types_of(m)
                .iter()
                .map(|r| r.resource_type.as_str())
                .collect();
            assert_eq!(
                served,
                [AWS_GENERIC, S3_BUCKET, DOCKER_REGISTRY, KUBERNETES_CLUSTER],
                "{m}"
            );
        }
        assert!(
            !spec
                .resource_type(AWS_GENERIC)
                .expect("generic")
                .supports_instances
        );
    }

    #[test]
    fn canonical_ids_go_through_the_type() {
        let aws = aws();
        assert_eq!(
            aws.canonical_resource_id(S3_BUCKET, "arn:aws:s3:::b-1"),
            Ok("s3://b-1".into())
        );
        assert!(aws.canonical_resource_id(AWS_GENERIC, "eu-west-1").is_err());
    }

    #[test]
    fn issued_aws_credentials_have_the_documented_shape() {
        let config = AwsConfig::parse(&config(
            json!({"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:1"}),
        ))
        .expect("config");
        let with_token = aws_credentials(&config, &Keys::new("AKIA1", "s3cr3t", Some("tok"), None));
        let mut names: Vec<&str> = with_token.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "aws_access_key_id",
                "aws_secret_access_key",
                "aws_session_token",
                "endpoint_url",
                "region"
            ]
        );
        let config = AwsConfig::parse(&config_without_endpoint()).expect("config");
        let plain = aws_credentials(&config, &Keys::new("AKIA1", "s3cr3t", None, None));
        assert!(!plain.contains_key("aws_session_token") && !plain.contains_key("endpoint_url"));
    }

    fn config_without_endpoint() -> Map<String, Value> {
        config(json!({"region": "eu-west-1"}))
    }

    #[test]
    fn the_earliest_expiry_wins() {
        let a = DateTime::from_timestamp(100, 0);
        let b = DateTime::from_timestamp(200, 0);
        assert_eq!(earliest(a, b), a);
        assert_eq!(earliest(None, b), b);
        assert_eq!(earliest(a, None), a);
        assert_eq!(earliest(None, None), None);
    }
}
