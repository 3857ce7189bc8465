//! The deployment `docker compose up` and `k8s/` run: each service in its own process
//! (`gatehouse-identity`, `gatehouse-keys`, `gatehouse-devices`, each its own NATS user,
//! each hosted by the shared service host) behind `gatehouse-gateway`, which only reads
//! the log and sends commands.

use reqwest::{Method, StatusCode};
use serde_json::json;

use gatehouse_e2e::TestApp;

#[tokio::test]
async fn every_service_answers_from_its_own_process() -> anyhow::Result<()> {
    let app = TestApp::spawn_split(&[]).await?;
    // Identity: the gateway asked it for the first signing key and bootstrapped the admin.
    let admin = app.admin_token().await?;
    let (status, keyring) = app
        .call(Method::GET, "/api/v1/signing-keys", Some(&admin), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{keyring}");
    assert_eq!(
        keyring["items"].as_array().map(Vec::len),
        Some(1),
        "{keyring}"
    );
    let account = app.create_service_account(&admin, "split-ci").await?;
    let id = account["id"].as_str().unwrap_or_default().to_owned();

    // Keys: a key is created, then exchanged for a token the gateway verifies.
    let (status, created) = app
        .call(
            Method::POST,
            &format!("/api/v1/service_accounts/{id}/api_keys"),
            Some(&admin),
            Some(json!({ "name": "ci" })),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap_or_default();
    let (status, token) = app.exchange_api_key(key).await?;
    assert_eq!(status, StatusCode::OK, "{token}");

    // Devices: a device authorization is issued.
    let response = app
        .http
        .post(app.at("/oauth/device_authorization"))
        .form(&[("client_id", "gatehouse-cli")])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);

    // Identity again, as an admin command: a signing key is added through the service.
    let (status, added) = app
        .call(
            Method::POST,
            "/api/v1/signing-keys",
            Some(&admin),
            Some(json!({ "activate_in_seconds": 0 })),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["status"], "signing", "{added}");
    for binary in ["gatehouse-identity", "gatehouse-keys", "gatehouse-devices"] {
        assert!(
            app.service_log(binary).contains(&format!("{binary} ready")),
            "{binary}: {}",
            app.service_log(binary)
        );
    }
    Ok(())
}
