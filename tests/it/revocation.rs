use std::time::{Duration, Instant};

use gatehouse_e2e::{TestApp, call};
use reqwest::{Method, StatusCode};
use serde_json::json;

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
    // The command returns only once every live replica enforces it: both refuse on the
    // very first request after it.
    let (status, _) = app
        .call(Method::GET, "/api/v1/current-user", Some(&bob), None)
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &app.http,
        &replica.url,
        Method::GET,
        "/api/v1/current-user",
        Some(&bob),
        None,
    )
    .await?;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the second replica still accepted the token after the deactivation returned"
    );

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

#[tokio::test]
async fn a_replica_that_dies_holds_writes_up_for_two_seconds_at_most() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    let replica = app.replica().await?;
    // Killed without a goodbye: the others keep waiting for it until it has been silent
    // for three seconds, but never more than two seconds per write.
    drop(replica);
    let started = Instant::now();
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/service_accounts",
            Some(&admin),
            Some(json!({"name": "after-the-crash"})),
        )
        .await?;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        took < Duration::from_secs(4),
        "a write waited {took:?} for a dead replica"
    );
    // Once it has been silent long enough, writes stop waiting for it altogether.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let started = Instant::now();
    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/v1/service_accounts/after-the-crash",
            Some(&admin),
            Some(json!({"active": false})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a write still waited {:?} for a replica gone for seconds",
        started.elapsed()
    );
    Ok(())
}

fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

#[tokio::test]
async fn a_deactivation_returns_only_once_a_lagging_replica_enforces_it() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let replica = app.replica().await?;
    let admin = app.admin_token().await?;
    let dave = app.user_with_token(&admin, "dave", "member").await?;
    let (status, _) = call(
        &app.http,
        &replica.url,
        Method::GET,
        "/api/v1/current-user",
        Some(&dave),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK);

    // Freeze the replica for half a second: the deactivation must wait for it, because
    // a command that returned while a replica still accepted the token would be a lie.
    let pid = replica.pid().expect("the replica runs");
    signal(pid, "STOP")?;
    let thaw = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        signal(pid, "CONT")
    });
    let started = Instant::now();
    let patched = app
        .call(
            Method::PATCH,
            "/api/v1/users/dave",
            Some(&admin),
            Some(json!({"active": false})),
        )
        .await;
    let took = started.elapsed();
    thaw.await??;
    let (status, _) = patched?;
    assert_eq!(status, StatusCode::OK);
    assert!(
        took >= Duration::from_millis(450),
        "the deactivation returned after {took:?}, before the frozen replica applied it"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let (status, _) = call(
        &app.http,
        &replica.url,
        Method::GET,
        "/api/v1/current-user",
        Some(&dave),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    Ok(())
}
