//! Calls to AWS: one HTTP client (hyper 1 + rustls on ring) shared by every SDK client,
//! the settings' timeout on every call, and cloud errors mapped to [`UpstreamError`].
//!
//! Every SDK client is built per call from the connector's region, its `endpoint_url`
//! (when set, every call goes there: an S3-compatible store, a stand-in) and the
//! credentials of the moment. Building one is cheap: the connection pool lives in the
//! shared HTTP client.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::super::UpstreamError;

/// AWS credentials: configured keys, or temporary ones STS issued. `Debug` prints no
/// secret (nor the key id: it is stored with the secrets).
#[derive(Clone)]
pub struct Keys {
    access_key_id: SecretString,
    secret_access_key: SecretString,
    session_token: Option<SecretString>,
    expires_at: Option<DateTime<Utc>>,
}

impl Keys {
    /// Keys from their parts.
    pub fn new(
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: session_token.map(Into::into),
            expires_at,
        }
    }

    /// The access key id.
    pub fn access_key_id(&self) -> &str {
        self.access_key_id.expose_secret()
    }

    /// The secret access key.
    pub fn secret_access_key(&self) -> &str {
        self.secret_access_key.expose_secret()
    }

    /// The session token of temporary credentials.
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_ref().map(|t| t.expose_secret())
    }

    /// When they expire, if they do.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    fn from_sts(credentials: &aws_sdk_sts::types::Credentials) -> Self {
        let expiration = credentials.expiration();
        Self::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token()),
            DateTime::from_timestamp(expiration.secs(), expiration.subsec_nanos()),
        )
    }

    fn sdk_credentials(&self) -> Credentials {
        Credentials::new(
            self.access_key_id(),
            self.secret_access_key(),
            self.session_token().map(str::to_owned),
            self.expires_at.map(SystemTime::from),
            "gatehouse",
        )
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("access_key_id", &"[HIDDEN]")
            .field("secret_access_key", &"[HIDDEN]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[HIDDEN]"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Who the cloud says the credentials are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The principal's ARN.
    pub arn: String,
    /// The account it acts in.
    pub account: String,
}

/// What an EKS cluster needs from a client: where it is and whom to trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterEndpoint {
    /// The API server's URL.
    pub server: String,
    /// The cluster CA's certificate, base64 PEM as EKS gives it.
    pub certificate_authority_data: String,
}

/// The HTTP client and timeout every call to AWS uses.
#[derive(Clone)]
pub struct Upstream {
    http: SharedHttpClient,
    timeout: Duration,
    /// The server's own credential chain per region, loaded once: its providers (IMDS,
    /// ECS, web identity) keep their credentials until they near expiry.
    chains: Arc<Mutex<HashMap<String, SharedCredentialsProvider>>>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Where calls go: the region and, when set, the endpoint that replaces AWS's.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The region.
    pub region: &'a str,
    /// Every call goes here when set.
    pub endpoint_url: Option<&'a str>,
}

