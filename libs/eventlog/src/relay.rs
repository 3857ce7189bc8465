//! The outbox relay: publishes committed events from the Postgres outbox to the bus.
//!
//! Every append inserts one `outbox` row per event in the same transaction as the event
//! itself, with `published_at` NULL. The relay takes the unpublished rows in position
//! order, sends each event to the bus, and once the bus has durably accepted it (its
//! acknowledgement) sets `published_at` to when the relay took that acknowledgement. A
//! crash between publishing and marking only means the event is published again, and the
//! bus drops the duplicate (its de-duplication id is the event id). NATS being down only
//! delays events.
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
//! # Order
//!
//! Consumers see each stream's events in version order. Within a stream, version N+1 can
//! only be appended after version N has committed (its writer read version N), so N+1
//! always has the higher position and becomes visible later. Each read therefore returns
//! N before N+1, or N was in an earlier read, or already published: sending the events in
//! the order read sends every stream's events in version order.
//!
//! Sending in order is not storing in order once sends overlap. The relay does not wait
//! for an event's acknowledgement before sending the next, nor for a read's
//! acknowledgements before reading and sending the next events (that wait was most of the
//! relay's latency). If event N then failed (a timeout, a server error, a connection lost
//! before N reached the server) while N+1 was already stored, publishing N again would
//! store it after N+1: out of order for good, and audit consumers rely on that order.
//!
//! So the bus stores an event only right after the one sent before it
//! ([`Publisher::send`]'s `after`; on JetStream the `Nats-Expected-Last-Msg-Id` header): an
//! event sent while the event before it is unacknowledged expects that event to be the
//! stream's last message, and the server refuses it otherwise. Call the events in the order
//! the relay sends them e₁, e₂, …; then **eᵢ is stored only after every eⱼ (j < i) is
//! stored**: eᵢ is sent either expecting eᵢ₋₁ (stored only if eᵢ₋₁ is the last stored
//! message, so eᵢ₋₁ is stored before it) or, only once eᵢ₋₁ is acknowledged (stored), with
//! no expectation; by induction, so are all earlier ones. A failure at eₖ therefore gets
//! every later event in flight refused, and nothing after the failure is stored ahead of it.
//!
//! After a failure the relay sends the unacknowledged events again, from the first one, in
//! the order it first sent them, appending new reads behind them (in-flight and
//! acknowledged-but-unmarked rows are left out of reads); the first goes without an
//! expectation since its predecessor is acknowledged. Keeping the order matters: a copy
//! from the failed attempt may still be stored late (a timeout is not a refusal), and it
//! expects the same predecessor as the new copy, so the sequence above is the only one any
//! copy can extend. The server checks for a duplicate `Nats-Msg-Id` before the
//! expectation, so an event already stored is acknowledged as a duplicate whatever it
//! expects: each event is stored once (within the stream's duplicate window,
//! `DUPLICATE_WINDOW` in `gatehouse-bus`). Checked against nats-server 2.15 in
//! `libs/bus/tests/it/relay.rs`.
//!
//! Why the last message's id and not a sequence number: `Nats-Expected-Last-Sequence`
//! would need eᵢ₋₁'s stream sequence, known only from its acknowledgement, which is the
//! wait this avoids. And the first event of a leader's session, or the first after a
//! failure, expects nothing: after a server restart the server remembers the last message
//! id only if that message is within the duplicate window, so an expectation there could
//! be refused forever.
//!
//! # Leadership
//!
//! That holds for one publisher at a time, so exactly one relay publishes across all
//! processes: the one holding a session-level advisory lock (`pg_try_advisory_lock`) on
//! its own dedicated connection. The others try again every second. (Workers sharing the
//! rows with `FOR UPDATE SKIP LOCKED` would be faster, but could publish two events of one
//! stream out of order.) The lock dies with the leader's connection, and the leader uses
//! that same connection for its queries, so a leader that lost its lock also cannot mark
//! rows anymore, nor read more to send; a last in-flight publish may still overlap with
//! the new leader's first, which the bus de-duplicates. The proof above covers one
//! session's sends: a new session reads afresh and relies, as before, on the previous
//! leader's last sends having reached the server (or never reaching it) by the time the
//! new leader sends (at least the one-second lock retry later).
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
//! Flagging itself asleep is not free for the appends: the relay takes the handshake's
//! lock exclusively, so it waits for every append in flight to commit, and new appends
//! queue behind it. Under load that is a stall of every writer each time: with 32 clients
//! creating accounts, a relay that slept whenever a look found nothing flagged itself
//! asleep and awake again ~46 times a second (`gateway_bench`, `docs/benchmarks.md`). So
//! a relay whose looks were crowded (more than one event found at once: they come faster
//! than it turns) keeps looking by itself, every millisecond, for [`LINGER`] after the
//! last crowded look, and only then flags itself asleep. Events that come one at a time
//! (a single client) do not make it linger: there a wake-up is cheap, and a look every
//! millisecond would be slower than the notification.
//!
//! # When the bus comes back
//!
//! A failed publish is retried after a back-off that doubles up to five seconds, so that a
//! bus that stays down costs little. But waiting writers (the gateway waits for its read
//! models) are held for as long as the relay sleeps, so the relay also watches the
//! publisher's connection ([`Publisher::link`]): when it is (re)established after the
//! attempt that failed, the relay retries at once and starts its back-off over.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use gatehouse_contracts::envelope::RecordedEvent;
use tokio::sync::{Notify, watch};
use tokio_postgres::{Client, Statement};

