//! Bad input, bad tokens and failed logins get clear 4xx answers and change nothing,
//! against the in-process app.

use gatehouse_e2e::{Api, InProcApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn service_account_names(app: &Api, token: &str) -> anyhow::Result<Vec<String>> {
    let (_, list) = app
        .call(
            Method::GET,
            "/api/v1/service_accounts?size=1000",
            Some(token),
            None,
        )
        .await?;
    Ok(list["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

fn assert_error_shape(body: &Value, class: &str) {
    assert_eq!(body["error"], class, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn bad_requests_get_a_clear_4xx_and_change_nothing() -> anyhow::Result<()> {
    let app = InProcApp::spawn().await?;
    let admin = app.admin_token().await?;
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/service_accounts",
            Some(&admin),
            Some(json!({"name": "keeper"})),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED);
    let before = service_account_names(&app, &admin).await?;

    // Malformed JSON: 400.
    let response = app
        .http
        .post(app.at("/api/v1/service_accounts"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_error_shape(&response.json().await?, "bad_request");

    // Oversize body: 413.
    let big = json!({"name": "big", "description": "x".repeat(200_000)});
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/service_accounts",
            Some(&admin),
            Some(big),
        )
        .await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_error_shape(&body, "payload_too_large");

    // Invalid names and fields: 422.
    for bad in [
        json!({"name": "has space"}),
        json!({"name": ""}),
        json!({"name": "x".repeat(65)}),
        json!({"name": "ok", "description": "d".repeat(1025)}),
        json!({"name": 7}),
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/service_accounts",
                Some(&admin),
                Some(bad.clone()),
            )
            .await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad} → {body}");
        assert_error_shape(&body, "invalid");
    }
    // Unknown fields are refused rather than silently ignored.
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/service_accounts",
            Some(&admin),
            Some(json!({"name": "typo", "activ": false})),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Duplicate: 409, also across kinds (a user named "keeper" would collide too).
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/service_accounts",
            Some(&admin),
            Some(json!({"name": "keeper"})),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "name_taken");
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"name": "keeper", "password": "long-enough-1"})),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"name": "shorty", "password": "short"})),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Bad paging: 400. Unknown route: 404 in the same JSON shape.
    let (status, body) = app
        .call(
            Method::GET,
            "/api/v1/service_accounts?size=0",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .call(
            Method::GET,
            "/api/v1/service_accounts?page=abc",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error_shape(&body, "bad_request");
    let (status, body) = app
        .call(Method::GET, "/api/v1/nothing-here", Some(&admin), None)
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&body, "not_found");

    assert_eq!(service_account_names(&app, &admin).await?, before);
    Ok(())
}

#[tokio::test]
async fn missing_forged_and_malformed_tokens_get_401() -> anyhow::Result<()> {
    use base64::Engine;
    let app = InProcApp::spawn().await?;
    let admin = app.admin_token().await?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let (status, body) = app
        .call(Method::GET, "/api/v1/current-user", None, None)
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error_shape(&body, "unauthenticated");

    // A token with its payload changed (sub swapped) but the old signature.
    let parts: Vec<&str> = admin.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1])?)?;
    payload["gh_ep"] = json!(0);
    payload["sub"] = json!(uuid::Uuid::new_v4().to_string());
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(serde_json::to_vec(&payload)?),
        parts[2]
    );
    // A token signed by another key with the same kid.
    let other = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    let forged_sig = ed25519_dalek::Signer::sign(&other, signing_input.as_bytes());
    let forged = format!("{signing_input}.{}", b64.encode(forged_sig.to_bytes()));
    // alg none.
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"at+jwt"}"#),
        parts[1]
    );

    for token in [
        tampered.as_str(),
        forged.as_str(),
        none.as_str(),
        "not-a-token",
        "a.b.c",
        &admin[..admin.len() - 4],
    ] {
        let (status, body) = app
            .call(Method::GET, "/api/v1/current-user", Some(token), None)
            .await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}: {body}");
        let (status, _) = app
            .call(
                Method::POST,
                "/api/v1/service_accounts",
                Some(token),
                Some(json!({"name": "sneaky"})),
            )
            .await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let response = app
        .http
        .get(app.at("/api/v1/current-user"))
        .header("authorization", "Basic YWRtaW46eA==")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        service_account_names(&app, &admin).await?,
        Vec::<String>::new()
    );
    Ok(())
}

#[tokio::test]
async fn the_token_endpoint_answers_in_rfc_6749_form() -> anyhow::Result<()> {
    let app = InProcApp::spawn().await?;
    let response = app.password_grant("admin", "wrong-password").await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"].is_string());

    let response = app
        .password_grant("no-such-user", "whatever-password")
        .await?;
    let body: Value = response.json().await?;
    assert_eq!(
        body["error"], "invalid_grant",
        "unknown users look like wrong passwords"
    );

    let response = app
        .http
        .post(app.at("/oauth/token"))
        .form(&[("grant_type", "magic")])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<Value>().await?["error"],
        "unsupported_grant_type"
    );
    let response = app
        .http
        .post(app.at("/oauth/token"))
        .form(&[("grant_type", "password"), ("username", "admin")])
        .send()
        .await?;
    assert_eq!(response.json::<Value>().await?["error"], "invalid_request");
    let response = app
        .http
        .post(app.at("/oauth/token"))
        .json(&json!({"grant_type": "password"}))
        .send()
        .await?;
    assert_eq!(response.json::<Value>().await?["error"], "invalid_request");
    Ok(())
}

#[tokio::test]
async fn repeated_failed_logins_from_one_address_are_slowed_down() -> anyhow::Result<()> {
    let app = InProcApp::spawn().await?;
    let mut limited = None;
    for attempt in 0..12 {
        let response = app.password_grant("admin", "wrong-password").await?;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry_after: u64 = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            limited = Some((attempt, retry_after));
            break;
        }
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    let (attempt, retry_after) = limited.ok_or_else(|| anyhow::anyhow!("never limited"))?;
    assert!(
        attempt >= 5,
        "the first failures are answered normally (limited at {attempt})"
    );
    assert!(retry_after >= 1);
    // While limited, even the right password is refused.
    assert_eq!(
        app.password_grant("admin", gatehouse_e2e::ADMIN_PASSWORD)
            .await?
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    Ok(())
}
