//! `GET /api/v1/events` (issue 10, item 11): the audit trail without bus access, as
//! Server-Sent Events, and `gatehouse audit tail` following it through the saved session.

use std::time::Duration;

use anyhow::Context as _;
use gatehouse_e2e::{ADMIN_PASSWORD, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

/// Reads SSE messages from `response` until `wanted` has been seen; returns every
/// (id, envelope) read.
async fn read_until(
    response: &mut reqwest::Response,
    mut wanted: impl FnMut(&Value) -> bool,
) -> anyhow::Result<Vec<(i64, Value)>> {
    let mut buffer = String::new();
    let mut seen = Vec::new();
    let read = async {
        while let Some(chunk) = response.chunk().await? {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let message: String = buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in message.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse::<i64>().ok();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str::<Value>(v)?);
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    let done = wanted(&data);
                    seen.push((id, data));
                    if done {
                        return anyhow::Ok(());
                    }
                }
            }
        }
        anyhow::bail!("the feed ended")
    };
    tokio::time::timeout(WAIT, read)
        .await
        .context("the awaited event never came")??;
    Ok(seen)
}

async fn open(
    app: &TestApp,
    token: Option<&str>,
    query: &str,
) -> anyhow::Result<reqwest::Response> {
    let mut request = app.http.get(app.at(&format!("/api/v1/events{query}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Ok(request.send().await?)
}

fn created(name: &'static str) -> impl FnMut(&Value) -> bool {
    move |e| e["event_type"] == "service_account.created" && e["payload"]["name"] == name
}

#[tokio::test]
async fn admins_follow_the_log_as_server_sent_events_filtered_and_resumable() -> anyhow::Result<()>
{
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    let member = app.user_with_token(&admin, "watcher", "member").await?;
    app.create_service_account(&admin, "feed-a").await?;

    // Everything from the start, only service accounts: the envelope as on NATS.
    let mut feed = open(&app, Some(&admin), "?since=0&aggregate=service_account").await?;
    assert_eq!(feed.status(), StatusCode::OK);
    assert_eq!(
        feed.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let seen = read_until(&mut feed, created("feed-a")).await?;
    assert!(
        seen.iter().all(|(_, e)| e["stream_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("service_account-"))),
        "only service accounts: {seen:?}"
    );
    let (last_id, event) = seen.last().context("no event")?.clone();
    assert_eq!(
        event["position"],
        json!(last_id),
        "the id is the log position"
    );
    for field in [
        "event_id",
        "version",
        "schema_version",
        "metadata",
        "recorded_at",
    ] {
        assert!(event.get(field).is_some(), "{field} missing: {event}");
    }

    // New events arrive on the open stream.
    app.create_service_account(&admin, "feed-b").await?;
    read_until(&mut feed, created("feed-b")).await?;
    drop(feed);

    // Resuming with Last-Event-ID starts right after that event.
    let mut resumed = app
        .http
        .get(app.at("/api/v1/events?aggregate=service_account"))
        .bearer_auth(&admin)
        .header("Last-Event-ID", last_id.to_string())
        .send()
        .await?;
    let seen = read_until(&mut resumed, created("feed-b")).await?;
    assert_eq!(seen.len(), 1, "only what came after {last_id}: {seen:?}");
    drop(resumed);

    // Without since: only new events; a type filter.
    let mut fresh = open(&app, Some(&admin), "?type=service_account.created").await?;
    app.create_service_account(&admin, "feed-c").await?;
    let seen = read_until(&mut fresh, created("feed-c")).await?;
    assert_eq!(seen.len(), 1, "{seen:?}");

    // Members and strangers may not; bad filters are refused.
    assert_eq!(
        open(&app, Some(&member), "").await?.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        open(&app, None, "").await?.status(),
        StatusCode::UNAUTHORIZED
    );
    for bad in ["?aggregate=Nope", "?type=created", "?since=-1"] {
        let response = open(&app, Some(&admin), bad).await?;
        assert!(
            response.status().is_client_error(),
            "{bad}: {}",
            response.status()
        );
    }
    Ok(())
}

#[tokio::test]
async fn audit_tail_follows_the_feed_through_the_saved_session() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let admin = app.admin_token().await?;
    app.create_service_account(&admin, "tailed").await?;
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
            &[
                "audit",
                "tail",
                "--from-start",
                "--subject",
                "gatehouse.events.service_account.>",
                "--count",
                "1",
                "-o",
                "json",
            ],
            None,
        )
        .await?;
    assert_eq!(code, 0, "{err}");
    let event: Value = serde_json::from_str(out.trim()).context("one JSON line")?;
    assert_eq!(event["event_type"], "service_account.created", "{out}");
    assert_eq!(event["payload"]["name"], "tailed", "{out}");

    // A filter the gateway cannot express says to read NATS instead.
    let (code, _, err) = app
        .cli(
            config.path(),
            &[
                "audit",
                "tail",
                "--subject",
                "gatehouse.events.*.created",
                "--count",
                "1",
            ],
            None,
        )
        .await?;
    assert_ne!(code, 0);
    assert!(err.contains("--nats-url"), "{err}");
    Ok(())
}
