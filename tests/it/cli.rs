//! The `gatehouse` CLI end to end: the README session, and what a new user trips over
//! (issue 10), against the real server.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use gatehouse_e2e::{ADMIN_PASSWORD, TestApp, run_cli_env};
use reqwest::{Method, StatusCode};

use crate::api_keys::{cli_ok as ok, printed_keys};

/// Runs the CLI as a CI job would: `GATEHOUSE_API_KEY=key`, `dir` as config dir (where the
/// token cache lives), nothing else from the environment.
async fn cli_with_key(
    app: &TestApp,
    dir: &Path,
    key: &str,
    args: &[&str],
) -> anyhow::Result<(i32, String, String)> {
    let dir = dir.to_string_lossy();
    run_cli_env(
        args,
        None,
        &[
            ("GATEHOUSE_CONFIG_DIR", dir.as_ref()),
            ("GATEHOUSE_URL", app.url.as_str()),
            ("GATEHOUSE_API_KEY", key),
        ],
        Duration::from_secs(60),
    )
    .await
}

/// An admin session saved in `dir`.
async fn admin_login(app: &TestApp, dir: &Path) -> anyhow::Result<()> {
    ok(
        app,
        dir,
        &["login", "--username", "admin", "--password-stdin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
    )
    .await
    .map(drop)
}

/// The one key `out` prints.
fn the_printed_key(out: &str) -> anyhow::Result<String> {
    match printed_keys(out).as_slice() {
        [key] => Ok(key.clone()),
        other => anyhow::bail!("expected one key, found {}: {out}", other.len()),
    }
}

#[tokio::test]
async fn a_rotated_away_secret_never_rides_on_the_token_its_successor_cached() -> anyhow::Result<()>
{
    let app = TestApp::spawn().await?;
    let admin = tempfile::tempdir()?;
    admin_login(&app, admin.path()).await?;
    let created = ok(
        &app,
        admin.path(),
        &["service-account", "create", "ci-bot"],
        None,
    )
    .await?;
    let old = the_printed_key(&created)?;
    // The key stands alone at the end, under what to do with it.
    assert_eq!(created.lines().last(), Some(old.as_str()), "{created}");
    assert!(
        created.contains("as GATEHOUSE_API_KEY")
            && created.contains(&format!("gatehouse login --url {} --api-key", app.url)),
        "{created}"
    );

    // The CI job's machine: one config dir, so one token cache, for both secrets.
    let ci = tempfile::tempdir()?;
    let (code, out, err) = cli_with_key(&app, ci.path(), &old, &["current-user"]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ci-bot"), "{out}");

    let rotated = ok(
        &app,
        admin.path(),
        &["service-account", "api-key", "ci-bot", "rotate", "default"],
        None,
    )
    .await?;
    assert!(
        rotated.contains("(generation 1) stopped working now"),
        "{rotated}"
    );
    let new = the_printed_key(&rotated)?;
    assert_ne!(new, old);
    let (code, out, err) = cli_with_key(&app, ci.path(), &new, &["current-user"]).await?;
    assert_eq!(code, 0, "the new secret works: {out}{err}");

    // The old secret (retain 0) stopped working: it must not find the new one's token.
    let (code, out, err) = cli_with_key(&app, ci.path(), &old, &["current-user"]).await?;
    assert_eq!(code, 1, "the old secret was accepted: {out}{err}");
    assert!(!err.contains(&old) && !err.contains(&new), "{err}");
    let (code, out, err) = cli_with_key(&app, ci.path(), &new, &["current-user"]).await?;
    assert_eq!(code, 0, "the new secret still works: {out}{err}");
    Ok(())
}

#[tokio::test]
async fn the_cli_session_from_the_readme_works() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let home = tempfile::tempdir()?;
    let dir = home.path();
    let run = |args: Vec<&'static str>, stdin: Option<String>| {
        let app = &app;
        async move {
            let (code, out, err) = app.cli(dir, &args, stdin.as_deref()).await?;
            anyhow::ensure!(
                code == 0,
                "gatehouse {args:?} exited {code}\nstdout: {out}\nstderr: {err}"
            );
            anyhow::Ok(out)
        }
    };

    // Not logged in yet: a clear error, exit 1.
    let (code, _, err) = app.cli(dir, &["service-account", "list"], None).await?;
    assert_eq!(code, 1);
    assert!(err.contains("login"), "{err}");

    let out = run(
        vec!["login", "--username", "admin", "--password-stdin"],
        Some(format!("{ADMIN_PASSWORD}\n")),
    )
    .await?;
    assert!(out.contains("admin"), "{out}");
    let credentials = std::fs::read_dir(dir)?
        .flatten()
        .find(|e| e.file_name() == "credentials.json")
        .map(|e| e.path());
    let credentials =
        credentials.ok_or_else(|| anyhow::anyhow!("no credentials file in {}", dir.display()))?;
    assert_eq!(
        std::fs::metadata(&credentials)?.permissions().mode() & 0o777,
        0o600
    );

    run(
        vec![
            "service-account",
            "create",
            "ci-bot",
            "--description",
            "nightly training",
        ],
        None,
    )
    .await?;
    let table = run(vec!["service-account", "list"], None).await?;
    assert!(
        table.contains("ci-bot") && table.contains("nightly training"),
        "{table}"
    );
    assert!(
        table.lines().next().unwrap_or_default().contains("NAME"),
        "a header row: {table}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&run(vec!["service-account", "list", "-o", "json"], None).await?)?;
    assert_eq!(json["items"][0]["name"], "ci-bot");

    let described: serde_json::Value = serde_json::from_str(
        &run(
            vec!["service-account", "describe", "ci-bot", "-o", "json"],
            None,
        )
        .await?,
    )?;
    assert_eq!(described["description"], "nightly training");
    assert_eq!(described["active"], true);

    run(
        vec!["service-account", "update", "ci-bot", "--active", "false"],
        None,
    )
    .await?;
    let described: serde_json::Value = serde_json::from_str(
        &run(
            vec!["service-account", "describe", "ci-bot", "-o", "json"],
            None,
        )
        .await?,
    )?;
    assert_eq!(described["active"], false);

    run(
        vec![
            "user",
            "create",
            "alice",
            "--role",
            "member",
            "--password-stdin",
        ],
        Some("alice-password-1\n".into()),
    )
    .await?;
    let users = run(vec!["user", "list"], None).await?;
    assert!(users.contains("alice"), "{users}");

    run(vec!["service-account", "delete", "ci-bot", "--yes"], None).await?;
    let (code, _, err) = app
        .cli(dir, &["service-account", "describe", "ci-bot"], None)
        .await?;
    assert_eq!(code, 1);
    assert!(
        err.contains("not_found")
            || err.contains("not found")
            || err.contains("no service account"),
        "{err}"
    );

    let me: serde_json::Value =
        serde_json::from_str(&run(vec!["current-user", "-o", "json"], None).await?)?;
    assert_eq!(me["name"], "admin");

    // A duplicate is a readable error, not a stack trace.
    run(vec!["service-account", "create", "dup"], None).await?;
    let (code, _, err) = app
        .cli(dir, &["service-account", "create", "dup"], None)
        .await?;
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");

    run(vec!["logout"], None).await?;
    assert!(!credentials.exists());
    Ok(())
}

#[tokio::test]
async fn after_a_second_rotation_the_cli_says_what_is_true_of_each_secret() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = tempfile::tempdir()?;
    admin_login(&app, admin.path()).await?;
    let key = |rest: &[&'static str]| {
        let mut args = vec!["service-account", "api-key", "ci-bot"];
        args.extend_from_slice(rest);
        args
    };
    ok(
        &app,
        admin.path(),
        &["service-account", "create", "ci-bot", "--no-api-key"],
        None,
    )
    .await?;
    let gen1 = the_printed_key(&ok(&app, admin.path(), &key(&["create", "deploy"]), None).await?)?;
    let out = ok(
        &app,
        admin.path(),
        &key(&["rotate", "deploy", "--retain", "60"]),
        None,
    )
    .await?;
    let gen2 = the_printed_key(&out)?;
    assert!(out.contains("(generation 1) keeps working until"), "{out}");
    let out = ok(&app, admin.path(), &key(&["rotate", "deploy"]), None).await?;
    let gen3 = the_printed_key(&out)?;

    // What the server does: generation 2 stopped, 1 and 3 work.
    let works = |k: String| {
        let app = &app;
        async move {
            let (status, _) = app.exchange_api_key(&k).await?;
            anyhow::Ok(status.is_success())
        }
    };
    assert!(works(gen1).await? && !works(gen2).await? && works(gen3.clone()).await?);
    // What the CLI says about it.
    assert!(
        out.contains("(generation 2) stopped working now"),
        "the replaced secret: {out}"
    );
    assert!(
        out.contains("(generation 1) keeps working until"),
        "the secret an earlier rotation retained: {out}"
    );
    assert!(!out.contains("(generation 2) keeps working"), "{out}");
    // The new key stands alone at the end, under the next step.
    assert_eq!(out.lines().last(), Some(gen3.as_str()), "{out}");
    assert!(
        out.contains("replace GATEHOUSE_API_KEY")
            && out.contains(&format!("GATEHOUSE_URL={}", app.url)),
        "{out}"
    );
    Ok(())
}

