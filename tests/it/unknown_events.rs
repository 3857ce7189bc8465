//! An event type from a newer version, placed in the log between two revocations, stalls
//! neither the read-model projector nor a gateway's directory (decision 0012): both
//! revocations take effect, on the running gateway and on one that starts afterwards.

use anyhow::Context as _;
use gatehouse_contracts::envelope::{EventMetadata, StreamId};
use gatehouse_e2e::{TestApp, call};
use gatehouse_eventlog::postgres::{PgDatabase, PostgresEventStore};
use gatehouse_eventlog::{AppendRequest, EventStore, ExpectedVersion, NewEvent};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// Creates service account `name` with one API key; returns its id and the key.
async fn account_with_key(
    app: &TestApp,
    admin: &str,
    name: &str,
) -> anyhow::Result<(Uuid, String)> {
    let account = app.create_service_account(admin, name).await?;
    let (status, created) = app
        .call(
            Method::POST,
            &format!("/api/v1/service_accounts/{name}/api_keys"),
            Some(admin),
            Some(json!({ "name": "main" })),
        )
        .await?;
    anyhow::ensure!(
        status == StatusCode::CREATED,
        "a key for {name}: {status} {created}"
    );
    let id = account["id"].as_str().context("no id")?.parse()?;
    let key = created["key"].as_str().context("no key")?.to_owned();
    Ok((id, key))
}

async fn deactivate(app: &TestApp, admin: &str, name: &str) -> anyhow::Result<()> {
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/service_accounts/{name}"),
            Some(admin),
            Some(json!({ "active": false })),
        )
        .await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "deactivating {name}: {status} {body}"
    );
    Ok(())
}

async fn whoami(app: &TestApp, base: &str, key: &str) -> anyhow::Result<(StatusCode, Value)> {
    call(
        &app.http,
        base,
        Method::GET,
        "/api/v1/current-user",
        Some(key),
        None,
    )
    .await
}

#[tokio::test]
async fn an_unknown_event_type_between_two_deactivations_holds_neither_up() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    let (a, key_a) = account_with_key(&app, &admin, "older-a").await?;
    let (_, key_b) = account_with_key(&app, &admin, "older-b").await?;
    assert_eq!(whoami(&app, &app.url, &key_b).await?.0, StatusCode::OK);

    deactivate(&app, &admin, "older-a").await?;
    // A newer identity service appends an event this build does not know to A's stream,
    // through the log and its outbox like any other event.
    let database = PgDatabase::connect(app.db.url(), 2).await?;
    let log = PostgresEventStore::new(database.pool().clone());
    let stream_a = StreamId::new("service_account", a);
    let version = log.read_stream(&stream_a, 0).await?.len() as i64;
    log.append(AppendRequest::new(
        stream_a.clone(),
        ExpectedVersion::Exactly(version),
        vec![NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "service_account.some_future_thing".into(),
            schema_version: 1,
            payload: json!({ "colour": "teal" }),
            metadata: EventMetadata::default(),
            recorded_at: chrono::Utc::now(),
        }],
    ))
    .await?;
    deactivate(&app, &admin, "older-b").await?;

    // The deactivation returns once the read models and the directory applied it, which
    // they could not if the unknown event before it stalled them.
    for (name, key) in [("older-a", &key_a), ("older-b", &key_b)] {
        let (status, body) = whoami(&app, &app.url, key).await?;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{name}'s key still works: {body}"
        );
        let (status, body) = app
            .call(
                Method::GET,
                &format!("/api/v1/service_accounts/{name}"),
                Some(&admin),
                None,
            )
            .await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["active"], false, "the read model of {name}: {body}");
    }
    // Recorded with the projector's checkpoint, for a build that knows the type.
    let client = database.pool().get().await?;
    let rows = client
        .query(
            "SELECT projector, stream_id, version, event_type FROM read.skipped",
            &[],
        )
        .await?;
    let skipped: Vec<(String, String, i64, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        skipped,
        [(
            "read-models".to_owned(),
            stream_a.to_string(),
            version + 1,
            "service_account.some_future_thing".to_owned()
        )]
    );

    // A gateway that starts now (snapshot, then the feed) refuses both as well.
    let replica = app.replica().await?;
    for key in [&key_a, &key_b] {
        assert_eq!(
            whoami(&app, &replica.url, key).await?.0,
            StatusCode::UNAUTHORIZED
        );
    }
    Ok(())
}
