use gatehouse_e2e::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_restart_loses_nothing() -> anyhow::Result<()> {
    let mut app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    for i in 0..20 {
        let (status, _) = app
            .call(
                Method::POST,
                "/api/v1/service_accounts",
                Some(&admin),
                Some(json!({"name": format!("sa-{i}")})),
            )
            .await?;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, _) = app
        .call(
            Method::PATCH,
            "/api/v1/service_accounts/sa-3",
            Some(&admin),
            Some(json!({"active": false})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (_, before) = app
        .call(
            Method::GET,
            "/api/v1/service_accounts?size=100",
            Some(&admin),
            None,
        )
        .await?;

    app.stop().await?;
    app.start().await?;

    // The old token still works (the signing key persisted), and everything is there.
    let (status, after) = app
        .call(
            Method::GET,
            "/api/v1/service_accounts?size=100",
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{after}\n{}", app.log());
    assert_eq!(before, after);
    assert_eq!(after["total"], 20);
    // Names are still taken, and the admin was not bootstrapped twice.
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/service_accounts",
            Some(&admin),
            Some(json!({"name": "sa-0"})),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, users) = app
        .call(Method::GET, "/api/v1/users", Some(&admin), None)
        .await?;
    assert_eq!(users["total"], 1);
    Ok(())
}
