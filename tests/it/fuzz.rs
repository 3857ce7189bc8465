//! Schema-based fuzzing: [schemathesis](https://schemathesis.readthedocs.io) generates
//! requests from `schemas/openapi.json` (valid ones and deliberately invalid ones: wrong
//! types, missing fields, bad headers and content types, boundary values) and checks every
//! answer of a real `gatehouse dev` server against the document.
//!
//! Two runs, one after the other, against one server:
//! - as the admin (password grant through `tests/fuzz/admin_auth.py`, which logs in again
//!   when the fuzzer has retired the signing key of its own token), so that every operation
//!   is reached past authentication and creates, changes and deletes for real;
//! - anonymously, so that the OAuth endpoints and every 401 answer are checked too.
//!
//! Checks: `not_a_server_error` (no 5xx), `status_code_conformance` (every status is
//! declared), `content_type_conformance`, `response_headers_conformance` (declared headers
//! such as `WWW-Authenticate` on 401 and `Retry-After` on 429 are there) and
//! `response_schema_conformance` (bodies match their schemas). Legitimate refusals of
//! schema-valid input (409 name taken, 422 wrong password, 429 under the limiters) are
//! declared in the document, not skipped. Phases: examples, coverage (boundary values) and
//! fuzzing; at most `EXAMPLES` cases per operation and round, and a time budget per run
//! (`ADMIN_SECONDS`, `ANONYMOUS_SECONDS`), so the test takes about two minutes. The seed
//! is random (schemathesis prints it; `GATEHOUSE_FUZZ_SEED` replays one).
//!
//! schemathesis comes from `scripts/test-deps` (`GATEHOUSE_SCHEMATHESIS`); without it this
//! test fails, naming that script.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use gatehouse_e2e::workspace_bin;
use gatehouse_testsupport::free_port;
use tokio::process::Command;

/// Environment variable naming the schemathesis binary (exported by `scripts/test-deps`).
const SCHEMATHESIS_ENV: &str = "GATEHOUSE_SCHEMATHESIS";
/// Cases per operation and round.
const EXAMPLES: &str = "25";
/// Time budget of the admin run, in seconds.
const ADMIN_SECONDS: u64 = 75;
/// Time budget of the anonymous run, in seconds.
const ANONYMOUS_SECONDS: u64 = 30;
/// The five checks.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";
const ADMIN_PASSWORD: &str = "fuzz-admin-password";

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn schemathesis_path() -> anyhow::Result<PathBuf> {
    const HOW: &str = "the fuzz test needs schemathesis: run `eval \"$(scripts/test-deps)\"` \
                       (it installs schemathesis into the tools virtualenv and exports \
                       GATEHOUSE_SCHEMATHESIS)";
    let path = std::env::var_os(SCHEMATHESIS_ENV)
        .map(PathBuf::from)
        .with_context(|| format!("{SCHEMATHESIS_ENV} is not set; {HOW}"))?;
    if !path.is_file() {
        bail!(
            "{SCHEMATHESIS_ENV}={} does not exist; {HOW}",
            path.display()
        );
    }
    Ok(path)
}

/// Waits until the dev server answers `/readyz` with 200.
async fn wait_ready(url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = http.get(format!("{url}/readyz")).send().await;
        if response.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("gatehouse dev did not become ready at {url} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs schemathesis once; `Err` with its whole report when it found failures.
async fn fuzz(
    bin: &Path,
    url: &str,
    work: &Path,
    name: &str,
    seconds: u64,
    hooks: Option<&Path>,
) -> anyhow::Result<()> {
    let schema = repo_path("schemas/openapi.json");
    let mut command = Command::new(bin);
    command
        .current_dir(work)
        .arg("run")
        .arg(&schema)
        .args(["--url", url, "--checks", CHECKS, "--max-examples", EXAMPLES])
        .args(["--max-time", &seconds.to_string()])
        // One worker: with two, schemathesis on this machine's Python 3.11 died in its
        // coverage phase with "SystemError: AST constructor recursion depth mismatch" (from
        // `compile()` running in several threads at once).
        .args(["--phases", "examples,coverage,fuzzing", "--workers", "1"])
        .args(["--generation-database", "none", "--no-color"])
        // The event feed is a Server-Sent Events stream that stays open by design: a run
        // would wait on it until its timeout for every case. Its answers (200 stream, 401,
        // 403, 4xx for bad filters) are checked by tests/it/event_feed.rs.
        .args(["--exclude-path", "/api/v1/events"])
        .env("GATEHOUSE_FUZZ_URL", url)
        .env("GATEHOUSE_FUZZ_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env_remove("SCHEMATHESIS_HOOKS")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(hooks) = hooks {
        command.env("SCHEMATHESIS_HOOKS", hooks);
    }
    if let Some(seed) = std::env::var_os("GATEHOUSE_FUZZ_SEED") {
        command.arg("--seed").arg(seed);
    }
    let started = Instant::now();
    // The budget bounds the run; the margin covers loading the schema and the last cases.
    let output = tokio::time::timeout(Duration::from_secs(seconds + 60), command.output())
        .await
        .with_context(|| format!("the {name} fuzz run did not end within {seconds} s + 60 s"))?
        .with_context(|| format!("running {}", bin.display()))?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "{name} fuzz run: {:.0?}, {}",
        started.elapsed(),
        report
            .lines()
            .rfind(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())
                && l.contains(" generated"))
            .unwrap_or("")
            .trim()
    );
    if !output.status.success() {
        bail!(
            "schemathesis found failures in the {name} run ({}):\n{report}",
            output.status
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_api_answers_as_its_openapi_document_says_under_fuzzing() -> anyhow::Result<()> {
    let schemathesis = schemathesis_path()?;
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _server = Command::new(workspace_bin("gatehouse")?)
        .arg("dev")
        .env("GATEHOUSE_BIND", format!("127.0.0.1:{port}"))
        .env("GATEHOUSE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env_remove("GATEHOUSE_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    wait_ready(&url).await?;
    let work = tempfile::Builder::new()
        .prefix("gatehouse-fuzz-")
        .tempdir()?;
    let hooks = repo_path("tests/fuzz/admin_auth.py");
    fuzz(
        &schemathesis,
        &url,
        work.path(),
        "admin",
        ADMIN_SECONDS,
        Some(&hooks),
    )
    .await?;
    fuzz(
        &schemathesis,
        &url,
        work.path(),
        "anonymous",
        ANONYMOUS_SECONDS,
        None,
    )
    .await
}
