//! Device login (RFC 8628) driven by a standard OAuth client library that knows nothing of
//! Gatehouse: the `oauth2` crate requests the authorization, parses the RFC 8628 §3.2
//! answer, and polls the token endpoint on its own schedule while a person approves or
//! denies over REST. The library gets only a client id and the two endpoint URLs, read from
//! the server's RFC 8414 metadata; its HTTP transport is the suite's reqwest (no second HTTP
//! stack), wrapped to record each exchange so that the test can see what the library saw.
//! Against the in-process app: what is tested is the gateway's OAuth answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_e2e::{Api, InProcApp};
use oauth2::basic::{BasicClient, BasicTokenType};
use oauth2::{
    ClientId, DeviceAuthorizationUrl, DeviceCodeErrorResponseType, EndpointNotSet, EndpointSet,
    HttpRequest, HttpResponse, RequestTokenError, StandardDeviceAuthorizationResponse,
    TokenResponse, TokenUrl,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A client id Gatehouse has never heard of.
const CLIENT: &str = "some-standard-client";
/// The grant type of RFC 8628, as RFC 8414 metadata lists it.
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How long the library may poll before it gives up on its own.
const POLL_TIMEOUT: Duration = Duration::from_secs(12);

/// One HTTP exchange the library made.
#[derive(Debug, Clone)]
struct Exchange {
    at: Instant,
    path: String,
    request_body: String,
    status: u16,
    content_type: String,
    cache_control: String,
    body: String,
}

impl Exchange {
    /// The OAuth `error` of the answer, if it is an RFC 6749 error body.
    fn oauth_error(&self) -> Option<String> {
        serde_json::from_str::<Value>(&self.body)
            .ok()?
            .get("error")?
            .as_str()
            .map(str::to_owned)
    }
}

type Recorded = Arc<Mutex<Vec<Exchange>>>;

/// A client with a device authorization endpoint and a token endpoint, nothing else.
type StandardClient =
    BasicClient<EndpointNotSet, EndpointSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn recorded(log: &Recorded) -> Vec<Exchange> {
    log.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The library's HTTP transport: its `http::Request` sent with reqwest, the answer handed
/// back as an `http::Response`, untouched. Every exchange is recorded.
async fn send(
    http: reqwest::Client,
    log: Recorded,
    request: HttpRequest,
) -> Result<HttpResponse, std::io::Error> {
    let path = request.uri().path().to_owned();
    let request_body = String::from_utf8_lossy(request.body()).into_owned();
    let request = reqwest::Request::try_from(request).map_err(std::io::Error::other)?;
    let response = http.execute(request).await.map_err(std::io::Error::other)?;
    let mut builder = oauth2::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = response
        .bytes()
        .await
        .map_err(std::io::Error::other)?
        .to_vec();
    let response = builder.body(body).map_err(std::io::Error::other)?;
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Exchange {
            at: Instant::now(),
            path,
            request_body,
            status: response.status().as_u16(),
            content_type: header(&response, oauth2::http::header::CONTENT_TYPE),
            cache_control: header(&response, oauth2::http::header::CACHE_CONTROL),
            body: String::from_utf8_lossy(response.body()).into_owned(),
        });
    Ok(response)
}

fn header(response: &HttpResponse, name: oauth2::http::HeaderName) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Starts the flow with the library, checks what it parsed, and returns the parsed answer.
async fn start(
    app: &Api,
    client: &StandardClient,
    http_client: &impl Fn(HttpRequest) -> BoxedSend,
    log: &Recorded,
) -> anyhow::Result<StandardDeviceAuthorizationResponse> {
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .request_async(http_client)
        .await
        .map_err(|e| anyhow::anyhow!("device authorization: {e:?}; exchanges: {log:?}"))?;
    let user_code = details.user_code().secret().clone();
    let complete = details
        .verification_uri_complete()
        .map(|c| c.secret().clone());
    println!(
        "the library parsed: user_code={user_code} verification_uri={} \
         verification_uri_complete={complete:?} expires_in={:?} interval={:?}",
        details.verification_uri().as_str(),
        details.expires_in(),
        details.interval(),
    );

    // What the library sent: the client id and nothing Gatehouse-specific.
    let sent = recorded(log);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].path, "/oauth/device_authorization");
    assert_eq!(sent[0].request_body, format!("client_id={CLIENT}"));
    assert!(
        sent[0].content_type.starts_with("application/json"),
        "{:?}",
        sent[0]
    );

    assert!(
        user_code.len() == 9
            && user_code.chars().nth(4) == Some('-')
            && user_code
                .chars()
                .filter(|c| *c != '-')
                .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c)),
        "{user_code}"
    );
    assert_eq!(details.verification_uri().as_str(), app.at("/device"));
    assert_eq!(
        details.verification_uri().url().as_str(),
        app.at("/device"),
        "the verification URI parses as a URL"
    );
    assert_eq!(
        complete.as_deref(),
        Some(app.at(&format!("/device?user_code={user_code}")).as_str())
    );
    // The default lifetime (10 minutes), rounded up by the server; the interval configured.
    let expires_in = details.expires_in().as_secs();
    assert!((590..=600).contains(&expires_in), "{expires_in}");
    assert_eq!(details.interval(), Duration::from_secs(1));
    Ok(details)
}

