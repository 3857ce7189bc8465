//! `GET /api/v1/events`: the public event feed as Server-Sent Events, for admins.
//!
//! The same envelopes as on NATS (`gatehouse.events.<aggregate>.<event>`), read from the
//! log itself, so an auditor needs no bus access and `gatehouse dev` (which has no NATS)
//! shows its events too. Each event is one SSE message: `id` is its log position (a client
//! resumes with `?since=<id>` or the standard `Last-Event-ID` header), `event` its type,
//! `data` the envelope as one JSON line.
//!
//! # Positions are not a gap-free cursor
//!
//! A later position can commit before an earlier one (decision 0001), and a rolled-back
//! append leaves a position unused for good. So the feed hands out positions in order and
//! stops at a hole until the event after it is [`HOLE_SETTLE`] old: by then the hole is
//! a rollback, not a transaction still committing. A write that stays uncommitted longer
//! than that after taking its position would be passed over; the log, `?since=0`, and the
//! NATS feed still have it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, get, web};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use gatehouse_contracts::clock::Clock;
use gatehouse_contracts::envelope::{RecordedEvent, SUBJECT_PREFIX};
use gatehouse_eventlog::EventStore;
use gatehouse_eventlog::feed::subject_passes;
use serde::Deserialize;

use crate::auth::Authenticated;
use crate::errors::{ApiError, ErrorBody};
use crate::state::AppState;

/// How long a hole in the positions may be waited for (see the module docs).
pub const HOLE_SETTLE: Duration = Duration::from_secs(2);
/// How often an idle feed looks for new events.
const POLL: Duration = Duration::from_millis(250);
/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events read from the log at a time.
const BATCH: usize = 256;

/// Query of `GET /api/v1/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events after this log position (an SSE message's `id`); `0` for everything the
    /// log holds. Without it (and without `Last-Event-ID`), only events from now on.
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Only these aggregates, comma-separated (`api_key,device`).
    #[param(pattern = r"^[a-z_]+(,[a-z_]+)*$")]
    pub aggregate: Option<String>,
    /// Only these event types, comma-separated (`api_key.rotated,api_key.deleted`).
    #[param(rename = "type", pattern = r"^[a-z_]+\.[a-z_]+(,[a-z_]+\.[a-z_]+)*$")]
    #[serde(rename = "type")]
    pub event_type: Option<String>,
}

/// The subjects an event must match: `aggregate` and `type` as NATS subject filters, so
/// that the feed filters as `gatehouse audit tail --subject` does.
fn subject_filters(query: &EventsQuery) -> Result<Vec<String>, ApiError> {
    let token_ok = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    let mut filters = Vec::new();
    for aggregate in query.aggregate.iter().flat_map(|a| a.split(',')) {
        if !token_ok(aggregate) {
            return Err(ApiError::invalid(format!(
                "invalid aggregate {aggregate:?}: names look like api_key or device"
            )));
        }
        filters.push(format!("{SUBJECT_PREFIX}{aggregate}.>"));
    }
    for event_type in query.event_type.iter().flat_map(|t| t.split(',')) {
        match event_type.split_once('.') {
            Some((a, e)) if token_ok(a) && token_ok(e) => {
                filters.push(format!("{SUBJECT_PREFIX}{event_type}"));
            }
            _ => {
                return Err(ApiError::invalid(format!(
                    "invalid type {event_type:?}: types look like api_key.rotated"
                )));
            }
        }
    }
    Ok(filters)
}

/// Of `events` (in position order, all after `cursor`), how many may be handed out now, and
/// the cursor after them: positions in order, and a hole only once the event after it is
/// [`HOLE_SETTLE`] old.
pub fn deliverable(cursor: i64, events: &[RecordedEvent], now: DateTime<Utc>) -> (usize, i64) {
    let settle = chrono::Duration::from_std(HOLE_SETTLE).unwrap_or_default();
    let mut at = cursor;
    let mut taken = 0;
    for event in events {
        if event.position != at + 1 && now - event.recorded_at < settle {
            break;
        }
        at = event.position;
        taken += 1;
    }
    (taken, at)
}

/// One SSE message.
fn message(event: &RecordedEvent) -> Result<Bytes, serde_json::Error> {
    let data = serde_json::to_string(event)?;
    Ok(Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        event.position, event.event_type
    )))
}

struct Feed {
    log: Arc<dyn EventStore>,
    clock: Arc<dyn Clock>,
    filters: Vec<String>,
    cursor: i64,
    ready: VecDeque<Bytes>,
    idle: Duration,
    done: bool,
}

