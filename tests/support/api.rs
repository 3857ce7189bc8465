//! A client of one gateway's REST and OAuth API with a helper per endpoint, shared by the
//! in-process app ([`crate::inproc::InProcApp`]) and the spawned binaries
//! ([`crate::TestApp`]): both dereference to an [`Api`], so a test reads the same against
//! either and moving it from one to the other is a change of its first line.

use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The admin password every test app starts with.
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// The grant type of the API-key exchange.
pub const API_KEY_GRANT: &str = "urn:gatehouse:params:oauth:grant-type:api-key";

/// The grant type of RFC 8628.
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The client id the device-flow helpers send.
pub const DEVICE_CLIENT: &str = "gatehouse-cli";

/// A gateway's base URL and an HTTP client for it.
#[derive(Debug, Clone)]
pub struct Api {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// HTTP client.
    pub http: reqwest::Client,
}

/// `/api/v1/service_accounts/{account}/api_keys`.
pub fn keys_path(account: &str) -> String {
    format!("/api/v1/service_accounts/{account}/api_keys")
}

/// `/api/v1/service_accounts/{account}/api_keys/{key}`.
pub fn key_path(account: &str, key: &str) -> String {
    format!("/api/v1/service_accounts/{account}/api_keys/{key}")
}

impl Api {
    /// A client of the gateway at `url` (30 s timeout per request).
    pub fn new(url: String) -> anyhow::Result<Api> {
        Ok(Api {
            url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    /// The same client pointed at another gateway (a replica).
    pub fn at_url(&self, url: &str) -> Api {
        Api {
            url: url.to_owned(),
            http: self.http.clone(),
        }
    }

    /// A full URL for `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    /// Sends a JSON request with a bearer token; returns status and body (JSON or null).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        call(&self.http, &self.url, method, path, token, body).await
    }

    // ------------------------------------------------------------------------ OAuth

    /// `POST /oauth/token` with the password grant.
    pub async fn password_grant(
        &self,
        username: &str,
        password: &str,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(self.at("/oauth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .send()
            .await?)
    }

    /// Logs in and returns the access token.
    pub async fn token(&self, username: &str, password: &str) -> anyhow::Result<String> {
        let response = self.password_grant(username, password).await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if status != StatusCode::OK {
            bail!("login as {username} failed: {status} {body}");
        }
        access_token(&body)
    }

    /// The admin's token.
    pub async fn admin_token(&self) -> anyhow::Result<String> {
        self.token("admin", ADMIN_PASSWORD).await
    }

    /// `POST /oauth/token` with the API-key grant; status and body (null when not JSON).
    pub async fn exchange_api_key(&self, key: &str) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .http
            .post(self.at("/oauth/token"))
            .form(&[("grant_type", API_KEY_GRANT), ("api_key", key)])
            .send()
            .await?;
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Exchanges `key` and returns the access token (fails unless 200).
    pub async fn api_key_token(&self, key: &str) -> anyhow::Result<String> {
        let (status, body) = self.exchange_api_key(key).await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "exchanging a key: {status} {body}"
        );
        access_token(&body)
    }

    /// `POST /oauth/device_authorization` for [`DEVICE_CLIENT`] on a `build-box`; the
    /// RFC 8628 answer (fails unless 200).
    pub async fn device_authorization(&self) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(self.at("/oauth/device_authorization"))
            .form(&[
                ("client_id", DEVICE_CLIENT),
                ("hostname", "build-box"),
                ("os", "linux x86_64"),
                ("client_version", "0.1.0"),
            ])
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == StatusCode::OK,
            "{}",
            response.text().await?
        );
        Ok(response.json().await?)
    }

