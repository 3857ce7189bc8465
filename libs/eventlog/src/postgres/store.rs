//! [`PostgresEventStore`]: appends and reads on the `events` table.
//!
//! An append is one transaction, in this order:
//!
//! 1. read the stream's current version and compare it with the expected one;
//! 2. take the idempotency key (a concurrent request with the same key waits for us, then
//!    finds it taken);
//! 3. take or release unique claims;
//! 4. write or delete secret slots;
//! 5. insert every event and its outbox row in one statement; a trigger on `outbox`
//!    `NOTIFY`s the relay (delivered at commit) when the relay is asleep (see
//!    `migrations/0003_outbox_wakeups.sql` for why not always);
//! 6. record the outcome under the idempotency key;
//!
//! then commit. Any refusal returns before the commit, so nothing is written.
//!
//! `BEGIN` is not awaited on its own either: it goes out just ahead of steps 1–5, in their
//! round trip (which is why the append opens its transaction by hand, [`OpenTransaction`],
//! and not with `Client::transaction`). That cannot let a step run outside the transaction:
//! on a healthy connection outside a transaction `BEGIN` does not fail, and where it does
//! fail (a broken connection, an aborted transaction left open) the steps behind it fail too.
//!
//! Steps 1 to 5 are sent together and run in that order in one round trip: none needs
//! another's answer before it can be sent, and under load each round trip costs a
//! scheduling delay on both sides, all of it lag before the event reaches the outbox. The
//! answers are then read in order, so the refusal is the one the first failing step gives,
//! as if the steps had run one by one; the later statements ran too, but the refusal rolls
//! them back. A claim whose value turned out to be held is settled (who holds it, retry if
//! released) once all five have answered.
//!
//! Step 1 is only a fast path: another writer can append between steps 1 and 5. The real
//! guard is `UNIQUE (stream_id, version)`: step 5 inserts with
//! `ON CONFLICT (stream_id, version) DO NOTHING`, so when a concurrent writer committed
//! the same version first, fewer rows come back than were sent, and the append is
//! refused with [`AppendError::WrongExpectedVersion`] and the version now committed.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool, Transaction};
use futures::future::{MaybeDone, OptionFuture, maybe_done};
use gatehouse_contracts::envelope::{EventMetadata, RecordedEvent, StreamId};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use super::{PgDatabase, unavailable};
use crate::store::{
    AppendError, AppendRequest, Appended, EventStore, IdempotencyRecord, SecretOp, StoreError,
    StoredOutcome, UniqueClaim,
};

/// The columns [`event_from_row`] decodes, in its order.
pub(crate) const EVENT_COLUMNS: &str = "position, stream_id, version, event_id, event_type, schema_version, payload, metadata, recorded_at";

