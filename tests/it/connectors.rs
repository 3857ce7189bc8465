//! Service connectors end to end: the real binaries (Postgres, nats-server) in front of
//! moto, a real server speaking AWS's protocols (`scripts/test-deps` installs it). With auth
//! enforced, moto checks signatures and IAM identity and role policies (not session
//! policies, which `services/connectors` tests as documents).

use std::time::Duration;

use gatehouse_e2e::{TestApp, call, run_cli_env, workspace_example};
use gatehouse_testsupport::NatsUser;
use gatehouse_testsupport::aws::{Admin, allow, s3_with_issued};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";
const REGION: &str = gatehouse_testsupport::aws::REGION;

/// An enforcing moto with two buckets, a user who may assume `writer`, and the role
/// `writer`, which may use `team-data` only. Returns the admin and the user's keys.
async fn aws_with_role() -> (Admin, gatehouse_testsupport::aws::AccessKey, String) {
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
    let role = admin
        .create_role(
            "writer",
            &format!("arn:aws:iam::{ACCOUNT}:user/connector"),
            allow(
                &["s3:*"],
                &["arn:aws:s3:::team-data", "arn:aws:s3:::team-data/*"],
            ),
        )
        .await;
    (admin, keys, role)
}

/// Every event in the Postgres log, as text.
async fn event_log_text(app: &TestApp) -> anyhow::Result<String> {
    let (db, connection) = tokio_postgres::connect(app.db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let rows = db
        .query(
            "SELECT event_type, payload::text, metadata::text FROM events ORDER BY position",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            )
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Every message in the NATS event stream, as text (once the relay has published them).
async fn nats_stream_text(app: &TestApp, expect: &str) -> anyhow::Result<String> {
    let client = app.nats.connect_as(NatsUser::Gatehouse).await?;
    let js = async_nats::jetstream::new(client);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = js.get_stream("GATEHOUSE_EVENTS").await?;
        let last = stream.info().await?.state.last_sequence;
        let mut text = String::new();
        for seq in 1..=last {
            if let Ok(message) = stream.direct_get(seq).await {
                text.push_str(&String::from_utf8_lossy(&message.payload));
                text.push('\n');
            }
        }
        if text.contains(expect) || std::time::Instant::now() > deadline {
            return Ok(text);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A service account with an API key; returns the key.
async fn service_account_key(app: &TestApp, admin: &str, name: &str) -> anyhow::Result<String> {
    app.create_service_account(admin, name).await?;
    let (_, key) = app
        .create_api_key(admin, name, json!({"name": "ci"}))
        .await?;
    Ok(key)
}

fn iam_role_connector(
    name: &str,
    url: &str,
    keys: &gatehouse_testsupport::aws::AccessKey,
    role: &str,
) -> Value {
    json!({
        "name": name,
        "connector_type": "aws",
        "auth_method": "iam-role",
        "resource_types": ["s3-bucket"],
        "configuration": {"region": REGION, "role_arn": role, "endpoint_url": url},
        "secrets": {"aws_access_key_id": keys.id, "aws_secret_access_key": keys.secret},
    })
}

#[tokio::test]
async fn an_iam_role_connector_hands_out_credentials_that_reach_their_bucket_only()
-> anyhow::Result<()> {
    let (aws, keys, role) = aws_with_role().await;
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;

    let (status, created) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors",
            Some(&admin),
            Some(iam_role_connector("aws-s3", &aws.url(), &keys, &role)),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["secrets"]["aws_secret_access_key"], "[HIDDEN]");
    assert_eq!(created["issues_long_lived_credentials"], false);
    let (_, described) = app
        .call(
            Method::GET,
            "/api/v1/service_connectors/aws-s3",
            Some(&admin),
            None,
        )
        .await?;
    assert!(!described.to_string().contains(&keys.secret), "{described}");

    let (status, issued) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors/aws-s3/credentials",
            Some(&admin),
            Some(json!({"resource_type": "s3-bucket", "resource_id": "team-data"})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(issued["resource_id"], "s3://team-data");
    assert_eq!(issued["revocable"], false);
    let credentials = issued["credentials"]
        .as_object()
        .expect("credentials")
        .clone();
    assert_ne!(
        credentials["aws_access_key_id"],
        keys.id.as_str(),
        "a session, not the keys"
    );
    let s3 = s3_with_issued(&aws.url(), &credentials);
    s3.put_object()
        .bucket("team-data")
        .key("model.bin")
        .body(b"weights".to_vec().into())
        .send()
        .await
        .expect("the lease writes to its bucket");
    s3.put_object()
        .bucket("other-data")
        .key("model.bin")
        .body(b"weights".to_vec().into())
        .send()
        .await
        .expect_err("and is refused on another");

    // Asked again: the same lease, no new event.
    let (_, again) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors/aws-s3/credentials",
            Some(&admin),
            Some(json!({"resource_type": "s3-bucket", "resource_id": "s3://team-data"})),
        )
        .await?;
    assert_eq!(again["lease_id"], issued["lease_id"]);
    let (_, leases) = app
        .call(
            Method::GET,
            "/api/v1/leases?connector=aws-s3",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(leases["total"], 1, "{leases}");
    // An STS session cannot be revoked: 409, saying when it expires.
    let lease = issued["lease_id"].as_str().expect("an id");
    let (status, refused) = app
        .call(
            Method::POST,
            &format!("/api/v1/leases/{lease}/revoke"),
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(refused["code"], "not_revocable");
    Ok(())
}

#[tokio::test]
async fn the_profile_written_by_login_gives_the_aws_sdk_credentials_that_refresh_themselves()
-> anyhow::Result<()> {
    let (aws, keys, role) = aws_with_role().await;
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors",
            Some(&admin),
            Some(iam_role_connector("aws-s3", &aws.url(), &keys, &role)),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let dir = tempfile::tempdir()?;
    let config_file = dir.path().join("aws-config");
    std::fs::write(&config_file, "[profile mine]\nregion = eu-west-1\n")?;
    let config_dir = dir.path().join("gatehouse");
    let account_key = service_account_key(&app, &admin, "ci-bot").await?;
    let home = dir.path().to_str().expect("utf-8");
    let env = [
        ("HOME", home),
        ("PATH", "/usr/bin:/bin"),
        ("AWS_CONFIG_FILE", config_file.to_str().expect("utf-8")),
        ("GATEHOUSE_CONFIG_DIR", config_dir.to_str().expect("utf-8")),
        ("GATEHOUSE_URL", app.url.as_str()),
        ("GATEHOUSE_API_KEY", account_key.as_str()),
    ];
    let grant = app
        .call(
            Method::POST,
            "/api/v1/service_connectors/aws-s3/grants",
            Some(&admin),
            Some(json!({"principal": "ci-bot", "resource_ids": ["s3://team-data"]})),
        )
        .await?;
    assert_eq!(grant.0, StatusCode::OK, "{}", grant.1);
    let (code, out, err) = run_cli_env(
        &[
            "service-connector",
            "login",
            "aws-s3",
            "--resource-type",
            "s3-bucket",
            "--resource-id",
            "s3://team-data",
        ],
        None,
        &env,
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(code, 0, "{out}{err}");
    let written = std::fs::read_to_string(&config_file)?;
    assert!(
        written.contains("[profile mine]\nregion = eu-west-1"),
        "{written}"
    );
    assert!(written.contains("[profile gatehouse-aws-s3]"), "{written}");
    assert!(written.contains("credential_process"), "{written}");

    // A program using the official AWS SDK for Rust, run as a user's job would run: it
    // knows the profile name and nothing else.
    let probe = workspace_example("aws_profile_probe")?;
    let output = tokio::process::Command::new(probe)
        .args(["team-data", "from-profile.txt"])
        .env("AWS_CONFIG_FILE", &config_file)
        .env("AWS_PROFILE", "gatehouse-aws-s3")
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("GATEHOUSE_CONFIG_DIR", &config_dir)
        .env("GATEHOUSE_URL", &app.url)
        .env("GATEHOUSE_API_KEY", &account_key)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output).await??;
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // It wrote through the role's session: the object is there.
    let listed = aws
        .s3()
        .get_object()
        .bucket("team-data")
        .key("from-profile.txt")
        .send()
        .await;
    assert!(listed.is_ok(), "{listed:?}");
    Ok(())
}

#[tokio::test]
async fn owners_admins_and_grantees_use_a_connector_everyone_else_gets_404() -> anyhow::Result<()> {
    let aws = Admin::unenforced().await;
    aws.create_bucket("a-bucket").await;
    aws.create_bucket("b-bucket").await;
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    let ann = app.user_with_token(&admin, "ann", "member").await?;
    let bob = app.user_with_token(&admin, "bob", "member").await?;
    let eve = app.user_with_token(&admin, "eve", "member").await?;
    let connector = json!({
        "name": "anns",
        "connector_type": "aws",
        "auth_method": "session-token",
        "configuration": {"region": REGION, "endpoint_url": aws.url()},
        "secrets": {"aws_access_key_id": "AKIAANN0000000000001", "aws_secret_access_key": "ann-secret"},
    });
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors",
            Some(&ann),
            Some(connector),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let creds = |bucket: &str| json!({"resource_type": "s3-bucket", "resource_id": bucket});
    let path = "/api/v1/service_connectors/anns/credentials";

    for (who, expected) in [
        (&ann, StatusCode::OK),
        (&admin, StatusCode::OK),
        (&bob, StatusCode::NOT_FOUND),
        (&eve, StatusCode::NOT_FOUND),
    ] {
        let (status, body) = app
            .call(Method::POST, path, Some(who), Some(creds("a-bucket")))
            .await?;
        assert_eq!(status, expected, "{body}");
    }
    let (status, _) = app
        .call(
            Method::GET,
            "/api/v1/service_connectors/anns",
            Some(&eve),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = app
        .call(Method::GET, "/api/v1/service_connectors", Some(&eve), None)
        .await?;
    assert_eq!(listed["total"], 0);

    // A grant limited to one bucket: bob may use that one, is told which when he asks
    // for another, and may not manage the connector.
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors/anns/grants",
            Some(&ann),
            Some(json!({"principal": "bob", "resource_ids": ["a-bucket"]})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app
        .call(Method::POST, path, Some(&bob), Some(creds("s3://a-bucket")))
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .call(Method::POST, path, Some(&bob), Some(creds("b-bucket")))
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("s3://a-bucket"),
        "{body}"
    );
    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/v1/service_connectors/anns",
            Some(&bob),
            Some(json!({"description": "mine"})),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call(
            Method::DELETE,
            "/api/v1/service_connectors/anns",
            Some(&bob),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The grant ends at once.
    let (status, _) = app
        .call(
            Method::DELETE,
            "/api/v1/service_connectors/anns/grants/bob",
            Some(&ann),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .call(Method::POST, path, Some(&bob), Some(creds("a-bucket")))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_stores_nothing() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    let base = json!({
        "name": "bad",
        "connector_type": "aws",
        "auth_method": "iam-role",
        "configuration": {"region": REGION, "role_arn": "arn:aws:iam::123456789012:role/x"},
        "secrets": {"aws_access_key_id": "AKIA0000000000000000", "aws_secret_access_key": "s"},
        "verify": false,
    });
    let with = |path: &[&str], value: Value| {
        let mut body = base.clone();
        let mut target = &mut body;
        for key in &path[..path.len() - 1] {
            target = &mut target[*key];
        }
        target[path[path.len() - 1]] = value;
        body
    };
    let cases = [
        (with(&["connector_type"], json!("nope")), "connector_type"),
        (with(&["auth_method"], json!("nope")), "auth_method"),
        (with(&["resource_types"], json!(["nope"])), "resource_types"),
        (
            with(&["configuration", "role_arn"], json!("not-an-arn")),
            "role_arn",
        ),
        (
            with(&["configuration", "colour"], json!("blue")),
            "configuration.colour",
        ),
        (
            with(&["secrets", "password"], json!("x")),
            "secrets.password",
        ),
        (
            with(&["expiration_seconds"], json!(60)),
            "expiration_seconds",
        ),
        (
            with(&["expiration_seconds"], json!(13 * 3600)),
            "expiration_seconds",
        ),
        (
            with(&["resource_types"], json!(["s3-bucket"]))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("resource_id".into(), json!("Not_A_Bucket!"));
                    Value::Object(o)
                })
                .expect("an object"),
            "resource_id",
        ),
        (
            with(&["configuration", "region"], json!("x".repeat(20_000))),
            "configuration",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = app
            .call(
                Method::POST,
                "/api/v1/service_connectors",
                Some(&admin),
                Some(body.clone()),
            )
            .await?;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert!(
            answer["message"]
                .as_str()
                .unwrap_or_default()
                .contains(field),
            "{field}: {answer}"
        );
    }
    let mut missing = base.clone();
    missing["secrets"] = json!({"aws_access_key_id": "AKIA0000000000000000"});
    let (status, answer) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors",
            Some(&admin),
            Some(missing),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("aws_secret_access_key")
    );
    let (_, listed) = app
        .call(
            Method::GET,
            "/api/v1/service_connectors",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(listed["total"], 0, "nothing stored: {listed}");
    // The implicit method is off unless the server enables it.
    let implicit = json!({"name": "own", "connector_type": "aws", "auth_method": "implicit",
        "configuration": {"region": REGION}, "verify": false});
    let (status, answer) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors",
            Some(&admin),
            Some(implicit),
        )
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("GATEHOUSE_ENABLE_IMPLICIT_AUTH_METHODS")
    );
    Ok(())
}

#[tokio::test]
async fn a_cloud_refusal_is_a_502_with_its_message_and_a_silent_cloud_a_504() -> anyhow::Result<()>
{
    let aws = Admin::enforcing().await;
    // A listener that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let silent_url = format!("http://{}", silent.local_addr()?);
    let app = TestApp::spawn_with(&[("GATEHOUSE_CONNECTOR_UPSTREAM_TIMEOUT_SECONDS", "2")]).await?;
    let admin = app.admin_token().await?;
    let body = |name: &str, url: &str| {
        json!({
            "name": name, "connector_type": "aws", "auth_method": "session-token",
            "configuration": {"region": REGION, "endpoint_url": url},
            "secrets": {"aws_access_key_id": "AKIAWRONG00000000000", "aws_secret_access_key": "wrong-secret-value"},
        })
    };
    let (status, answer) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors",
            Some(&admin),
            Some(body("wrong", &aws.url())),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    assert_eq!(answer["code"], "upstream_error");
    assert!(!answer.to_string().contains("wrong-secret-value"));
    let started = std::time::Instant::now();
    let silent_call = app.call(
        Method::POST,
        "/api/v1/service_connectors",
        Some(&admin),
        Some(body("silent", &silent_url)),
    );
    // Meanwhile another command to the same connectors service is answered at once.
    let other_command = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked = std::time::Instant::now();
        let answered = app
            .call(
                Method::GET,
                "/api/v1/service_connector_types",
                Some(&admin),
                None,
            )
            .await;
        (answered, asked.elapsed())
    };
    let ((status, answer), (types, took)) = tokio::join!(
        async { silent_call.await.expect("the silent call answers") },
        other_command
    );
    assert_eq!(types?.0, StatusCode::OK);
    assert!(took < Duration::from_secs(1), "held up for {took:?}");
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Nothing was stored.
    let (_, listed) = app
        .call(
            Method::GET,
            "/api/v1/service_connectors",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(listed["total"], 0);
    drop(silent);
    Ok(())
}

#[tokio::test]
async fn an_artifact_store_connects_through_a_connector_that_reaches_its_bucket_and_keeps_it_from_deletion()
-> anyhow::Result<()> {
    let aws = Admin::unenforced().await;
    aws.create_bucket("zenfiles").await;
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors",
            Some(&admin),
            Some(json!({
                "name": "aws-s3", "connector_type": "aws", "auth_method": "session-token",
                "configuration": {"region": REGION, "endpoint_url": aws.url()},
                "secrets": {"aws_access_key_id": "AKIAANY0000000000001", "aws_secret_access_key": "any"},
            })),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A bucket the connector does not reach is refused with the reason.
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/components",
            Some(&admin),
            Some(
                json!({"name": "missing", "type": "artifact_store", "flavor": "s3",
                "configuration": {"path": "s3://no-such-bucket"}, "connector": "aws-s3"}),
            ),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // A registry flavor needs a registry, which an s3 store is not.
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/components",
            Some(&admin),
            Some(json!({"name": "odd", "type": "artifact_store", "flavor": "gcs", "configuration": {}})),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, store) = app
        .call(
            Method::POST,
            "/api/v1/components",
            Some(&admin),
            Some(
                json!({"name": "s3-zenfiles", "type": "artifact_store", "flavor": "s3",
                "configuration": {"path": "s3://zenfiles"}, "connector": "aws-s3"}),
            ),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{store}");
    assert_eq!(store["connector"]["resource_id"], "s3://zenfiles");
    let (status, creds) = app
        .call(
            Method::POST,
            "/api/v1/components/s3-zenfiles/credentials",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{creds}");
    assert_eq!(creds["resource_id"], "s3://zenfiles");
    assert!(creds["credentials"]["aws_session_token"].is_string());

    let (status, refused) = app
        .call(
            Method::DELETE,
            "/api/v1/service_connectors/aws-s3",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["code"], "in_use");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("s3-zenfiles"),
        "{refused}"
    );
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/components/s3-zenfiles/disconnect",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call(
            Method::DELETE,
            "/api/v1/service_connectors/aws-s3",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    Ok(())
}

#[tokio::test]
async fn no_secret_reaches_the_event_log_the_bus_or_the_logs_and_a_second_gateway_serves_leases()
-> anyhow::Result<()> {
    let (aws, keys, role) = aws_with_role().await;
    let app = TestApp::spawn().await?;
    let replica = app.replica().await?;
    let admin = app.admin_token().await?;
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/service_connectors",
            Some(&admin),
            Some(iam_role_connector("aws-s3", &aws.url(), &keys, &role)),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Through the other replica: the read models there know the connector.
    let (status, issued) = call(
        &app.http,
        &replica.url,
        Method::POST,
        "/api/v1/service_connectors/aws-s3/credentials",
        Some(&admin),
        Some(json!({"resource_type": "s3-bucket", "resource_id": "s3://team-data"})),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let session_secret = issued["credentials"]["aws_secret_access_key"]
        .as_str()
        .expect("a secret")
        .to_owned();
    let secrets = [keys.secret.as_str(), session_secret.as_str()];

    let events = event_log_text(&app).await?;
    assert!(events.contains("lease.issued"), "the log holds the lease");
    let stream = nats_stream_text(&app, "lease.issued").await?;
    assert!(
        stream.contains("connector.registered"),
        "the stream holds the events"
    );
    let logs = format!("{}{}", app.log(), replica.log());
    for secret in secrets {
        assert!(!events.contains(secret), "a secret in the event log");
        assert!(!stream.contains(secret), "a secret on the bus");
        assert!(!logs.contains(secret), "a secret in the logs");
    }
    Ok(())
}