impl Upstream {
    /// An HTTPS client (rustls with ring, the platform's roots) whose calls each take at
    /// most `timeout`, connecting included.
    pub fn new(timeout: Duration) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        Self {
            http,
            timeout,
            chains: Arc::default(),
        }
    }

    /// The bound on one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.timeout)
            .operation_timeout(self.timeout)
            .build()
    }

    /// The SDK configuration for `target` with `credentials`.
    pub fn sdk_config(
        &self,
        target: Target<'_>,
        credentials: SharedCredentialsProvider,
    ) -> SdkConfig {
        let mut builder = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(target.region.to_owned()))
            .credentials_provider(credentials)
            .http_client(self.http.clone())
            .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
            .timeout_config(self.timeout_config())
            .retry_config(RetryConfig::standard().with_max_attempts(2));
        if let Some(url) = target.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        builder.build()
    }

    /// The server's own credentials: `aws-config`'s default chain (environment, profile,
    /// web identity, ECS, EC2 instance metadata), through the same HTTP client.
    pub async fn default_chain(
        &self,
        target: Target<'_>,
    ) -> Result<SharedCredentialsProvider, UpstreamError> {
        let cached = self
            .chains
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(target.region)
            .cloned();
        if let Some(chain) = cached {
            return Ok(chain);
        }
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(target.region.to_owned()))
            .http_client(self.http.clone())
            .sleep_impl(SharedAsyncSleep::new(TokioSleep::new()))
            .timeout_config(self.timeout_config())
            .load()
            .await;
        let chain = config.credentials_provider().ok_or_else(|| {
            UpstreamError::Refused("the server has no AWS credentials of its own".into())
        })?;
        self.chains
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target.region.to_owned(), chain.clone());
        Ok(chain)
    }

    /// Resolves a provider's credentials now (the implicit chain's).
    pub async fn resolve(
        &self,
        provider: &SharedCredentialsProvider,
    ) -> Result<Keys, UpstreamError> {
        let resolved = tokio::time::timeout(self.timeout, provider.provide_credentials())
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
            .map_err(|e| {
                UpstreamError::Refused(format!(
                    "the server's AWS credentials could not be loaded: {}",
                    DisplayErrorContext(&e)
                ))
            })?;
        Ok(Keys::new(
            resolved.access_key_id(),
            resolved.secret_access_key(),
            resolved.session_token(),
            resolved.expiry().map(DateTime::<Utc>::from),
        ))
    }

    fn sts(
        &self,
        target: Target<'_>,
        credentials: SharedCredentialsProvider,
    ) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::new(&self.sdk_config(target, credentials))
    }

    fn s3(&self, target: Target<'_>, keys: &Keys) -> aws_sdk_s3::Client {
        let sdk = self.sdk_config(target, provider(keys));
        // A custom endpoint (MinIO, a stand-in, an IP) rarely serves virtual-hosted buckets.
        let config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(target.endpoint_url.is_some())
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    fn ecr(&self, target: Target<'_>, keys: &Keys) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.sdk_config(target, provider(keys)))
    }

    fn eks(&self, target: Target<'_>, keys: &Keys) -> aws_sdk_eks::Client {
        aws_sdk_eks::Client::new(&self.sdk_config(target, provider(keys)))
    }

    /// STS GetCallerIdentity.
    pub async fn caller_identity(
        &self,
        target: Target<'_>,
        credentials: SharedCredentialsProvider,
    ) -> Result<CallerIdentity, UpstreamError> {
        let out = self
            .sts(target, credentials)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| self.upstream(e))?;
        Ok(CallerIdentity {
            arn: out.arn().unwrap_or_default().to_owned(),
            account: out.account().unwrap_or_default().to_owned(),
        })
    }

    /// STS AssumeRole; returns the session's keys and the assumed role's ARN.
    #[allow(clippy::too_many_arguments)]
    pub async fn assume_role(
        &self,
        target: Target<'_>,
        credentials: SharedCredentialsProvider,
        role_arn: &str,
        session_name: &str,
        lifetime: Duration,
        policy: Option<String>,
        policy_arns: &[String],
    ) -> Result<(Keys, String), UpstreamError> {
        let mut call = self
            .sts(target, credentials)
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session_name)
            .duration_seconds(seconds(lifetime))
            .set_policy(policy);
        for arn in policy_arns {
            call = call.policy_arns(policy_descriptor(arn));
        }
        let out = call.send().await.map_err(|e| self.upstream(e))?;
        let keys = out
            .credentials()
            .map(Keys::from_sts)
            .ok_or_else(|| UpstreamError::Refused("AssumeRole returned no credentials".into()))?;
        let arn = out
            .assumed_role_user()
            .map(|u| u.arn().to_owned())
            .unwrap_or_else(|| role_arn.to_owned());
        Ok((keys, arn))
    }

    /// STS GetSessionToken.
    pub async fn session_token(
        &self,
        target: Target<'_>,
        credentials: SharedCredentialsProvider,
        lifetime: Duration,
    ) -> Result<Keys, UpstreamError> {
        let out = self
            .sts(target, credentials)
            .get_session_token()
            .duration_seconds(seconds(lifetime))
            .send()
            .await
            .map_err(|e| self.upstream(e))?;
        out.credentials()
            .map(Keys::from_sts)
            .ok_or_else(|| UpstreamError::Refused("GetSessionToken returned no credentials".into()))
    }

    /// STS GetFederationToken.
    pub async fn federation_token(
        &self,
        target: Target<'_>,
        credentials: SharedCredentialsProvider,
        name: &str,
        lifetime: Duration,
        policy: Option<String>,
        policy_arns: &[String],
    ) -> Result<Keys, UpstreamError> {
        let mut call = self
            .sts(target, credentials)
            .get_federation_token()
            .name(name)
            .duration_seconds(seconds(lifetime))
            .set_policy(policy);
        for arn in policy_arns {
            call = call.policy_arns(policy_descriptor(arn));
        }
        let out = call.send().await.map_err(|e| self.upstream(e))?;
        out.credentials().map(Keys::from_sts).ok_or_else(|| {
            UpstreamError::Refused("GetFederationToken returned no credentials".into())
        })
    }

    /// S3 ListObjectsV2 with at most one key: the bucket exists and the keys may list it.
    pub async fn check_bucket(
        &self,
        target: Target<'_>,
        keys: &Keys,
        bucket: &str,
    ) -> Result<(), UpstreamError> {
        self.s3(target, keys)
            .list_objects_v2()
            .bucket(bucket)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.upstream(e))?;
        Ok(())
    }

    /// S3 ListBuckets, every page: the bucket names.
    pub async fn list_buckets(
        &self,
        target: Target<'_>,
        keys: &Keys,
    ) -> Result<Vec<String>, UpstreamError> {
        let client = self.s3(target, keys);
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = client
                .list_buckets()
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.upstream(e))?;
            names.extend(
                out.buckets()
                    .iter()
                    .filter_map(|b| b.name().map(str::to_owned)),
            );
            match out.continuation_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(names),
            }
        }
    }

    /// ECR GetAuthorizationToken in `target`'s region: the decoded `(user, password)` and
    /// the token's expiry.
    pub async fn registry_login(
        &self,
        target: Target<'_>,
        keys: &Keys,
    ) -> Result<(String, SecretString, Option<DateTime<Utc>>), UpstreamError> {
        let out = self
            .ecr(target, keys)
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| self.upstream(e))?;
        let data = out.authorization_data().first().ok_or_else(|| {
            UpstreamError::Refused("GetAuthorizationToken returned no authorization data".into())
        })?;
        let token = data.authorization_token().unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                UpstreamError::Refused(
                    "ECR returned an authorization token that is not base64 text".into(),
                )
            })?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            UpstreamError::Refused("ECR returned an authorization token without a user".into())
        })?;
        let expires_at = data
            .expires_at()
            .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()));
        Ok((user.to_owned(), password.to_owned().into(), expires_at))
    }

    /// EKS DescribeCluster: its API server and CA.
    pub async fn describe_cluster(
        &self,
        target: Target<'_>,
        keys: &Keys,
        name: &str,
    ) -> Result<ClusterEndpoint, UpstreamError> {
        let out = self
            .eks(target, keys)
            .describe_cluster()
            .name(name)
            .send()
            .await
            .map_err(|e| self.upstream(e))?;
        let cluster = out.cluster().ok_or_else(|| {
            UpstreamError::Refused(format!("DescribeCluster returned no cluster {name}"))
        })?;
        Ok(ClusterEndpoint {
            server: cluster.endpoint().unwrap_or_default().to_owned(),
            certificate_authority_data: cluster
                .certificate_authority()
                .and_then(|ca| ca.data())
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// EKS ListClusters, every page.
    pub async fn list_clusters(
        &self,
        target: Target<'_>,
        keys: &Keys,
    ) -> Result<Vec<String>, UpstreamError> {
        let client = self.eks(target, keys);
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = client
                .list_clusters()
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| self.upstream(e))?;
            names.extend(out.clusters().iter().cloned());
            match out.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return Ok(names),
            }
        }
    }

    /// Maps an SDK error: no answer in time → [`UpstreamError::Timeout`]; an answer →
    /// [`UpstreamError::Refused`] with the cloud's code and message.
    fn upstream<E>(&self, err: SdkError<E, HttpResponse>) -> UpstreamError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match &err {
            SdkError::TimeoutError(_) => UpstreamError::Timeout(self.timeout),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => {
                UpstreamError::Timeout(self.timeout)
            }
            SdkError::DispatchFailure(_) => UpstreamError::Refused(format!(
                "AWS could not be reached: {}",
                DisplayErrorContext(&err)
            )),
            SdkError::ServiceError(context) => {
                let meta = context.err().meta();
                match (meta.code(), meta.message()) {
                    (Some(code), Some(message)) => {
                        UpstreamError::Refused(format!("{code}: {message}"))
                    }
                    (Some(code), None) => UpstreamError::Refused(code.to_owned()),
                    _ => UpstreamError::Refused(from_raw(context.raw())),
                }
            }
            SdkError::ResponseError(context) => UpstreamError::Refused(format!(
                "AWS answered what could not be read (HTTP {})",
                context.raw().status().as_u16()
            )),
            _ => UpstreamError::Refused(format!(
                "the AWS call failed: {}",
                DisplayErrorContext(&err)
            )),
        }
    }
}

