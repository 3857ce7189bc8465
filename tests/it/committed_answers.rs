//! A write that committed is answered with what it wrote (issue 9, items 1 and 4), end to
//! end against `gatehouse serve`, a real nats-server and Postgres:
//!
//! - when the read models cannot catch up (the JetStream stream refuses new messages, so
//!   the outbox relay cannot publish), creates of service accounts, users and API keys and
//!   an update are still answered 201/200 from the command's own output, marked
//!   `Gatehouse-Consistency: pending`, never 404 or stale data;
//! - creating an API key with an `Idempotency-Key` answers a retry with the same key (the
//!   sealed answer is kept for a bounded time, never in clear); without one a retry is 409;
//! - an idempotent create replayed after the resource was deleted answers the first 201
//!   body again (against the in-process app: the writer's idempotency records, which the
//!   in-memory log keeps to the same contract).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::stream::DiscardPolicy;
use gatehouse_e2e::{Api, InProcApp, NatsUser, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const API_KEY_GRANT: &str = "urn:gatehouse:params:oauth:grant-type:api-key";
const CONSISTENCY: &str = "gatehouse-consistency";

/// An answer: status, the consistency header, body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    consistency: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

/// Sends a request with the admin's token and an optional `Idempotency-Key`.
async fn send(
    app: &Api,
    token: &str,
    method: Method,
    path: &str,
    idempotency_key: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<Answer> {
    let mut request = app.http.request(method, app.at(path)).bearer_auth(token);
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (consistency, retry_after) = (header(CONSISTENCY), header("retry-after"));
    let bytes = response.bytes().await?;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)?
    };
    Ok(Answer {
        status,
        consistency,
        retry_after,
        body,
    })
}

/// Makes the events stream refuse every new message (`max_msgs` at its current count,
/// `discard: new`), so that nothing committed from now on reaches the read models.
async fn freeze_events(app: &TestApp) -> anyhow::Result<()> {
    set_stream_limit(app, None).await
}

/// Lets the events stream take messages again.
async fn thaw_events(app: &TestApp) -> anyhow::Result<()> {
    set_stream_limit(app, Some(-1)).await
}

async fn set_stream_limit(app: &TestApp, max_messages: Option<i64>) -> anyhow::Result<()> {
    // Stream limits are the relay's to change: the all-in-one user of `gatehouse serve`.
    let client = app.nats.connect_as(NatsUser::Gatehouse).await?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(gatehouse_bus::jetstream::STREAM_NAME)
        .await
        .context("the events stream")?;
    let info = stream.info().await?.clone();
    let mut config = info.config;
    config.max_messages = match max_messages {
        Some(limit) => limit,
        None => i64::try_from(info.state.messages)?.max(1),
    };
    config.discard = DiscardPolicy::New;
    js.update_stream(config).await?;
    Ok(())
}

/// Creates a service account the normal way (visible before the answer).
async fn account(app: &Api, token: &str, name: &str) -> anyhow::Result<Value> {
    let created = send(
        app,
        token,
        Method::POST,
        "/api/v1/service_accounts",
        None,
        Some(json!({"name": name})),
    )
    .await?;
    anyhow::ensure!(created.status == StatusCode::CREATED, "{created:?}");
    anyhow::ensure!(created.consistency.is_none(), "{created:?}");
    Ok(created.body)
}

