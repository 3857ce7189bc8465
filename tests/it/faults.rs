//! Faults under load: `gatehouse serve` killed (SIGKILL) and restarted, nats-server stopped
//! and restarted, and both at once, while writers create service accounts with
//! idempotency keys and retry each key until it is acknowledged. Afterwards every
//! acknowledged create exists exactly once, in the API and in the log, and the JetStream
//! stream holds every event of the log exactly once. No timing is asserted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use gatehouse_bus::jetstream::{JetStreamFeed, STREAM_NAME};
use gatehouse_e2e::{NatsUser, TestApp};
use gatehouse_eventlog::{EventFeed, StartFrom, SubscriptionSpec};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// How long one create may keep being retried before the test gives up on it.
const ACKNOWLEDGE_WITHIN: Duration = Duration::from_secs(45);
/// Upper bound on waiting for the outbox, the read models and the stream to settle.
const SETTLE_WITHIN: Duration = Duration::from_secs(30);
const WRITERS: usize = 4;

/// An acknowledged create: the name sent and the id answered.
#[derive(Debug)]
struct Acknowledged {
    name: String,
    id: Uuid,
    /// Answers "404 no service account <id>" before it: the create was done, but the read
    /// models had not caught up within the gateway's consistency wait.
    not_found_first: usize,
}

/// Creates service account `name` with idempotency key `key`, retrying the same key on
/// anything that is not an answer about it (no connection, 5xx, the key still in
/// progress, a create done but not yet readable) until it is acknowledged.
async fn create_until_acknowledged(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    name: &str,
    key: &str,
) -> anyhow::Result<Acknowledged> {
    let deadline = Instant::now() + ACKNOWLEDGE_WITHIN;
    let mut last = String::new();
    let mut not_found_first = 0;
    while Instant::now() < deadline {
        let sent = http
            .post(url)
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({ "name": name }))
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if status == StatusCode::CREATED {
                    let id = body["id"]
                        .as_str()
                        .and_then(|id| id.parse().ok())
                        .with_context(|| format!("201 without an id: {body}"))?;
                    return Ok(Acknowledged {
                        name: name.to_owned(),
                        id,
                        not_found_first,
                    });
                }
                let in_progress =
                    status == StatusCode::CONFLICT && body["code"] == "idempotency_in_progress";
                let not_readable_yet =
                    status == StatusCode::NOT_FOUND && body["error"] == "not_found";
                not_found_first += usize::from(not_readable_yet);
                if !status.is_server_error() && !in_progress && !not_readable_yet {
                    bail!("creating {name} (key {key}) was refused: {status} {body}");
                }
                last = format!("{status} {body}");
            }
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{name} (key {key}) not acknowledged within {ACKNOWLEDGE_WITHIN:?}; last answer: {last}")
}