#[tokio::test]
async fn a_deactivated_user_is_told_that_an_admin_can_undo_it() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = tempfile::tempdir()?;
    admin_login(&app, admin.path()).await?;
    ok(
        &app,
        admin.path(),
        &[
            "user",
            "create",
            "alice",
            "--role",
            "member",
            "--password-stdin",
        ],
        Some("alice-password-1\n"),
    )
    .await?;
    let alice = tempfile::tempdir()?;
    ok(
        &app,
        alice.path(),
        &["login", "--username", "alice", "--password-stdin"],
        Some("alice-password-1\n"),
    )
    .await?;
    ok(
        &app,
        admin.path(),
        &["user", "update", "alice", "--active", "false"],
        None,
    )
    .await?;

    let (code, _, err) = app.cli(alice.path(), &["current-user"], None).await?;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("your account is deactivated")
            && err.contains("--active true")
            && err.contains("admin"),
        "the server says the account is deactivated, not just revoked: {err}"
    );
    Ok(())
}

#[tokio::test]
async fn retain_and_expires_in_share_one_duration_grammar() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = tempfile::tempdir()?;
    admin_login(&app, admin.path()).await?;
    let dir = admin.path();
    let key = |rest: &[&'static str]| {
        let mut args = vec!["service-account", "api-key", "ci-bot"];
        args.extend_from_slice(rest);
        args
    };
    ok(
        &app,
        dir,
        &["service-account", "create", "ci-bot", "--no-api-key"],
        None,
    )
    .await?;
    ok(
        &app,
        dir,
        &key(&["create", "deploy", "--expires-in", "2d"]),
        None,
    )
    .await?;

    // --retain takes a unit like --expires-in...
    ok(
        &app,
        dir,
        &key(&["rotate", "deploy", "--retain", "90s"]),
        None,
    )
    .await?;
    let described: serde_json::Value = serde_json::from_str(
        &ok(&app, dir, &key(&["describe", "deploy", "-o", "json"]), None).await?,
    )?;
    let until = described["retained_secrets"][0]["valid_until"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .ok_or_else(|| anyhow::anyhow!("no retained secret: {described}"))?;
    let left = until
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((60..=90).contains(&left), "--retain 90s kept it {left} s");
    // ...and a bare number keeps meaning minutes.
    ok(
        &app,
        dir,
        &key(&["rotate", "deploy", "--retain", "2"]),
        None,
    )
    .await?;
    let described: serde_json::Value = serde_json::from_str(
        &ok(&app, dir, &key(&["describe", "deploy", "-o", "json"]), None).await?,
    )?;
    let left = described["retained_secrets"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["generation"] == 2))
        .and_then(|r| r["valid_until"].as_str())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.signed_duration_since(chrono::Utc::now()).num_seconds())
        .ok_or_else(|| anyhow::anyhow!("generation 2 not retained: {described}"))?;
    assert!((90..=120).contains(&left), "--retain 2 kept it {left} s");

    // Limits in the unit typed; a usage error exits 2 and sends nothing.
    for (retain, limit) in [
        ("50000", "at most 43200 minutes (30 days)"),
        ("800h", "at most 720 hours (30 days)"),
    ] {
        let (code, _, err) = app
            .cli(dir, &key(&["rotate", "deploy", "--retain", retain]), None)
            .await?;
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(limit), "{retain}: {err}");
    }
    let (code, _, err) = app
        .cli(
            dir,
            &key(&["create", "later", "--expires-in", "3661d"]),
            None,
        )
        .await?;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at most 3660 days (10 years)"), "{err}");
    let described: serde_json::Value = serde_json::from_str(
        &ok(&app, dir, &key(&["describe", "deploy", "-o", "json"]), None).await?,
    )?;
    assert_eq!(
        described["generation"], 3,
        "nothing was rotated: {described}"
    );

    // Each --help says what a bare number means.
    let help = ok(&app, dir, &key(&["rotate", "--help"]), None).await?;
    assert!(help.contains("a bare number is minutes"), "{help}");
    let help = ok(&app, dir, &key(&["create", "--help"]), None).await?;
    assert!(help.contains("a bare number is seconds"), "{help}");
    Ok(())
}

