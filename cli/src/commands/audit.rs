//! `gatehouse audit tail`: follow the event feed.
//!
//! Through the gateway by default (`GET /api/v1/events`, Server-Sent Events, with the saved
//! session or `GATEHOUSE_API_KEY` of an admin), which works against `gatehouse dev` too;
//! or, given `--nats-url`, straight from NATS JetStream: an ephemeral ordered consumer on
//! the events stream, filtered by subject, as the read-only `audit` user.

use anyhow::Context as _;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt as _;
use gatehouse_bus::jetstream::{STREAM_NAME, STREAM_SUBJECTS};
use gatehouse_contracts::envelope::RecordedEvent;

use super::{Context, Globals};
use crate::output::{self, OutputFormat};

/// How long connecting to NATS may take.
/// The longest payload shown on a line; `-o json` shows it whole.
const MAX_PAYLOAD_CHARS: usize = 300;

/// Read the audit trail.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditCommand {
    /// Print events as they happen, one line each (JSON lines with -o json).
    Tail(TailArgs),
}

impl AuditCommand {
    /// Runs the command.
    pub async fn run(self, globals: &Globals) -> anyhow::Result<()> {
        match self {
            AuditCommand::Tail(args) => args.run(globals).await,
        }
    }
}

/// `audit tail`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = "\
Follows GET /api/v1/events of the Gatehouse you are logged in to (an admin's session or
GATEHOUSE_API_KEY; --url picks the server), in gatehouse dev and gatehouse serve alike. With
--nats-url (or GATEHOUSE_NATS_URL) it reads the GATEHOUSE_EVENTS stream on NATS instead, as
the read-only audit user (--nats-user audit --nats-password ...).
Subjects are gatehouse.events.<aggregate>.<event>. Through the gateway a --subject names an
aggregate (gatehouse.events.api_key.>) or one event type (gatehouse.events.api_key.rotated);
NATS takes any subject filter (several need nats-server 2.10 or newer).

Columns: time (UTC), event type, stream, actor, client IP, payload.

Examples:
  gatehouse audit tail --subject 'gatehouse.events.api_key.>'
  gatehouse audit tail --from-start --count 100 -o json")]
pub struct TailArgs {
    /// Only events on this subject (wildcards * and >); repeat for several
    /// [default: gatehouse.events.>].
    #[arg(long = "subject", value_name = "SUBJECT")]
    pub subjects: Vec<String>,
    /// Read NATS directly instead of the gateway: URL, credentials (the read-only `audit`
    /// user of deploy/nats/accounts.conf), TLS.
    #[command(flatten)]
    pub nats: gatehouse_bus::nats::NatsArgs,
    /// Start with the oldest event the stream keeps instead of only new ones.
    #[arg(long)]
    pub from_start: bool,
    /// Exit after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

impl TailArgs {
    /// The consumer's filter subjects, checked: each within the events stream.
    fn filters(&self) -> anyhow::Result<Vec<String>> {
        if self.subjects.is_empty() {
            return Ok(vec![STREAM_SUBJECTS.to_owned()]);
        }
        let prefix = STREAM_SUBJECTS.trim_end_matches('>');
        for subject in &self.subjects {
            let valid_tokens =
                subject.split('.').all(|t| !t.is_empty()) && !subject.contains(char::is_whitespace);
            if !valid_tokens || !(subject.starts_with(prefix) || subject == "gatehouse.events.>") {
                anyhow::bail!(
                    "invalid --subject {subject:?}: event subjects look like \
                     gatehouse.events.<aggregate>.<event>, e.g. 'gatehouse.events.api_key.>'"
                );
            }
        }
        let mut subjects = self.subjects.clone();
        subjects.sort();
        subjects.dedup();
        Ok(subjects)
    }

