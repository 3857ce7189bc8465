use std::time::{Duration, Instant};

use gatehouse_e2e::{TestApp, call};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn refused_within(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let (status, _) = call(
            http,
            url,
            Method::GET,
            "/api/v1/current-user",
            Some(token),
            None,
        )
        .await?;
        if status == StatusCode::UNAUTHORIZED {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "{url} still accepts the revoked token after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn deactivating_a_user_revokes_its_tokens_on_every_gateway_replica() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let replica = app.replica().await?;
    let admin = app.admin_token().await?;
    let bob = app.user_with_token(&admin, "bob", "member").await?;

    // Accepted by both before. (The replica may need a moment to see bob's creation.)
    let (status, _) = app
        .call(Method::GET, "/api/v1/current-user", Some(&bob), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = call(
            &app.http,
            &replica.url,
            Method::GET,
            "/api/v1/current-user",
            Some(&bob),
            None,
        )
        .await?;
        if status == StatusCode::OK {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the replica never accepted bob's token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/v1/users/bob",
            Some(&admin),
            Some(json!({"active": false})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    // The replica that served the command refuses at once; the other within milliseconds.
    let (status, _) = app
        .call(Method::GET, "/api/v1/current-user", Some(&bob), None)
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let took = refused_within(&app.http, &replica.url, &bob, Duration::from_secs(2)).await?;
    eprintln!("revocation reached the second replica in {took:?}");

    // Reactivation does not resurrect old tokens, but allows new logins.
    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/v1/users/bob",
            Some(&admin),
            Some(json!({"active": true})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call(Method::GET, "/api/v1/current-user", Some(&bob), None)
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let fresh = app.token("bob", "bob-password").await?;
    let (status, _) = app
        .call(Method::GET, "/api/v1/current-user", Some(&fresh), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn a_deactivated_user_cannot_log_in() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    app.user_with_token(&admin, "carol", "member").await?;
    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/v1/users/carol",
            Some(&admin),
            Some(json!({"active": false})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.password_grant("carol", "carol-password")
            .await?
            .status(),
        StatusCode::BAD_REQUEST
    );
    Ok(())
}