#[tokio::test]
async fn list_tables_fit_80_columns_and_an_expired_key_says_so() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = tempfile::tempdir()?;
    admin_login(&app, admin.path()).await?;
    let dir = admin.path();
    ok(
        &app,
        dir,
        &[
            "service-account",
            "create",
            "recommendation-training",
            "--description",
            "Nightly training pipeline for the recommendation models, owned by the ML platform team",
        ],
        None,
    )
    .await?;
    let key = |rest: &[&'static str]| {
        let mut args = vec!["service-account", "api-key", "recommendation-training"];
        args.extend_from_slice(rest);
        args
    };
    ok(
        &app,
        dir,
        &key(&["create", "deploy-production", "--expires-in", "30d"]),
        None,
    )
    .await?;
    ok(
        &app,
        dir,
        &key(&["create", "short-lived", "--expires-in", "1s"]),
        None,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let fits = |what: &str, out: &str| {
        for line in out.lines() {
            assert!(
                line.chars().count() <= 80,
                "{what}: {} wide:\n{out}",
                line.chars().count()
            );
        }
    };
    let keys = ok(&app, dir, &key(&["list"]), None).await?;
    fits("api-key list", &keys);
    assert!(keys.contains("(UTC)"), "times say they are UTC: {keys}");
    let short = keys
        .lines()
        .find(|l| l.starts_with("short-lived"))
        .unwrap_or_default();
    assert!(short.contains("EXPIRED"), "{keys}");
    let wide = ok(&app, dir, &key(&["list", "--wide"]), None).await?;
    assert!(wide.contains("GENERATION") && wide.contains("ID"), "{wide}");
    let accounts = ok(&app, dir, &["service-account", "list"], None).await?;
    fits("service-account list", &accounts);
    fits("user list", &ok(&app, dir, &["user", "list"], None).await?);
    fits(
        "signing-key list",
        &ok(&app, dir, &["signing-key", "list"], None).await?,
    );
    let wide = ok(&app, dir, &["service-account", "list", "--wide"], None).await?;
    assert!(
        wide.contains("owned by the ML platform team"),
        "--wide is whole: {wide}"
    );
    Ok(())
}

