//! The `aws` connector type against moto, a real server speaking AWS's protocols.
//!
//! Needs `moto_server` (`eval "$(scripts/test-deps)"`). Each test starts its own moto on
//! a free port. With auth enforced, moto checks signatures and IAM identity and role
//! policies (not session policies); without, it checks nothing.

mod aws_support;

use std::time::{Duration, Instant};

use aws_support::{Admin, Connector, REGION, allow, s3_with_issued};
use base64::Engine as _;
use chrono::Utc;
use gatehouse_connectors::types::aws::AwsConnectorType;
use gatehouse_connectors::types::{
    ConnectorType, IssueRequest, Issued, TypeSettings, UpstreamError,
};
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";
const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn aws() -> AwsConnectorType {
    AwsConnectorType::new(TypeSettings {
        timeout: Duration::from_secs(20),
    })
}

fn request<'a>(
    resource_type: &'a str,
    resource_id: Option<&'a str>,
    seconds: u64,
) -> IssueRequest<'a> {
    IssueRequest {
        resource_type,
        resource_id,
        lifetime: Duration::from_secs(seconds),
        session_name: "alice@example.com",
    }
}

fn field<'a>(issued: &'a Issued, name: &str) -> &'a str {
    issued
        .credentials
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {name} in the credentials"))
}

/// `expires_at` is `seconds` from now, give or take a minute.
fn assert_expires_in(issued: &Issued, seconds: i64) {
    let expires_at = issued.expires_at.expect("an expiry");
    let left = (expires_at - Utc::now()).num_seconds();
    assert!(
        (seconds - 60..=seconds + 5).contains(&left),
        "expires in {left} s, not ~{seconds} s"
    );
}

#[tokio::test]
async fn an_iam_role_session_writes_to_its_bucket_and_is_refused_on_another() {
    let admin = Admin::enforcing().await;
    admin.create_bucket("team-data").await;
    admin.create_bucket("other-data").await;
    let keys = admin
        .create_user(
            "connector",
            allow(
                &["sts:AssumeRole"],
                &[&format!("arn:aws:iam::{ACCOUNT}:role/writer")],
            ),
        )
        .await;
    let role_arn = admin
        .create_role(
            "writer",
            &format!("arn:aws:iam::{ACCOUNT}:user/connector"),
            allow(
                &["s3:*"],
                &["arn:aws:s3:::team-data", "arn:aws:s3:::team-data/*"],
            ),
        )
        .await;
    let connector = Connector::with_keys(
        "iam-role",
        &admin.url(),
        &keys,
        json!({"role_arn": role_arn}),
    );
    let aws = aws();

    let issued = aws
        .issue(
            &connector.connection(),
            &request("s3-bucket", Some("s3://team-data"), 900),
        )
        .await
        .expect("issued");
    assert!(!issued.revocable);
    assert_expires_in(&issued, 900);
    assert_ne!(
        field(&issued, "aws_access_key_id"),
        keys.id,
        "a session, not the user's keys"
    );
    assert!(!field(&issued, "aws_session_token").is_empty());
    assert_eq!(field(&issued, "region"), REGION);
    assert_eq!(field(&issued, "endpoint_url"), admin.url());

    let s3 = s3_with_issued(&admin.url(), &issued.credentials);
    s3.put_object()
        .bucket("team-data")
        .key("model.bin")
        .body(b"weights".to_vec().into())
        .send()
        .await
        .expect("the role may write to its bucket");
    let refused = s3
        .put_object()
        .bucket("other-data")
        .key("model.bin")
        .body(b"weights".to_vec().into())
        .send()
        .await
        .expect_err("the role may not write to another bucket");
    let code = aws_smithy_types::error::metadata::ProvideErrorMetadata::code(&refused);
    assert_eq!(code, Some("AccessDenied"), "{refused:?}");

    // Verifying assumes the role first, and reaches the bucket as the role.
    let who = aws
        .verify(
            &connector.connection(),
            Some(("s3-bucket", Some("s3://team-data"))),
        )
        .await
        .expect("verified");
    assert_eq!(
        who,
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/writer/gatehouse-verify")
    );
    let err = aws
        .verify(
            &connector.connection(),
            Some(("s3-bucket", Some("s3://other-data"))),
        )
        .await
        .expect_err("the role cannot list another bucket");
    assert!(
        matches!(&err, UpstreamError::Refused(m) if m.starts_with("AccessDenied")),
        "{err:?}"
    );
}