/// The event log on Postgres.
#[derive(Clone)]
pub struct PostgresEventStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEventStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresEventStore {
    /// A store on `pool`. The schema must be migrated ([`super::migrate`]).
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Connects to `url` with at most `max_connections` and migrates the schema.
    pub async fn connect(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let database = PgDatabase::connect(url, max_connections).await?;
        Ok(Self::new(database.pool().clone()))
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Appends inside a transaction the caller holds, so that the append commits (or
    /// not) together with the caller's own writes. The caller commits; on an error it
    /// must roll back (drop the transaction), as part of the append may have been written.
    pub async fn append_in(
        tx: &Transaction<'_>,
        request: AppendRequest,
    ) -> Result<Appended, AppendError> {
        Self::append_on(tx, request).await
    }

    /// [`PostgresEventStore::append_in`] on a connection whose transaction is open, or is
    /// being opened by a `BEGIN` sent just before (see [`OpenTransaction`]).
    async fn append_on(
        tx: &impl GenericClient,
        request: AppendRequest,
    ) -> Result<Appended, AppendError> {
        if request.events.is_empty() {
            return Err(AppendError::Invalid("an append needs at least one event"));
        }
        let stream_id = request.stream_id.as_str();
        let expected = request.expected_version.as_i64();
        let count = i64::try_from(request.events.len())
            .map_err(|_| AppendError::Invalid("too many events"))?;
        let version = expected + count;

        // Steps 1–5 go out together, in one round trip (see the module docs).
        let statements = Statements::prepare(tx).await.map_err(unavailable)?;
        let (actual, key_taken, claims, secrets, inserted) = futures::join!(
            current_version(tx, &statements.current_version, stream_id, &[]),
            OptionFuture::from(request.idempotency.as_ref().map(|record| {
                take_idempotency_key(tx, &statements, record, stream_id, version)
            })),
            in_order(request.claims.iter().map(|claim| apply_claim(
                tx,
                &statements,
                stream_id,
                claim
            ))),
            in_order(
                request
                    .secrets
                    .iter()
                    .map(|op| apply_secret(tx, &statements, stream_id, op))
            ),
            insert_events(tx, &statements.insert_events, &request, expected),
        );

        // The answers in the order the statements ran: the first refusal is the one a
        // sequential append would have met, and a statement after a failed one failed
        // only because the transaction was aborted.
        // 1. The fast-path version check (the unique constraint in step 5 is the guard).
        let actual = actual.map_err(unavailable)?;
        if actual != expected {
            return Err(AppendError::WrongExpectedVersion {
                stream_id: request.stream_id,
                expected,
                actual,
            });
        }
        // 2. The idempotency key (its position is filled in at step 6).
        if key_taken.transpose().map_err(unavailable)? == Some(0) {
            return Err(AppendError::IdempotencyKeyTaken);
        }
        // 3. Unique claims: a claim that found its value held is settled below, once
        // every statement is known to have run.
        let claims = claims
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        // 4. Secret slots.
        secrets
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        // 5. Events and their outbox rows.
        let positions = inserted?;
        // 3, continued: every statement ran, so a held value can be settled now.
        for (claim, inserted) in request.claims.iter().zip(claims) {
            if let (UniqueClaim::Claim { scope, value }, 0) = (claim, inserted) {
                settle_claim(tx, &statements, stream_id, scope, value).await?;
            }
        }
        let Some(&position) = positions
            .last()
            .filter(|_| positions.len() == request.events.len())
        else {
            // A concurrent writer committed one of our versions first.
            // Ours may be among the rows now visible (a later version that did not
            // collide): leave them out.
            let ours: Vec<Uuid> = request.events.iter().map(|e| e.event_id).collect();
            let actual = current_version(tx, &statements.current_version, stream_id, &ours)
                .await
                .map_err(unavailable)?;
            return Err(AppendError::WrongExpectedVersion {
                stream_id: request.stream_id,
                expected,
                actual,
            });
        };

        // 6. The outcome for retries.
        if let Some(record) = &request.idempotency {
            execute(
                tx,
                "UPDATE idempotency SET position = $2 WHERE key = $1",
                &[&record.key, &position],
            )
            .await
            .map_err(unavailable)?;
        }

        Ok(Appended {
            stream_id: request.stream_id,
            version,
            position,
        })
    }
}

#[async_trait]
impl EventStore for PostgresEventStore {
    // Errors at DEBUG: most are a client's or a race's (a taken name, a stale version) and
    // the writer maps them; a store failure is logged at ERROR where it becomes a reply.
    #[tracing::instrument(skip_all, fields(stream_id = %request.stream_id), err(level = "debug"))]
    async fn append(&self, request: AppendRequest) -> Result<Appended, AppendError> {
        let open = OpenTransaction(Some(self.pool.get().await.map_err(unavailable)?));
        // `BEGIN` goes out with steps 1–5, in their round trip (see the module docs).
        let (begun, appended) = futures::join!(
            open.client().batch_execute("BEGIN"),
            Self::append_on(open.client(), request)
        );
        begun.map_err(unavailable)?;
        match appended {
            Ok(appended) => {
                open.finish("COMMIT").await.map_err(unavailable)?;
                Ok(appended)
            }
            Err(refused) => {
                // A failed rollback drops the connection, which rolls back too.
                let _ = open.finish("ROLLBACK").await;
                Err(refused)
            }
        }
    }

    async fn read_stream(
        &self,
        stream_id: &StreamId,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version"
        );
        let rows = query(&client, &sql, &[&stream_id.as_str(), &after_version])
            .await
            .map_err(unavailable)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn read_all(
        &self,
        after_position: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
        );
        let rows = query(&client, &sql, &[&after_position, &limit])
            .await
            .map_err(unavailable)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn last_position(&self) -> Result<i64, StoreError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let rows = query(
            &client,
            "SELECT coalesce(max(position), 0) FROM events",
            &[],
        )
        .await
        .map_err(unavailable)?;
        rows.first()
            .map_or(Ok(0), |row| row.try_get::<_, i64>(0).map_err(corrupt))
    }

    async fn read_events(&self, event_ids: &[Uuid]) -> Result<Vec<RecordedEvent>, StoreError> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.pool.get().await.map_err(unavailable)?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ANY($1) ORDER BY position"
        );
        let rows = query(&client, &sql, &[&event_ids])
            .await
            .map_err(unavailable)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn idempotent_outcome(&self, key: &str) -> Result<Option<StoredOutcome>, StoreError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let sql = "SELECT fingerprint, response, stream_id, version, position, expires_at
                   FROM idempotency WHERE key = $1";
        let Some(row) = query(&client, sql, &[&key])
            .await
            .map_err(unavailable)?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        Ok(Some(StoredOutcome {
            fingerprint: row.try_get(0).map_err(corrupt)?,
            response: row.try_get(1).map_err(corrupt)?,
            stream_id: parse_stream_id(row.try_get(2).map_err(corrupt)?)?,
            version: row.try_get(3).map_err(corrupt)?,
            position: row.try_get(4).map_err(corrupt)?,
            expires_at: row.try_get(5).map_err(corrupt)?,
        }))
    }

    async fn purge_idempotency(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        execute(
            &client,
            "DELETE FROM idempotency WHERE expires_at <= $1",
            &[&now],
        )
        .await
        .map_err(unavailable)
    }

    async fn claim_holder(&self, scope: &str, value: &str) -> Result<Option<StreamId>, StoreError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let holder = claim_holder(&client, scope, value)
            .await
            .map_err(unavailable)?;
        holder.as_deref().map(parse_stream_id).transpose()
    }

    async fn read_secret(
        &self,
        stream_id: &StreamId,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        let sql = "SELECT value FROM secret_slots WHERE stream_id = $1 AND name = $2";
        let rows = query(&client, sql, &[&stream_id.as_str(), &name])
            .await
            .map_err(unavailable)?;
        rows.first()
            .map(|row| row.try_get(0).map_err(corrupt))
            .transpose()
    }
}