#[tokio::test]
async fn errors_read_cleanly_and_with_json_output_are_the_apis_error_object() -> anyhow::Result<()>
{
    let app = TestApp::spawn().await?;
    let admin = tempfile::tempdir()?;
    admin_login(&app, admin.path()).await?;
    let dir = admin.path();

    // -o json: the API's error object on stderr, exit 1.
    ok(
        &app,
        dir,
        &["service-account", "create", "dup", "--no-api-key"],
        None,
    )
    .await?;
    let (code, out, err) = app
        .cli(
            dir,
            &[
                "service-account",
                "create",
                "dup",
                "--no-api-key",
                "-o",
                "json",
            ],
            None,
        )
        .await?;
    assert_eq!(code, 1, "{out}{err}");
    let object: serde_json::Value = serde_json::from_str(err.trim())?;
    assert_eq!(object["error"], "conflict", "{object}");
    assert!(
        object["code"].is_string() && object["message"].is_string(),
        "{object}"
    );
    assert!(object["request_id"].is_string(), "{object}");

    // Usage errors exit 2, in JSON too; nothing is sent.
    let (code, _, err) = app.cli(dir, &["user", "update", "admin"], None).await?;
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("error: nothing to change"), "{err}");
    let (code, _, err) = app
        .cli(
            dir,
            &[
                "service-account",
                "api-key",
                "dup",
                "rotate",
                "k",
                "--retain",
                "soon",
                "-o",
                "json",
            ],
            None,
        )
        .await?;
    assert_eq!(code, 2, "{err}");
    let object: serde_json::Value = serde_json::from_str(err.trim())?;
    assert_eq!(object["error"], "invalid_usage", "{object}");

    // No repeated OS error tails.
    let (code, _, err) = app
        .cli(
            tempfile::tempdir()?.path(),
            &[
                "login",
                "--url",
                "http://127.0.0.1:1",
                "--username",
                "admin",
                "--password-stdin",
            ],
            Some("x\n"),
        )
        .await?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot reach Gatehouse"), "{err}");
    assert!(err.matches("os error").count() <= 1, "{err}");

    // The wrong-password limit says it counts per user name.
    let fresh = tempfile::tempdir()?;
    let mut last = String::new();
    for _ in 0..7 {
        let (code, _, err) = app
            .cli(
                fresh.path(),
                &["login", "--username", "admin", "--password-stdin"],
                Some("wrong-password\n"),
            )
            .await?;
        assert_eq!(code, 1, "{err}");
        last = err;
    }
    assert!(last.contains("per user name"), "{last}");
    assert!(!last.contains("(too_many_attempts)"), "{last}");
    Ok(())
}