use crate::feed::{PendingAck, PublishError, Publisher, reconnected};
use crate::postgres::{
    EVENT_COLUMNS, OUTBOX_CHANNEL, PgDatabase, error_chain, event_from_row, unavailable, why_ended,
};
use crate::store::StoreError;

/// The session-level advisory lock that elects the publishing relay (an arbitrary
/// constant, the same in every process).
pub const RELAY_LOCK: i64 = 0x6761_7465_7265_6c79; // "gaterely"

/// Events taken per read.
const BATCH_SIZE: i64 = 256;
/// Most events sent and not yet acknowledged: the relay reads no more until acks come back.
const MAX_IN_FLIGHT: usize = 2 * BATCH_SIZE as usize;
/// How often a waiting relay tries to become the leader.
const LEADER_RETRY: Duration = Duration::from_secs(1);
/// How often an idle leader looks again without a notification (a lost one costs this).
const IDLE_TICK: Duration = Duration::from_secs(1);
/// How long after its last crowded look (more than one event found at once) a leader that
/// finds nothing keeps looking by itself, every [`LOOK_AGAIN`], before it flags itself
/// asleep (see the module documentation).
pub const LINGER: Duration = Duration::from_millis(20);
/// How often a lingering leader looks.
const LOOK_AGAIN: Duration = Duration::from_millis(1);
/// Back-off after a publish failure: doubles from the first to the last (unless the bus
/// reconnects first).
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest back-off after publish failures.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What one relay iteration did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayOutcome {
    /// Events were read and sent, or acknowledged and marked (more may be waiting).
    Published {
        /// Events this look found.
        read: usize,
        /// Events acknowledged.
        acked: usize,
    },
    /// Nothing was waiting and nothing is in flight.
    Idle,
    /// The publisher failed; whatever was acknowledged before the failure was marked, and
    /// the rest is sent again, in the same order, on the next iteration.
    PublisherDown,
}