/// A pooled connection inside a transaction begun by hand, so that `BEGIN` can share the
/// append's round trip (`Client::transaction` waits for its answer first). Dropped before
/// [`OpenTransaction::finish`] (an error, or the append's future dropped mid-way), the
/// connection leaves the pool and closes, so the server rolls the transaction back and no
/// later user of the pool finds itself inside it.
struct OpenTransaction(Option<deadpool_postgres::Client>);

impl OpenTransaction {
    fn client(&self) -> &deadpool_postgres::Client {
        self.0.as_ref().expect("the connection stays until finish")
    }

    /// Ends the transaction with `statement` (`COMMIT` or `ROLLBACK`) and gives the
    /// connection back to the pool.
    async fn finish(mut self, statement: &str) -> Result<(), tokio_postgres::Error> {
        self.client().batch_execute(statement).await?;
        self.0.take();
        Ok(())
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// The statements of an append, prepared before any is sent: tokio-postgres runs requests
/// in the order their futures are first polled, and a statement still being prepared
/// would go out behind the ones polled after it. All of them, whatever the request needs:
/// they are cached per connection, so this costs one round trip on a connection's first
/// append and none after.
struct Statements {
    current_version: Statement,
    take_idempotency_key: Statement,
    claim: Statement,
    release: Statement,
    release_all: Statement,
    put_secret: Statement,
    delete_secret: Statement,
    insert_events: Statement,
}

impl Statements {
    async fn prepare(tx: &impl GenericClient) -> Result<Self, tokio_postgres::Error> {
        let (
            current_version,
            take_idempotency_key,
            claim,
            release,
            release_all,
            put_secret,
            delete_secret,
            insert_events,
        ) = futures::try_join!(
            tx.prepare_cached(CURRENT_VERSION),
            tx.prepare_cached(TAKE_IDEMPOTENCY_KEY),
            tx.prepare_cached(CLAIM),
            tx.prepare_cached(RELEASE),
            tx.prepare_cached(RELEASE_ALL),
            tx.prepare_cached(PUT_SECRET),
            tx.prepare_cached(DELETE_SECRET),
            tx.prepare_cached(INSERT_EVENTS),
        )?;
        Ok(Self {
            current_version,
            take_idempotency_key,
            claim,
            release,
            release_all,
            put_secret,
            delete_secret,
            insert_events,
        })
    }
}

/// Awaits `requests` together, polling each first in the order given, so that
/// tokio-postgres sends and runs them in that order, in one round trip. (`futures::join!`
/// also polls in the order listed.)
async fn in_order<F: Future>(requests: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<MaybeDone<F>>>> = requests
        .into_iter()
        .map(|request| Box::pin(maybe_done(request)))
        .collect();
    poll_fn(|cx| {
        let mut all_done = true;
        for request in &mut pending {
            all_done &= request.as_mut().poll(cx).is_ready();
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    pending
        .iter_mut()
        .filter_map(|request| request.as_mut().take_output())
        .collect()
}

const CURRENT_VERSION: &str = "SELECT coalesce(max(version), 0) FROM events
                               WHERE stream_id = $1 AND event_id <> ALL($2)";

/// The stream's version (0 when it does not exist), leaving out the events `excluding`.
async fn current_version(
    tx: &impl GenericClient,
    statement: &Statement,
    stream_id: &str,
    excluding: &[Uuid],
) -> Result<i64, tokio_postgres::Error> {
    tx.query_one(statement, &[&stream_id, &excluding])
        .await?
        .try_get(0)
}

// A row that expired by the time the key is taken no longer holds it: replace it. A live
// row leaves the key taken (a concurrent first use waits for the other transaction, then
// sees its row).
const TAKE_IDEMPOTENCY_KEY: &str = "
    INSERT INTO idempotency (key, fingerprint, response, stream_id, version, position, expires_at)
    VALUES ($1, $2, $3, $4, $5, 0, $6)
    ON CONFLICT (key) DO UPDATE SET
        fingerprint = excluded.fingerprint, response = excluded.response,
        stream_id = excluded.stream_id, version = excluded.version,
        position = 0, expires_at = excluded.expires_at, created_at = now()
    WHERE idempotency.expires_at <= $7";

/// Takes the key; 0 rows: it is taken.
async fn take_idempotency_key(
    tx: &impl GenericClient,
    statements: &Statements,
    record: &IdempotencyRecord,
    stream_id: &str,
    version: i64,
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        &statements.take_idempotency_key,
        &[
            &record.key,
            &record.fingerprint,
            &record.response,
            &stream_id,
            &version,
            &record.expires_at,
            &record.taken_at,
        ],
    )
    .await
}

// Insert-or-nothing waits for a concurrent claimer to commit or roll back; the next
// statement then sees who holds the value.
const CLAIM: &str = "INSERT INTO unique_claims (scope, value, stream_id) VALUES ($1, $2, $3)
                     ON CONFLICT (scope, value) DO NOTHING";
const RELEASE: &str =
    "DELETE FROM unique_claims WHERE scope = $1 AND value = $2 AND stream_id = $3";
const RELEASE_ALL: &str = "DELETE FROM unique_claims WHERE stream_id = $1 AND scope = $2";

/// Takes or releases a claim; for a claim, 0 rows: the value is held
/// ([`settle_claim`] decides by whom).
async fn apply_claim(
    tx: &impl GenericClient,
    statements: &Statements,
    stream_id: &str,
    claim: &UniqueClaim,
) -> Result<u64, tokio_postgres::Error> {
    match claim {
        UniqueClaim::Claim { scope, value } => {
            tx.execute(&statements.claim, &[scope, value, &stream_id])
                .await
        }
        UniqueClaim::Release { scope, value } => {
            tx.execute(&statements.release, &[scope, value, &stream_id])
                .await
        }
        UniqueClaim::ReleaseAll { scope } => {
            tx.execute(&statements.release_all, &[&stream_id, scope])
                .await
        }
    }
}

/// A claim whose insert found the value held: fine if this stream holds it; if the holder
/// released it in between, try again.
async fn settle_claim(
    tx: &impl GenericClient,
    statements: &Statements,
    stream_id: &str,
    scope: &str,
    value: &str,
) -> Result<(), AppendError> {
    for attempt in 0..3 {
        if attempt > 0 {
            let inserted = tx
                .execute(&statements.claim, &[&scope, &value, &stream_id])
                .await
                .map_err(unavailable)?;
            if inserted == 1 {
                return Ok(());
            }
        }
        match claim_holder(tx, scope, value).await.map_err(unavailable)? {
            Some(holder) if holder == stream_id => return Ok(()),
            Some(_) => break,
            None => continue,
        }
    }
    Err(AppendError::UniqueViolation {
        scope: scope.to_owned(),
        value: value.to_owned(),
    })
}

const PUT_SECRET: &str = "INSERT INTO secret_slots (stream_id, name, value) VALUES ($1, $2, $3)
                          ON CONFLICT (stream_id, name) DO UPDATE SET value = excluded.value";
const DELETE_SECRET: &str = "DELETE FROM secret_slots WHERE stream_id = $1 AND name = $2";

async fn apply_secret(
    tx: &impl GenericClient,
    statements: &Statements,
    stream_id: &str,
    op: &SecretOp,
) -> Result<u64, tokio_postgres::Error> {
    match op {
        SecretOp::Put { name, value } => {
            tx.execute(&statements.put_secret, &[&stream_id, name, value])
                .await
        }
        SecretOp::Delete { name } => {
            tx.execute(&statements.delete_secret, &[&stream_id, name])
                .await
        }
    }
}

/// Inserts the events as versions `expected + 1 ..` and queues them in the outbox, in one
/// statement.
const INSERT_EVENTS: &str = "
    WITH appended AS (
        INSERT INTO events (stream_id, version, event_id, event_type, schema_version, payload, metadata, recorded_at)
        SELECT $1, $2 + e.n, e.event_id, e.event_type, e.schema_version, e.payload, e.metadata, e.recorded_at
        FROM unnest($3::uuid[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[], $8::timestamptz[])
             WITH ORDINALITY AS e(event_id, event_type, schema_version, payload, metadata, recorded_at, n)
        ORDER BY e.n
        ON CONFLICT ON CONSTRAINT events_stream_version_key DO NOTHING
        RETURNING position, version
    ), queued AS (
        INSERT INTO outbox (position) SELECT position FROM appended
    )
    SELECT position FROM appended ORDER BY version";

/// Runs [`INSERT_EVENTS`]. Returns the positions of the rows inserted, in version order:
/// fewer than the events sent when a version was already taken.
async fn insert_events(
    tx: &impl GenericClient,
    statement: &Statement,
    request: &AppendRequest,
    expected: i64,
) -> Result<Vec<i64>, AppendError> {
    let events = &request.events;
    let event_ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let event_types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let schema_versions: Vec<i32> = events.iter().map(|e| e.schema_version).collect();
    let payloads: Vec<&serde_json::Value> = events.iter().map(|e| &e.payload).collect();
    let metadata: Vec<Json<&EventMetadata>> = events.iter().map(|e| Json(&e.metadata)).collect();
    let recorded_at: Vec<DateTime<Utc>> = events.iter().map(|e| e.recorded_at).collect();

    let rows = tx
        .query(
            statement,
            &[
                &request.stream_id.as_str(),
                &expected,
                &event_ids,
                &event_types,
                &schema_versions,
                &payloads,
                &metadata,
                &recorded_at,
            ],
        )
        .await
        .map_err(|error| match error.code() {
            Some(code) if *code == SqlState::UNIQUE_VIOLATION => {
                AppendError::Invalid("an event with one of these event ids is already in the log")
            }
            _ => AppendError::Store(unavailable(error)),
        })?;
    rows.iter()
        .map(|row| row.try_get(0).map_err(|e| AppendError::Store(corrupt(e))))
        .collect()
}

async fn claim_holder<C: GenericClient>(
    client: &C,
    scope: &str,
    value: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let sql = "SELECT stream_id FROM unique_claims WHERE scope = $1 AND value = $2";
    let rows = query(client, sql, &[&scope, &value]).await?;
    rows.first().map(|row| row.try_get(0)).transpose()
}

/// Runs a prepared (and cached) query.
pub(crate) async fn query<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.query(&statement, params).await
}

/// Runs a prepared (and cached) statement; returns the rows affected.
pub(crate) async fn execute<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    client.execute(&statement, params).await
}

/// Decodes a row of [`EVENT_COLUMNS`].
pub(crate) fn event_from_row(row: &Row) -> Result<RecordedEvent, StoreError> {
    let Json(metadata): Json<EventMetadata> = row.try_get(7).map_err(corrupt)?;
    Ok(RecordedEvent {
        position: row.try_get(0).map_err(corrupt)?,
        stream_id: parse_stream_id(row.try_get(1).map_err(corrupt)?)?,
        version: row.try_get(2).map_err(corrupt)?,
        event_id: row.try_get(3).map_err(corrupt)?,
        event_type: row.try_get(4).map_err(corrupt)?,
        schema_version: row.try_get(5).map_err(corrupt)?,
        payload: row.try_get(6).map_err(corrupt)?,
        metadata,
        recorded_at: row.try_get(8).map_err(corrupt)?,
    })
}

pub(crate) fn parse_stream_id(raw: &str) -> Result<StreamId, StoreError> {
    StreamId::parse(raw).ok_or_else(|| {
        StoreError::Corrupt(format!("stored stream id {raw:?} has no aggregate prefix"))
    })
}

/// A column that does not decode as expected.
pub(crate) fn corrupt(error: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(super::error_chain(&error))
}
