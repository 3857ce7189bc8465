use std::os::unix::fs::PermissionsExt;

use gatehouse_e2e::{ADMIN_PASSWORD, TestApp};

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