#[tokio::test]
async fn verify_names_the_user_and_bad_keys_are_refused_with_awss_message() {
    let admin = Admin::enforcing().await;
    let keys = admin
        .create_user("reader", allow(&["s3:ListAllMyBuckets"], &["*"]))
        .await;
    let aws = aws();

    let good = Connector::with_keys("secret-key", &admin.url(), &keys, json!({}));
    assert_eq!(
        aws.verify(&good.connection(), None).await,
        Ok(format!("arn:aws:iam::{ACCOUNT}:user/reader"))
    );

    let mut bad_keys = keys.clone();
    bad_keys.id = "AKIAUNKNOWNKEY000001".into();
    bad_keys.secret = "not-the-secret-of-anyone".into();
    let bad = Connector::with_keys("secret-key", &admin.url(), &bad_keys, json!({}));
    let err = aws
        .verify(&bad.connection(), None)
        .await
        .expect_err("unknown keys");
    let UpstreamError::Refused(message) = &err else {
        panic!("expected Refused, got {err:?}");
    };
    assert!(message.starts_with("InvalidClientTokenId: "), "{message}");
    assert!(
        message.contains("security token included in the request is invalid"),
        "{message}"
    );
    assert!(!message.contains(&bad_keys.secret), "no secret in errors");

    // The user may not list a bucket: AWS's AccessDenied, passed on.
    admin.create_bucket("private-data").await;
    let err = aws
        .verify(
            &good.connection(),
            Some(("s3-bucket", Some("s3://private-data"))),
        )
        .await
        .expect_err("not allowed to list it");
    assert!(
        matches!(&err, UpstreamError::Refused(m) if m.starts_with("AccessDenied")),
        "{err:?}"
    );
    assert!(!err.to_string().contains(&keys.secret));

    // Nor may it log in to the registry (moto answers ECR's JSON protocol in XML here).
    let err = aws
        .verify(
            &good.connection(),
            Some(("docker-registry", Some(REGISTRY))),
        )
        .await
        .expect_err("not allowed an ECR token");
    assert_eq!(
        err,
        UpstreamError::Refused(format!(
            "AccessDenied: User: arn:aws:iam::{ACCOUNT}:user/reader is not authorized to perform: ecr:GetAuthorizationToken"
        ))
    );
}

#[tokio::test]
async fn session_and_federation_tokens_issue_temporary_credentials() {
    let admin = Admin::unenforced().await;
    admin.create_bucket("scratch").await;
    let aws = aws();

    let session = Connector::with_keys("session-token", &admin.url(), &admin.keys, json!({}));
    let issued = aws
        .issue(&session.connection(), &request("aws-generic", None, 3600))
        .await
        .expect("session token");
    assert_expires_in(&issued, 3600);
    assert_ne!(field(&issued, "aws_access_key_id"), admin.keys.id);
    assert!(!field(&issued, "aws_session_token").is_empty());

    let federation = Connector::with_keys("federation-token", &admin.url(), &admin.keys, json!({}));
    for (resource_type, id) in [("s3-bucket", Some("s3://scratch")), ("aws-generic", None)] {
        let issued = aws
            .issue(&federation.connection(), &request(resource_type, id, 7200))
            .await
            .expect("federation token");
        assert_expires_in(&issued, 7200);
        assert!(!field(&issued, "aws_session_token").is_empty());
        let mut names: Vec<&String> = issued.credentials.keys().collect();
        names.sort();
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
    }
}