/// Writer `writer`: creates `fault-<writer>-<n>` for n = 1, 2, ... until `stop`, each with
/// its own key, and returns what was acknowledged.
async fn writer(
    writer: usize,
    http: reqwest::Client,
    url: String,
    token: String,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<Acknowledged>> {
    let mut acknowledged = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let name = format!("fault-{writer}-{n}");
        let key = format!("key-{writer}-{n}-{}", Uuid::new_v4());
        acknowledged.push(create_until_acknowledged(&http, &url, &token, &name, &key).await?);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(acknowledged)
}

/// Waits (bounded) until the relay has published every event of the log.
async fn outbox_drained(db: &tokio_postgres::Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_WITHIN;
    loop {
        let unpublished: i64 = db
            .query_one(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                &[],
            )
            .await?
            .get(0);
        if unpublished == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{unpublished} events still unpublished after {SETTLE_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every service account the API lists, as (name, id), page by page.
async fn list_service_accounts(app: &TestApp, token: &str) -> anyhow::Result<Vec<(String, Uuid)>> {
    let mut all = Vec::new();
    for page in 1.. {
        let (status, body) = app
            .call(
                Method::GET,
                &format!("/api/v1/service_accounts?size=1000&page={page}"),
                Some(token),
                None,
            )
            .await?;
        anyhow::ensure!(status == StatusCode::OK, "listing: {status} {body}");
        let items = body["items"].as_array().context("no items")?;
        for item in items {
            let name = item["name"].as_str().context("no name")?.to_owned();
            let id = item["id"].as_str().context("no id")?.parse()?;
            all.push((name, id));
        }
        if body["total_pages"].as_u64().unwrap_or(0) <= page {
            break;
        }
    }
    Ok(all)
}

/// Every event id the stream holds, in stream order (a duplicate shows up twice).
async fn stream_event_ids(app: &TestApp) -> anyhow::Result<Vec<Uuid>> {
    let client = app.nats.connect_as(NatsUser::Audit).await?;
    let js = async_nats::jetstream::new(client);
    let last = js
        .get_stream(STREAM_NAME)
        .await?
        .info()
        .await?
        .state
        .last_sequence;
    let mut subscription = JetStreamFeed::new(js)
        .subscribe(SubscriptionSpec {
            durable_name: None,
            subjects: vec![],
            start: StartFrom::Beginning,
        })
        .await?;
    let mut ids = Vec::new();
    if last == 0 {
        return Ok(ids);
    }
    let deadline = Instant::now() + SETTLE_WITHIN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let delivery = tokio::time::timeout(left, subscription.next())
            .await
            .with_context(|| format!("read {} of {last} stream messages", ids.len()))?
            .context("the subscription ended")??;
        ids.push(delivery.event.event_id);
        if delivery.sequence >= last {
            break;
        }
    }
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_creates_survive_crashes_and_nats_restarts_exactly_once() -> anyhow::Result<()>
{
    let mut app = TestApp::spawn().await?;
    let token = app.admin_token().await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                w,
                http.clone(),
                app.at("/api/v1/service_accounts"),
                token.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // 1. The process crashes under load and comes back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.kill().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.start().await?;
    // 2. NATS goes away for a few seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.nats.stop().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.nats.restart().await?;
    // 3. Both: NATS goes away, the process crashes meanwhile, NATS returns, then the process.
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.nats.stop().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.kill().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.nats.restart().await?;
    app.start().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);

    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await??);
    }
    let log = app.log();
    assert!(
        acknowledged.len() > 20,
        "only {} creates acknowledged; serve's log:\n{log}",
        acknowledged.len()
    );

    // The log: every acknowledged create once, under the id that was answered.
    let (db, connection) = tokio_postgres::connect(app.db.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    outbox_drained(&db).await?;
    let mut logged: HashMap<String, Vec<String>> = HashMap::new();
    for row in db
        .query(
            "SELECT payload->>'name', stream_id FROM events WHERE event_type = 'service_account.created'",
            &[],
        )
        .await?
    {
        logged.entry(row.get(0)).or_default().push(row.get(1));
    }
    for create in &acknowledged {
        assert_eq!(
            logged.get(&create.name),
            Some(&vec![format!("service_account-{}", create.id)]),
            "{} ({}) in the log",
            create.name,
            create.id
        );
    }
    assert!(
        logged.values().all(|streams| streams.len() == 1),
        "a name was created twice in the log"
    );

    // The API: every created account listed once (once the read models have caught up).
    let deadline = Instant::now() + SETTLE_WITHIN;
    let listed = loop {
        let listed: Vec<_> = list_service_accounts(&app, &token)
            .await?
            .into_iter()
            .filter(|(name, _)| name.starts_with("fault-"))
            .collect();
        if listed.len() >= logged.len() || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut by_name: HashMap<&str, Vec<Uuid>> = HashMap::new();
    for (name, id) in &listed {
        by_name.entry(name.as_str()).or_default().push(*id);
    }
    for create in &acknowledged {
        assert_eq!(
            by_name.get(create.name.as_str()),
            Some(&vec![create.id]),
            "{} ({}) in the API",
            create.name,
            create.id
        );
    }
    assert_eq!(
        listed.len(),
        logged.len(),
        "the API lists what the log holds"
    );

    // The stream: every event of the log exactly once.
    let mut in_log: Vec<Uuid> = db
        .query("SELECT event_id FROM events ORDER BY position", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut in_stream = stream_event_ids(&app).await?;
    let streamed = in_stream.len();
    in_stream.sort();
    in_stream.dedup();
    assert_eq!(streamed, in_stream.len(), "the stream holds an event twice");
    in_log.sort();
    assert_eq!(
        in_stream, in_log,
        "the stream holds exactly the log's events"
    );
    eprintln!(
        "{} creates acknowledged through two crashes and two NATS restarts ({} answered 404 first); \
         {} events in the log and the stream",
        acknowledged.len(),
        acknowledged
            .iter()
            .map(|a| a.not_found_first)
            .sum::<usize>(),
        in_log.len()
    );
    Ok(())
}
