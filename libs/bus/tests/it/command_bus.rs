//! Commands over core NATS: request/reply, queue groups, failures, graceful stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use gatehouse_bus::nats::NatsCommandBus;
use gatehouse_bus::{BusError, CommandBus, CommandHandler, CommandRouter, Headers, send};
use gatehouse_contracts::commands::{Accepted, Command, CommandEnvelope};
use gatehouse_contracts::envelope::EventMetadata;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use gatehouse_testsupport::NatsUser;

use crate::support::{connect_as, nats, proofs};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Replies `<command>|<payload>|<headers>`.
struct Echo;

#[async_trait]
impl CommandHandler for Echo {
    async fn handle(&self, command: &str, payload: Bytes, headers: Headers) -> Bytes {
        let headers: Vec<String> = headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Bytes::from(format!(
            "{command}|{}|{}",
            String::from_utf8_lossy(&payload),
            headers.join(",")
        ))
    }
}

/// Counts requests and echoes the payload.
struct Counting(AtomicUsize);

#[async_trait]
impl CommandHandler for Counting {
    async fn handle(&self, _command: &str, payload: Bytes, _headers: Headers) -> Bytes {
        self.0.fetch_add(1, Ordering::SeqCst);
        payload
    }
}

/// Announces that it started, then takes `delay` before answering.
struct Slow {
    delay: Duration,
    started: Arc<Notify>,
    finished: Arc<AtomicBool>,
}

#[async_trait]
impl CommandHandler for Slow {
    async fn handle(&self, _command: &str, payload: Bytes, _headers: Headers) -> Bytes {
        self.started.notify_one();
        tokio::time::sleep(self.delay).await;
        self.finished.store(true, Ordering::SeqCst);
        payload
    }
}

#[tokio::test]
async fn a_served_handler_answers_with_the_command_name_payload_and_headers() -> anyhow::Result<()>
{
    let (_server, client) = nats().await?;
    let bus = NatsCommandBus::new(client, proofs());
    let serving = bus.serve("echo", Arc::new(Echo)).await?;

    let reply = bus
        .request(
            "gatehouse.cmd.echo.ping",
            Bytes::from_static(b"hello"),
            vec![("traceparent".into(), "00-abc-def-01".into())],
            TIMEOUT,
        )
        .await?;
    assert_eq!(
        reply,
        Bytes::from_static(b"ping|hello|traceparent=00-abc-def-01")
    );

    serving.stop().await;
    Ok(())
}