    /// Runs `audit tail`, printing to stdout.
    pub async fn run(self, globals: &Globals) -> anyhow::Result<()> {
        if self.nats.nats_url.is_some() {
            return self.tail(globals.output, output::emit).await.map(|_| ());
        }
        let client = Context::new(globals)?.client().await?;
        self.tail_http(&client, globals.output, output::emit)
            .await
            .map(|_| ())
    }

    /// The `aggregate` and `type` filters of `GET /api/v1/events` that the subjects name.
    fn http_filters(&self) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let (mut aggregates, mut types) = (Vec::new(), Vec::new());
        for subject in self.filters()? {
            let rest = subject.trim_start_matches(STREAM_SUBJECTS.trim_end_matches('>'));
            match rest.split('.').collect::<Vec<_>>().as_slice() {
                [">"] => return Ok((Vec::new(), Vec::new())),
                [aggregate, ">" | "*"] if !aggregate.contains(['*', '>']) => {
                    aggregates.push((*aggregate).to_owned());
                }
                [aggregate, event]
                    if !(aggregate.contains(['*', '>']) || event.contains(['*', '>'])) =>
                {
                    types.push(format!("{aggregate}.{event}"));
                }
                _ => anyhow::bail!(
                    "through the gateway, --subject {subject:?} must name an aggregate \
                     (gatehouse.events.<aggregate>.>) or one event type \
                     (gatehouse.events.<aggregate>.<event>); read NATS with --nats-url for \
                     other filters"
                ),
            }
        }
        Ok((aggregates, types))
    }

    /// Follows `GET /api/v1/events`, handing each event's line to `sink`, until `--count`
    /// events were printed (or forever: a closed stream is resumed after the last event
    /// seen). Returns how many were.
    pub async fn tail_http(
        &self,
        client: &crate::client::GatehouseClient,
        format: OutputFormat,
        mut sink: impl FnMut(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        let (aggregates, types) = self.http_filters()?;
        if self.count == Some(0) {
            return Ok(0);
        }
        let mut since = self.from_start.then_some(0);
        let mut printed = 0u64;
        loop {
            let mut response = client.events(since, &aggregates, &types).await?;
            let mut buffer = String::new();
            while let Some(chunk) = response.chunk().await.context("reading the event feed")? {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let message: String = buffer.drain(..end + 2).collect();
                    let Some(event) = sse_event(&message) else {
                        continue;
                    };
                    since = Some(event.0);
                    let line = match format {
                        OutputFormat::Json => json_line(event.1.as_bytes()),
                        OutputFormat::Table => table_line(event.1.as_bytes()),
                    };
                    match line {
                        Ok(line) => sink(&line)?,
                        Err(e) => {
                            tracing::warn!(position = event.0, error = %e, "skipping a message that is not a Gatehouse event");
                            continue;
                        }
                    }
                    printed += 1;
                    if self.count.is_some_and(|n| printed >= n) {
                        return Ok(printed);
                    }
                }
            }
            // The server ended the stream (a restart, a proxy): resume after what was seen.
            tracing::debug!(?since, "the event feed closed; resuming");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// Follows the stream, handing each event's line to `sink`, until `--count` events
    /// were printed (or forever). Returns how many were.
    pub async fn tail(
        &self,
        format: OutputFormat,
        mut sink: impl FnMut(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<u64> {
        let filters = self.filters()?;
        if self.count == Some(0) {
            return Ok(0);
        }
        let hint = "gatehouse dev has no NATS; without --nats-url, audit tail follows the \
                    gateway's event feed instead";
        let client = gatehouse_bus::nats::connect(&self.nats, "gatehouse-cli audit tail")
            .await
            .with_context(|| {
                format!("cannot reach NATS at {} ({hint})", self.nats.redacted_url())
            })?;
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(STREAM_NAME).await.with_context(|| {
            format!(
                "NATS at {} has no JetStream stream {STREAM_NAME} (is `gatehouse serve` or a \
                 service running against it, with JetStream enabled? {hint})",
                self.nats.redacted_url()
            )
        })?;
        // "New" is pinned to the stream's last sequence, and anything at or before it is
        // skipped: an ordered consumer that is re-created before delivering anything would
        // otherwise start over.
        let floor = if self.from_start {
            0
        } else {
            stream.cached_info().state.last_sequence
        };
        let deliver_policy = if floor == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: floor + 1,
            }
        };
        let (filter_subject, filter_subjects) = match filters.as_slice() {
            [one] => (one.clone(), Vec::new()),
            many => (String::new(), many.to_vec()),
        };
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject,
                filter_subjects,
                deliver_policy,
                ..Default::default()
            })
            .await
            .context("cannot create a consumer on the events stream")?;
        let mut messages = consumer
            .messages()
            .await
            .context("cannot read the events stream")?;
        let mut printed = 0u64;
        while let Some(message) = messages.next().await {
            let message = message.context("reading the events stream")?;
            let sequence = message
                .info()
                .map(|i| i.stream_sequence)
                .unwrap_or(u64::MAX);
            if sequence <= floor {
                continue;
            }
            let line = match format {
                OutputFormat::Json => json_line(&message.payload),
                OutputFormat::Table => table_line(&message.payload),
            };
            match line {
                Ok(line) => sink(&line)?,
                Err(e) => {
                    tracing::warn!(subject = %message.subject, sequence, error = %e, "skipping a message that is not a Gatehouse event");
                    continue;
                }
            }
            printed += 1;
            if self.count.is_some_and(|n| printed >= n) {
                break;
            }
        }
        Ok(printed)
    }
}

