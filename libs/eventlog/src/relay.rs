//! The outbox relay: publishes committed events from the Postgres outbox to the bus.
//!
//! Every append inserts one `outbox` row per event in the same transaction as the event
//! itself, with `published_at` NULL. The relay takes the unpublished rows in position
//! order, publishes each event (the [`Publisher`] returns once the bus has durably
//! accepted it), and then sets `published_at`. A crash between publishing and marking only
//! means the event is published again, and the bus drops the duplicate (its
//! de-duplication id is the event id). NATS being down only delays events.
//!
//! # Why unpublished rows and not "everything after position N"
//!
//! Positions come from an identity sequence, handed out when a transaction *inserts*, but
//! rows become visible when it *commits*, and transactions commit in any order. If a slow
//! transaction takes position 10, a fast one takes 11 and commits first, a relay that
//! remembered "published up to 11" would never see 10. This relay keeps no cursor: it asks
//! for the rows not yet published, so position 10 is simply picked up by the next batch
//! once it is committed and visible. (See `docs/decisions/0001-outbox-not-position-cursor.md`.)
//!
//! # Order and leadership
//!
//! Consumers see each stream's events in version order. Within a stream, version N+1 can
//! only be appended after version N has committed (its writer read version N), so N+1
//! always has the higher position and becomes visible later: publishing in position order,
//! and stopping a batch at the first failure, never publishes a stream's later event
//! before an earlier one.
//!
//! That holds for one publisher at a time, so exactly one relay publishes across all
//! processes: the one holding a session-level advisory lock (`pg_try_advisory_lock`) on
//! its own dedicated connection. The others try again every second. (Workers sharing the
//! rows with `FOR UPDATE SKIP LOCKED` would be faster, but could publish two events of one
//! stream out of order.) The lock dies with the leader's connection, and the leader uses
//! that same connection for its queries, so a leader that lost its lock also cannot mark
//! rows anymore; a last in-flight publish may still overlap with the new leader's first,
//! which the bus de-duplicates.
//!
//! # Wake-ups
//!
//! An append `NOTIFY`s the relay only while the relay has said it is asleep (the
//! handshake is in `migrations/0003_outbox_wakeups.sql`): a `NOTIFY` makes the commit
//! wait for a database-wide lock, which would otherwise cost every append. A busy relay
//! looks for new rows by itself; an idle one first flags itself asleep, looks once more,
//! and then waits for a notification, or one second in case one is lost. A new leader
//! sets the flag first whatever it says: a leader killed while busy leaves it saying
//! "awake", and appends would then wake nobody, each waiting for the idle tick. (It sets
//! it without the handshake's lock, which would wait for every append in flight: one
//! that read the old flag and commits after the first look waits for the tick, once.)
//!
//! # When the bus comes back
//!
//! A failed publish is retried after a back-off that doubles up to five seconds, so that a
//! bus that stays down costs little. But waiting writers (the gateway waits for its read
//! models) are held for as long as the relay sleeps, so the relay also watches the
//! publisher's connection ([`Publisher::link`]): when it is (re)established after the
//! attempt that failed, the relay retries at once and starts its back-off over.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_postgres::{Client, Statement};

use crate::feed::{Publisher, reconnected};
use crate::postgres::{
    EVENT_COLUMNS, OUTBOX_CHANNEL, PgDatabase, error_chain, event_from_row, unavailable,
};
use crate::store::StoreError;

/// The session-level advisory lock that elects the publishing relay (an arbitrary
/// constant, the same in every process).
pub const RELAY_LOCK: i64 = 0x6761_7465_7265_6c79; // "gaterely"

