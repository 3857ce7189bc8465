//! `gatehouse dev`, the README's first command: starts with nothing installed, prints the
//! generated admin password once, and serves the same API in memory.

use std::process::Stdio;
use std::time::{Duration, Instant};

use gatehouse_e2e::{call, workspace_bin};
use gatehouse_testsupport::free_port;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn gatehouse_dev_prints_the_admin_password_once_and_serves_the_api() -> anyhow::Result<()> {
    let port = free_port()?;
    let mut child = tokio::process::Command::new(workspace_bin("gatehouse")?)
        .arg("dev")
        .env("GATEHOUSE_BIND", format!("127.0.0.1:{port}"))
        .env_remove("GATEHOUSE_ADMIN_PASSWORD")
        .env_remove("GATEHOUSE_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut password = None;
    while password.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, lines.next_line())
            .await??
            .ok_or_else(|| anyhow::anyhow!("dev exited"))?;
        if let Some(rest) = line.trim().strip_prefix("Password:") {
            password = rest.split_whitespace().next().map(str::to_owned);
        }
    }
    let password = password.unwrap_or_default();
    assert!(
        password.len() >= 20,
        "a generated password is long: {password:?}"
    );

    let url = format!("http://127.0.0.1:{port}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{url}/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", password.as_str()),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let token: serde_json::Value = response.json().await?;
    let token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let (status, created) = call(
        &http,
        &url,
        Method::POST,
        "/api/v1/service_accounts",
        Some(&token),
        Some(json!({"name": "ci-bot"})),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, list) = call(
        &http,
        &url,
        Method::GET,
        "/api/v1/service_accounts",
        Some(&token),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    let (status, _) = call(
        &http,
        &url,
        Method::PATCH,
        "/api/v1/service_accounts/ci-bot",
        Some(&token),
        Some(json!({"active": false})),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, health) = call(&http, &url, Method::GET, "/readyz", None, None).await?;
    assert_eq!(status, StatusCode::OK, "{health}");
    Ok(())
}