/// The code and message of an error body the SDK could not parse (e.g. an XML error for
/// a JSON protocol), else the HTTP status.
fn from_raw(response: &HttpResponse) -> String {
    let status = response.status().as_u16();
    let body = response
        .body()
        .bytes()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let element = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&close)? + start;
        Some(body[start..end].to_owned())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => format!("AWS refused the call (HTTP {status})"),
    }
}

/// A credentials provider of fixed keys.
pub fn provider(keys: &Keys) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(keys.sdk_credentials())
}

fn seconds(lifetime: Duration) -> i32 {
    i32::try_from(lifetime.as_secs()).unwrap_or(i32::MAX)
}

fn policy_descriptor(arn: &str) -> aws_sdk_sts::types::PolicyDescriptorType {
    aws_sdk_sts::types::PolicyDescriptorType::builder()
        .arn(arn)
        .build()
}

/// How long an EKS token is accepted: the cluster's authenticator takes a presigned
/// GetCallerIdentity URL for 15 minutes from its signing time.
pub const EKS_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The token an EKS cluster accepts as a bearer token (what `aws eks get-token` makes):
/// `k8s-aws-v1.` and the base64url (no padding) of a presigned STS GetCallerIdentity URL
/// whose signed headers include `x-k8s-aws-id: <cluster>`, with `X-Amz-Expires=60`.
pub fn eks_token(
    target: Target<'_>,
    keys: &Keys,
    cluster: &str,
    now: SystemTime,
) -> Result<SecretString, UpstreamError> {
    let base = match target.endpoint_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if target.region.starts_with("cn-") => {
            format!("https://sts.{}.amazonaws.com.cn", target.region)
        }
        None => format!("https://sts.{}.amazonaws.com", target.region),
    };
    let url = format!("{base}/?Action=GetCallerIdentity&Version=2011-06-15");
    let identity: Identity = keys.sdk_credentials().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(60));
    let invalid = |what: &str| UpstreamError::Invalid {
        field: "kubernetes-cluster".into(),
        message: format!("cannot sign the cluster token: {what}"),
    };
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(target.region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| invalid(&e.to_string()))?
        .into();
    let headers = [("x-k8s-aws-id", cluster)];
    let signable = SignableRequest::new(
        "GET",
        url.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| invalid(&e.to_string()))?;
    let (instructions, _signature) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|e| invalid(&e.to_string()))?
        .into_parts();
    let mut request = http::Request::builder()
        .method("GET")
        .uri(url.as_str())
        .body(())
        .map_err(|e| invalid(&e.to_string()))?;
    instructions.apply_to_request_http1x(&mut request);
    let presigned = request.uri().to_string();
    Ok(format!(
        "k8s-aws-v1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(presigned)
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(
            "AKIAEXAMPLEKEYID0001",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRET",
            Some("FwoGZXIvYXdzSESSIONTOKEN"),
            None,
        )
    }

    #[test]
    fn debug_of_keys_shows_no_secret() {
        let printed = format!("{:?}", keys());
        for secret in ["AKIAEXAMPLEKEYID0001", "SECRET", "SESSIONTOKEN"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("[HIDDEN]"));
    }

    #[test]
    fn an_eks_token_is_a_presigned_get_caller_identity_url_signing_the_cluster_header() {
        let target = Target {
            region: "eu-west-1",
            endpoint_url: None,
        };
        let token = eks_token(target, &keys(), "prod", SystemTime::now()).expect("token");
        let encoded = token
            .expose_secret()
            .strip_prefix("k8s-aws-v1.")
            .expect("prefix");
        assert!(!encoded.contains('='), "no padding");
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .expect("base64url"),
        )
        .expect("utf-8");
        assert!(
            url.starts_with("https://sts.eu-west-1.amazonaws.com/?"),
            "{url}"
        );
        for part in [
            "Action=GetCallerIdentity",
            "Version=2011-06-15",
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Signature=",
            "X-Amz-Security-Token=",
        ] {
            assert!(url.contains(part), "{part} missing in {url}");
        }
        assert!(
            url.contains("X-Amz-Credential=AKIAEXAMPLEKEYID0001%2F"),
            "{url}"
        );
        assert!(url.contains("%2Feu-west-1%2Fsts%2Faws4_request"), "{url}");
        assert!(!url.contains("SECRET"), "the secret key never travels");
    }
}