#[tokio::test]
async fn configured_keys_are_handed_out_as_they_are() {
    // No call is made: the endpoint is not even there.
    let aws = aws();
    let keys = [
        ("aws_access_key_id", "AKIAPLAIN00000000001"),
        ("aws_secret_access_key", "plain-secret"),
    ];
    let plain = Connector::new("secret-key", json!({"region": "eu-west-1"}), &keys);
    let issued = aws
        .issue(
            &plain.connection(),
            &request("s3-bucket", Some("s3://b-1"), 900),
        )
        .await
        .expect("issued");
    assert_eq!(
        issued.expires_at, None,
        "long-lived keys have no expiry of their own"
    );
    assert_eq!(field(&issued, "aws_access_key_id"), "AKIAPLAIN00000000001");
    assert_eq!(field(&issued, "aws_secret_access_key"), "plain-secret");
    assert!(!issued.credentials.contains_key("aws_session_token"));
    assert!(!issued.credentials.contains_key("endpoint_url"));
    assert!(!format!("{issued:?}").contains("plain-secret"));

    let expires_at = Utc::now() + chrono::Duration::hours(3);
    let mut sts = Connector::new(
        "sts-token",
        json!({"region": "eu-west-1"}),
        &[keys[0], keys[1], ("aws_session_token", "pasted-token")],
    );
    sts.expires_at = Some(expires_at);
    let issued = aws
        .issue(&sts.connection(), &request("aws-generic", None, 900))
        .await
        .expect("issued");
    assert_eq!(
        issued.expires_at,
        Some(expires_at),
        "the pasted token's own expiry"
    );
    assert_eq!(field(&issued, "aws_session_token"), "pasted-token");
}

#[tokio::test]
async fn registry_credentials_are_a_docker_login_from_ecr() {
    let admin = Admin::unenforced().await;
    let aws = aws();
    // What ECR itself hands the admin: base64 of "AWS:<password>".
    let token = aws_sdk_ecr::Client::new(&admin.config())
        .get_authorization_token()
        .send()
        .await
        .expect("ecr token");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(
            token.authorization_data()[0]
                .authorization_token()
                .expect("token"),
        )
        .expect("base64");
    let decoded = String::from_utf8(decoded).expect("text");
    let (user, password) = decoded.split_once(':').expect("user:password");
    assert_eq!(user, "AWS");

    let role_arn = admin
        .create_role("pusher", "*", allow(&["ecr:*"], &["*"]))
        .await;
    for connector in [
        Connector::with_keys("secret-key", &admin.url(), &admin.keys, json!({})),
        Connector::with_keys(
            "iam-role",
            &admin.url(),
            &admin.keys,
            json!({"role_arn": role_arn}),
        ),
    ] {
        let issued = aws
            .issue(
                &connector.connection(),
                &request("docker-registry", Some(&format!("https://{REGISTRY}")), 900),
            )
            .await
            .expect("registry credentials");
        let mut names: Vec<&String> = issued.credentials.keys().collect();
        names.sort();
        assert_eq!(
            names,
            ["password", "registry", "username"],
            "{}",
            connector.auth_method
        );
        assert_eq!(field(&issued, "username"), "AWS");
        assert_eq!(field(&issued, "password"), password);
        assert_eq!(field(&issued, "registry"), REGISTRY);
        assert!(issued.expires_at.is_some());
        assert!(!format!("{issued:?}").contains(password));
    }
}