#[tokio::test]
async fn replicas_in_one_queue_group_share_the_requests_and_each_is_answered_once()
-> anyhow::Result<()> {
    let (server, client) = nats().await?;
    let replica_a = Arc::new(Counting(AtomicUsize::new(0)));
    let replica_b = Arc::new(Counting(AtomicUsize::new(0)));
    // Two processes: two connections.
    let bus_a = NatsCommandBus::new(
        connect_as(&server, NatsUser::Gatehouse, "replica-a").await?,
        proofs(),
    );
    let bus_b = NatsCommandBus::new(
        connect_as(&server, NatsUser::Gatehouse, "replica-b").await?,
        proofs(),
    );
    let serving_a = bus_a.serve("shared", replica_a.clone()).await?;
    let serving_b = bus_b.serve("shared", replica_b.clone()).await?;

    let caller = NatsCommandBus::new(client, proofs());
    let replies: Vec<(usize, Result<Bytes, BusError>)> = futures::stream::iter(0..200usize)
        .map(|i| {
            let caller = caller.clone();
            async move {
                let reply = caller
                    .request(
                        "gatehouse.cmd.shared.work",
                        Bytes::from(i.to_string()),
                        Vec::new(),
                        TIMEOUT,
                    )
                    .await;
                (i, reply)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;

    for (i, reply) in &replies {
        let reply = reply
            .as_ref()
            .map_err(|e| anyhow::anyhow!("request {i} failed: {e}"))?;
        assert_eq!(
            reply,
            &Bytes::from(i.to_string()),
            "request {i} got someone else's reply"
        );
    }
    let (a, b) = (
        replica_a.0.load(Ordering::SeqCst),
        replica_b.0.load(Ordering::SeqCst),
    );
    assert_eq!(
        a + b,
        200,
        "every request is handled exactly once (a={a}, b={b})"
    );
    assert!(a > 0 && b > 0, "both replicas take a share (a={a}, b={b})");

    serving_a.stop().await;
    serving_b.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_request_to_a_service_nobody_serves_fails_at_once_with_no_responders()
-> anyhow::Result<()> {
    let (_server, client) = nats().await?;
    let bus = NatsCommandBus::new(client, proofs());

    let started = Instant::now();
    let result = bus
        .request(
            "gatehouse.cmd.nobody.ping",
            Bytes::new(),
            Vec::new(),
            TIMEOUT,
        )
        .await;

    assert!(
        matches!(result, Err(BusError::NoResponders { .. })),
        "got {result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_handler_slower_than_the_timeout_makes_the_request_time_out() -> anyhow::Result<()> {
    let (_server, client) = nats().await?;
    let bus = NatsCommandBus::new(client, proofs());
    let handler = Slow {
        delay: Duration::from_secs(3),
        started: Arc::new(Notify::new()),
        finished: Arc::new(AtomicBool::new(false)),
    };
    let _serving = bus.serve("slow", Arc::new(handler)).await?;

    let started = Instant::now();
    let result = bus
        .request(
            "gatehouse.cmd.slow.ping",
            Bytes::new(),
            Vec::new(),
            Duration::from_millis(300),
        )
        .await;

    assert!(
        matches!(result, Err(BusError::TimedOut { .. })),
        "got {result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn stop_finishes_the_request_in_flight_and_then_the_service_no_longer_answers()
-> anyhow::Result<()> {
    let (_server, client) = nats().await?;
    let bus = NatsCommandBus::new(client, proofs());
    let started = Arc::new(Notify::new());
    let finished = Arc::new(AtomicBool::new(false));
    let handler = Slow {
        delay: Duration::from_millis(500),
        started: started.clone(),
        finished: finished.clone(),
    };
    let serving = bus.serve("stoppable", Arc::new(handler)).await?;

    let in_flight = tokio::spawn({
        let bus = bus.clone();
        async move {
            bus.request(
                "gatehouse.cmd.stoppable.work",
                Bytes::from_static(b"x"),
                Vec::new(),
                TIMEOUT,
            )
            .await
        }
    });
    tokio::time::timeout(TIMEOUT, started.notified()).await?;

    tokio::time::timeout(TIMEOUT, serving.stop()).await?;
    assert!(
        finished.load(Ordering::SeqCst),
        "stop returned before the in-flight handler finished"
    );
    let reply = in_flight.await??;
    assert_eq!(
        reply,
        Bytes::from_static(b"x"),
        "the in-flight request still gets its reply"
    );

    let after = bus
        .request(
            "gatehouse.cmd.stoppable.work",
            Bytes::new(),
            Vec::new(),
            TIMEOUT,
        )
        .await;
    assert!(
        matches!(after, Err(BusError::NoResponders { .. })),
        "got {after:?}"
    );
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
struct Shout {
    text: String,
}

impl Command for Shout {
    const SERVICE: &'static str = "loud";
    const NAME: &'static str = "shout";
    type Output = String;
    type Code = gatehouse_contracts::failures::CommonFailure;
}

#[tokio::test]
async fn a_typed_command_goes_through_the_router_and_back() -> anyhow::Result<()> {
    let (_server, client) = nats().await?;
    let bus = NatsCommandBus::new(client, proofs());
    let router =
        CommandRouter::new().on::<Shout, _, _>(|envelope: CommandEnvelope<Shout>| async move {
            Ok(Accepted {
                written: None,
                output: envelope.command.text.to_uppercase(),
            })
        });
    let serving = bus.serve(Shout::SERVICE, Arc::new(router)).await?;

    let envelope = CommandEnvelope {
        command: Shout {
            text: "hello".into(),
        },
        caller: None,
        metadata: EventMetadata::default(),
        idempotency_key: None,
    };
    let accepted = send(&bus, &envelope, Vec::new())
        .await
        .map_err(|f| anyhow::anyhow!("{f:?}"))?;
    assert_eq!(accepted.output, "HELLO");
    assert_eq!(accepted.written, None);

    serving.stop().await;
    let failure = send(&bus, &envelope, Vec::new())
        .await
        .expect_err("nobody serves it any more");
    assert_eq!(
        failure.kind,
        gatehouse_contracts::commands::FailureKind::Unavailable
    );
    Ok(())
}
