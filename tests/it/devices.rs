//! Device login (RFC 8628): the device side with plain form posts; the person's side with
//! `POST /api/v1/devices/verify` (against the in-process app), and on the `/device` page in
//! headless Chromium, across replicas and from the CLI (against the real binaries).

use std::time::Duration;

use anyhow::Context;
use gatehouse_e2e::api::{DEVICE_CLIENT as CLIENT, DEVICE_GRANT};
use gatehouse_e2e::browser::Browser;
use gatehouse_e2e::{Api, InProcApp, TestApp, call, claims};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// An app whose devices may poll every second and whose authorizations lapse after
/// `ttl` seconds.
async fn app(ttl: &str) -> anyhow::Result<TestApp> {
    TestApp::spawn_with(&fast_polls(ttl)).await
}

/// The same, in process.
async fn inproc(ttl: &str) -> anyhow::Result<InProcApp> {
    InProcApp::spawn_with(&fast_polls(ttl)).await
}

fn fast_polls(ttl: &str) -> [(&'static str, &str); 2] {
    [
        ("GATEHOUSE_DEVICE_POLL_INTERVAL", "1"),
        ("GATEHOUSE_DEVICE_AUTHORIZATION_TTL", ttl),
    ]
}

/// Runs the flow for a user: authorize, approve, wait out the interval, redeem.
async fn logged_in_device(
    app: &Api,
    user_token: &str,
    trusted: bool,
) -> anyhow::Result<(String, String)> {
    let started = app.device_authorization().await?;
    let code = started["user_code"].as_str().unwrap_or_default();
    let (status, device) = app
        .verify_device(
            user_token,
            json!({"user_code": code, "trusted_device": trusted}),
        )
        .await?;
    anyhow::ensure!(status == StatusCode::OK, "verify: {status} {device}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = app
        .device_token(started["device_code"].as_str().unwrap_or_default())
        .await?;
    anyhow::ensure!(status == StatusCode::OK, "redeem: {status} {body}");
    Ok((
        device["id"].as_str().unwrap_or_default().to_owned(),
        body["access_token"].as_str().unwrap_or_default().to_owned(),
    ))
}

#[tokio::test]
async fn a_device_approved_as_trusted_gets_a_thirty_day_token() -> anyhow::Result<()> {
    let app = inproc("600").await?;
    let admin = app.admin_token().await?;
    let alice = app.user_with_token(&admin, "alice", "member").await?;

    let started = app.device_authorization().await?;
    let user_code = started["user_code"].as_str().unwrap_or_default().to_owned();
    assert!(
        user_code.len() == 9
            && user_code.chars().nth(4) == Some('-')
            && user_code
                .chars()
                .filter(|c| *c != '-')
                .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c)),
        "{user_code}"
    );
    assert_eq!(started["verification_uri"], app.at("/device"));
    assert_eq!(
        started["verification_uri_complete"],
        app.at(&format!("/device?user_code={user_code}"))
    );
    assert_eq!(started["expires_in"], 600);
    assert_eq!(started["interval"], 1);
    let device_code = started["device_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(device_code.starts_with("gatehouse_dc_"), "{device_code}");

    let (status, body) = app.device_token(&device_code).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "authorization_pending", "{body}");

    // Looking at what is asking decides nothing.
    let (status, shown) = app
        .call(
            Method::POST,
            "/api/v1/devices/lookup",
            Some(&alice),
            Some(json!({"user_code": user_code})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["status"], "pending");
    assert_eq!(shown["hostname"], "build-box");
    assert_eq!(shown["os"], "linux x86_64");
    // Typed the way people type: lower case, no dash.
    let typed = user_code.replace('-', "").to_lowercase();
    let (status, device) = app
        .verify_device(&alice, json!({"user_code": typed, "trusted_device": true}))
        .await?;
    assert_eq!(status, StatusCode::OK, "{device}");
    assert_eq!(device["status"], "verified");
    assert_eq!(device["owner"], "alice");
    assert_eq!(device["hostname"], "build-box");
    assert_eq!(device["ip_address"], "127.0.0.1");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = app.device_token(&device_code).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expires_in = body["expires_in"].as_u64().unwrap_or_default();
    assert!(
        (30 * 86_400 - 60..=30 * 86_400).contains(&expires_in),
        "{expires_in}"
    );
    let token = body["access_token"].as_str().unwrap_or_default();
    let payload = claims(token)?;
    assert_eq!(payload["gh_src"]["method"], "device");
    assert_eq!(payload["gh_src"]["id"], device["id"]);
    let (status, me) = app
        .call(Method::GET, "/api/v1/current-user", Some(token), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["name"], "alice");

    // The code works once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = app.device_token(&device_code).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "{body}");

    let (status, list) = app
        .call(Method::GET, "/api/v1/devices", Some(&alice), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1, "{list}");
    let listed = &list["items"][0];
    assert_eq!(listed["status"], "active");
    assert_eq!(listed["trusted"], true);
    assert!(listed["last_login"].is_string());
    let text = list.to_string();
    assert!(
        !text.contains(&device_code) && !text.contains("hash"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn an_untrusted_device_gets_a_day_and_polling_too_fast_slows_it_down() -> anyhow::Result<()> {
    let app = inproc("600").await?;
    let admin = app.admin_token().await?;
    let started = app.device_authorization().await?;
    let device_code = started["device_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        app.device_token(&device_code).await?.1["error"],
        "authorization_pending"
    );
    // Immediately again: slow_down, and the interval is now 1 + 5 s for good.
    let (status, body) = app.device_token(&device_code).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "slow_down", "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        app.device_token(&device_code).await?.1["error"],
        "slow_down",
        "1.5 s is fine for the old interval, not for the new one"
    );
    let (status, _) = app
        .verify_device(
            &admin,
            json!({"user_code": started["user_code"], "trusted_device": false}),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(11_200)).await;
    let (status, body) = app.device_token(&device_code).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expires_in = body["expires_in"].as_u64().unwrap_or_default();
    assert!((86_400 - 60..=86_400).contains(&expires_in), "{expires_in}");
    Ok(())
}

#[tokio::test]
async fn a_denied_or_lapsed_authorization_gets_its_rfc_error() -> anyhow::Result<()> {
    let app = inproc("3").await?;
    let admin = app.admin_token().await?;
    let denied = app.device_authorization().await?;
    let (status, device) = app
        .verify_device(
            &admin,
            json!({"user_code": denied["user_code"], "deny": true}),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{device}");
    assert_eq!(device["status"], "denied");
    let (status, body) = app
        .device_token(denied["device_code"].as_str().unwrap_or_default())
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "access_denied", "{body}");
    // Deciding again is refused like any unknown code.
    let (status, body) = app
        .verify_device(&admin, json!({"user_code": denied["user_code"]}))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let lapsing = app.device_authorization().await?;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, body) = app
        .device_token(lapsing["device_code"].as_str().unwrap_or_default())
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "expired_token", "{body}");
    let (status, body) = app
        .verify_device(&admin, json!({"user_code": lapsing["user_code"]}))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "invalid_user_code");
    Ok(())
}

