//! Telemetry: one place that installs the tracing subscriber (binaries call [`init`];
//! libraries only emit), and W3C trace-context helpers so that a request's `traceparent`
//! travels from the HTTP edge through NATS headers into event metadata.

use rand::RngCore;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line (production, log shippers).
    Json,
    /// Human-readable (terminals).
    #[default]
    Pretty,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(LogFormat::Json),
            "pretty" | "text" => Ok(LogFormat::Pretty),
            other => Err(format!(
                "unknown log format {other:?}: expected json or pretty"
            )),
        }
    }
}

/// Installs the global subscriber: `filter` is an `EnvFilter` directive such as
/// `info,gatehouse_gateway=debug`; logs go to stderr. Calling it twice is harmless.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
    // Already installed (tests, or dev mode embedding a service): keep the first one.
    let _ = result;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new root trace context: `00-<32 hex trace id>-<16 hex span id>-01`.
pub fn new_traceparent() -> String {
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut trace);
    rand::thread_rng().fill_bytes(&mut span);
    format!("00-{}-{}-01", hex(&trace), hex(&span))
}

/// The trace id of a valid `traceparent`.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let parts: Vec<&str> = traceparent.split('-').collect();
    let valid = parts.len() == 4
        && parts[0].len() == 2
        && parts[0] != "ff"
        && parts[1].len() == 32
        && parts[2].len() == 16
        && parts[3].len() == 2
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0');
    // `then` (not `then_some`): `parts[1]` must not be evaluated when the header is short.
    valid.then(|| parts[1])
}

/// A child context of a valid incoming `traceparent` (same trace, new span), or `None`
/// when the header is not valid W3C trace context.
pub fn child_traceparent(incoming: &str) -> Option<String> {
    let trace = trace_id(incoming)?;
    let flags = incoming.rsplit('-').next().unwrap_or("01");
    let mut span = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut span);
    Some(format!("00-{trace}-{}-{flags}", hex(&span)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_traceparent_is_valid() {
        let tp = new_traceparent();
        assert!(trace_id(&tp).is_some(), "{tp}");
    }

    #[test]
    fn a_child_keeps_the_trace_and_changes_the_span() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let child = child_traceparent(parent).unwrap();
        assert_eq!(trace_id(&child), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_ne!(child, parent);
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for bad in [
            "",
            "00-abc-def-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert!(child_traceparent(bad).is_none(), "{bad}");
        }
    }
}