/// Waits until `path` answers 200 (the read models caught up) and returns the body.
async fn eventually(app: &TestApp, token: &str, path: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = send(app, token, Method::GET, path, None, None).await?;
        if got.status == StatusCode::OK {
            return Ok(got.body);
        }
        anyhow::ensure!(Instant::now() < deadline, "{path} never appeared: {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Exchanges an API key for a token; the status says whether the key works.
async fn key_grant(app: &TestApp, key: &str) -> anyhow::Result<StatusCode> {
    Ok(app
        .http
        .post(app.at("/oauth/token"))
        .form(&[("grant_type", API_KEY_GRANT), ("api_key", key)])
        .send()
        .await?
        .status())
}

/// Checks the keys of `created` against `expected`, ignoring nothing.
fn assert_same_fields(created: &Value, expected: &[(&str, Value)]) {
    for (field, value) in expected {
        assert_eq!(&created[*field], value, "{field} of {created}");
    }
}

#[tokio::test]
async fn writes_that_committed_are_answered_from_their_output_while_the_read_models_lag()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    let existing = account(&app, &admin, "existing-bot").await?;
    freeze_events(&app).await?;

    let keys = "/api/v1/service_accounts/existing-bot/api_keys";
    let create_key = |idempotency_key| {
        send(
            &app,
            &admin,
            Method::POST,
            keys,
            idempotency_key,
            Some(json!({"name": "ci"})),
        )
    };
    let (account_created, user_created, key_created, account_updated) = tokio::join!(
        send(
            &app,
            &admin,
            Method::POST,
            "/api/v1/service_accounts",
            None,
            Some(json!({"name": "lagging-bot", "description": "made while frozen"})),
        ),
        send(
            &app,
            &admin,
            Method::POST,
            "/api/v1/users",
            None,
            Some(
                json!({"name": "lagging-person", "password": "a-long-password-1", "role": "member"})
            ),
        ),
        create_key(Some("key-once")),
        send(
            &app,
            &admin,
            Method::PATCH,
            "/api/v1/service_accounts/existing-bot",
            None,
            Some(json!({"description": "changed while frozen"})),
        ),
    );
    let (account_created, user_created, key_created, account_updated) = (
        account_created?,
        user_created?,
        key_created?,
        account_updated?,
    );

    for answer in [&account_created, &user_created, &key_created] {
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        assert_eq!(answer.consistency.as_deref(), Some("pending"), "{answer:?}");
    }
    assert_same_fields(
        &account_created.body,
        &[
            ("name", json!("lagging-bot")),
            ("description", json!("made while frozen")),
            ("active", json!(true)),
        ],
    );
    assert_same_fields(
        &user_created.body,
        &[("name", json!("lagging-person")), ("role", json!("member"))],
    );
    assert_same_fields(
        &key_created.body,
        &[
            ("name", json!("ci")),
            ("service_account_id", existing["id"].clone()),
            ("generation", json!(1)),
            ("active", json!(true)),
        ],
    );
    let key = key_created.body["key"]
        .as_str()
        .context("the created key's secret")?
        .to_owned();
    assert_eq!(
        account_updated.status,
        StatusCode::OK,
        "{account_updated:?}"
    );
    assert_eq!(account_updated.consistency.as_deref(), Some("pending"));
    assert_same_fields(
        &account_updated.body,
        &[
            ("id", existing["id"].clone()),
            ("description", json!("changed while frozen")),
        ],
    );

    // The answer to the create was lost on the way: the same request with the same key
    // gets the same key (still pending); without the key a retry is refused.
    let (replayed, blind) = tokio::join!(create_key(Some("key-once")), create_key(None));
    let (replayed, blind) = (replayed?, blind?);
    assert_eq!(replayed.status, StatusCode::CREATED, "{replayed:?}");
    assert_eq!(
        replayed.body, key_created.body,
        "the same answer, secret included"
    );
    assert_eq!(blind.status, StatusCode::CONFLICT, "{blind:?}");
    assert_eq!(blind.body["code"], "name_taken");
    assert!(blind.body.get("key").is_none());

    // Once the events flow again, the read models show exactly what was answered.
    thaw_events(&app).await?;
    let id = |answer: &Answer| answer.body["id"].as_str().unwrap_or_default().to_owned();
    let account_path = format!("/api/v1/service_accounts/{}", id(&account_created));
    assert_eq!(
        eventually(&app, &admin, &account_path).await?,
        account_created.body
    );
    let user_path = format!("/api/v1/users/{}", id(&user_created));
    assert_eq!(
        eventually(&app, &admin, &user_path).await?,
        user_created.body
    );
    let key_path = format!("{keys}/{}", id(&key_created));
    let mut shown = eventually(&app, &admin, &key_path).await?;
    let mut expected = key_created.body.clone();
    if let (Some(shown), Some(expected)) = (shown.as_object_mut(), expected.as_object_mut()) {
        expected.remove("key");
        shown.remove("last_used");
        expected.remove("last_used");
    }
    assert_eq!(shown, expected);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = eventually(&app, &admin, "/api/v1/service_accounts/existing-bot").await?;
        if described["description"] == "changed while frozen" {
            assert_eq!(described, account_updated.body);
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the update never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(key_grant(&app, &key).await?, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn an_api_key_create_with_an_idempotency_key_is_kept_sealed_and_answered_again()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    account(&app, &admin, "deploy-bot").await?;
    let keys = "/api/v1/service_accounts/deploy-bot/api_keys";
    let body = json!({"name": "deploy", "description": "for deployments"});

    let first = send(
        &app,
        &admin,
        Method::POST,
        keys,
        Some("k-1"),
        Some(body.clone()),
    )
    .await?;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert!(first.consistency.is_none(), "{first:?}");
    let key = first.body["key"].as_str().context("secret")?.to_owned();

    let again = send(
        &app,
        &admin,
        Method::POST,
        keys,
        Some("k-1"),
        Some(body.clone()),
    )
    .await?;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body, first.body);

    let different = send(
        &app,
        &admin,
        Method::POST,
        keys,
        Some("k-1"),
        Some(json!({"name": "other"})),
    )
    .await?;
    assert_eq!(
        different.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{different:?}"
    );
    assert_eq!(different.body["code"], "idempotency_key_reused");

    let blind = send(&app, &admin, Method::POST, keys, None, Some(body.clone())).await?;
    assert_eq!(blind.status, StatusCode::CONFLICT, "{blind:?}");

    // The kept answer is sealed: the key's secret is nowhere in the database in clear, and
    // in no event.
    let (client, connection) = tokio_postgres::connect(app.db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let secret = &key[43..86];
    for (table, column) in [
        ("idempotency", "response::text"),
        ("events", "payload::text"),
    ] {
        let sql = format!("SELECT count(*) FROM {table} WHERE {column} LIKE '%' || $1 || '%'");
        let found: i64 = client.query_one(&sql, &[&secret]).await?.get(0);
        assert_eq!(found, 0, "the secret is in {table} in clear");
    }
    let kept: i64 = client
        .query_one(
            "SELECT count(*) FROM idempotency WHERE expires_at > now() + interval '23 hours'",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(kept, 1, "the sealed answer is kept for 24 hours");
    assert_eq!(key_grant(&app, &key).await?, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn a_kept_api_key_answer_expires_and_is_deleted() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(&[
        ("GATEHOUSE_API_KEY_REPLAY_SECONDS", "3"),
        ("GATEHOUSE_KEY_EXPIRY_SWEEP_SECONDS", "1"),
    ])
    .await?;
    let admin = app.admin_token().await?;
    account(&app, &admin, "short-bot").await?;
    let keys = "/api/v1/service_accounts/short-bot/api_keys";
    let body = json!({"name": "brief"});
    let first = send(
        &app,
        &admin,
        Method::POST,
        keys,
        Some("k"),
        Some(body.clone()),
    )
    .await?;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    let (client, connection) = tokio_postgres::connect(app.db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let kept = || async {
        let count: i64 = client
            .query_one("SELECT count(*) FROM idempotency", &[])
            .await?
            .get(0);
        anyhow::Ok(count)
    };
    assert_eq!(kept().await?, 1, "the sealed answer is kept for its window");
    let again = send(
        &app,
        &admin,
        Method::POST,
        keys,
        Some("k"),
        Some(body.clone()),
    )
    .await?;
    assert_eq!(again.body, first.body, "answered again within the window");

    let deadline = Instant::now() + Duration::from_secs(15);
    while kept().await? > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the expired answer was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let late = send(&app, &admin, Method::POST, keys, Some("k"), Some(body)).await?;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");
    assert!(late.body.get("key").is_none());
    Ok(())
}

#[tokio::test]
async fn an_idempotent_create_replayed_after_a_delete_answers_the_first_result()
-> anyhow::Result<()> {
    let app = InProcApp::spawn().await?;
    let admin = app.admin_token().await?;
    let body = json!({"name": "short-lived", "description": "deleted soon"});
    let accounts = "/api/v1/service_accounts";
    let first = send(
        &app,
        &admin,
        Method::POST,
        accounts,
        Some("sa-1"),
        Some(body.clone()),
    )
    .await?;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");

    account(&app, &admin, "keeper").await?;
    let keys = "/api/v1/service_accounts/keeper/api_keys";
    let key_body = json!({"name": "temporary"});
    let key = send(
        &app,
        &admin,
        Method::POST,
        keys,
        Some("key-1"),
        Some(key_body.clone()),
    )
    .await?;
    assert_eq!(key.status, StatusCode::CREATED, "{key:?}");

    let deleted = send(
        &app,
        &admin,
        Method::DELETE,
        &format!("{accounts}/short-lived"),
        None,
        None,
    )
    .await?;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
    let key_deleted = send(
        &app,
        &admin,
        Method::DELETE,
        &format!("{keys}/temporary"),
        None,
        None,
    )
    .await?;
    assert_eq!(
        key_deleted.status,
        StatusCode::NO_CONTENT,
        "{key_deleted:?}"
    );

    let replayed = send(
        &app,
        &admin,
        Method::POST,
        accounts,
        Some("sa-1"),
        Some(body),
    )
    .await?;
    assert_eq!(replayed.status, StatusCode::CREATED, "{replayed:?}");
    assert_eq!(replayed.body, first.body);
    let key_replayed = send(
        &app,
        &admin,
        Method::POST,
        keys,
        Some("key-1"),
        Some(key_body),
    )
    .await?;
    assert_eq!(key_replayed.status, StatusCode::CREATED, "{key_replayed:?}");
    assert_eq!(key_replayed.body, key.body);

    // A replay changes nothing: the account stays deleted, its name free.
    let gone = send(
        &app,
        &admin,
        Method::GET,
        &format!("{accounts}/short-lived"),
        None,
        None,
    )
    .await?;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn a_write_whose_outcome_cannot_be_known_is_503_and_a_retry_with_its_key_settles_it()
-> anyhow::Result<()> {
    let mut app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    let accounts = "/api/v1/service_accounts";
    let body = json!({"name": "unsure-bot"});
    app.nats.stop().await?;
    let unknown = send(
        &app,
        &admin,
        Method::POST,
        accounts,
        Some("u-1"),
        Some(body.clone()),
    )
    .await?;
    assert_eq!(
        unknown.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{unknown:?}"
    );
    assert!(unknown.retry_after.is_some(), "{unknown:?}");

    app.nats.restart().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let settled = loop {
        let retried = send(
            &app,
            &admin,
            Method::POST,
            accounts,
            Some("u-1"),
            Some(body.clone()),
        )
        .await?;
        if retried.status == StatusCode::CREATED {
            break retried;
        }
        anyhow::ensure!(Instant::now() < deadline, "never settled: {retried:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let listed = send(
        &app,
        &admin,
        Method::GET,
        &format!("{accounts}?name=unsure-bot"),
        None,
        None,
    )
    .await?;
    assert_eq!(listed.body["total"], 1, "{listed:?}");
    assert_eq!(listed.body["items"][0]["id"], settled.body["id"]);
    Ok(())
}
