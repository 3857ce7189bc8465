//! Token-signing keys: rotation with an overlap, and retiring a key on every replica at once.

use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use gatehouse_e2e::{ADMIN_PASSWORD, TestApp, call};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The `kid` header of a JWT.
fn kid(token: &str) -> anyhow::Result<String> {
    let header = token.split('.').next().context("not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header)?;
    let header: Value = serde_json::from_slice(&bytes)?;
    Ok(header["kid"].as_str().context("no kid")?.to_owned())
}

async fn jwks_kids(http: &reqwest::Client, base: &str) -> anyhow::Result<Vec<String>> {
    let jwks: Value = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await?
        .json()
        .await?;
    Ok(jwks["keys"]
        .as_array()
        .context("no keys")?
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect())
}

async fn admin_token_from(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let body: Value = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await?
        .json()
        .await?;
    Ok(body["access_token"]
        .as_str()
        .context("no token")?
        .to_owned())
}

async fn whoami(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<StatusCode> {
    Ok(call(
        http,
        base,
        Method::GET,
        "/api/v1/current-user",
        Some(token),
        None,
    )
    .await?
    .0)
}

#[tokio::test]
async fn a_new_key_signs_after_its_delay_and_a_retired_key_is_refused_on_every_replica()
-> anyhow::Result<()> {
    let mut app = TestApp::spawn().await?;
    let replica = app.replica().await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // the replicas hear of each other
    let t0 = app.admin_token().await?;
    let k0 = kid(&t0)?;
    let (status, list) = app
        .call(Method::GET, "/api/v1/signing-keys", Some(&t0), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        list["items"],
        json!([{"kid": k0, "status": "signing", "active_from": list["items"][0]["active_from"]}])
    );

    // A key that signs at once: verifying everywhere when the call returns.
    let (status, k1) = app
        .call(
            Method::POST,
            "/api/v1/signing-keys",
            Some(&t0),
            Some(json!({"activate_in_seconds": 0})),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{k1}");
    assert_eq!(k1["status"], "signing");
    let k1 = k1["kid"].as_str().context("no kid")?.to_owned();
    assert_ne!(k1, k0);
    for base in [&app.url, &replica.url] {
        let kids = jwks_kids(&app.http, base).await?;
        assert!(kids.contains(&k0) && kids.contains(&k1), "{base}: {kids:?}");
        assert_eq!(
            whoami(&app.http, base, &t0).await?,
            StatusCode::OK,
            "old tokens still work"
        );
    }
    let t1 = app.admin_token().await?;
    assert_eq!(kid(&t1)?, k1, "the writer signs with the new key at once");
    // The replica signs with it once it has loaded the private half (a read, milliseconds).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let token = admin_token_from(&app.http, &replica.url).await?;
        if kid(&token)? == k1 {
            assert_eq!(whoami(&app.http, &app.url, &token).await?, StatusCode::OK);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never signed with {k1}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A key for later: published now, signing later.
    let (status, k2) = app
        .call(
            Method::POST,
            "/api/v1/signing-keys",
            Some(&t1),
            Some(json!({"activate_in_seconds": 3600})),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{k2}");
    assert_eq!(k2["status"], "pending");
    let k2 = k2["kid"].as_str().context("no kid")?.to_owned();
    assert!(jwks_kids(&app.http, &replica.url).await?.contains(&k2));
    assert_eq!(
        kid(&app.admin_token().await?)?,
        k1,
        "a pending key does not sign"
    );

    // Retire the first key: its tokens are refused on both replicas when the call returns.
    let (status, retired) = app
        .call(
            Method::POST,
            &format!("/api/v1/signing-keys/{k0}/retire"),
            Some(&t1),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{retired}");
    assert_eq!(retired["status"], "retired");
    // Its sealed private half is gone from the database (crypto-shredded).
    let (db, connection) = tokio_postgres::connect(app.db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let slots: Vec<String> = db
        .query(
            "SELECT name FROM secret_slots WHERE stream_id LIKE 'keyring-%'",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(!slots.contains(&format!("signing_key:{k0}")), "{slots:?}");
    assert!(slots.contains(&format!("signing_key:{k1}")), "{slots:?}");
    for base in [&app.url, &replica.url] {
        assert_eq!(
            whoami(&app.http, base, &t0).await?,
            StatusCode::UNAUTHORIZED,
            "{base}"
        );
        assert_eq!(
            whoami(&app.http, base, &t1).await?,
            StatusCode::OK,
            "{base}"
        );
        assert!(!jwks_kids(&app.http, base).await?.contains(&k0), "{base}");
    }

    // The only key that can sign now cannot be retired; k2 is not active yet.
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/signing-keys/{k1}/retire"),
            Some(&t1),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(whoami(&app.http, &app.url, &t1).await?, StatusCode::OK);

    // Restarted, the keyring is as it was left.
    drop(replica);
    app.stop().await?;
    app.start().await?;
    assert_eq!(
        whoami(&app.http, &app.url, &t0).await?,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(whoami(&app.http, &app.url, &t1).await?, StatusCode::OK);
    assert_eq!(kid(&app.admin_token().await?)?, k1);
    let (_, list) = app
        .call(Method::GET, "/api/v1/signing-keys", Some(&t1), None)
        .await?;
    let statuses: Vec<(String, String)> = list["items"]
        .as_array()
        .context("no items")?
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap_or_default().to_owned(),
                k["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (k2, "pending".to_owned()),
            (k1, "signing".to_owned()),
            (k0, "retired".to_owned())
        ]
    );
    Ok(())
}

#[tokio::test]
async fn only_admins_change_keys_and_bad_requests_change_nothing() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    let member = app.user_with_token(&admin, "alice", "member").await?;
    let (status, _) = app
        .call(Method::GET, "/api/v1/signing-keys", Some(&member), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call(Method::POST, "/api/v1/signing-keys", Some(&member), None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for (body, expected) in [
        (
            json!({"activate_in_seconds": 86_401}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"activate_in_seconds": -1}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"activate_in": 5}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, answer) = app
            .call(
                Method::POST,
                "/api/v1/signing-keys",
                Some(&admin),
                Some(body.clone()),
            )
            .await?;
        assert_eq!(status, expected, "{body}: {answer}");
    }
    let response = app
        .http
        .post(app.at("/api/v1/signing-keys"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/signing-keys/nope/retire",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = app
        .call(Method::GET, "/api/v1/signing-keys", Some(&admin), None)
        .await?;
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(1),
        "nothing was added: {list}"
    );
    Ok(())
}

#[tokio::test]
async fn an_admin_replaces_a_leaked_key_from_the_cli_and_its_sessions_end() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let home = tempfile::tempdir()?;
    let dir = home.path();
    let run = |args: Vec<&'static str>| {
        let app = &app;
        async move { app.cli(dir, &args, None).await }
    };
    let (code, _, err) = app
        .cli(
            dir,
            &["login", "--username", "admin", "--password-stdin"],
            Some(&format!("{ADMIN_PASSWORD}\n")),
        )
        .await?;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(vec!["signing-key", "list", "-o", "json"]).await?;
    assert_eq!(code, 0, "{err}");
    let old = serde_json::from_str::<Value>(&out)?["items"][0]["kid"]
        .as_str()
        .context("no kid")?
        .to_owned();

    let (code, out, err) = run(vec!["signing-key", "add", "--activate-in", "0"]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Added signing key ") && out.contains("(signing,"),
        "{out}"
    );
    // Retiring logs everyone out: without a terminal to confirm on, it needs --yes.
    let (code, _, err) = app.cli(dir, &["signing-key", "retire", &old], None).await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("pass --yes"), "{err}");
    let (code, out, err) = run(vec!["signing-key", "list", "-o", "json"]).await?;
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("\"retired\""),
        "nothing was retired without --yes: {out}"
    );
    let (code, out, err) = app
        .cli(dir, &["signing-key", "retire", &old, "--yes"], None)
        .await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines()
            .next()
            .map(|l| l.starts_with(&format!("Retired signing key {old} (retired"))),
        Some(true),
        "{out}"
    );

    // The CLI's own session was signed with the retired key: it must log in again.
    let (code, _, err) = run(vec!["current-user"]).await?;
    assert_ne!(code, 0);
    assert!(err.contains("login"), "{err}");
    let (code, out, err) = run(vec!["signing-key", "list"]).await?;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("login"), "{err}");
    // A new login works and is signed with the new key.
    let token = app.admin_token().await?;
    assert_ne!(kid(&token)?, old);
    Ok(())
}

#[tokio::test]
async fn keys_rotate_on_schedule_and_a_retirement_sooner_than_tokens_live_is_refused()
-> anyhow::Result<()> {
    let app = TestApp::spawn_with(&[
        ("GATEHOUSE_SIGNING_KEY_ROTATE_SECONDS", "2"),
        ("GATEHOUSE_SIGNING_KEY_ACTIVATE_SECONDS", "1"),
        ("GATEHOUSE_SIGNING_KEY_RETIRE_SECONDS", "0"),
    ])
    .await?;
    let t0 = app.admin_token().await?;
    let k0 = kid(&t0)?;
    // The first key has signed for 2 s: a new one is added (pending 1 s), then signs.
    let deadline = Instant::now() + Duration::from_secs(15);
    let rotated = loop {
        let token = app.admin_token().await?;
        if kid(&token)? != k0 {
            break token;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled rotation within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (_, list) = app
        .call(Method::GET, "/api/v1/signing-keys", Some(&rotated), None)
        .await?;
    let old = list["items"]
        .as_array()
        .context("no items")?
        .iter()
        .find(|k| k["kid"] == k0.as_str())
        .cloned()
        .context("the first key is listed")?;
    assert_eq!(old["status"], "verifying", "{list}");
    assert_eq!(
        whoami(&app.http, &app.url, &t0).await?,
        StatusCode::OK,
        "retirement is off: old tokens keep working"
    );

    // Retiring keys sooner than tokens live would end sessions early: refused at start.
    let (code, _, err) = gatehouse_e2e::run_cli_env(
        &["dev", "--bind", "127.0.0.1:0"],
        None,
        &[
            ("HOME", "/tmp"),
            ("GATEHOUSE_SIGNING_KEY_RETIRE_SECONDS", "3600"),
        ],
        Duration::from_secs(30),
    )
    .await?;
    assert_ne!(code, 0);
    assert!(
        err.contains("GATEHOUSE_SIGNING_KEY_RETIRE_SECONDS (3600) must exceed the longest token lifetime (86400 s)"),
        "{err}"
    );
    Ok(())
}
