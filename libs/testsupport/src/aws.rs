//! An AWS admin over moto (feature `aws`): sets up IAM users, access keys, roles, buckets
//! and clusters with the official SDK crates, as an administrator would; and SDK clients
//! that use credentials Gatehouse issued, as a client would.

use std::time::Duration;

use crate::moto::Moto;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use serde_json::{Map, Value, json};

/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// Unchecked calls a fresh enforcing moto grants: CreateUser, PutUserPolicy and
/// CreateAccessKey of the admin.
const BOOTSTRAP_CALLS: u32 = 3;

/// Access keys (test keys of moto: printing them is harmless, but they are not printed).
#[derive(Clone)]
#[allow(missing_debug_implementations)]
pub struct AccessKey {
    /// The access key id.
    pub id: String,
    /// The secret access key.
    pub secret: String,
}

/// A moto server and an admin's keys on it.
#[allow(missing_debug_implementations)]
pub struct Admin {
    /// The server.
    pub moto: Moto,
    /// The admin's keys.
    pub keys: AccessKey,
}

impl Admin {
    /// moto without auth checks; the admin's keys are any.
    pub async fn unenforced() -> Admin {
        let moto = Moto::start().await.expect("moto starts");
        Admin {
            moto,
            keys: AccessKey {
                id: "AKIAADMINEXAMPLE0001".into(),
                secret: "admin-secret".into(),
            },
        }
    }

    /// moto checking credentials and IAM policies, with an admin user (allowed
    /// everything) created in the unchecked calls.
    pub async fn enforcing() -> Admin {
        let moto = Moto::start_enforcing_auth(BOOTSTRAP_CALLS)
            .await
            .expect("moto starts");
        let bootstrap = AccessKey {
            id: "AKIABOOTSTRAP0000001".into(),
            secret: "unchecked".into(),
        };
        let iam = aws_sdk_iam::Client::new(&sdk_config(&moto.url(), &bootstrap));
        iam.create_user()
            .user_name("admin")
            .send()
            .await
            .expect("create admin");
        iam.put_user_policy()
            .user_name("admin")
            .policy_name("everything")
            .policy_document(allow(&["*"], &["*"]).to_string())
            .send()
            .await
            .expect("admin policy");
        let key = iam
            .create_access_key()
            .user_name("admin")
            .send()
            .await
            .expect("admin key");
        let key = key.access_key().expect("a key");
        let keys = AccessKey {
            id: key.access_key_id().to_owned(),
            secret: key.secret_access_key().to_owned(),
        };
        Admin { moto, keys }
    }

    /// moto's URL.
    pub fn url(&self) -> String {
        self.moto.url()
    }

    /// An SDK configuration with the admin's keys.
    pub fn config(&self) -> SdkConfig {
        sdk_config(&self.url(), &self.keys)
    }

    /// An IAM client as the admin.
    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.config())
    }

    /// An IAM user with the inline `policy` and one access key.
    pub async fn create_user(&self, name: &str, policy: Value) -> AccessKey {
        let iam = self.iam();
        iam.create_user()
            .user_name(name)
            .send()
            .await
            .expect("create user");
        iam.put_user_policy()
            .user_name(name)
            .policy_name(format!("{name}-policy"))
            .policy_document(policy.to_string())
            .send()
            .await
            .expect("user policy");
        let out = iam
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .expect("access key");
        let key = out.access_key().expect("a key");
        AccessKey {
            id: key.access_key_id().to_owned(),
            secret: key.secret_access_key().to_owned(),
        }
    }

    /// A role that `trusted` (a principal's ARN) may assume, with the inline `policy`;
    /// its ARN. (moto evaluates the trust policy and matches principals exactly: an
    /// account root does not stand for its users there.)
    pub async fn create_role(&self, name: &str, trusted: &str, policy: Value) -> String {
        let trust = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": trusted},
                "Action": "sts:AssumeRole",
            }],
        });
        let iam = self.iam();
        let out = iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string())
            .max_session_duration(43_200)
            .send()
            .await
            .expect("create role");
        iam.put_role_policy()
            .role_name(name)
            .policy_name(format!("{name}-policy"))
            .policy_document(policy.to_string())
            .send()
            .await
            .expect("role policy");
        out.role().expect("a role").arn().to_owned()
    }

    /// An S3 client as the admin (path-style).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.url(), &self.config())
    }

    /// A bucket.
    pub async fn create_bucket(&self, name: &str) {
        s3_client(&self.url(), &self.config())
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("create bucket");
    }

    /// An EKS cluster; its API server and CA data as moto describes them.
    pub async fn create_cluster(&self, name: &str) -> (String, String) {
        let eks = aws_sdk_eks::Client::new(&self.config());
        eks.create_cluster()
            .name(name)
            .role_arn("arn:aws:iam::123456789012:role/eks-service")
            .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().build())
            .send()
            .await
            .expect("create cluster");
        let out = eks
            .describe_cluster()
            .name(name)
            .send()
            .await
            .expect("describe");
        let cluster = out.cluster().expect("a cluster");
        (
            cluster.endpoint().unwrap_or_default().to_owned(),
            cluster
                .certificate_authority()
                .and_then(|c| c.data())
                .unwrap_or_default()
                .to_owned(),
        )
    }
}

/// `{"Effect": "Allow", "Action": actions, "Resource": resources}` as a policy.
pub fn allow(actions: &[&str], resources: &[&str]) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}],
    })
}

/// The SDK's HTTP client on rustls with ring (the workspace's one crypto provider).
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// An SDK configuration for moto at `url` with `keys` (and a session token, if any).
pub fn sdk_config_with(url: &str, id: &str, secret: &str, token: Option<&str>) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .http_client(http_client())
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            id,
            secret,
            token.map(str::to_owned),
            None,
            "test",
        )))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .sleep_impl(aws_smithy_async::rt::sleep::SharedAsyncSleep::new(
            aws_smithy_async::rt::sleep::TokioSleep::new(),
        ))
        .build()
}

/// An SDK configuration for moto at `url` with `keys`.
pub fn sdk_config(url: &str, keys: &AccessKey) -> SdkConfig {
    sdk_config_with(url, &keys.id, &keys.secret, None)
}

/// An S3 client on moto, path-style.
pub fn s3_client(_url: &str, config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build(),
    )
}

/// An S3 client using issued credentials (`aws_access_key_id`, ...), as a client would.
pub fn s3_with_issued(url: &str, credentials: &Map<String, Value>) -> aws_sdk_s3::Client {
    let field = |name: &str| credentials.get(name).and_then(Value::as_str);
    let config = sdk_config_with(
        field("endpoint_url").unwrap_or(url),
        field("aws_access_key_id").expect("aws_access_key_id"),
        field("aws_secret_access_key").expect("aws_secret_access_key"),
        field("aws_session_token"),
    );
    s3_client(url, &config)
}