type BoxedSend =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<HttpResponse, std::io::Error>>>>;

/// The library's HTTP client over the app's reqwest client, recording into `log`.
fn http_client(app: &Api, log: &Recorded) -> impl Fn(HttpRequest) -> BoxedSend + use<> {
    let http = app.http.clone();
    let log = Arc::clone(log);
    move |request: HttpRequest| -> BoxedSend {
        Box::pin(send(http.clone(), Arc::clone(&log), request))
    }
}

/// A standard client configured the way an integrator would, from the server's RFC 8414
/// metadata: its device authorization endpoint and its token endpoint, nothing else.
async fn standard_client(app: &Api) -> anyhow::Result<StandardClient> {
    let (status, metadata) = app
        .call(
            Method::GET,
            "/.well-known/oauth-authorization-server",
            None,
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{metadata}");
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .is_some_and(|g| g.contains(&json!(DEVICE_GRANT))),
        "{metadata}"
    );
    let endpoint = |name: &str| -> anyhow::Result<String> {
        metadata[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no {name} in {metadata}"))
    };
    Ok(BasicClient::new(ClientId::new(CLIENT.to_owned()))
        .set_device_authorization_url(DeviceAuthorizationUrl::new(endpoint(
            "device_authorization_endpoint",
        )?)?)
        .set_token_uri(TokenUrl::new(endpoint("token_endpoint")?)?))
}

/// Waits until the library has been told `authorization_pending` at least once.
async fn until_pending_seen(log: &Recorded) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        if recorded(log)
            .iter()
            .any(|e| e.oauth_error().as_deref() == Some("authorization_pending"))
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the library never saw authorization_pending: {:?}",
            recorded(log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The token-endpoint exchanges: every answer before the last must be
/// `authorization_pending` (the library kept to the interval, so never `slow_down`), each
/// with the RFC 6749 §5.2 error body as JSON and status 400.
fn check_polls(log: &Recorded) -> Vec<Exchange> {
    let polls: Vec<Exchange> = recorded(log)
        .into_iter()
        .filter(|e| e.path == "/oauth/token")
        .collect();
    assert!(polls.len() >= 2, "{polls:?}");
    for poll in &polls {
        assert!(
            poll.request_body
                .contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code")
                && poll.request_body.contains(&format!("client_id={CLIENT}")),
            "{poll:?}"
        );
    }
    let Some((last, pending)) = polls.split_last() else {
        panic!("no polls")
    };
    assert!(!pending.is_empty(), "{polls:?}");
    for poll in pending {
        assert_eq!(poll.status, 400, "{poll:?}");
        assert!(
            poll.content_type.starts_with("application/json"),
            "{poll:?}"
        );
        assert_eq!(
            poll.oauth_error().as_deref(),
            Some("authorization_pending"),
            "{poll:?}"
        );
    }
    for pair in polls.windows(2) {
        assert!(
            pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(900),
            "the library polled faster than the interval: {pair:?}"
        );
    }
    println!(
        "the library polled {} times: {} x authorization_pending, then {} {}",
        polls.len(),
        pending.len(),
        last.status,
        last.oauth_error().unwrap_or_default()
    );
    polls
}

#[tokio::test]
async fn a_standard_oauth_client_logs_in_with_the_device_flow() -> anyhow::Result<()> {
    let app = InProcApp::spawn_with(&[("GATEHOUSE_DEVICE_POLL_INTERVAL", "1")]).await?;
    let admin = app.admin_token().await?;
    let alice = app.user_with_token(&admin, "alice", "member").await?;

    let log: Recorded = Arc::default();
    let client = standard_client(&app).await?;
    let http_client = http_client(&app, &log);
    let details = start(&app, &client, &http_client, &log).await?;
    let user_code = details.user_code().secret().clone();

    // The library polls while the person approves from a terminal, once the library has
    // been told to wait at least once.
    let polling = client.exchange_device_access_token(&details).request_async(
        &http_client,
        tokio::time::sleep,
        Some(POLL_TIMEOUT),
    );
    let approving = async {
        until_pending_seen(&log).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.call(
            Method::POST,
            "/api/v1/devices/verify",
            Some(&alice),
            Some(json!({"user_code": user_code, "trusted_device": false})),
        )
        .await
    };
    let (token, approved) = tokio::join!(polling, approving);
    let (status, device) = approved?;
    assert_eq!(status, StatusCode::OK, "{device}");
    assert_eq!(device["status"], "verified", "{device}");
    assert_eq!(device["owner"], "alice", "{device}");
    assert_eq!(device["client_id"], CLIENT, "{device}");
    let token = token.map_err(|e| {
        anyhow::anyhow!(
            "the library did not get a token: {e:?}; exchanges: {:?}",
            recorded(&log)
        )
    })?;

    let polls = check_polls(&log);
    let Some(last) = polls.last() else {
        panic!("no polls")
    };
    assert_eq!(last.status, 200, "{last:?}");
    assert!(
        last.content_type.starts_with("application/json"),
        "{last:?}"
    );
    // RFC 6749 §5.1: a response carrying a token must not be cached.
    assert!(last.cache_control.contains("no-store"), "{last:?}");

    assert_eq!(token.token_type(), &BasicTokenType::Bearer);
    let expires_in = token.expires_in().unwrap_or_default().as_secs();
    assert!(
        (86_400 - 60..=86_400).contains(&expires_in),
        "an untrusted device's token lives 24 h: {expires_in}"
    );
    assert!(token.refresh_token().is_none());
    println!(
        "the library got a {:?} token valid {expires_in} s",
        token.token_type()
    );

    let (status, me) = app
        .call(
            Method::GET,
            "/api/v1/current-user",
            Some(token.access_token().secret()),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "alice", "{me}");
    assert_eq!(me["kind"], "user", "{me}");

    // Alice sees the device the standard client became: active, not trusted, no metadata.
    let (status, list) = app
        .call(Method::GET, "/api/v1/devices", Some(&alice), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 1, "{list}");
    let listed = &list["items"][0];
    assert_eq!(listed["status"], "active", "{listed}");
    assert_eq!(listed["trusted"], false, "{listed}");
    assert_eq!(listed["client_id"], CLIENT, "{listed}");
    Ok(())
}

#[tokio::test]
async fn a_standard_oauth_client_is_told_access_denied() -> anyhow::Result<()> {
    let app = InProcApp::spawn_with(&[("GATEHOUSE_DEVICE_POLL_INTERVAL", "1")]).await?;
    let admin = app.admin_token().await?;
    let alice = app.user_with_token(&admin, "alice", "member").await?;

    let log: Recorded = Arc::default();
    let client = standard_client(&app).await?;
    let http_client = http_client(&app, &log);
    let details = start(&app, &client, &http_client, &log).await?;
    let user_code = details.user_code().secret().clone();

    let polling = client.exchange_device_access_token(&details).request_async(
        &http_client,
        tokio::time::sleep,
        Some(POLL_TIMEOUT),
    );
    let denying = async {
        until_pending_seen(&log).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.call(
            Method::POST,
            "/api/v1/devices/verify",
            Some(&alice),
            Some(json!({"user_code": user_code, "deny": true})),
        )
        .await
    };
    let (result, denied) = tokio::join!(polling, denying);
    let (status, device) = denied?;
    assert_eq!(status, StatusCode::OK, "{device}");
    assert_eq!(device["status"], "denied", "{device}");

    match result {
        Err(RequestTokenError::ServerResponse(error)) => {
            assert_eq!(
                error.error(),
                &DeviceCodeErrorResponseType::AccessDenied,
                "{error:?}"
            );
            println!("the library returned its access-denied error: {error}");
        }
        Err(other) => panic!(
            "expected access_denied, got {other:?}; exchanges: {:?}",
            recorded(&log)
        ),
        Ok(token) => panic!("a denied device got a token: {token:?}"),
    }

    let polls = check_polls(&log);
    let Some(last) = polls.last() else {
        panic!("no polls")
    };
    assert_eq!(last.status, 400, "{last:?}");
    assert!(
        last.content_type.starts_with("application/json"),
        "{last:?}"
    );
    assert_eq!(
        last.oauth_error().as_deref(),
        Some("access_denied"),
        "{last:?}"
    );
    Ok(())
}