/// Events taken per batch.
const BATCH_SIZE: i64 = 256;
/// How often a waiting relay tries to become the leader.
const LEADER_RETRY: Duration = Duration::from_secs(1);
/// How often an idle leader looks again without a notification (a lost one costs this).
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Back-off after a publish failure: doubles from the first to the last (unless the bus
/// reconnects first).
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest back-off after publish failures.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What one relay iteration did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayOutcome {
    /// This many events were published and marked (more may be waiting).
    Published(usize),
    /// Nothing was waiting.
    Idle,
    /// The publisher failed; whatever was published before the failure was marked.
    PublisherDown,
}

/// Publishes the outbox to the bus. See the [module documentation](self).
pub struct OutboxRelay {
    database: PgDatabase,
    publisher: Arc<dyn Publisher>,
    backoff_first: Duration,
    backoff_max: Duration,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("database", &self.database)
            .finish()
    }
}

/// The leader's prepared statements.
struct Statements {
    take: Statement,
    mark: Statement,
    /// `gatehouse_outbox_relay_sleeping($1)`: tells appenders whether to notify.
    sleeping: Statement,
}

impl OutboxRelay {
    /// A relay from `database`'s outbox to `publisher`. It opens its own connection (not
    /// from the pool) for the leader lock and `LISTEN`.
    pub fn new(database: PgDatabase, publisher: Arc<dyn Publisher>) -> Self {
        Self {
            database,
            publisher,
            backoff_first: BACKOFF_FIRST,
            backoff_max: BACKOFF_MAX,
        }
    }