#[tokio::test]
async fn cluster_credentials_carry_a_presigned_caller_identity_token() {
    let admin = Admin::unenforced().await;
    let (server, ca) = admin.create_cluster("training").await;
    assert!(
        !server.is_empty() && !ca.is_empty(),
        "moto describes the cluster"
    );
    let aws = aws();
    let connector = Connector::with_keys("secret-key", &admin.url(), &admin.keys, json!({}));

    let issued = aws
        .issue(
            &connector.connection(),
            &request(
                "kubernetes-cluster",
                Some(&format!("arn:aws:eks:{REGION}:{ACCOUNT}:cluster/training")),
                900,
            ),
        )
        .await
        .expect("cluster credentials");
    let mut names: Vec<&String> = issued.credentials.keys().collect();
    names.sort();
    assert_eq!(names, ["certificate_authority_data", "server", "token"]);
    assert_eq!(field(&issued, "server"), server);
    assert_eq!(field(&issued, "certificate_authority_data"), ca);
    assert_expires_in(&issued, 15 * 60);

    let token = field(&issued, "token");
    let encoded = token
        .strip_prefix("k8s-aws-v1.")
        .expect("the EKS token prefix");
    let url = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .expect("base64url without padding"),
    )
    .expect("a URL");
    assert!(
        url.starts_with(&format!(
            "{}/?Action=GetCallerIdentity&Version=2011-06-15&",
            admin.url()
        )),
        "{url}"
    );
    assert!(
        url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"),
        "{url}"
    );
    assert!(url.contains("X-Amz-Expires=60"), "{url}");
    assert!(
        url.contains(&format!("X-Amz-Credential={}%2F", admin.keys.id)),
        "{url}"
    );
    assert!(!url.contains(&admin.keys.secret));

    let err = aws
        .issue(
            &connector.connection(),
            &request("kubernetes-cluster", Some("missing"), 900),
        )
        .await
        .expect_err("no such cluster");
    assert!(
        matches!(&err, UpstreamError::Refused(m) if m.starts_with("ResourceNotFoundException")),
        "{err:?}"
    );
}

#[tokio::test]
async fn list_resources_finds_buckets_clusters_the_registry_and_the_region() {
    let admin = Admin::unenforced().await;
    admin.create_bucket("alpha-bucket").await;
    admin.create_bucket("beta-bucket").await;
    admin.create_cluster("prod").await;
    let aws = aws();
    let connector = Connector::with_keys("secret-key", &admin.url(), &admin.keys, json!({}));
    let connection = connector.connection();

    let mut buckets = aws
        .list_resources(&connection, "s3-bucket")
        .await
        .expect("buckets");
    buckets.sort();
    assert_eq!(buckets, ["s3://alpha-bucket", "s3://beta-bucket"]);
    assert_eq!(
        aws.list_resources(&connection, "kubernetes-cluster").await,
        Ok(vec!["prod".to_owned()])
    );
    assert_eq!(
        aws.list_resources(&connection, "docker-registry").await,
        Ok(vec![REGISTRY.to_owned()])
    );
    assert_eq!(
        aws.list_resources(&connection, "aws-generic").await,
        Ok(vec![REGION.to_owned()])
    );
    for listed in buckets {
        assert_eq!(
            aws.canonical_resource_id("s3-bucket", &listed),
            Ok(listed.clone())
        );
    }
}

#[tokio::test]
async fn a_cloud_that_never_answers_is_a_timeout_within_the_bound() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Accept every connection and hold it open without a word.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let bound = Duration::from_secs(1);
    let aws = AwsConnectorType::new(TypeSettings { timeout: bound });
    let connector = Connector::new(
        "secret-key",
        json!({"region": REGION, "endpoint_url": format!("http://127.0.0.1:{port}")}),
        &[
            ("aws_access_key_id", "AKIAEXAMPLE000000001"),
            ("aws_secret_access_key", "s"),
        ],
    );

    let started = Instant::now();
    let result = aws.verify(&connector.connection(), None).await;
    let took = started.elapsed();
    assert_eq!(result, Err(UpstreamError::Timeout(bound)));
    assert!(
        took >= bound && took < bound + Duration::from_secs(2),
        "took {took:?}"
    );
    silent.abort();
}