impl Feed {
    /// The next chunk of the response; `None` ends it (the log failed: the client resumes
    /// with `Last-Event-ID`).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                return Some(chunk);
            }
            if self.done {
                return None;
            }
            let events = match self.log.read_all(self.cursor, BATCH).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(error = %error, "the event feed cannot read the log; ending the stream");
                    self.done = true;
                    continue;
                }
            };
            let (taken, cursor) = deliverable(self.cursor, &events, self.clock.now());
            self.cursor = cursor;
            for event in &events[..taken] {
                if !subject_passes(&self.filters, &event.subject()) {
                    continue;
                }
                match message(event) {
                    Ok(chunk) => self.ready.push_back(chunk),
                    Err(error) => {
                        tracing::error!(position = event.position, error = %error, "cannot encode an event for the feed");
                    }
                }
            }
            if !self.ready.is_empty() {
                self.idle = Duration::ZERO;
                continue;
            }
            if taken == BATCH {
                continue;
            }
            if self.idle >= KEEP_ALIVE {
                self.idle = Duration::ZERO;
                return Some(Bytes::from_static(b": keep-alive\n\n"));
            }
            tokio::time::sleep(POLL).await;
            self.idle += POLL;
        }
    }
}

/// Follows the public event feed as Server-Sent Events (`text/event-stream`). Admins only.
/// Each message: `id` = log position, `event` = event type, `data` = the envelope as
/// published on NATS. Resume with `?since=<id>` or `Last-Event-ID`; without either, only
/// new events. Filters: `aggregate`, `type` (comma-separated). A comment line every 15 s
/// keeps idle connections open.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", security(("bearer" = [])),
    params(EventsQuery, ("Last-Event-ID" = Option<i64>, Header, description = "resume after this position (as `since`)")),
    responses(
        (status = 200, description = "a stream of Server-Sent Events", content_type = "text/event-stream", body = String),
        (status = 403, description = "admins only", body = ErrorBody)))]
#[get("/events")]
pub async fn follow_events(
    state: web::Data<AppState>,
    auth: Authenticated,
    query: web::Query<EventsQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !auth.is_admin() {
        return Err(ApiError::forbidden("only admins may read the event feed"));
    }
    let filters = subject_filters(&query)?;
    let resume = match (query.since, request.headers().get("Last-Event-ID")) {
        (Some(since), _) => Some(since),
        (None, Some(header)) => Some(
            header
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a log position"))?,
        ),
        (None, None) => None,
    };
    let cursor = match resume {
        Some(since) if since < 0 => {
            return Err(ApiError::invalid(
                "since must be a log position (0 or more)",
            ));
        }
        Some(since) => since,
        None => state.log.last_position().await?,
    };
    let feed = Feed {
        log: state.log.clone(),
        clock: state.clock.clone(),
        filters,
        cursor,
        ready: VecDeque::new(),
        idle: Duration::ZERO,
        done: false,
    };
    let body = futures::stream::unfold(feed, |mut feed| async move {
        feed.next()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), feed))
    });
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/event-stream"))
        .insert_header((CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use gatehouse_contracts::envelope::{EventMetadata, StreamId};

    use super::*;

    fn at(position: i64, recorded_at: DateTime<Utc>) -> RecordedEvent {
        RecordedEvent {
            position,
            stream_id: StreamId::new("api_key", uuid::Uuid::new_v4()),
            version: 1,
            event_id: uuid::Uuid::new_v4(),
            event_type: "api_key.created".into(),
            schema_version: 1,
            payload: serde_json::json!({}),
            metadata: EventMetadata::default(),
            recorded_at,
        }
    }

    #[test]
    fn positions_are_handed_out_in_order_and_a_fresh_hole_is_waited_for() {
        let now = Utc::now();
        let events = [at(1, now), at(2, now), at(4, now), at(5, now)];
        assert_eq!(
            deliverable(0, &events, now),
            (2, 2),
            "stops before the hole at 3"
        );
        let later = now + chrono::Duration::seconds(3);
        assert_eq!(
            deliverable(2, &events[2..], later),
            (2, 5),
            "a hole older than the settle time is a rollback"
        );
        assert_eq!(deliverable(5, &[], now), (0, 5));
    }

    #[test]
    fn filters_are_subjects_and_bad_names_are_refused() {
        let query = |aggregate: Option<&str>, event_type: Option<&str>| EventsQuery {
            since: None,
            aggregate: aggregate.map(str::to_owned),
            event_type: event_type.map(str::to_owned),
        };
        assert_eq!(
            subject_filters(&query(Some("api_key,device"), Some("user.created")))
                .map_err(|e| e.to_string())
                .unwrap_or_default(),
            vec![
                "gatehouse.events.api_key.>",
                "gatehouse.events.device.>",
                "gatehouse.events.user.created"
            ]
        );
        assert!(subject_filters(&query(None, None)).is_ok_and(|f| f.is_empty()));
        for (a, t) in [
            (Some("Api"), None),
            (Some(""), None),
            (None, Some("created")),
            (None, Some("a.>")),
        ] {
            assert!(subject_filters(&query(a, t)).is_err(), "{a:?} {t:?}");
        }
    }

    #[test]
    fn a_message_is_id_event_and_one_data_line() {
        let event = at(7, Utc::now());
        let text = String::from_utf8(message(&event).map(|b| b.to_vec()).unwrap_or_default())
            .unwrap_or_default();
        let lines: Vec<&str> = text.trim_end().lines().collect();
        assert_eq!(lines[0], "id: 7");
        assert_eq!(lines[1], "event: api_key.created");
        assert!(lines[2].starts_with("data: {"));
        assert_eq!(lines.len(), 3);
        assert!(text.ends_with("\n\n"));
    }
}