    /// Overrides the back-off after publish failures ([`BACKOFF_FIRST`] doubling up to
    /// [`BACKOFF_MAX`]).
    pub fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff_first = first;
        self.backoff_max = max.max(first);
        self
    }

    /// Relays until `shutdown` turns true (or its sender is dropped). Database failures
    /// are logged with their cause and retried after a second; publish failures are
    /// retried with back-off. Nothing is skipped.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        while !stopping(&shutdown) {
            match self.lead(&mut shutdown).await {
                Ok(()) => {}
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "the outbox relay lost its database connection; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(LEADER_RETRY) => {}
                () = stopped(&mut shutdown) => {}
            }
        }
        tracing::debug!("the outbox relay stopped");
    }

    /// One session: wait to become the leader, then publish until shutdown. Returns an
    /// error when the connection fails (the lock is then gone too).
    async fn lead(&self, shutdown: &mut watch::Receiver<bool>) -> Result<(), StoreError> {
        let wakeups = Arc::new(Notify::new());
        let mut session = {
            let wakeups = wakeups.clone();
            // `notify_one` keeps a permit when nobody waits: a wake-up is never lost.
            self.database
                .connect_dedicated(move |_| wakeups.notify_one())
                .await?
        };

        // 1. Become the leader.
        loop {
            let row = session
                .client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&RELAY_LOCK])
                .await
                .map_err(unavailable)?;
            if row.try_get::<_, bool>(0).map_err(unavailable)? {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(LEADER_RETRY) => {}
                () = stopped(shutdown) => return Ok(()),
            }
        }
        tracing::info!("this process now relays the outbox");

        // 2. Listen before the first look, so that no commit falls between the two.
        session.listen(OUTBOX_CHANNEL).await?;
        let statements = Statements {
            take: session
                .client
                .prepare(&format!(
                    "SELECT {EVENT_COLUMNS} FROM outbox JOIN events USING (position)
                     WHERE outbox.published_at IS NULL
                     ORDER BY position
                     LIMIT $1"
                ))
                .await
                .map_err(unavailable)?,
            mark: session
                .client
                .prepare("UPDATE outbox SET published_at = now() WHERE position = ANY($1)")
                .await
                .map_err(unavailable)?,
            sleeping: session
                .client
                .prepare("SELECT gatehouse_outbox_relay_sleeping($1)")
                .await
                .map_err(unavailable)?,
        };

        // 3. Publish until shutdown.
        let mut backoff = self.backoff_first;
        // Whether we told appenders that we sleep (so they notify): yes, whatever the
        // previous leader left (see the module documentation); the first batch clears it.
        session
            .client
            .execute("UPDATE outbox_relay SET sleeping = true", &[])
            .await
            .map_err(unavailable)?;
        let mut asleep = true;
        let link = self.publisher.link();
        while !stopping(shutdown) {
            // The connection the batch is tried on: a reconnect after this is worth a retry.
            let tried_on = link.as_ref().map(|link| *link.borrow()).unwrap_or_default();
            let outcome = self.relay_batch(&session.client, &statements).await?;
            tracing::debug!(?outcome, "outbox relay iteration");
            match outcome {
                RelayOutcome::Published(_) => {
                    backoff = self.backoff_first;
                    if asleep {
                        // Busy again: appenders can stop notifying.
                        self.set_sleeping(&session.client, &statements, false)
                            .await?;
                        asleep = false;
                    }
                }
                RelayOutcome::Idle if !asleep => {
                    // Ask for wake-ups, then loop for one more look: this returns only
                    // once every append that did not see the flag has committed.
                    self.set_sleeping(&session.client, &statements, true)
                        .await?;
                    asleep = true;
                }
                RelayOutcome::Idle => {
                    tokio::select! {
                        () = wakeups.notified() => {}
                        () = tokio::time::sleep(IDLE_TICK) => {}
                        () = stopped(shutdown) => {}
                        ended = &mut session.driver => {
                            let reason = match ended {
                                Ok(Ok(())) => "the connection closed".into(),
                                Ok(Err(error)) => error_chain(&error),
                                Err(join) => error_chain(&join),
                            };
                            return Err(StoreError::Unavailable(reason.into()));
                        }
                    }
                }
                RelayOutcome::PublisherDown => {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {
                            backoff = (backoff * 2).min(self.backoff_max);
                        }
                        () = reconnected(link.clone(), tried_on) => {
                            tracing::info!("the bus is back; the outbox relay retries now");
                            backoff = self.backoff_first;
                        }
                        () = stopped(shutdown) => {}
                    }
                }
            }
        }
        Ok(())
    }

    async fn set_sleeping(
        &self,
        client: &Client,
        statements: &Statements,
        asleep: bool,
    ) -> Result<(), StoreError> {
        client
            .execute(&statements.sleeping, &[&asleep])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Publishes up to [`BATCH_SIZE`] unpublished events in position order, stopping at
    /// the first failure, and marks the ones published.
    async fn relay_batch(
        &self,
        client: &Client,
        statements: &Statements,
    ) -> Result<RelayOutcome, StoreError> {
        let rows = client
            .query(&statements.take, &[&BATCH_SIZE])
            .await
            .map_err(unavailable)?;
        if rows.is_empty() {
            return Ok(RelayOutcome::Idle);
        }
        // Decode in order; an undecodable row ends the batch there, like a publish failure:
        // later events of its stream must not overtake it. `run` logs it and retries.
        let mut events = Vec::with_capacity(rows.len());
        let mut stopped_early: Option<Result<RelayOutcome, StoreError>> = None;
        for row in &rows {
            match event_from_row(row) {
                Ok(event) => events.push(event),
                Err(error) => {
                    stopped_early = Some(Err(error));
                    break;
                }
            }
        }
        let (accepted, failure) = self.publisher.publish_all(&events).await;
        if let Some(error) = failure {
            let event = events.get(accepted);
            tracing::warn!(
                error = %error_chain(&error),
                position = event.map(|e| e.position),
                stream_id = event.map(|e| e.stream_id.to_string()),
                "publishing an event failed; the relay backs off and retries from this event"
            );
            stopped_early = Some(Ok(RelayOutcome::PublisherDown));
        }
        let published: Vec<i64> = events[..accepted].iter().map(|e| e.position).collect();
        if !published.is_empty() {
            client
                .execute(&statements.mark, &[&published])
                .await
                .map_err(unavailable)?;
        }
        stopped_early.unwrap_or(Ok(RelayOutcome::Published(published.len())))
    }
}

fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Resolves once `shutdown` is true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
