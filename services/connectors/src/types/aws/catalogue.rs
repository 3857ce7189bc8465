//! The `aws` catalogue entry: six auth methods, four resource types.

use gatehouse_contracts::catalogue::{
    AuthMethodSpec, ConnectorTypeSpec, ResourceTypeSpec, SecretFieldSpec,
};
use serde_json::{Value, json};

use super::resources::{AWS_GENERIC, DOCKER_REGISTRY, KUBERNETES_CLUSTER, S3_BUCKET};

/// The type's id.
pub const CONNECTOR_TYPE: &str = "aws";

/// Long-lived keys handed out as they are.
pub const SECRET_KEY: &str = "secret-key";
/// A pasted STS session (keys and token), handed out as it is.
pub const STS_TOKEN: &str = "sts-token";
/// AssumeRole into `role_arn` with the configured keys.
pub const IAM_ROLE: &str = "iam-role";
/// GetSessionToken with the configured keys.
pub const SESSION_TOKEN: &str = "session-token";
/// GetFederationToken with the configured keys.
pub const FEDERATION_TOKEN: &str = "federation-token";
/// The server's own credential chain, optionally assuming `role_arn`.
pub const IMPLICIT: &str = "implicit";

/// Every method, in catalogue order.
pub const AUTH_METHODS: [&str; 6] = [
    IMPLICIT,
    SECRET_KEY,
    STS_TOKEN,
    IAM_ROLE,
    SESSION_TOKEN,
    FEDERATION_TOKEN,
];

/// The shortest lifetime STS issues (seconds), for every method that issues.
pub const MIN_LIFETIME: u64 = 900;
/// AssumeRole's ceiling (seconds); the role's own maximum session duration applies.
pub const ROLE_MAX_LIFETIME: u64 = 12 * 3600;
/// AssumeRole's default (seconds).
pub const ROLE_DEFAULT_LIFETIME: u64 = 3600;
/// GetSessionToken's and GetFederationToken's ceiling (seconds).
pub const TOKEN_MAX_LIFETIME: u64 = 36 * 3600;
/// GetSessionToken's and GetFederationToken's default (seconds).
pub const TOKEN_DEFAULT_LIFETIME: u64 = 12 * 3600;

fn region() -> Value {
    json!({"type": "string", "description": "The AWS region (us-east-1).", "minLength": 1})
}

fn endpoint_url() -> Value {
    json!({
        "type": "string",
        "description": "A custom endpoint for every AWS call (an S3-compatible store, a test stand-in); http:// or https://.",
        "minLength": 1,
    })
}

fn role_arn() -> Value {
    json!({"type": "string", "description": "The IAM role to assume (arn:aws:iam::<account>:role/<name>).", "minLength": 1})
}

fn policy_arns() -> Value {
    json!({
        "type": "array",
        "description": "Managed policies (ARNs) that bound the issued session (at most 10).",
        "items": {"type": "string"},
        "maxItems": 10,
    })
}

fn policy() -> Value {
    json!({
        "type": "string",
        "description": "An inline session policy: a JSON policy document, as a string. Replaces the generated least-privilege policy of the resource.",
        "minLength": 1,
    })
}