/// The position (`id:`) and data of one Server-Sent Events message; `None` for a comment
/// (keep-alive) or a message without data.
fn sse_event(message: &str) -> Option<(i64, String)> {
    let mut id = None;
    let mut data = Vec::new();
    for line in message.lines() {
        if let Some(value) = line.strip_prefix("id:") {
            id = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    Some((id?, data.join("\n"))).filter(|(_, data)| !data.is_empty())
}

/// `-o json`: the event as the server published it, on one line.
fn json_line(body: &[u8]) -> Result<String, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_slice(body)?;
    // Checked against the envelope, printed as sent (fields this CLI does not know kept).
    let _: RecordedEvent = serde_json::from_value(value.clone())?;
    let mut line = serde_json::to_string(&value)?;
    line.push('\n');
    Ok(line)
}

/// The table line: time, event type, stream, actor, client IP, compact payload.
fn table_line(body: &[u8]) -> Result<String, serde_json::Error> {
    let event: RecordedEvent = serde_json::from_slice(body)?;
    let actor = event.metadata.actor.as_ref().map_or_else(
        || "-".to_owned(),
        |a| {
            if a.kind == gatehouse_contracts::envelope::ActorKind::System {
                a.name.clone()
            } else {
                format!("{} ({})", a.name, a.kind)
            }
        },
    );
    let ip = event
        .metadata
        .client_ip
        .clone()
        .unwrap_or_else(|| "-".into());
    let mut payload = serde_json::to_string(&event.payload)?;
    if payload.chars().count() > MAX_PAYLOAD_CHARS {
        payload = payload.chars().take(MAX_PAYLOAD_CHARS).collect();
        payload.push('…');
    }
    let cells = [
        output::timestamp(&event.recorded_at),
        format!("{:<28}", event.event_type),
        event.stream_id.to_string(),
        actor,
        ip,
        payload,
    ]
    .map(|c| output::sanitize(&c));
    Ok(format!("{}\n", cells.join("  ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> serde_json::Value {
        serde_json::json!({
            "position": 42, "stream_id": "api_key-0190f0a8-3b1c-7000-8000-00000000abcd",
            "version": 3, "event_id": "0190f0a8-3b1c-7000-8000-000000000099",
            "event_type": "api_key.rotated", "schema_version": 1,
            "payload": {"rotated_at": "2025-01-02T03:04:05.600Z", "generation": 3,
                        "previous_generation": 2, "previous_valid_until": null},
            "metadata": {"actor": {"id": "0190f0a8-3b1c-7000-8000-000000000002", "kind": "user", "name": "alice"},
                         "request_id": "r1", "client_ip": "10.0.0.7"},
            "recorded_at": "2025-01-02T03:04:05.678Z",
            "a_future_field": true,
        })
    }

    #[test]
    fn a_table_line_has_time_type_stream_actor_ip_and_payload() -> anyhow::Result<()> {
        let line = table_line(&serde_json::to_vec(&event())?)?;
        assert_eq!(
            line,
            "2025-01-02 03:04:05  api_key.rotated               api_key-0190f0a8-3b1c-7000-8000-00000000abcd  alice (user)  10.0.0.7  {\"generation\":3,\"previous_generation\":2,\"previous_valid_until\":null,\"rotated_at\":\"2025-01-02T03:04:05.600Z\"}\n"
        );
        Ok(())
    }

    #[test]
    fn a_json_line_is_the_event_as_sent_on_one_line() -> anyhow::Result<()> {
        let line = json_line(&serde_json::to_vec_pretty(&event())?)?;
        assert_eq!(line.lines().count(), 1);
        let back: serde_json::Value = serde_json::from_str(&line)?;
        assert_eq!(back, event());
        assert!(json_line(b"{\"not\":\"an event\"}").is_err());
        Ok(())
    }

    #[test]
    fn a_server_sent_event_gives_its_position_and_data() {
        assert_eq!(
            sse_event("id: 42\nevent: api_key.rotated\ndata: {\"a\":1}\n\n"),
            Some((42, "{\"a\":1}".to_owned()))
        );
        assert_eq!(sse_event(": keep-alive\n\n"), None);
        assert_eq!(sse_event("id: 1\n\n"), None);
    }

    #[test]
    fn subjects_become_the_gateways_aggregate_and_type_filters() -> anyhow::Result<()> {
        let args = |subjects: &[&str]| TailArgs {
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            nats: gatehouse_bus::nats::NatsArgs::open("nats://127.0.0.1:4222"),
            from_start: false,
            count: None,
        };
        assert_eq!(args(&[]).http_filters()?, (vec![], vec![]));
        assert_eq!(
            args(&[
                "gatehouse.events.api_key.>",
                "gatehouse.events.device.locked"
            ])
            .http_filters()?,
            (vec!["api_key".to_owned()], vec!["device.locked".to_owned()])
        );
        let error = args(&["gatehouse.events.*.created"])
            .http_filters()
            .expect_err("not expressible")
            .to_string();
        assert!(error.contains("--nats-url"), "{error}");
        Ok(())
    }

    #[test]
    fn subjects_default_to_every_event_and_must_be_event_subjects() -> anyhow::Result<()> {
        let args = |subjects: &[&str]| TailArgs {
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            nats: gatehouse_bus::nats::NatsArgs::open("nats://127.0.0.1:4222"),
            from_start: false,
            count: None,
        };
        assert_eq!(args(&[]).filters()?, vec!["gatehouse.events.>"]);
        assert_eq!(
            args(&["gatehouse.events.api_key.>", "gatehouse.events.device.*"]).filters()?,
            vec!["gatehouse.events.api_key.>", "gatehouse.events.device.*"]
        );
        for bad in [
            "gatehouse.cmd.>",
            "api_key.>",
            "gatehouse.events..x",
            "gatehouse.events.a b",
        ] {
            let error = args(&[bad]).filters().expect_err(bad).to_string();
            assert!(
                error.contains("gatehouse.events.<aggregate>.<event>"),
                "{error}"
            );
        }
        Ok(())
    }

    /// Against a real nats-server (2.10+, see `scripts/test-deps`).
    mod against_nats {
        use std::time::Duration;

        use gatehouse_testsupport::{NatsServer, NatsUser};

        use super::*;

        fn tail_args(
            server: &NatsServer,
            subjects: &[&str],
            from_start: bool,
            count: u64,
        ) -> TailArgs {
            TailArgs {
                subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
                nats: gatehouse_bus::nats::NatsArgs::open(server.url())
                    .with_user("audit", server.password(NatsUser::Audit))
                    .with_tls_ca(server.tls_ca()),
                from_start,
                count: Some(count),
            }
        }

        async fn publish(
            js: &async_nats::jetstream::Context,
            event_type: &str,
            n: u32,
        ) -> anyhow::Result<()> {
            let mut body = event();
            body["event_type"] = event_type.into();
            body["payload"] = serde_json::json!({"n": n});
            js.publish(
                format!("gatehouse.events.{event_type}"),
                serde_json::to_vec(&body)?.into(),
            )
            .await?
            .await?;
            Ok(())
        }

        #[tokio::test]
        async fn tail_prints_new_events_of_the_chosen_subjects_and_stops_after_count()
        -> anyhow::Result<()> {
            let server = NatsServer::start().await?;
            // Events are published as a service's outbox relay would; the tail reads them as
            // the read-only audit user.
            let js = async_nats::jetstream::new(server.connect_as(NatsUser::Identity).await?);
            let stream = gatehouse_bus::jetstream::ensure_stream(&js).await?;
            publish(&js, "api_key.created", 1).await?;

            let args = tail_args(&server, &["gatehouse.events.api_key.>"], false, 2);
            let tail = tokio::spawn(async move {
                let mut lines = Vec::new();
                let n = args
                    .tail(OutputFormat::Json, |l| {
                        lines.push(l.to_owned());
                        Ok(())
                    })
                    .await?;
                anyhow::Ok((n, lines))
            });
            // Wait for the consumer, then publish: an old event, another subject, two new ones.
            let mut stream = stream;
            for _ in 0..100 {
                if stream.info().await?.state.consumer_count > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            publish(&js, "user.created", 2).await?;
            publish(&js, "api_key.rotated", 3).await?;
            publish(&js, "api_key.deleted", 4).await?;
            let (n, lines) = tokio::time::timeout(Duration::from_secs(10), tail).await???;
            assert_eq!(n, 2);
            let types: Vec<String> = lines
                .iter()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .map(|v| v["event_type"].to_string())
                })
                .collect::<Result<_, _>>()?;
            assert_eq!(types, vec!["\"api_key.rotated\"", "\"api_key.deleted\""]);

            // From the start: the old event comes first.
            let mut lines = Vec::new();
            tail_args(&server, &[], true, 1)
                .tail(OutputFormat::Table, |l| {
                    lines.push(l.to_owned());
                    Ok(())
                })
                .await?;
            assert!(
                lines[0].contains("api_key.created") && lines[0].contains("{\"n\":1}"),
                "{lines:?}"
            );
            Ok(())
        }

        #[tokio::test]
        async fn a_missing_stream_or_server_is_a_clear_error() -> anyhow::Result<()> {
            let mut server = NatsServer::start().await?;
            let error = format!(
                "{:#}",
                tail_args(&server, &[], false, 1)
                    .tail(OutputFormat::Table, |_| Ok(()))
                    .await
                    .expect_err("no stream")
            );
            assert!(
                error.contains("no JetStream stream GATEHOUSE_EVENTS")
                    && error.contains("gatehouse serve"),
                "{error}"
            );
            server.stop().await?;
            let error = format!(
                "{:#}",
                tail_args(&server, &[], false, 1)
                    .tail(OutputFormat::Table, |_| Ok(()))
                    .await
                    .expect_err("no server")
            );
            assert!(
                error.contains("cannot reach NATS at tls://127.0.0.1:")
                    && error.contains("without --nats-url"),
                "{error}"
            );
            Ok(())
        }
    }
}