    /// `POST /oauth/token` with the device-code grant (one poll): status and body.
    pub async fn device_token(&self, device_code: &str) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .http
            .post(self.at("/oauth/token"))
            .form(&[
                ("grant_type", DEVICE_GRANT),
                ("device_code", device_code),
                ("client_id", DEVICE_CLIENT),
            ])
            .send()
            .await?;
        Ok((response.status(), response.json().await?))
    }

    /// `POST /api/v1/devices/verify` as `token` (approve or deny a user code).
    pub async fn verify_device(
        &self,
        token: &str,
        body: Value,
    ) -> anyhow::Result<(StatusCode, Value)> {
        self.call(
            Method::POST,
            "/api/v1/devices/verify",
            Some(token),
            Some(body),
        )
        .await
    }

    // ------------------------------------------------------------------------ REST

    /// `GET /api/v1/current-user` with `credential` (a token or an API key).
    pub async fn current_user(&self, credential: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.call(Method::GET, "/api/v1/current-user", Some(credential), None)
            .await
    }

    /// Creates a user (as admin) and returns its token.
    pub async fn user_with_token(
        &self,
        admin: &str,
        name: &str,
        role: &str,
    ) -> anyhow::Result<String> {
        let password = format!("{name}-password");
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/users",
                Some(admin),
                Some(json!({"name": name, "password": password, "role": role})),
            )
            .await?;
        if status != StatusCode::CREATED {
            bail!("creating user {name}: {status} {body}");
        }
        self.token(name, &password).await
    }

    /// Creates service account `name` as `token` (fails unless 201); the account.
    pub async fn create_service_account(&self, token: &str, name: &str) -> anyhow::Result<Value> {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/service_accounts",
                Some(token),
                Some(json!({ "name": name })),
            )
            .await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "creating service account {name}: {status} {body}"
        );
        Ok(body)
    }

    /// Creates an API key of `account` (fails unless 201); the response and the key.
    pub async fn create_api_key(
        &self,
        token: &str,
        account: &str,
        body: Value,
    ) -> anyhow::Result<(Value, String)> {
        let (status, created) = self
            .call(Method::POST, &keys_path(account), Some(token), Some(body))
            .await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "creating a key: {status} {created}"
        );
        let key = created["key"]
            .as_str()
            .context("the create response has no key")?
            .to_owned();
        Ok((created, key))
    }

    /// Rotates a key (fails unless 200); the response and the new key.
    pub async fn rotate_api_key(
        &self,
        token: &str,
        account: &str,
        key: &str,
        body: Value,
    ) -> anyhow::Result<(Value, String)> {
        let (status, rotated) = self
            .call(
                Method::POST,
                &format!("{}/rotate", key_path(account, key)),
                Some(token),
                Some(body),
            )
            .await?;
        anyhow::ensure!(status == StatusCode::OK, "rotating: {status} {rotated}");
        let new_key = rotated["key"]
            .as_str()
            .context("the rotate response has no key")?
            .to_owned();
        Ok((rotated, new_key))
    }

    /// `PATCH`es a key (fails unless 200); the key as updated.
    pub async fn patch_api_key(
        &self,
        token: &str,
        account: &str,
        key: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let (status, updated) = self
            .call(
                Method::PATCH,
                &key_path(account, key),
                Some(token),
                Some(body.clone()),
            )
            .await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "PATCH {body} on key {key}: {status} {updated}"
        );
        Ok(updated)
    }

    /// `GET`s a key (fails unless 200).
    pub async fn describe_api_key(
        &self,
        token: &str,
        account: &str,
        key: &str,
    ) -> anyhow::Result<Value> {
        let (status, body) = self
            .call(Method::GET, &key_path(account, key), Some(token), None)
            .await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "describing {key}: {status} {body}"
        );
        Ok(body)
    }
}

fn access_token(body: &Value) -> anyhow::Result<String> {
    Ok(body["access_token"]
        .as_str()
        .context("no access_token")?
        .to_owned())
}

/// Sends a request to `base` and returns status and JSON body (null when empty).
pub async fn call(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let mut request = http.request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let bytes = response.bytes().await?;
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok((status, value))
}
