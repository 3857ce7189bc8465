//! API keys of service accounts (issue 3). End to end against the real binaries: the CLI
//! session, CI-style use with `GATEHOUSE_API_KEY`, deactivation seen by two gateway
//! processes, concurrent rotations on Postgres, and the audit trail on JetStream. Against
//! the in-process app (the gateway's handlers): rotation windows, bad keys and the failure
//! limit, removing an expiry.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use gatehouse_e2e::api::{key_path, keys_path};
use gatehouse_e2e::{ADMIN_PASSWORD, Api, InProcApp, NatsUser, TestApp, claims, run_cli_env};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// `gatehouse_<32 hex>_<43 base62 secret><6 base62 checksum>`.
const KEY_LEN: usize = 92;
const PREFIX: &str = "gatehouse_";
const SECRET_AT: usize = 43;
const CHECKSUM_AT: usize = 86;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The secret part of a key string (between the id and the checksum).
fn secret_of(key: &str) -> &str {
    key.get(SECRET_AT..CHECKSUM_AT).unwrap_or_default()
}

/// The public part: `gatehouse_<key id>_`.
fn public_part(key: &str) -> &str {
    key.get(..SECRET_AT).unwrap_or_default()
}

/// CRC-32 (IEEE), as the key format uses it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `body` (everything before the checksum) with its correct checksum appended: a
/// well-formed key, whether or not it exists.
fn with_checksum(body: &str) -> String {
    let mut crc = crc32(body.as_bytes());
    let mut digits = [b'0'; 6];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(crc % 62) as usize];
        crc /= 62;
    }
    format!("{body}{}", String::from_utf8_lossy(&digits))
}

/// Another base62 digit than `c`.
fn other_digit(c: u8) -> char {
    if c == b'7' { '8' } else { '7' }
}

/// The key strings in `text` (whitespace-separated words of the key's shape).
pub(crate) fn printed_keys(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
        .filter(|w| w.starts_with(PREFIX) && w.len() == KEY_LEN)
        .map(str::to_owned)
        .collect()
}

/// An HTTP client whose requests come from `ip` (any 127.x.y.z is local on Linux): a
/// separate source address for the failure limiter.
fn client_from(app: &Api, ip: Ipv4Addr) -> anyhow::Result<Api> {
    Ok(Api {
        url: app.url.clone(),
        http: reqwest::Client::builder()
            .local_address(IpAddr::V4(ip))
            .timeout(Duration::from_secs(30))
            .build()?,
    })
}

/// Asserts an API-key grant refusal: 400 `invalid_grant` with `reason`.
fn assert_refused_grant(status: StatusCode, body: &Value, reason: &str, what: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["error"], "invalid_grant", "{what}: {body}");
    assert_eq!(body["gatehouse_reason"], reason, "{what}: {body}");
}

fn timestamp(value: &Value) -> anyhow::Result<DateTime<Utc>> {
    let text = value
        .as_str()
        .with_context(|| format!("not a time: {value}"))?;
    Ok(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc))
}

/// Until when a rotation response says `generation`'s secret keeps working.
fn retained_until(key: &Value, generation: u64) -> anyhow::Result<DateTime<Utc>> {
    let retained = key["retained_secrets"]
        .as_array()
        .with_context(|| format!("no retained_secrets in {key}"))?;
    let entry = retained
        .iter()
        .find(|r| r["generation"].as_u64() == Some(generation))
        .with_context(|| format!("generation {generation} is not retained: {key}"))?;
    timestamp(&entry["valid_until"])
}

fn retained_generations(key: &Value) -> BTreeSet<u64> {
    key["retained_secrets"]
        .as_array()
        .map(|r| r.iter().filter_map(|e| e["generation"].as_u64()).collect())
        .unwrap_or_default()
}

/// Exchanges `key` until the token endpoint refuses it; returns when (test clock) and
/// the refusal. Fails if it still works at `deadline`.
async fn wait_until_refused(
    app: &Api,
    key: &str,
    deadline: Instant,
) -> anyhow::Result<(DateTime<Utc>, StatusCode, Value)> {
    loop {
        let (status, body) = app.exchange_api_key(key).await?;
        let at = Utc::now();
        if status != StatusCode::OK {
            return Ok((at, status, body));
        }
        anyhow::ensure!(Instant::now() < deadline, "the secret still worked at {at}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn postgres(app: &TestApp) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(app.db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The events of key `id` in the event log, in version order: (version, type, payload).
async fn key_events(
    db: &tokio_postgres::Client,
    id: &str,
) -> anyhow::Result<Vec<(i64, String, Value)>> {
    let rows = db
        .query(
            "SELECT version, event_type, payload::text FROM events WHERE stream_id = $1 \
             ORDER BY version",
            &[&format!("api_key-{id}")],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let payload: String = row.get(2);
            Ok((row.get(0), row.get(1), serde_json::from_str(&payload)?))
        })
        .collect()
}

/// The JetStream events stream of the app's NATS server (created by the app at start).
async fn events_stream(app: &TestApp) -> anyhow::Result<async_nats::jetstream::stream::Stream> {
    let client = app.nats.connect_as(NatsUser::Audit).await?;
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match js.get_stream(gatehouse_bus::jetstream::STREAM_NAME).await {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for the events stream: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A message read from JetStream.
#[derive(Debug)]
struct Published {
    sequence: u64,
    subject: String,
    raw: String,
    headers: String,
    event: Value,
}

/// An ordered consumer on `filter`, from the start of the stream.
async fn subscribe(
    stream: &async_nats::jetstream::stream::Stream,
    filter: &str,
) -> anyhow::Result<async_nats::jetstream::consumer::pull::Ordered> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull};
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
}

/// Reads `n` messages (failing after `timeout`), then anything more that arrives within
/// `linger` (to catch duplicates).
async fn read_published(
    messages: &mut async_nats::jetstream::consumer::pull::Ordered,
    n: usize,
    timeout: Duration,
    linger: Duration,
) -> anyhow::Result<Vec<Published>> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let wait = if out.len() < n {
            deadline.saturating_duration_since(Instant::now())
        } else {
            linger
        };
        let next = match tokio::time::timeout(wait, messages.next()).await {
            Ok(next) => next,
            Err(_) if out.len() >= n => return Ok(out),
            Err(_) => anyhow::bail!(
                "only {} of {n} events arrived: {:#?}",
                out.len(),
                out.iter().map(|p| &p.event).collect::<Vec<_>>()
            ),
        };
        let message = next.context("the consumer ended")??;
        let sequence = message
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence;
        out.push(Published {
            sequence,
            subject: message.subject.to_string(),
            raw: String::from_utf8_lossy(&message.payload).into_owned(),
            headers: format!("{:?}", message.headers),
            event: serde_json::from_slice(&message.payload)?,
        });
    }
}