/// How many kept answers (`idempotency` rows) the log holds for the stream of `id`.
async fn kept_answers(app: &TestApp, id: &str) -> anyhow::Result<i64> {
    let (client, connection) = tokio_postgres::connect(app.db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FROM idempotency WHERE stream_id LIKE '%' || $1 || '%'",
            &[&id],
        )
        .await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn every_create_carries_an_idempotency_key_so_a_lost_answer_can_be_retried()
-> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = tempfile::tempdir()?;
    admin_login(&app, admin.path()).await?;
    let json = |out: String| serde_json::from_str::<serde_json::Value>(&out);
    let account = json(
        ok(
            &app,
            admin.path(),
            &["service-account", "create", "keyed-bot", "-o", "json"],
            None,
        )
        .await?,
    )?;
    let key = json(
        ok(
            &app,
            admin.path(),
            &[
                "service-account",
                "api-key",
                "keyed-bot",
                "create",
                "second",
                "-o",
                "json",
            ],
            None,
        )
        .await?,
    )?;
    let user = json(
        ok(
            &app,
            admin.path(),
            &[
                "user",
                "create",
                "keyed-user",
                "--password-stdin",
                "-o",
                "json",
            ],
            Some("keyed-user-password-1\n"),
        )
        .await?,
    )?;
    // The server keeps an answer only for a request that carried an Idempotency-Key: it is
    // what a retry of the same request is answered with (for a key, the same secret).
    for (what, id) in [
        ("the service account", &account["id"]),
        ("its default key", &account["api_key"]["id"]),
        ("the added key", &key["id"]),
        ("the user", &user["id"]),
    ] {
        let id = id.as_str().context(what)?;
        assert_eq!(kept_answers(&app, id).await?, 1, "{what} ({id})");
    }
    Ok(())
}

/// `service-account api-key unsure-bot create deploy -o json`, with `--idempotency-key key`.
async fn create_deploy(
    app: &TestApp,
    dir: &Path,
    key: Option<&str>,
) -> anyhow::Result<(i32, String, String)> {
    let mut args = vec![
        "service-account",
        "api-key",
        "unsure-bot",
        "create",
        "deploy",
        "-o",
        "json",
    ];
    if let Some(key) = key {
        args.extend(["--idempotency-key", key]);
    }
    app.cli(dir, &args, None).await
}