/// Publishes the outbox to the bus. See the [module documentation](self).
pub struct OutboxRelay {
    database: PgDatabase,
    publisher: Arc<dyn Publisher>,
    backoff_first: Duration,
    backoff_max: Duration,
    linger: Duration,
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
            linger: LINGER,
        }
    }

    /// Overrides [`LINGER`]; zero flags the relay asleep as soon as a look finds nothing.
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
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
        // The relay's own writes (marks, the sleeping flag) need not wait for the disk: a
        // mark lost in a crash only means publishing the event again, which the bus drops
        // as a duplicate, and a new leader sets the flag anyway. The next read goes out
        // behind the mark on this connection, so waiting for the flush made every turn of
        // the pipeline slower: ~2.0 ms a read under the 32-client benchmark, ~1.3 ms now.
        session
            .client
            .batch_execute("SET synchronous_commit = off")
            .await
            .map_err(unavailable)?;

        // 2. Listen before the first look, so that no commit falls between the two.
        session.listen(OUTBOX_CHANNEL).await?;
        let statements = Statements {
            take: session
                .client
                .prepare(&format!(
                    "SELECT {EVENT_COLUMNS} FROM outbox JOIN events USING (position)
                     WHERE outbox.published_at IS NULL AND position <> ALL($2::bigint[])
                     ORDER BY position
                     LIMIT $1"
                ))
                .await
                .map_err(unavailable)?,
            mark: session
                .client
                // `published_at` is when the acknowledgement came back, not when the mark
                // ran (a turn or two later), so that the relay's share of the projection
                // lag is not counted as the projector's.
                .prepare(
                    "UPDATE outbox SET published_at = acked.at
                     FROM unnest($1::bigint[], $2::timestamptz[]) AS acked(position, at)
                     WHERE outbox.position = acked.position",
                )
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
        // When a look last found more than one event: they come faster than a turn.
        let mut last_crowded: Option<tokio::time::Instant> = None;
        let link = self.publisher.link();
        let mut chain = Chain::default();
        while !stopping(shutdown) {
            // The connection the batch is tried on: a reconnect after this is worth a retry.
            let tried_on = link.as_ref().map(|link| *link.borrow()).unwrap_or_default();
            let outcome = self.step(&session.client, &statements, &mut chain).await?;
            tracing::debug!(?outcome, "outbox relay iteration");
            match outcome {
                RelayOutcome::Published { read, .. } => {
                    backoff = self.backoff_first;
                    if read > 1 {
                        last_crowded = Some(tokio::time::Instant::now());
                    }
                    if asleep {
                        // Busy again: appenders can stop notifying.
                        self.set_sleeping(&session.client, &statements, false)
                            .await?;
                        asleep = false;
                    }
                }
                RelayOutcome::Idle
                    if !asleep && last_crowded.is_some_and(|at| at.elapsed() < self.linger) =>
                {
                    // Crowded a moment ago, so more is likely on its way: look again soon
                    // rather than make the appends in flight wait for the handshake.
                    tokio::select! {
                        () = tokio::time::sleep(LOOK_AGAIN) => {}
                        () = stopped(shutdown) => {}
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
                            return Err(StoreError::Unavailable(why_ended(ended).into()));
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
        // What came back is marked; what is still in flight is published again by the next
        // leader (the bus drops what it already holds).
        self.mark(&session.client, &statements, &mut chain).await?;
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

    /// One turn of the pipeline (see the module documentation): marks what was
    /// acknowledged while it reads the next unpublished events, sends them behind the
    /// events in flight, and takes the acknowledgements that came back, waiting for one
    /// only when there was nothing new to send.
    async fn step(
        &self,
        client: &Client,
        statements: &Statements,
        chain: &mut Chain,
    ) -> Result<RelayOutcome, StoreError> {
        let mut sent_new = false;
        let mut found = 0;
        let mut stopped_early = None;
        if chain.failed() {
            // A send failed behind events in flight: wait for their acks first.
        } else if chain.unsent() {
            // Retry from the first unacknowledged event, in the order first sent.
            self.send_unsent(chain).await;
            sent_new = true;
        } else if chain.sent.len() < MAX_IN_FLIGHT {
            let exclude = chain.positions();
            let read = async {
                client
                    .query(&statements.take, &[&BATCH_SIZE, &exclude])
                    .await
                    .map_err(unavailable)
            };
            let (marked, rows) = tokio::join!(self.mark(client, statements, chain), read);
            marked?;
            let rows = rows?;
            // Decode in order; an undecodable row ends the read there, like a publish
            // failure: later events of its stream must not overtake it. `run` logs it and
            // retries.
            for row in &rows {
                match event_from_row(row) {
                    Ok(event) => chain.push(event),
                    Err(error) => {
                        stopped_early = Some(error);
                        break;
                    }
                }
            }
            found = rows.len();
            sent_new = found > 0;
            self.send_unsent(chain).await;
        }

        // Take what came back; wait for the oldest ack only when nothing new was sent (or
        // no more may be in flight).
        let before = chain.acked.len();
        let mut wait = !sent_new || chain.sent.len() >= MAX_IN_FLIGHT;
        let failure = loop {
            let Some(front) = chain.sent.front_mut() else {
                break None;
            };
            let answer = match &mut front.state {
                State::Unsent => break None,
                State::Failed(_) => None,
                State::Sent(ack) if wait => Some(ack.await),
                State::Sent(ack) => match ack.now_or_never() {
                    Some(answer) => Some(answer),
                    None => break None,
                },
            };
            wait = false;
            match answer {
                Some(Ok(())) => {
                    if let Some(done) = chain.sent.pop_front() {
                        chain.acked.push(done.event.position);
                        chain.acked_at.push(chrono::Utc::now());
                    }
                }
                Some(Err(error)) => {
                    front.state = State::Failed(error);
                    break chain.fail();
                }
                None => break chain.fail(),
            }
        };
        let acked = chain.acked.len() - before;
        if let Some((error, event)) = failure {
            tracing::warn!(
                error = %error_chain(&error),
                position = event.position,
                stream_id = %event.stream_id,
                "publishing an event failed; the relay backs off and retries from this event"
            );
            self.mark(client, statements, chain).await?;
            return Ok(RelayOutcome::PublisherDown);
        }
        if let Some(error) = stopped_early {
            self.mark(client, statements, chain).await?;
            return Err(error);
        }
        if sent_new || acked > 0 || !chain.sent.is_empty() {
            return Ok(RelayOutcome::Published { read: found, acked });
        }
        // Nothing read, nothing in flight: mark the rest before saying so.
        self.mark(client, statements, chain).await?;
        Ok(RelayOutcome::Idle)
    }

    /// Sends the events of `chain` not sent yet, in order, each after the one before it
    /// (see the module documentation). Stops at the first that cannot be sent.
    async fn send_unsent(&self, chain: &mut Chain) {
        let mut after = None;
        for entry in &mut chain.sent {
            match entry.state {
                State::Unsent => match self.publisher.send(&entry.event, after).await {
                    Ok(ack) => entry.state = State::Sent(ack),
                    Err(error) => {
                        entry.state = State::Failed(error);
                        return;
                    }
                },
                State::Sent(_) => {}
                State::Failed(_) => return,
            }
            after = Some(entry.event.event_id);
        }
    }

    /// Marks the acknowledged events published.
    async fn mark(
        &self,
        client: &Client,
        statements: &Statements,
        chain: &mut Chain,
    ) -> Result<(), StoreError> {
        if chain.acked.is_empty() {
            return Ok(());
        }
        client
            .execute(&statements.mark, &[&chain.acked, &chain.acked_at])
            .await
            .map_err(unavailable)?;
        chain.acked.clear();
        chain.acked_at.clear();
        Ok(())
    }
}

/// The events sent and not yet acknowledged, in the order sent, and the positions
/// acknowledged but not yet marked, with when each acknowledgement was taken.
#[derive(Default)]
struct Chain {
    sent: VecDeque<InFlight>,
    acked: Vec<i64>,
    acked_at: Vec<chrono::DateTime<chrono::Utc>>,
}

struct InFlight {
    event: RecordedEvent,
    state: State,
}

enum State {
    /// To be sent (again).
    Unsent,
    /// Sent; its acknowledgement is pending.
    Sent(PendingAck),
    /// Sending it failed, or the bus refused it or did not answer.
    Failed(PublishError),
}

impl Chain {
    fn push(&mut self, event: RecordedEvent) {
        self.sent.push_back(InFlight {
            event,
            state: State::Unsent,
        });
    }

    /// Whether an event is to be sent (again).
    fn unsent(&self) -> bool {
        self.sent
            .iter()
            .any(|entry| matches!(entry.state, State::Unsent))
    }

    /// Whether sending an event failed (it waits to reach the front).
    fn failed(&self) -> bool {
        self.sent
            .iter()
            .any(|entry| matches!(entry.state, State::Failed(_)))
    }

    /// The positions to leave out of the next read: in flight or not yet marked.
    fn positions(&self) -> Vec<i64> {
        self.sent
            .iter()
            .map(|entry| entry.event.position)
            .chain(self.acked.iter().copied())
            .collect()
    }

    /// The first event failed: every event in flight is to be sent again, in the same
    /// order (whatever their pending acks would say). Returns the first failure and the
    /// event it stopped at.
    fn fail(&mut self) -> Option<(PublishError, RecordedEvent)> {
        let mut failure = None;
        for entry in &mut self.sent {
            if let State::Failed(error) = std::mem::replace(&mut entry.state, State::Unsent) {
                failure.get_or_insert((error, entry.event.clone()));
            }
        }
        failure
    }
}

fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Resolves once `shutdown` is true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