/// Runs the CLI with the app's URL and `dir` as config dir; fails on a non-zero exit.
pub(crate) async fn cli_ok(
    app: &TestApp,
    dir: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<String> {
    let (code, out, err) = app.cli(dir, args, stdin).await?;
    anyhow::ensure!(
        code == 0,
        "gatehouse {args:?} exited {code}\nstdout: {out}\nstderr: {err}"
    );
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// 1. The CLI session
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_api_key_cli_session_from_the_docs_works() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let home = tempfile::tempdir()?;
    let dir = home.path();
    cli_ok(
        &app,
        dir,
        &["login", "--username", "admin", "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    )
    .await?;

    // `service-account create` also creates the key "default" and prints it, once.
    let out = cli_ok(&app, dir, &["service-account", "create", "ci-bot"], None).await?;
    let printed = printed_keys(&out);
    assert_eq!(printed.len(), 1, "exactly one key printed: {out}");
    let default_key = printed[0].clone();
    assert_eq!(
        out.matches(secret_of(&default_key)).count(),
        1,
        "the key is printed once: {out}"
    );
    assert!(out.contains("\"default\""), "{out}");
    let (status, body) = app.exchange_api_key(&default_key).await?;
    assert_eq!(status, StatusCode::OK, "the printed key works: {body}");

    let key_cmd = |rest: &[&'static str]| {
        let mut args = vec!["service-account", "api-key", "ci-bot"];
        args.extend_from_slice(rest);
        args
    };

    let out = cli_ok(
        &app,
        dir,
        &key_cmd(&[
            "create",
            "deploy",
            "--description",
            "deploy job",
            "--expires-in",
            "30d",
        ]),
        None,
    )
    .await?;
    let printed = printed_keys(&out);
    assert_eq!(printed.len(), 1, "{out}");
    let deploy_v1 = printed[0].clone();
    assert_ne!(deploy_v1, default_key);
    assert!(out.contains("shown only this once"), "{out}");
    assert!(out.contains("deploy job"), "{out}");

    // list: both keys, never a secret.
    let table = cli_ok(&app, dir, &key_cmd(&["list"]), None).await?;
    assert!(
        table.lines().next().unwrap_or_default().contains("NAME"),
        "{table}"
    );
    assert!(
        table.contains("default") && table.contains("deploy"),
        "{table}"
    );
    assert!(!table.contains(PREFIX), "list shows no key: {table}");
    let listed: Value =
        serde_json::from_str(&cli_ok(&app, dir, &key_cmd(&["list", "-o", "json"]), None).await?)?;
    assert_eq!(listed["total"], 2, "{listed}");
    let listed_text = listed.to_string();
    for key in [&default_key, &deploy_v1] {
        assert!(!listed_text.contains(secret_of(key)), "{listed_text}");
    }

    // describe: the documented fields, no secret.
    let text = cli_ok(&app, dir, &key_cmd(&["describe", "deploy"]), None).await?;
    let lower = text.to_lowercase();
    for label in [
        "name",
        "id",
        "description",
        "service account",
        "active",
        "expires",
        "generation",
        "created",
        "last rotated",
        "last used",
        "retained secrets",
    ] {
        assert!(lower.contains(label), "describe lacks {label:?}: {text}");
    }
    assert!(text.contains("deploy job"), "{text}");
    assert!(!text.contains(PREFIX), "describe shows no key: {text}");
    let described: Value = serde_json::from_str(
        &cli_ok(
            &app,
            dir,
            &key_cmd(&["describe", "deploy", "-o", "json"]),
            None,
        )
        .await?,
    )?;
    assert_eq!(described["name"], "deploy");
    assert_eq!(described["description"], "deploy job");
    assert_eq!(described["active"], true);
    assert_eq!(described["generation"], 1);
    assert!(described["last_rotated"].is_null(), "{described}");
    assert!(described.get("last_used").is_some(), "{described}");
    assert!(described.get("key").is_none(), "{described}");
    let expires = timestamp(&described["expires_at"])?;
    let in_30d = Utc::now() + chrono::Duration::days(30);
    assert!(
        (expires - in_30d).num_seconds().abs() < 600,
        "--expires-in 30d set {expires}"
    );
    assert!(!described.to_string().contains(secret_of(&deploy_v1)));

    // rotate --retain 60: a new key, printed once; the old one keeps working for an hour.
    let out = cli_ok(
        &app,
        dir,
        &key_cmd(&["rotate", "deploy", "--retain", "60"]),
        None,
    )
    .await?;
    let printed = printed_keys(&out);
    assert_eq!(printed.len(), 1, "{out}");
    let deploy_v2 = printed[0].clone();
    assert_ne!(deploy_v2, deploy_v1);
    assert_eq!(
        public_part(&deploy_v2),
        public_part(&deploy_v1),
        "same key id"
    );
    assert!(out.contains("keeps working until"), "{out}");
    for key in [&deploy_v1, &deploy_v2] {
        let (status, body) = app.exchange_api_key(key).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let described: Value = serde_json::from_str(
        &cli_ok(
            &app,
            dir,
            &key_cmd(&["describe", "deploy", "-o", "json"]),
            None,
        )
        .await?,
    )?;
    assert_eq!(described["generation"], 2);
    assert!(!described["last_rotated"].is_null(), "{described}");
    let until = retained_until(&described, 1)?;
    let in_an_hour = Utc::now() + chrono::Duration::minutes(60);
    assert!(
        (until - in_an_hour).num_seconds().abs() < 120,
        "generation 1 retained until {until}"
    );

    // update --active false: the key is refused.
    let out = cli_ok(
        &app,
        dir,
        &key_cmd(&["update", "deploy", "--active", "false"]),
        None,
    )
    .await?;
    assert!(printed_keys(&out).is_empty(), "{out}");
    let described: Value = serde_json::from_str(
        &cli_ok(
            &app,
            dir,
            &key_cmd(&["describe", "deploy", "-o", "json"]),
            None,
        )
        .await?,
    )?;
    assert_eq!(described["active"], false);
    let (status, body) = app.exchange_api_key(&deploy_v2).await?;
    assert_refused_grant(status, &body, "deactivated", "deactivated key");

    // delete: without a terminal it needs --yes; then the key is gone.
    let (code, _, err) = app.cli(dir, &key_cmd(&["delete", "deploy"]), None).await?;
    assert_ne!(code, 0);
    assert!(err.contains("--yes"), "{err}");
    app.describe_api_key(&app.admin_token().await?, "ci-bot", "deploy")
        .await?;
    let out = cli_ok(&app, dir, &key_cmd(&["delete", "deploy", "--yes"]), None).await?;
    assert!(out.contains("Deleted"), "{out}");
    let (code, _, err) = app
        .cli(dir, &key_cmd(&["describe", "deploy"]), None)
        .await?;
    assert_eq!(code, 1);
    assert!(
        err.contains("not_found") || err.contains("not found") || err.contains("no API key"),
        "{err}"
    );
    let (status, body) = app.exchange_api_key(&deploy_v1).await?;
    assert_refused_grant(status, &body, "invalid", "deleted key");
    let listed: Value =
        serde_json::from_str(&cli_ok(&app, dir, &key_cmd(&["list", "-o", "json"]), None).await?)?;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["items"][0]["name"], "default");

    // login --api-key reads the key from stdin when stdin is not a terminal.
    let key_home = tempfile::tempdir()?;
    let out = cli_ok(
        &app,
        key_home.path(),
        &["login", "--url", &app.url, "--api-key"],
        Some(&format!("{default_key}\n")),
    )
    .await?;
    assert!(out.contains("ci-bot"), "{out}");
    assert!(!out.contains(secret_of(&default_key)), "{out}");
    let credentials = key_home.path().join("credentials.json");
    assert_eq!(
        std::fs::metadata(&credentials)?.permissions().mode() & 0o777,
        0o600
    );
    let me: Value = serde_json::from_str(
        &cli_ok(&app, key_home.path(), &["current-user", "-o", "json"], None).await?,
    )?;
    assert_eq!(me["name"], "ci-bot");
    assert_eq!(me["kind"], "service_account");
    assert_eq!(me["authenticated_by"], "api_key");
    cli_ok(&app, key_home.path(), &["logout"], None).await?;
    assert!(!credentials.exists(), "logout removes the saved key");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. CI: GATEHOUSE_URL and GATEHOUSE_API_KEY only
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn ci_runs_with_only_url_and_api_key_and_caches_the_token() -> anyhow::Result<()> {
    const CLI_TIMEOUT: Duration = Duration::from_secs(20);
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    app.create_service_account(&admin, "ci-bot").await?;
    let (_, key) = app
        .create_api_key(&admin, "ci-bot", json!({"name": "ci"}))
        .await?;
    let home = tempfile::tempdir()?;
    let home_dir = home.path().to_str().context("temp dir is not UTF-8")?;
    let ci = |key: &str, args: &[&str]| {
        let env = [
            ("HOME", home_dir.to_owned()),
            ("GATEHOUSE_URL", app.url.clone()),
            ("GATEHOUSE_API_KEY", key.to_owned()),
        ];
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cli_env(&args, None, &env, CLI_TIMEOUT).await
        }
    };

    let (code, out, err) = ci(&key, &["current-user", "-o", "json"]).await?;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let me: Value = serde_json::from_str(&out)?;
    assert_eq!(me["name"], "ci-bot");
    assert_eq!(me["kind"], "service_account");
    assert_eq!(me["authenticated_by"], "api_key");

    // The token (never the key) is cached under the config dir, readable by the owner only.
    let tokens = home.path().join(".config/gatehouse/tokens");
    let files: Vec<_> = std::fs::read_dir(&tokens)
        .with_context(|| format!("no token cache at {}", tokens.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        std::fs::metadata(&files[0])?.permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&tokens)?.permissions().mode() & 0o777,
        0o700
    );
    let cached = std::fs::read_to_string(&files[0])?;
    assert!(
        !cached.contains(secret_of(&key)),
        "the cache holds the key: {cached}"
    );
    let cached_token = serde_json::from_str::<Value>(&cached)?["access_token"]
        .as_str()
        .context("no access_token in the cache")?
        .to_owned();
    let (status, _) = app.current_user(&cached_token).await?;
    assert_eq!(status, StatusCode::OK, "the cached token is a real token");

    // A second command reuses it: an exchange would mint another token (new jti) and
    // replace the file.
    let (code, out, err) = ci(&key, &["current-user"]).await?;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("ci-bot"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&files[0])?,
        cached,
        "the second command exchanged the key again"
    );

    // A well-formed but unknown key: refused by the server, the message says why.
    let unknown = with_checksum(&format!(
        "{PREFIX}{}_{}",
        Uuid::new_v4().simple(),
        secret_of(&key)
    ));
    let (code, out, err) = ci(&unknown, &["current-user"]).await?;
    assert_ne!(code, 0, "stdout: {out}");
    assert!(
        err.contains("GATEHOUSE_API_KEY") && err.contains("the API key is invalid"),
        "{err}"
    );
    assert!(!err.contains(secret_of(&key)), "{err}");

    // A mistyped key: refused locally.
    let mut typo = key.clone();
    let last = typo.pop().context("empty key")?;
    typo.push(other_digit(last as u8));
    let (code, _, err) = ci(&typo, &["current-user"]).await?;
    assert_ne!(code, 0);
    assert!(
        err.contains("not a well-formed API key") && err.contains("checksum"),
        "{err}"
    );

    // Deactivated: the cached token is refused, the key exchanged again and refused.
    app.patch_api_key(&admin, "ci-bot", "ci", json!({"active": false}))
        .await?;
    let (code, out, err) = ci(&key, &["current-user"]).await?;
    assert_ne!(code, 0, "a deactivated key still worked: {out}");
    assert!(
        err.contains("deactivated") && err.contains("--active true"),
        "{err}"
    );

    // Rotated away (retain 0): the old key is refused as rotated; the new one works.
    app.patch_api_key(&admin, "ci-bot", "ci", json!({"active": true}))
        .await?;
    let (_, new_key) = app
        .rotate_api_key(&admin, "ci-bot", "ci", json!({}))
        .await?;
    let (code, _, err) = ci(&key, &["current-user"]).await?;
    assert_ne!(code, 0);
    assert!(err.contains("rotated"), "{err}");
    let (code, out, err) = ci(&new_key, &["current-user", "-o", "json"]).await?;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert_eq!(serde_json::from_str::<Value>(&out)?["name"], "ci-bot");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Rotation with retention windows
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_rotated_secret_works_for_its_own_retention_window_and_not_after() -> anyhow::Result<()> {
    // Allowance for the gap between the server's check and this test reading the clock.
    let slack = chrono::Duration::milliseconds(100);
    let app = InProcApp::spawn().await?;
    let admin = app.admin_token().await?;
    app.create_service_account(&admin, "deployer").await?;
    let (created, gen1) = app
        .create_api_key(&admin, "deployer", json!({"name": "deploy"}))
        .await?;
    let id = created["id"].clone();
    assert_eq!(created["generation"], 1);
    let gen1_token = app.api_key_token(&gen1).await?;

    // One window of 3 s.
    let (rotated, gen2) = app
        .rotate_api_key(
            &admin,
            "deployer",
            "deploy",
            json!({"retain_period_seconds": 3}),
        )
        .await?;
    assert_eq!(rotated["id"], id);
    assert_eq!(rotated["name"], "deploy");
    assert_eq!(rotated["generation"], 2);
    assert_ne!(gen2, gen1);
    assert_eq!(public_part(&gen2), public_part(&gen1));
    let until1 = retained_until(&rotated, 1)?;
    let left = until1 - Utc::now();
    assert!(
        left > chrono::Duration::milliseconds(500) && left <= chrono::Duration::seconds(3),
        "generation 1 retained until {until1}"
    );
    // Inside the window: the old secret, its token and the new secret all work.
    let (status, body) = app.exchange_api_key(&gen1).await?;
    assert_eq!(
        status,
        StatusCode::OK,
        "old secret inside its window: {body}"
    );
    assert_eq!(app.current_user(&gen1_token).await?.0, StatusCode::OK);
    assert_eq!(app.current_user(&gen1).await?.0, StatusCode::OK);
    app.api_key_token(&gen2).await?;
    // After it: refused, and so is its token.
    let (at, status, body) =
        wait_until_refused(&app, &gen1, Instant::now() + Duration::from_secs(10)).await?;
    assert!(
        at >= until1 - slack,
        "refused at {at}, before its window closed at {until1}"
    );
    assert_refused_grant(status, &body, "rotated", "old secret after its window");
    let (status, body) = app.current_user(&gen1_token).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = app.current_user(&gen1).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "api_key_rotated", "{body}");

    // Overlapping windows: generation 2 keeps 6 s, then generation 3 only 2 s. Each
    // keeps its own window: 3 dies first while 2 still works, then 2 dies.
    let gen2_token = app.api_key_token(&gen2).await?;
    let (rotated, gen3) = app
        .rotate_api_key(
            &admin,
            "deployer",
            "deploy",
            json!({"retain_period_seconds": 6}),
        )
        .await?;
    assert_eq!(rotated["generation"], 3);
    let gen3_token = app.api_key_token(&gen3).await?;
    let (rotated, gen4) = app
        .rotate_api_key(
            &admin,
            "deployer",
            "deploy",
            json!({"retain_period_seconds": 2}),
        )
        .await?;
    assert_eq!(rotated["generation"], 4);
    assert_eq!(rotated["id"], id);
    assert_eq!(retained_generations(&rotated), BTreeSet::from([2, 3]));
    let until2 = retained_until(&rotated, 2)?;
    let until3 = retained_until(&rotated, 3)?;
    assert!(until3 < until2, "{rotated}");
    for key in [&gen2, &gen3, &gen4] {
        let (status, body) = app.exchange_api_key(key).await?;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (at, status, body) =
        wait_until_refused(&app, &gen3, Instant::now() + Duration::from_secs(10)).await?;
    assert!(at >= until3 - slack, "generation 3 refused at {at}");
    assert_refused_grant(status, &body, "rotated", "generation 3 after its window");
    assert!(
        Utc::now() < until2 - chrono::Duration::milliseconds(500),
        "too slow to observe the overlap (generation 2 ends at {until2})"
    );
    let (status, body) = app.exchange_api_key(&gen2).await?;
    assert_eq!(status, StatusCode::OK, "generation 2 died with 3: {body}");
    assert_eq!(app.current_user(&gen2_token).await?.0, StatusCode::OK);
    assert_eq!(
        app.current_user(&gen3_token).await?.0,
        StatusCode::UNAUTHORIZED
    );
    let (at, status, body) =
        wait_until_refused(&app, &gen2, Instant::now() + Duration::from_secs(10)).await?;
    assert!(at >= until2 - slack, "generation 2 refused at {at}");
    assert_refused_grant(status, &body, "rotated", "generation 2 after its window");
    assert_eq!(
        app.current_user(&gen2_token).await?.0,
        StatusCode::UNAUTHORIZED
    );
    let described = app.describe_api_key(&admin, "deployer", "deploy").await?;
    assert_eq!(described["generation"], 4);
    assert!(retained_generations(&described).is_empty(), "{described}");

    // Retain 0: the old secret and its tokens stop at once.
    let gen4_token = app.api_key_token(&gen4).await?;
    let (rotated, gen5) = app
        .rotate_api_key(
            &admin,
            "deployer",
            "deploy",
            json!({"retain_period_seconds": 0}),
        )
        .await?;
    assert_eq!(rotated["generation"], 5);
    assert!(retained_generations(&rotated).is_empty(), "{rotated}");
    let (status, body) = app.exchange_api_key(&gen4).await?;
    assert_refused_grant(status, &body, "rotated", "retain 0");
    let (status, body) = app.current_user(&gen4_token).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = app.current_user(&gen4).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let gen5_token = app.api_key_token(&gen5).await?;
    let (status, me) = app.current_user(&gen5_token).await?;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "deployer");

    // Same key throughout: id and name never changed.
    let described = app
        .describe_api_key(&admin, "deployer", id.as_str().unwrap_or_default())
        .await?;
    assert_eq!(described["id"], id);
    assert_eq!(described["name"], "deploy");
    assert_eq!(described["generation"], 5);
    assert_eq!(public_part(&gen5), public_part(&gen1));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Deactivation seen by two gateway processes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn deactivating_a_key_refuses_it_and_its_tokens_on_every_replica_at_once()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let replica = app.replica().await?;
    let admin = app.admin_token().await?;
    app.create_service_account(&admin, "worker").await?;
    let (_, key) = app
        .create_api_key(&admin, "worker", json!({"name": "main"}))
        .await?;
    let token = app.api_key_token(&key).await?;
    let both = [app.url.as_str(), replica.url.as_str()];

    // Accepted by both before (the replica may need a moment to see the new key).
    assert_eq!(app.current_user(&token).await?.0, StatusCode::OK);
    assert_eq!(app.current_user(&key).await?.0, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let by_token = app.at_url(&replica.url).current_user(&token).await?.0;
        let by_key = app.at_url(&replica.url).current_user(&key).await?.0;
        if by_token == StatusCode::OK && by_key == StatusCode::OK {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the replica never accepted the key ({by_key}) or its token ({by_token})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = app.at_url(&replica.url).exchange_api_key(&key).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let replica_token = body["access_token"]
        .as_str()
        .context("no access_token")?
        .to_owned();
    assert_eq!(app.current_user(&replica_token).await?.0, StatusCode::OK);

    let updated = app
        .patch_api_key(&admin, "worker", "main", json!({"active": false}))
        .await?;
    assert_eq!(updated["active"], false);
    // The PATCH returns once every live replica enforces it: the very first request to
    // each after it is refused, no polling.
    for base in both {
        for (what, credential) in [
            ("token from the app", &token),
            ("token from the replica", &replica_token),
        ] {
            let (status, body) = app.at_url(base).current_user(credential).await?;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{base} accepted the {what} after the deactivation returned: {body}"
            );
        }
        let (status, body) = app.at_url(base).current_user(&key).await?;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{base} accepted the deactivated key as bearer: {body}"
        );
        assert_eq!(body["code"], "api_key_deactivated", "{body}");
        let (status, body) = app.at_url(base).exchange_api_key(&key).await?;
        assert_refused_grant(status, &body, "deactivated", base);
    }

    // Reactivation: new exchanges work, tokens from before the deactivation stay dead.
    let updated = app
        .patch_api_key(&admin, "worker", "main", json!({"active": true}))
        .await?;
    assert_eq!(updated["active"], true);
    for base in both {
        for credential in [&token, &replica_token] {
            let (status, body) = app.at_url(base).current_user(credential).await?;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{base} revived an old token: {body}"
            );
        }
    }
    let fresh = app.api_key_token(&key).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    for base in both {
        loop {
            let by_token = app.at_url(base).current_user(&fresh).await?.0;
            let by_key = app.at_url(base).current_user(&key).await?.0;
            if by_token == StatusCode::OK && by_key == StatusCode::OK {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{base} refused the reactivated key ({by_key}) or a new token ({by_token})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Deactivating the service account kills its key tokens, and the key.
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/v1/service_accounts/worker",
            Some(&admin),
            Some(json!({"active": false})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    for base in both {
        let (status, body) = app.at_url(base).current_user(&fresh).await?;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{base} accepted a key token of a deactivated account: {body}"
        );
        let (status, body) = app.at_url(base).current_user(&key).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{base}: {body}");
    }
    let (status, body) = app.exchange_api_key(&key).await?;
    assert_refused_grant(status, &body, "deactivated", "deactivated account");

    // Deleting the key kills its tokens.
    let (status, body) = app
        .call(
            Method::PATCH,
            "/api/v1/service_accounts/worker",
            Some(&admin),
            Some(json!({"active": true})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let last = app.api_key_token(&key).await?;
    assert_eq!(app.current_user(&last).await?.0, StatusCode::OK);
    let (status, body) = app
        .call(
            Method::DELETE,
            &key_path("worker", "main"),
            Some(&admin),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for base in both {
        let (status, body) = app.at_url(base).current_user(&last).await?;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{base} accepted a token of a deleted key: {body}"
        );
        let (status, body) = app.at_url(base).current_user(&key).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{base}: {body}");
    }
    let (status, body) = app.exchange_api_key(&key).await?;
    assert_refused_grant(status, &body, "invalid", "deleted key");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 5. Concurrent rotations
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn twenty_concurrent_rotations_give_twenty_consecutive_working_generations()
-> anyhow::Result<()> {
    const ROTATIONS: u64 = 20;
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    app.create_service_account(&admin, "rotor").await?;
    let (created, original) = app
        .create_api_key(&admin, "rotor", json!({"name": "busy"}))
        .await?;
    let id = created["id"].as_str().context("no id")?.to_owned();

    let path = format!("{}/rotate", key_path("rotor", "busy"));
    let started = Instant::now();
    let answers = futures::future::join_all((0..ROTATIONS).map(|_| {
        app.call(
            Method::POST,
            &path,
            Some(&admin),
            Some(json!({"retain_period_seconds": 120})),
        )
    }))
    .await;
    eprintln!(
        "{ROTATIONS} concurrent rotations took {:?}",
        started.elapsed()
    );
    // (generation in the response, the key returned)
    let mut returned = Vec::new();
    for answer in answers {
        let (status, body) = answer?;
        assert_eq!(status, StatusCode::OK, "a rotation failed: {body}");
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["name"], "busy");
        let generation = body["generation"].as_u64().context("no generation")?;
        let key = body["key"].as_str().context("no key")?.to_owned();
        returned.push((generation, key));
    }
    let keys: HashSet<&String> = returned.iter().map(|(_, k)| k).collect();
    assert_eq!(keys.len(), returned.len(), "a key was returned twice");

    // Every key returned (and the original) works: all are inside their 120 s windows.
    // The token each is exchanged for names the generation the key really is.
    let mut actual = Vec::new();
    for (n, key) in std::iter::once(&original)
        .chain(returned.iter().map(|(_, k)| k))
        .enumerate()
    {
        let (status, body) = app.exchange_api_key(key).await?;
        assert_eq!(status, StatusCode::OK, "key #{n} does not work: {body}");
        let token = body["access_token"].as_str().context("no access_token")?;
        let source = &claims(token)?["gh_src"];
        assert_eq!(source["id"], id.as_str(), "{source}");
        actual.push(
            source["generation"]
                .as_u64()
                .context("no generation claim")?,
        );
    }
    assert_eq!(actual[0], 1, "the original key is generation 1");
    let rotated_generations: BTreeSet<u64> = actual[1..].iter().copied().collect();
    assert_eq!(
        rotated_generations,
        (2..=ROTATIONS + 1).collect::<BTreeSet<_>>(),
        "the 20 keys are not 20 distinct consecutive generations: {actual:?}"
    );

    // The key's history is consistent.
    let described = app.describe_api_key(&admin, "rotor", "busy").await?;
    assert_eq!(described["generation"], ROTATIONS + 1, "{described}");
    assert_eq!(
        retained_generations(&described),
        (1..=ROTATIONS).collect::<BTreeSet<_>>(),
        "{described}"
    );
    let db = postgres(&app).await?;
    let events = key_events(&db, &id).await?;
    let versions: Vec<i64> = events.iter().map(|(v, _, _)| *v).collect();
    assert_eq!(
        versions,
        (1..=ROTATIONS as i64 + 1).collect::<Vec<_>>(),
        "gaps in the key's stream"
    );
    assert_eq!(events[0].1, "api_key.created");
    let rotated: Vec<&(i64, String, Value)> = events[1..].iter().collect();
    assert_eq!(rotated.len() as u64, ROTATIONS);
    for (version, event_type, payload) in rotated {
        assert_eq!(event_type, "api_key.rotated", "version {version}");
        // Version n is the rotation to generation n, from generation n - 1.
        assert_eq!(payload["generation"], *version, "{payload}");
        assert_eq!(payload["previous_generation"], *version - 1, "{payload}");
        assert!(payload.get("previous_valid_until").is_some(), "{payload}");
    }

    // JetStream carries the same 20 rotations, once each, in order.
    let stream = events_stream(&app).await?;
    let mut messages = subscribe(&stream, "gatehouse.events.api_key.rotated").await?;
    let published = read_published(
        &mut messages,
        ROTATIONS as usize,
        Duration::from_secs(15),
        Duration::from_millis(500),
    )
    .await?;
    assert_eq!(published.len() as u64, ROTATIONS, "duplicates on JetStream");
    let published_generations: Vec<u64> = published
        .iter()
        .filter_map(|p| p.event["payload"]["generation"].as_u64())
        .collect();
    assert_eq!(
        published_generations,
        (2..=ROTATIONS + 1).collect::<Vec<_>>()
    );

    // Each response names the generation of the key it returns: 20 distinct values.
    let reported: Vec<u64> = returned.iter().map(|(g, _)| *g).collect();
    let mismatched: Vec<(u64, u64)> = reported
        .iter()
        .zip(&actual[1..])
        .filter(|(r, a)| r != a)
        .map(|(r, a)| (*r, *a))
        .collect();
    assert!(
        mismatched.is_empty(),
        "rotate responses report another generation than the key they return \
         ((reported, actual) pairs): {mismatched:?}; reported: {reported:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 6. Bad keys, and the failure limit
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn forged_truncated_and_wrong_keys_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let app = InProcApp::spawn().await?;
    let admin = app.admin_token().await?;
    app.create_service_account(&admin, "target").await?;
    let (_, real) = app
        .create_api_key(&admin, "target", json!({"name": "real"}))
        .await?;
    assert_eq!(real.len(), KEY_LEN);
    // This test's checksum is the server's: the well-formed variants below really are.
    assert_eq!(with_checksum(&real[..CHECKSUM_AT]), real);

    let mut wrong_checksum = real.clone();
    let last = wrong_checksum.pop().context("empty key")?;
    wrong_checksum.push(other_digit(last as u8));
    let changed_secret = with_checksum(&format!(
        "{}{}",
        &real[..CHECKSUM_AT - 1],
        other_digit(real.as_bytes()[CHECKSUM_AT - 1])
    ));
    let bad = [
        (
            "forged",
            format!("{PREFIX}{}", "x".repeat(KEY_LEN - PREFIX.len())),
        ),
        ("truncated", real[..KEY_LEN - 7].to_owned()),
        ("wrong checksum", wrong_checksum),
        (
            "unknown id",
            with_checksum(&format!(
                "{PREFIX}{}_{}",
                Uuid::new_v4().simple(),
                secret_of(&real)
            )),
        ),
        ("changed secret", changed_secret),
    ];

    let (status, keys_before) = app
        .call(Method::GET, &keys_path("target"), Some(&admin), None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    let events_before = app.last_position().await?;

    for (n, (what, key)) in bad.iter().enumerate() {
        assert_ne!(key, &real);
        // Each from its own address, so that the failure limit below stays out of the way.
        let client = client_from(&app, Ipv4Addr::new(127, 0, 0, 10 + n as u8))?;
        let (status, body) = client.exchange_api_key(key).await?;
        assert_refused_grant(status, &body, "invalid", what);
        assert!(
            !body.to_string().contains(secret_of(&real)),
            "{what}: {body}"
        );
        let (status, body) = client.current_user(key).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} as bearer: {body}");
        assert_eq!(body["code"], "invalid_api_key", "{what} as bearer: {body}");
        let (status, body) = client
            .call(Method::GET, &keys_path("target"), Some(key), None)
            .await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} as bearer: {body}");
    }

    // Nothing changed: no event, the key list as before (not even last_used).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.last_position().await?, events_before, "new events");
    let (_, keys_after) = app
        .call(Method::GET, &keys_path("target"), Some(&admin), None)
        .await?;
    assert_eq!(keys_after, keys_before);
    let (status, body) = app.exchange_api_key(&real).await?;
    assert_eq!(status, StatusCode::OK, "the real key still works: {body}");

    // Repeated failures from one address: 429 past the limit, for that address only.
    let attacker = client_from(&app, Ipv4Addr::new(127, 0, 0, 50))?;
    let unknown = &bad[3].1;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..10 {
        let response = attacker
            .http
            .post(app.at("/oauth/token"))
            .form(&[("grant_type", "api_key"), ("api_key", unknown.as_str())])
            .send()
            .await?;
        let status = response.status();
        statuses.push(status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            limited = Some((retry_after, response.json::<Value>().await?));
            break;
        }
    }
    let (retry_after, body) = limited.with_context(|| format!("never limited: {statuses:?}"))?;
    assert!(
        statuses.len() > 5 && statuses[..5].iter().all(|&s| s == 400),
        "the first failures are answered normally: {statuses:?}"
    );
    // (Normally at the 7th attempt: 5 free failures, the 6th blocks for a second.)
    assert!(statuses.len() <= 8, "limited too late: {statuses:?}");
    assert_eq!(body["error"], "too_many_attempts", "{body}");
    assert!(retry_after.is_some_and(|s| s >= 1), "no Retry-After");
    let (status, body) = attacker.current_user(unknown).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "as bearer: {body}");
    // The block is for that key from that address: another key still works from it (one
    // bad job behind a shared address does not lock out the others)...
    let (status, body) = attacker.exchange_api_key(&real).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    // ...and a success with it does not clear the failures of the guessed key.
    let (status, _) = attacker.exchange_api_key(unknown).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    // Spraying many key ids from one address blocks the address for every key.
    let sprayer = client_from(&app, Ipv4Addr::new(127, 0, 0, 51))?;
    let mut sprayed = Vec::new();
    for _ in 0..60 {
        let forged = with_checksum(&format!(
            "{PREFIX}{}_{}",
            Uuid::new_v4().simple(),
            secret_of(&real)
        ));
        let (status, _) = sprayer.exchange_api_key(&forged).await?;
        sprayed.push(status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(
        sprayed.last(),
        Some(&429),
        "a spray of key ids was never limited: {sprayed:?}"
    );
    let (status, _) = sprayer.exchange_api_key(&real).await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Other addresses are unaffected.
    let (status, body) = app.exchange_api_key(&real).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 7. The audit trail on JetStream
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_key_event_reaches_a_jetstream_subscriber_once_in_order_and_without_secrets()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    let stream = events_stream(&app).await?;
    let mut messages = subscribe(&stream, "gatehouse.events.api_key.>").await?;

    app.create_service_account(&admin, "auditee").await?;
    let mut issued = Vec::new();
    let (alpha, key) = app
        .create_api_key(
            &admin,
            "auditee",
            json!({"name": "alpha", "description": "first", "expires_in_seconds": 3600}),
        )
        .await?;
    issued.push(key);
    let (beta, key) = app
        .create_api_key(&admin, "auditee", json!({"name": "beta"}))
        .await?;
    issued.push(key);
    let (_, key) = app
        .rotate_api_key(
            &admin,
            "auditee",
            "alpha",
            json!({"retain_period_minutes": 1}),
        )
        .await?;
    issued.push(key);
    app.patch_api_key(
        &admin,
        "auditee",
        "beta",
        json!({"expires_in_seconds": 86400}),
    )
    .await?;
    app.patch_api_key(
        &admin,
        "auditee",
        "alpha",
        json!({"description": "alpha, rotated"}),
    )
    .await?;
    let (_, key) = app
        .rotate_api_key(&admin, "auditee", "beta", json!({}))
        .await?;
    issued.push(key);
    app.patch_api_key(&admin, "auditee", "alpha", json!({"active": false}))
        .await?;
    app.patch_api_key(&admin, "auditee", "beta", json!({"description": "second"}))
        .await?;
    app.patch_api_key(&admin, "auditee", "alpha", json!({"active": true}))
        .await?;
    app.patch_api_key(&admin, "auditee", "beta", json!({"active": false}))
        .await?;
    app.patch_api_key(
        &admin,
        "auditee",
        "alpha",
        json!({"expires_in_seconds": 7200}),
    )
    .await?;
    for name in ["alpha", "beta"] {
        let (status, body) = app
            .call(
                Method::DELETE,
                &key_path("auditee", name),
                Some(&admin),
                None,
            )
            .await?;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let expected: HashMap<String, Vec<&str>> = HashMap::from([
        (
            format!("api_key-{}", alpha["id"].as_str().unwrap_or_default()),
            vec![
                "created",
                "rotated",
                "description_changed",
                "deactivated",
                "reactivated",
                "expiry_changed",
                "deleted",
            ],
        ),
        (
            format!("api_key-{}", beta["id"].as_str().unwrap_or_default()),
            vec![
                "created",
                "expiry_changed",
                "rotated",
                "description_changed",
                "deactivated",
                "deleted",
            ],
        ),
    ]);
    let total: usize = expected.values().map(Vec::len).sum();

    let published = read_published(
        &mut messages,
        total,
        Duration::from_secs(15),
        Duration::from_secs(1),
    )
    .await?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_key: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    let mut last_sequence = 0;
    for p in &published {
        for key in &issued {
            assert!(
                !p.raw.contains(secret_of(key)) && !p.headers.contains(secret_of(key)),
                "an event carries a key's secret: {}",
                p.raw
            );
        }
        assert!(p.sequence > last_sequence, "stream order");
        last_sequence = p.sequence;
        let event: gatehouse_contracts::envelope::RecordedEvent =
            serde_json::from_value(p.event.clone())?;
        assert_eq!(p.subject, format!("gatehouse.events.{}", event.event_type));
        *seen.entry(event.event_id.to_string()).or_default() += 1;
        let actor = event
            .metadata
            .actor
            .as_ref()
            .with_context(|| format!("no actor: {}", p.raw))?;
        assert_eq!(actor.name, "admin", "{}", p.raw);
        assert_eq!(actor.kind.as_str(), "user", "{}", p.raw);
        assert!(actor.id.is_some(), "{}", p.raw);
        assert_eq!(
            event.metadata.client_ip.as_deref(),
            Some("127.0.0.1"),
            "{}",
            p.raw
        );
        assert!(
            (Utc::now() - event.recorded_at).num_seconds().abs() < 60,
            "{}",
            p.raw
        );
        let short = event
            .event_type
            .strip_prefix("api_key.")
            .with_context(|| format!("not a key event: {}", p.raw))?;
        per_key
            .entry(event.stream_id.to_string())
            .or_default()
            .push((event.version, short.to_owned()));
    }
    assert_eq!(
        published.len(),
        total,
        "duplicates or strays: {published:#?}"
    );
    assert!(seen.values().all(|&n| n == 1), "an event arrived twice");
    for (stream_id, types) in &expected {
        let got = per_key
            .get(stream_id)
            .with_context(|| format!("no events of {stream_id}"))?;
        let versions: Vec<i64> = got.iter().map(|(v, _)| *v).collect();
        assert_eq!(
            versions,
            (1..=types.len() as i64).collect::<Vec<_>>(),
            "{stream_id} out of order or with gaps"
        );
        let got_types: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(&got_types, types, "{stream_id}");
    }

    // `gatehouse audit tail` prints the same events, in the same order, as JSON lines.
    // As the read-only audit user, over TLS, as an auditor would.
    let count = total.to_string();
    let home = tempfile::tempdir()?;
    let mut env = app.nats.env(NatsUser::Audit);
    env.push((
        "HOME".to_owned(),
        home.path()
            .to_str()
            .context("temp dir is not UTF-8")?
            .to_owned(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (code, out, err) = run_cli_env(
        &[
            "audit",
            "tail",
            "--subject",
            "gatehouse.events.api_key.>",
            "--from-start",
            "--count",
            &count,
            "-o",
            "json",
        ],
        None,
        &env,
        Duration::from_secs(20),
    )
    .await?;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let tailed: Vec<String> = out
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        })
        .collect::<Result<_, _>>()?;
    let subscribed: Vec<String> = published
        .iter()
        .map(|p| p.event["event_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(tailed, subscribed);
    for key in &issued {
        assert!(!out.contains(secret_of(key)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Removing an expiry
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn removing_a_keys_expiry_with_null_lets_it_work_past_the_old_expiry() -> anyhow::Result<()> {
    let app = InProcApp::spawn().await?;
    let admin = app.admin_token().await?;
    app.create_service_account(&admin, "mortal").await?;
    let (created, key) = app
        .create_api_key(
            &admin,
            "mortal",
            json!({"name": "short", "expires_in_seconds": 3}),
        )
        .await?;
    let id = created["id"].as_str().context("no id")?.to_owned();
    let expires = timestamp(&created["expires_at"])?;

    let updated = app
        .patch_api_key(&admin, "mortal", "short", json!({"expires_at": null}))
        .await?;
    assert!(
        updated["expires_at"].is_null(),
        "PATCH {{\"expires_at\": null}} answered 200 but the key still expires: {updated}"
    );
    let types: Vec<String> = app
        .events_of(&format!("api_key-{id}"))
        .await?
        .into_iter()
        .map(|(_, t, _)| t)
        .collect();
    assert_eq!(types, ["api_key.created", "api_key.expiry_changed"]);

    // Past the old expiry, the key still works.
    let wait = (expires - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(500);
    tokio::time::sleep(wait).await;
    let (status, body) = app.exchange_api_key(&key).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(())
}

/// Issue 10, item 2: a secret rotated away at once (`retain 0`) before this gateway ever
/// saw it is reported as rotated, with the fix, not as an unknown key: the keys service keeps
/// retired secrets' keyed hashes to tell the two apart.
#[tokio::test]
async fn a_secret_rotated_away_at_once_is_reported_rotated_not_invalid() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    app.create_service_account(&admin, "rotator").await?;
    let (_, first) = app
        .create_api_key(&admin, "rotator", json!({"name": "ci"}))
        .await?;
    // Never used: no gateway cache knows it; only the keys service can tell.
    let (_, second) = app
        .rotate_api_key(&admin, "rotator", "ci", json!({"retain_period_seconds": 0}))
        .await?;
    // The CLI of a CI job holding the old secret says so, with the fix.
    let config = tempfile::tempdir()?;
    let config_dir = config.path().to_string_lossy();
    let (code, out, err) = run_cli_env(
        &["current-user"],
        None,
        &[
            ("GATEHOUSE_CONFIG_DIR", config_dir.as_ref()),
            ("GATEHOUSE_URL", app.url.as_str()),
            ("GATEHOUSE_API_KEY", first.as_str()),
        ],
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("rotated"), "{err}");
    let (status, body) = app.exchange_api_key(&first).await?;
    assert_refused_grant(status, &body, "rotated", "a secret retired at once");
    let (status, body) = app.current_user(&first).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "api_key_rotated", "{body}");
    // A key that never existed is still just invalid.
    let mut forged = second.clone();
    let last = forged.pop().context("empty key")?;
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let (status, body) = app.exchange_api_key(&forged).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_ne!(body["gatehouse_reason"], "rotated", "{body}");
    Ok(())
}