#[tokio::test]
async fn a_create_whose_outcome_is_unknown_names_its_idempotency_key_and_a_rerun_with_it_settles_it()
-> anyhow::Result<()> {
    let mut app = TestApp::spawn().await?;
    let admin = tempfile::tempdir()?;
    admin_login(&app, admin.path()).await?;
    ok(
        &app,
        admin.path(),
        &["service-account", "create", "unsure-bot", "--no-api-key"],
        None,
    )
    .await?;
    // NATS is down: the gateway cannot tell whether the key was created (503, twice).
    app.nats.stop().await?;
    let (code, out, err) = create_deploy(&app, admin.path(), None).await?;
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    let error: serde_json::Value = serde_json::from_str(err.trim())?;
    let key = error["idempotency_key"]
        .as_str()
        .with_context(|| format!("no idempotency_key in {err}"))?
        .to_owned();
    assert_eq!(
        error["error"], "unavailable",
        "the API's error object: {err}"
    );

    // Run again with that key once NATS is back: the first result, one key.
    app.nats.restart().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        let (code, out, err) = create_deploy(&app, admin.path(), Some(&key)).await?;
        if code == 0 {
            break serde_json::from_str::<serde_json::Value>(&out)?;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "never settled: {err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (code, out, err) = create_deploy(&app, admin.path(), Some(&key)).await?;
    assert_eq!(code, 0, "{err}");
    let again: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(again["key"], first["key"], "a rerun shows the same key");
    let listed: serde_json::Value = serde_json::from_str(
        &ok(
            &app,
            admin.path(),
            &[
                "service-account",
                "api-key",
                "unsure-bot",
                "list",
                "-o",
                "json",
            ],
            None,
        )
        .await?,
    )?;
    assert_eq!(listed["total"], 1, "{listed}");
    let secret = first["key"].as_str().context("the key")?;
    let (code, _, err) = cli_with_key(&app, admin.path(), secret, &["current-user"]).await?;
    assert_eq!(code, 0, "the key works: {err}");
    Ok(())
}

/// Issue 10, item 5: answers carry names beside ids (a member may not read other users), and
/// `describe` shows the owner's and the service account's names, not UUIDs.
#[tokio::test]
async fn describe_shows_names_not_uuids() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    let (status, account) = app
        .call(
            Method::POST,
            "/api/v1/service_accounts",
            Some(&admin),
            Some(serde_json::json!({"name": "named-bot"})),
        )
        .await?;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    assert_eq!(account["owner_name"], "admin", "{account}");
    let owner_id = account["owner"].as_str().unwrap_or_default().to_owned();

    let config = tempfile::tempdir()?;
    let (code, _, err) = app
        .cli(
            config.path(),
            &["login", "--username", "admin", "--password-stdin"],
            Some(&format!("{ADMIN_PASSWORD}\n")),
        )
        .await?;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = app
        .cli(
            config.path(),
            &["service-account", "describe", "named-bot"],
            None,
        )
        .await?;
    assert_eq!(code, 0, "{err}");
    let owner_line = out
        .lines()
        .find(|l| l.trim_start().to_lowercase().starts_with("owner"))
        .unwrap_or_default();
    assert!(owner_line.contains("admin"), "{out}");
    assert!(!out.contains(&owner_id), "no owner UUID: {out}");

    let (code, out, err) = app
        .cli(
            config.path(),
            &[
                "service-account",
                "api-key",
                "named-bot",
                "create",
                "deploy",
            ],
            None,
        )
        .await?;
    assert_eq!(code, 0, "{err}{out}");
    let (code, out, err) = app
        .cli(
            config.path(),
            &[
                "service-account",
                "api-key",
                "named-bot",
                "describe",
                "deploy",
            ],
            None,
        )
        .await?;
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.trim_start().to_lowercase().starts_with("service account"))
        .unwrap_or_default();
    assert!(line.contains("named-bot"), "{out}");
    Ok(())
}
