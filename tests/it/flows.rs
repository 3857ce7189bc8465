//! The main flows of the REST and OAuth API, against the in-process app.

use gatehouse_e2e::{InProcApp, claims};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn the_admin_logs_in_and_manages_a_service_account_end_to_end() -> anyhow::Result<()> {
    let app = InProcApp::spawn().await?;
    let admin = app.admin_token().await?;

    let (status, me) = app
        .call(Method::GET, "/api/v1/current-user", Some(&admin), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "admin");
    assert_eq!(me["kind"], "user");
    assert_eq!(me["role"], "admin");

    let (status, created) = app
        .call(
            Method::POST,
            "/api/v1/service_accounts",
            Some(&admin),
            Some(json!({"name": "ci-bot", "description": "nightly training"})),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    for field in ["id", "name", "description", "active", "created", "updated"] {
        assert!(created.get(field).is_some(), "missing {field} in {created}");
    }
    assert_eq!(created["name"], "ci-bot");
    assert_eq!(created["active"], true);
    assert_eq!(created["role"], "member");

    // Read-your-writes: the list right after the create shows it.
    let (status, list) = app
        .call(Method::GET, "/api/v1/service_accounts", Some(&admin), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["name"], "ci-bot");

    let (status, by_id) = app
        .call(
            Method::GET,
            &format!(
                "/api/v1/service_accounts/{}",
                created["id"].as_str().unwrap_or_default()
            ),
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id["name"], "ci-bot");

    let (status, updated) = app
        .call(
            Method::PATCH,
            "/api/v1/service_accounts/ci-bot",
            Some(&admin),
            Some(json!({"active": false, "description": "paused"})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["active"], false);
    assert_eq!(updated["description"], "paused");

    let (status, filtered) = app
        .call(
            Method::GET,
            "/api/v1/service_accounts?active=true",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(filtered["total"], 0);

    let (status, _) = app
        .call(
            Method::DELETE,
            "/api/v1/service_accounts/ci-bot",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app
        .call(
            Method::GET,
            "/api/v1/service_accounts/ci-bot",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The name is free again.
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/service_accounts",
            Some(&admin),
            Some(json!({"name": "ci-bot"})),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    Ok(())
}

#[tokio::test]
async fn tokens_are_ed25519_jwts_verifiable_with_the_published_jwks() -> anyhow::Result<()> {
    use base64::Engine;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    let app = InProcApp::spawn().await?;
    let token = app.admin_token().await?;
    let (status, jwks) = app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");

    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(parts[0])?)?;
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], key["kid"]);
    let x: [u8; 32] = b64
        .decode(key["x"].as_str().unwrap_or_default())?
        .try_into()
        .map_err(|_| anyhow::anyhow!("x is not 32 bytes"))?;
    let signature = Signature::from_slice(&b64.decode(parts[2])?)?;
    VerifyingKey::from_bytes(&x)?
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)?;

    let c = claims(&token)?;
    for claim in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"] {
        assert!(c.get(claim).is_some(), "missing {claim}");
    }
    assert_eq!(c["iss"], app.url.as_str());

    let (status, meta) = app
        .call(
            Method::GET,
            "/.well-known/oauth-authorization-server",
            None,
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["issuer"], app.url.as_str());
    assert_eq!(
        meta["jwks_uri"],
        format!("{}/.well-known/jwks.json", app.url)
    );
    Ok(())
}

#[tokio::test]
async fn an_idempotency_key_makes_a_create_safe_to_retry() -> anyhow::Result<()> {
    let app = InProcApp::spawn().await?;
    let admin = app.admin_token().await?;
    let send = |name: &'static str| {
        app.http
            .post(app.at("/api/v1/service_accounts"))
            .bearer_auth(&admin)
            .header("Idempotency-Key", "retry-me-1")
            .json(&json!({"name": name}))
            .send()
    };
    let first = send("pipeline").await?;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: serde_json::Value = first.json().await?;
    let second = send("pipeline").await?;
    assert_eq!(second.status(), StatusCode::CREATED);
    let second: serde_json::Value = second.json().await?;
    assert_eq!(first["id"], second["id"]);
    // The same key with a different request is refused, and changes nothing.
    let third = send("other-name").await?;
    assert_eq!(third.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, list) = app
        .call(Method::GET, "/api/v1/service_accounts", Some(&admin), None)
        .await?;
    assert_eq!(list["total"], 1);
    Ok(())
}

#[tokio::test]
async fn an_idempotency_key_makes_creating_a_user_safe_to_retry() -> anyhow::Result<()> {
    let app = InProcApp::spawn().await?;
    let admin = app.admin_token().await?;
    let send = |name: &'static str, key: &'static str| {
        app.http
            .post(app.at("/api/v1/users"))
            .bearer_auth(&admin)
            .header("Idempotency-Key", key)
            .json(&json!({"name": name, "password": "bob-password-1", "role": "member"}))
            .send()
    };
    let first = send("bob", "user-1").await?;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: serde_json::Value = first.json().await?;
    let second = send("bob", "user-1").await?;
    assert_eq!(
        second.status(),
        StatusCode::CREATED,
        "a retry gets the first answer"
    );
    let second: serde_json::Value = second.json().await?;
    assert_eq!(first["id"], second["id"]);
    // The same key for another user is refused; a new key for the same name is a conflict.
    assert_eq!(
        send("carol", "user-1").await?.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(send("bob", "user-2").await?.status(), StatusCode::CONFLICT);
    let response = app
        .http
        .post(app.at("/api/v1/users"))
        .bearer_auth(&admin)
        .header("Idempotency-Key", "")
        .json(&json!({"name": "dave", "password": "dave-password-1"}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (_, list) = app
        .call(Method::GET, "/api/v1/users", Some(&admin), None)
        .await?;
    assert_eq!(list["total"], 2, "admin and bob: {list}");
    Ok(())
}

#[tokio::test]
async fn a_user_changes_their_password_and_old_sessions_end() -> anyhow::Result<()> {
    let app = InProcApp::spawn().await?;
    let admin = app.admin_token().await?;
    let alice = app.user_with_token(&admin, "alice", "member").await?;
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/current-user/password",
            Some(&alice),
            Some(json!({"current_password": "wrong-password", "new_password": "new-password-1"})),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/current-user/password",
            Some(&alice),
            Some(json!({"current_password": "alice-password", "new_password": "new-password-1"})),
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = app
        .call(Method::GET, "/api/v1/current-user", Some(&alice), None)
        .await?;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the session from before the change must end"
    );
    assert_eq!(
        app.password_grant("alice", "alice-password")
            .await?
            .status(),
        StatusCode::BAD_REQUEST
    );
    let fresh = app.token("alice", "new-password-1").await?;
    let (status, _) = app
        .call(Method::GET, "/api/v1/current-user", Some(&fresh), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}