fn schema(properties: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let properties: serde_json::Map<String, Value> = properties
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn keys(session_token: bool) -> Vec<SecretFieldSpec> {
    let mut fields = vec![
        SecretFieldSpec {
            name: "aws_access_key_id".into(),
            required: true,
            description: "The AWS access key id.".into(),
        },
        SecretFieldSpec {
            name: "aws_secret_access_key".into(),
            required: true,
            description: "The AWS secret access key.".into(),
        },
    ];
    if session_token {
        fields.push(SecretFieldSpec {
            name: "aws_session_token".into(),
            required: true,
            description: "The STS session token that goes with the keys.".into(),
        });
    }
    fields
}

struct Method {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    config: Value,
    secrets: Vec<SecretFieldSpec>,
    implicit: bool,
    long_lived: bool,
    lifetimes: Option<(u64, u64, u64)>,
}

impl From<Method> for AuthMethodSpec {
    fn from(m: Method) -> Self {
        AuthMethodSpec {
            auth_method: m.id.into(),
            name: m.name.into(),
            description: m.description.into(),
            config_schema: m.config,
            secrets: m.secrets,
            implicit: m.implicit,
            long_lived: m.long_lived,
            // STS sessions cannot be ended early; configured keys are not ours to revoke.
            revocable: false,
            min_expiration_seconds: m.lifetimes.map(|l| l.0),
            default_expiration_seconds: m.lifetimes.map(|l| l.1),
            max_expiration_seconds: m.lifetimes.map(|l| l.2),
        }
    }
}

/// The `aws` connector type's catalogue entry.
pub fn spec() -> ConnectorTypeSpec {
    let methods = vec![
        Method {
            id: IMPLICIT,
            name: "Implicit (the server's AWS credentials)",
            description: "The server's own AWS credential chain (environment, profile, web identity, ECS or EC2 instance role); with role_arn, a session of that role. Issues temporary credentials (a session of the role, the chain's own session, or GetSessionToken). Off unless GATEHOUSE_ENABLE_IMPLICIT_AUTH_METHODS=true.",
            config: schema(
                vec![
                    ("region", region()),
                    ("role_arn", role_arn()),
                    ("policy_arns", policy_arns()),
                    ("policy", policy()),
                    ("endpoint_url", endpoint_url()),
                ],
                &["region"],
            ),
            secrets: vec![],
            implicit: true,
            long_lived: false,
            lifetimes: Some((MIN_LIFETIME, ROLE_DEFAULT_LIFETIME, ROLE_MAX_LIFETIME)),
        },
        Method {
            id: SECRET_KEY,
            name: "AWS secret key",
            description: "An IAM user's long-lived access keys, handed out as they are (for ECR and EKS, used to make the registry password or cluster token).",
            config: schema(
                vec![("region", region()), ("endpoint_url", endpoint_url())],
                &["region"],
            ),
            secrets: keys(false),
            implicit: false,
            long_lived: true,
            lifetimes: None,
        },
        Method {
            id: STS_TOKEN,
            name: "AWS STS token",
            description: "Temporary keys and a session token issued elsewhere, handed out as they are until they expire (the connector's expires_at).",
            config: schema(
                vec![("region", region()), ("endpoint_url", endpoint_url())],
                &["region"],
            ),
            secrets: keys(true),
            implicit: false,
            long_lived: true,
            lifetimes: None,
        },
        Method {
            id: IAM_ROLE,
            name: "AWS IAM role",
            description: "Assumes role_arn with the configured keys (STS AssumeRole) and issues the role's session, down-scoped to the resource by a generated session policy unless `policy` is given.",
            config: schema(
                vec![
                    ("region", region()),
                    ("role_arn", role_arn()),
                    ("policy_arns", policy_arns()),
                    ("policy", policy()),
                    ("endpoint_url", endpoint_url()),
                ],
                &["region", "role_arn"],
            ),
            secrets: keys(false),
            implicit: false,
            long_lived: false,
            lifetimes: Some((MIN_LIFETIME, ROLE_DEFAULT_LIFETIME, ROLE_MAX_LIFETIME)),
        },
        Method {
            id: SESSION_TOKEN,
            name: "AWS session token",
            description: "Issues temporary credentials of the configured IAM user (STS GetSessionToken), with the user's permissions.",
            config: schema(
                vec![("region", region()), ("endpoint_url", endpoint_url())],
                &["region"],
            ),
            secrets: keys(false),
            implicit: false,
            long_lived: false,
            lifetimes: Some((MIN_LIFETIME, TOKEN_DEFAULT_LIFETIME, TOKEN_MAX_LIFETIME)),
        },
        Method {
            id: FEDERATION_TOKEN,
            name: "AWS federation token",
            description: "Issues a federated user's session with the configured IAM user's keys (STS GetFederationToken), down-scoped to the resource by a generated session policy unless `policy` is given.",
            config: schema(
                vec![
                    ("region", region()),
                    ("policy_arns", policy_arns()),
                    ("policy", policy()),
                    ("endpoint_url", endpoint_url()),
                ],
                &["region"],
            ),
            secrets: keys(false),
            implicit: false,
            long_lived: false,
            lifetimes: Some((MIN_LIFETIME, TOKEN_DEFAULT_LIFETIME, TOKEN_MAX_LIFETIME)),
        },
    ];
    let all: Vec<String> = AUTH_METHODS.iter().map(|m| (*m).to_owned()).collect();
    ConnectorTypeSpec {
        connector_type: CONNECTOR_TYPE.into(),
        name: "AWS Service Connector".into(),
        description: "Amazon Web Services: S3 buckets, ECR registries, EKS clusters and plain AWS credentials, issued as short-lived STS sessions down-scoped to one resource.".into(),
        auth_methods: methods.into_iter().map(AuthMethodSpec::from).collect(),
        resource_types: vec![
            ResourceTypeSpec {
                resource_type: AWS_GENERIC.into(),
                name: "Generic AWS resource".into(),
                description: "AWS credentials for the connector's region: aws_access_key_id, aws_secret_access_key, aws_session_token (when there is one), region, endpoint_url (when configured).".into(),
                auth_methods: all.clone(),
                supports_instances: false,
                id_forms: vec![],
                canonical_form: None,
            },
            ResourceTypeSpec {
                resource_type: S3_BUCKET.into(),
                name: "S3 bucket".into(),
                description: "AWS credentials (as aws-generic) that reach one bucket.".into(),
                auth_methods: all.clone(),
                supports_instances: true,
                id_forms: vec!["s3://{bucket}".into(), "arn:aws:s3:::{bucket}".into(), "{bucket}".into()],
                canonical_form: Some("s3://{bucket}".into()),
            },
            ResourceTypeSpec {
                resource_type: DOCKER_REGISTRY.into(),
                name: "ECR container registry".into(),
                description: "A docker login for the account's ECR registry (GetAuthorizationToken): username, password, registry.".into(),
                auth_methods: all.clone(),
                supports_instances: true,
                id_forms: vec![
                    "{account}.dkr.ecr.{region}.amazonaws.com".into(),
                    "https://{account}.dkr.ecr.{region}.amazonaws.com".into(),
                ],
                canonical_form: Some("{account}.dkr.ecr.{region}.amazonaws.com".into()),
            },
            ResourceTypeSpec {
                resource_type: KUBERNETES_CLUSTER.into(),
                name: "EKS Kubernetes cluster".into(),
                description: "An EKS cluster's API server, its CA and a bearer token valid 15 minutes: server, certificate_authority_data, token.".into(),
                auth_methods: all,
                supports_instances: true,
                id_forms: vec![
                    "{cluster_name}".into(),
                    "arn:aws:eks:{region}:{account}:cluster/{cluster_name}".into(),
                ],
                canonical_form: Some("{cluster_name}".into()),
            },
        ],
    }
}