#[tokio::test]
async fn a_request_nobody_decided_on_is_swept_after_its_grace_and_forgotten() -> anyhow::Result<()>
{
    let app = InProcApp::spawn_with(&[
        ("GATEHOUSE_DEVICE_POLL_INTERVAL", "1"),
        ("GATEHOUSE_DEVICE_AUTHORIZATION_TTL", "2"),
        ("GATEHOUSE_DEVICE_LAPSE_GRACE_SECONDS", "1"),
        ("GATEHOUSE_DEVICE_LAPSE_SWEEP_SECONDS", "1"),
    ])
    .await?;
    let admin = app.admin_token().await?;
    let undecided = app.device_authorization().await?;
    let approved = app.device_authorization().await?;
    let (status, body) = app
        .verify_device(
            &admin,
            json!({"user_code": approved["user_code"], "trusted_device": false}),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let approved_id = body["id"].as_str().context("no id")?.to_owned();
    let listed = || {
        let (app, admin) = (&app, admin.clone());
        async move {
            let (status, list) = app
                .call(Method::GET, "/api/v1/devices", Some(&admin), None)
                .await?;
            anyhow::ensure!(status == StatusCode::OK, "{list}");
            Ok::<_, anyhow::Error>(list["items"].as_array().cloned().unwrap_or_default())
        }
    };
    let before = listed().await?;
    assert_eq!(before.len(), 2, "{before:?}");
    let undecided_id = before
        .iter()
        .filter_map(|d| d["id"].as_str())
        .find(|id| *id != approved_id)
        .context("the undecided request is listed")?
        .to_owned();

    // Expired after 2 s, recorded as lapsed 1 s later by a sweep that runs every second.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let remaining = loop {
        let items = listed().await?;
        if items.len() < 2 || std::time::Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(remaining.len(), 1, "{remaining:?}");
    assert_eq!(
        remaining[0]["id"],
        approved_id.as_str(),
        "the undecided one went"
    );
    assert_eq!(
        remaining[0]["status"], "expired",
        "approved, never redeemed"
    );
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/api/v1/devices/{undecided_id}"),
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The gateway forgot it too: its code is now simply invalid.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = app
            .device_token(undecided["device_code"].as_str().unwrap_or_default())
            .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        if body["error"] == "invalid_grant" {
            break;
        }
        assert_eq!(body["error"], "expired_token", "{body}");
        assert!(std::time::Instant::now() < deadline, "still remembered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Found by the fuzzer: a client_id the devices service refuses (only control characters,
/// which it strips) is the client's error, 400, not a 503 that tells it to retry.
#[tokio::test]
async fn a_client_id_of_control_characters_is_an_invalid_request() -> anyhow::Result<()> {
    let app = inproc("600").await?;
    let response = app
        .http
        .post(app.at("/oauth/device_authorization"))
        .form(&[("client_id", "\u{1}\u{7}")])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "invalid_request", "{body}");
    Ok(())
}

#[tokio::test]
async fn malformed_forged_and_foreign_device_codes_are_refused() -> anyhow::Result<()> {
    let app = inproc("600").await?;
    let started = app.device_authorization().await?;
    let real = started["device_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for code in [
        "nonsense".to_owned(),
        real[..real.len() - 1].to_owned(),
        format!("{}x", &real[..real.len() - 1]),
    ] {
        let (status, body) = app.device_token(&code).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_grant", "{code}: {body}");
    }
    let response = app
        .http
        .post(app.at("/oauth/token"))
        .form(&[
            ("grant_type", DEVICE_GRANT),
            ("device_code", real.as_str()),
            ("client_id", "another-client"),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await?["error"], "invalid_client");
    let response = app
        .http
        .post(app.at("/oauth/device_authorization"))
        .form(&[("scope", "x")])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.json::<Value>().await?["error"], "invalid_client");
    Ok(())
}

#[tokio::test]
async fn one_address_may_start_only_so_many_authorizations_a_minute() -> anyhow::Result<()> {
    let app = InProcApp::spawn_with(&[("GATEHOUSE_DEVICE_AUTHORIZATIONS_PER_MINUTE", "2")]).await?;
    let admin = app.admin_token().await?;
    let before = app
        .call(Method::GET, "/api/v1/devices", Some(&admin), None)
        .await?;
    app.device_authorization().await?;
    app.device_authorization().await?;
    let response = app
        .http
        .post(app.at("/oauth/device_authorization"))
        .form(&[("client_id", CLIENT)])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .context("no Retry-After")?;
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "slow_down", "{body}");
    // The refused start left nothing behind: two pending devices, not three.
    assert_eq!(before.1["total"], 0, "{}", before.1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let after = loop {
        let (status, after) = app
            .call(Method::GET, "/api/v1/devices", Some(&admin), None)
            .await?;
        assert_eq!(status, StatusCode::OK);
        if after["total"].as_u64() >= Some(2) || std::time::Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(after["total"], 2, "{after}");
    Ok(())
}

#[tokio::test]
async fn wrong_user_codes_are_limited_and_never_say_whether_a_code_exists() -> anyhow::Result<()> {
    let app = inproc("600").await?;
    let admin = app.admin_token().await?;
    let mallory = app.user_with_token(&admin, "mallory", "member").await?;
    let started = app.device_authorization().await?;
    let mut statuses = Vec::new();
    let mut limited = None;
    for n in 0..8 {
        let guess = format!(
            "BCDF-GH{}",
            ["JK", "KJ", "LM", "ML", "NP", "PN", "QR", "RQ"][n]
        );
        let (status, body) = app
            .verify_device(&mallory, json!({"user_code": guess}))
            .await?;
        if status == StatusCode::NOT_FOUND {
            assert_eq!(body["code"], "invalid_user_code", "{body}");
        } else {
            limited.get_or_insert(body);
        }
        statuses.push(status.as_u16());
    }
    // Five wrong codes in ten minutes, then none until the first leaves the window.
    assert_eq!(statuses, [404, 404, 404, 404, 404, 429, 429, 429]);
    let limited = limited.unwrap_or_default();
    assert_eq!(limited["message"], "too many wrong codes", "{limited}");
    // Being limited holds for the real code too: the count is per person, not per code.
    let (status, _) = app
        .verify_device(&mallory, json!({"user_code": started["user_code"]}))
        .await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // The page counts for the same person: limited there too, saying for how long.
    let response = app
        .http
        .get(app.at("/device?user_code=BCDF-GHST"))
        .header("cookie", format!("gh_device_session={mallory}"))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
    let html = response.text().await?;
    assert!(
        html.contains("too many wrong codes: try again in"),
        "{html}"
    );
    // Malformed codes get the same answer as well-formed wrong ones.
    let (status, body) = app
        .verify_device(&admin, json!({"user_code": "AEIOU"}))
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The limit is mallory's: the real code still works for someone else.
    let (status, _) = app
        .verify_device(&admin, json!({"user_code": started["user_code"]}))
        .await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn lock_unlock_and_delete_take_effect_on_every_replica_at_once() -> anyhow::Result<()> {
    let app = app("600").await?;
    let replica = app.replica().await?;
    let admin = app.admin_token().await?;
    let alice = app.user_with_token(&admin, "alice", "member").await?;
    let (id, token) = logged_in_device(&app, &alice, false).await?;
    let status_on = |base: String| {
        let http = app.http.clone();
        let token = token.clone();
        async move {
            call(
                &http,
                &base,
                Method::GET,
                "/api/v1/current-user",
                Some(&token),
                None,
            )
            .await
        }
    };
    for base in [app.url.clone(), replica.url.clone()] {
        assert_eq!(status_on(base).await?.0, StatusCode::OK);
    }

    let (status, device) = app
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/lock"),
            Some(&alice),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{device}");
    assert_eq!(device["status"], "locked");
    for base in [app.url.clone(), replica.url.clone()] {
        let (status, body) = status_on(base.clone()).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{base}: {body}");
        assert_eq!(body["code"], "device_locked", "{body}");
    }

    let (status, device) = app
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/unlock"),
            Some(&alice),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{device}");
    assert_eq!(device["status"], "active");
    for base in [app.url.clone(), replica.url.clone()] {
        assert_eq!(
            status_on(base).await?.0,
            StatusCode::OK,
            "the same token works again"
        );
    }

    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/devices/{id}"),
            Some(&alice),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for base in [app.url.clone(), replica.url.clone()] {
        assert_eq!(status_on(base).await?.0, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/api/v1/devices/{id}"),
            Some(&alice),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn another_user_can_neither_see_nor_touch_my_device() -> anyhow::Result<()> {
    let app = inproc("600").await?;
    let admin = app.admin_token().await?;
    let alice = app.user_with_token(&admin, "alice", "member").await?;
    let bob = app.user_with_token(&admin, "bob", "member").await?;
    let (id, token) = logged_in_device(&app, &alice, true).await?;
    let (status, list) = app
        .call(Method::GET, "/api/v1/devices", Some(&bob), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 0, "{list}");
    for (method, path) in [
        (Method::GET, format!("/api/v1/devices/{id}")),
        (Method::POST, format!("/api/v1/devices/{id}/lock")),
        (Method::POST, format!("/api/v1/devices/{id}/unlock")),
        (Method::DELETE, format!("/api/v1/devices/{id}")),
    ] {
        let (status, body) = app.call(method.clone(), &path, Some(&bob), None).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    // Nothing changed: alice's token still works; the admin sees the device.
    let (status, _) = app
        .call(Method::GET, "/api/v1/current-user", Some(&token), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    let (status, device) = app
        .call(
            Method::GET,
            &format!("/api/v1/devices/{id}"),
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(device["owner"], "alice");
    let (status, body) = app
        .call(
            Method::GET,
            "/api/v1/devices?status=bogus",
            Some(&alice),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The approval page, in headless Chromium
// ---------------------------------------------------------------------------------------

const WAIT: Duration = Duration::from_secs(10);

/// Signs in on the page the browser shows.
async fn sign_in(browser: &Browser, user: &str, password: &str) -> anyhow::Result<()> {
    browser.wait_for("#signin", WAIT).await?;
    browser.find("#username").await?.send_keys(user).await?;
    browser.find("#password").await?.send_keys(password).await?;
    browser.find("#signin-submit").await?.click().await?;
    Ok(())
}

#[tokio::test]
async fn a_person_approves_a_trusted_device_in_the_browser() -> anyhow::Result<()> {
    let app = app("600").await?;
    let admin = app.admin_token().await?;
    app.user_with_token(&admin, "alice", "member").await?;
    let started = app.device_authorization().await?;
    let user_code = started["user_code"].as_str().unwrap_or_default().to_owned();
    let device_code = started["device_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let browser = Browser::start().await?;
    browser
        .goto(started["verification_uri"].as_str().unwrap_or_default())
        .await?;
    sign_in(&browser, "alice", "alice-password").await?;
    // The click returns before the form's answer has loaded: wait for the next page.
    browser.wait_for("#code", WAIT).await?;
    let session = browser
        .cookie("gh_device_session")
        .await?
        .context("no session cookie after signing in")?;
    assert!(session.http_only, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Lax"), "{session:?}");
    assert_eq!(
        browser.execute("return document.cookie", &[]).await?,
        Value::String(String::new()),
        "the page's cookies are out of JavaScript's reach"
    );

    // Enter the code the way people do: lower case, no dash.
    browser
        .find("#user_code")
        .await?
        .send_keys(&user_code.replace('-', "").to_lowercase())
        .await?;
    browser.find("#code-submit").await?.click().await?;
    browser.wait_for("#decide", WAIT).await?;
    assert_eq!(
        browser.find("#device-hostname").await?.text().await?,
        "build-box"
    );
    assert_eq!(
        browser.find("#device-os").await?.text().await?,
        "linux x86_64"
    );
    assert_eq!(browser.find("#device-client").await?.text().await?, CLIENT);
    assert_eq!(browser.find("#device-ip").await?.text().await?, "127.0.0.1");
    assert_eq!(browser.find("#shown-code").await?.text().await?, user_code);
    assert_eq!(
        app.device_token(&device_code).await?.1["error"],
        "authorization_pending",
        "showing the device decides nothing"
    );

    browser.find("#trusted").await?.click().await?;
    assert!(browser.find("#trusted").await?.is_selected().await?);
    browser.find("#approve").await?.click().await?;
    let result = browser.wait_for("#result", WAIT).await?.text().await?;
    assert!(result.contains("30 days"), "{result}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = app.device_token(&device_code).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expires_in = body["expires_in"].as_u64().unwrap_or_default();
    assert!(
        (30 * 86_400 - 60..=30 * 86_400).contains(&expires_in),
        "a trusted device gets 30 days: {expires_in}"
    );
    let (status, me) = app
        .call(
            Method::GET,
            "/api/v1/current-user",
            body["access_token"].as_str(),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["name"], "alice");
    Ok(())
}

#[tokio::test]
async fn the_complete_link_leads_straight_to_the_decision_and_deny_refuses_the_device()
-> anyhow::Result<()> {
    let app = app("600").await?;
    let admin = app.admin_token().await?;
    app.user_with_token(&admin, "alice", "member").await?;
    let started = app.device_authorization().await?;
    let browser = Browser::start().await?;
    browser
        .goto(
            started["verification_uri_complete"]
                .as_str()
                .unwrap_or_default(),
        )
        .await?;
    // A wrong password first: refused, nothing decided.
    sign_in(&browser, "alice", "not-her-password").await?;
    let error = browser.wait_for("#error", WAIT).await?.text().await?;
    assert!(error.contains("Wrong username or password"), "{error}");
    sign_in(&browser, "alice", "alice-password").await?;
    // The code came with the link: straight to what is asking.
    browser.wait_for("#decide", WAIT).await?;
    browser.find("#deny").await?.click().await?;
    let result = browser.wait_for("#result", WAIT).await?.text().await?;
    assert!(result.contains("denied"), "{result}");
    let (status, body) = app
        .device_token(started["device_code"].as_str().unwrap_or_default())
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "access_denied", "{body}");

    // A form posted without the page's CSRF token is refused.
    let response = app
        .http
        .post(app.at("/device/decide"))
        .form(&[
            ("csrf", "0".repeat(64).as_str()),
            ("user_code", "BCDF-GHJK"),
            ("action", "approve"),
        ])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    Ok(())
}

/// Reads the CLI's instructions from its stderr until the code appears.
async fn user_code_from(
    stderr: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
) -> anyhow::Result<String> {
    let mut seen = String::new();
    while let Some(line) = stderr.next_line().await? {
        seen.push_str(&line);
        seen.push('\n');
        if let Some((_, code)) = line.split_once(" and enter ") {
            return Ok(code.trim().to_owned());
        }
    }
    anyhow::bail!("the CLI never showed a code; stderr:\n{seen}")
}

/// Starts `gatehouse login --no-browser` with its session in `dir`; returns the running
/// process and the code it shows.
async fn start_cli_device_login(
    app: &TestApp,
    dir: &std::path::Path,
) -> anyhow::Result<(tokio::process::Child, String)> {
    use tokio::io::AsyncBufReadExt;
    let mut login = tokio::process::Command::new(gatehouse_e2e::workspace_bin("gatehouse")?)
        .args(["login", "--no-browser"])
        .env("GATEHOUSE_CONFIG_DIR", dir)
        .env("GATEHOUSE_URL", &app.url)
        .env_remove("GATEHOUSE_API_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stderr = tokio::io::BufReader::new(login.stderr.take().context("no stderr")?).lines();
    let user_code = tokio::time::timeout(Duration::from_secs(30), user_code_from(&mut stderr))
        .await
        .context("no code within 30 s")??;
    Ok((login, user_code))
}

/// A device login of the CLI in `dir`, approved for the person of `token`; returns the
/// saved access token.
async fn cli_device_session(
    app: &TestApp,
    dir: &std::path::Path,
    token: &str,
) -> anyhow::Result<String> {
    let (login, user_code) = start_cli_device_login(app, dir).await?;
    let (status, body) = app
        .verify_device(
            token,
            json!({"user_code": user_code, "trusted_device": false}),
        )
        .await?;
    anyhow::ensure!(status == StatusCode::OK, "verify: {status} {body}");
    let finished = tokio::time::timeout(Duration::from_secs(30), login.wait_with_output())
        .await
        .context("the device login did not finish")??;
    anyhow::ensure!(
        finished.status.success(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(dir.join("credentials.json"))?)?;
    Ok(saved["access_token"]
        .as_str()
        .context("no saved token")?
        .to_owned())
}

#[tokio::test]
async fn logging_out_of_a_device_session_revokes_the_device_unless_kept() -> anyhow::Result<()> {
    let app = app("600").await?;
    let admin = app.admin_token().await?;
    let alice = app.user_with_token(&admin, "alice", "member").await?;
    let dir = tempfile::tempdir()?;
    let devices = || app.call(Method::GET, "/api/v1/devices", Some(&alice), None);

    let token = cli_device_session(&app, dir.path(), &alice).await?;
    let (code, out, err) = app.cli(dir.path(), &["logout"], None).await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("was revoked on the server"), "{out}");
    let (status, _) = app
        .call(Method::GET, "/api/v1/current-user", Some(&token), None)
        .await?;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the device's token is refused"
    );
    assert_eq!(devices().await?.1["total"], 0);

    let token = cli_device_session(&app, dir.path(), &alice).await?;
    let (code, out, err) = app
        .cli(dir.path(), &["logout", "--keep-device"], None)
        .await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stays authorized"), "{out}");
    assert!(
        !dir.path().join("credentials.json").exists(),
        "forgotten here"
    );
    let (status, _) = app
        .call(Method::GET, "/api/v1/current-user", Some(&token), None)
        .await?;
    assert_eq!(status, StatusCode::OK, "kept on the server");
    assert_eq!(devices().await?.1["items"][0]["status"], "active");
    Ok(())
}

#[tokio::test]
async fn the_cli_logs_in_with_a_code_approved_from_another_terminal_and_manages_the_device()
-> anyhow::Result<()> {
    let app = app("600").await?;
    let admin = app.admin_token().await?;
    app.user_with_token(&admin, "alice", "member").await?;
    let (laptop, server) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (code, _, err) = app
        .cli(
            laptop.path(),
            &["login", "--username", "alice", "--password-stdin"],
            Some("alice-password\n"),
        )
        .await?;
    assert_eq!(code, 0, "{err}");

    // The headless server runs `gatehouse login` (the device flow is the default).
    let (login, user_code) = start_cli_device_login(&app, server.path()).await?;

    // Approving from a script needs --yes: nothing is approved without it.
    let (code, _, err) = app
        .cli(
            laptop.path(),
            &["authorized-device", "approve", &user_code, "--trust"],
            None,
        )
        .await?;
    assert_ne!(code, 0);
    assert!(err.contains("pass --yes"), "{err}");
    let (status, pending) = app
        .call(Method::GET, "/api/v1/devices", Some(&admin), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pending["items"][0]["status"], "pending", "{pending}");

    let (code, out, err) = app
        .cli(
            laptop.path(),
            &[
                "authorized-device",
                "approve",
                &user_code,
                "--trust",
                "--yes",
            ],
            None,
        )
        .await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Approved device "), "{out}");
    assert!(out.contains("as alice; trusted"), "{out}");

    let finished = tokio::time::timeout(Duration::from_secs(30), login.wait_with_output())
        .await
        .context("the device login did not finish within 30 s of the approval")??;
    let out = String::from_utf8_lossy(&finished.stdout);
    assert!(finished.status.success(), "{out}");
    assert_eq!(
        out,
        "Logged in as alice on this device (trusted, token valid 30 days).\n"
    );
    let (code, out, err) = app
        .cli(server.path(), &["current-user", "-o", "json"], None)
        .await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out)?["name"], "alice");

    // The server's session is the device; alice manages it from the laptop.
    let (code, out, err) = app
        .cli(
            laptop.path(),
            &["authorized-device", "list", "-o", "json"],
            None,
        )
        .await?;
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(&out)?;
    let device = &list["items"][0];
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(device["status"], "active");
    assert_eq!(device["trusted"], true);
    assert_eq!(device["owner"], "alice");
    let id = device["id"].as_str().context("no id")?.to_owned();
    let (code, out, err) = app
        .cli(laptop.path(), &["authorized-device", "describe", &id], None)
        .await?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("STATUS          active"), "{out}");

    let (code, _, err) = app
        .cli(laptop.path(), &["authorized-device", "lock", &id], None)
        .await?;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = app.cli(server.path(), &["current-user"], None).await?;
    assert_ne!(code, 0, "a locked device's session is refused");
    // What happened and who can undo it; logging in again is not the answer.
    assert!(
        err.contains("this device is locked") && err.contains("authorized-device unlock"),
        "{err}"
    );
    assert!(!err.contains("run `gatehouse login`"), "{err}");
    let (code, _, err) = app
        .cli(laptop.path(), &["authorized-device", "unlock", &id], None)
        .await?;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = app.cli(server.path(), &["current-user"], None).await?;
    assert_eq!(code, 0, "unlocked, the same session works again: {err}");

    let (code, _, err) = app
        .cli(
            laptop.path(),
            &["authorized-device", "delete", &id, "--yes"],
            None,
        )
        .await?;
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = app.cli(server.path(), &["current-user"], None).await?;
    assert_ne!(code, 0, "a deleted device's session is refused");
    Ok(())
}

/// The device list is a read-model query: by owner, by status (which turns `expired` with
/// the clock, without an event), newest first, paged, with the total of all that match.
#[tokio::test]
async fn listing_devices_filters_by_status_newest_first_page_by_page() -> anyhow::Result<()> {
    let app = app("2").await?;
    let admin = app.admin_token().await?;
    app.device_authorization().await?; // nobody decides: it lapses
    let approved = app.device_authorization().await?;
    let denied = app.device_authorization().await?;
    let mut ids = Vec::new();
    for (started, decision) in [
        (&approved, json!({"user_code": approved["user_code"]})),
        (
            &denied,
            json!({"user_code": denied["user_code"], "deny": true}),
        ),
    ] {
        let (status, device) = app.verify_device(&admin, decision).await?;
        assert_eq!(status, StatusCode::OK, "{device} ({started})");
        ids.push(device["id"].clone());
    }
    // Past the two-second lifetime: the undecided and the approved (never redeemed)
    // authorizations are expired now; the denied one stays denied.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    app.device_authorization().await?;
    let list = |query: &str| {
        let (app, admin) = (&app, &admin);
        let path = format!("/api/v1/devices{query}");
        async move {
            let (status, page) = app.call(Method::GET, &path, Some(admin), None).await?;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            let items = page["items"].as_array().cloned().unwrap_or_default();
            let seen: Vec<(Value, Value)> = items
                .iter()
                .map(|d| (d["id"].clone(), d["status"].clone()))
                .collect();
            anyhow::Ok((seen, page["total"].clone()))
        }
    };
    let (all, total) = list("").await?;
    assert_eq!(total, 4);
    let statuses: Vec<&Value> = all.iter().map(|(_, s)| s).collect();
    assert_eq!(
        statuses,
        ["pending", "denied", "expired", "expired"],
        "{all:?}"
    );
    assert_eq!((&all[1].0, &all[2].0), (&ids[1], &ids[0]), "newest first");
    assert_eq!(list("?size=3").await?, (all[..3].to_vec(), json!(4)));
    assert_eq!(list("?size=3&page=2").await?, (all[3..].to_vec(), json!(4)));
    assert_eq!(
        list("?status=expired").await?,
        (all[2..].to_vec(), json!(2))
    );
    assert_eq!(
        list("?status=expired&size=1&page=2").await?,
        (all[3..].to_vec(), json!(2))
    );
    assert_eq!(
        list("?status=denied").await?,
        (all[1..2].to_vec(), json!(1))
    );
    assert_eq!(
        list("?status=pending").await?,
        (all[..1].to_vec(), json!(1))
    );
    assert_eq!(list("?status=verified").await?, (vec![], json!(0)));
    // A member sees only their own devices: none here.
    let mallory = app.user_with_token(&admin, "mallory", "member").await?;
    let (status, page) = app
        .call(
            Method::GET,
            "/api/v1/devices?status=expired",
            Some(&mallory),
            None,
        )
        .await?;
    assert_eq!(
        (status, &page["total"]),
        (StatusCode::OK, &json!(0)),
        "{page}"
    );
    Ok(())
}
