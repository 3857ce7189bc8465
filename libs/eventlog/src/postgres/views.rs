//! [`PostgresViewStore`]: read models in schema `read`.
//!
//! - `read.views`: one JSON document per (kind, aggregate id), with the stream version it
//!   reflects and the position of the stream's first event (the listing order).
//! - `read.applied`: the last version applied per stream: the guard that makes redelivery
//!   harmless.
//! - `read.checkpoints`: the feed sequence each projector has committed.
//! - `read.skipped`: the events each projector skipped as unknown to its build
//!   (`docs/decisions/0012-unknown-event-types.md`), committed with its checkpoint.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use gatehouse_contracts::envelope::{EventMetadata, RecordedEvent, StreamId};
use tokio::time::Instant;
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::{Json, ToSql};
use uuid::Uuid;

use super::store::{corrupt, execute, parse_stream_id, query};
use super::waiters::WaitList;
use super::{PROJECTED_CHANNEL, PgDatabase, to_bigint, unavailable};
use crate::store::StoreError;
use crate::views::{
    BatchWrite, ListQuery, Page, SkippedEvent, StreamState, StreamWrite, TimeBound, ViewDoc,
    ViewSnapshot, ViewStore,
};

/// How often [`ViewStore::wait_applied`] looks again while notifications are not
/// arriving (the listening connection is down).
const POLL_FALLBACK: Duration = Duration::from_millis(20);
/// How often it looks again while they are: only a safety net (a lost notification costs
/// this much latency, once).
const POLL_WHILE_LISTENING: Duration = Duration::from_millis(250);

/// Read models on Postgres.
#[derive(Clone)]
pub struct PostgresViewStore {
    database: PgDatabase,
    /// The requests waiting for their writes, woken from `NOTIFY gatehouse_projected`;
    /// started on the first [`ViewStore::wait_applied`], shared by clones, stopped when
    /// they are all gone.
    waiters: Arc<OnceLock<WaitList>>,
}

impl std::fmt::Debug for PostgresViewStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresViewStore")
            .field("database", &self.database)
            .finish()
    }
}

impl PostgresViewStore {
    /// A view store on `database` (whose schema is migrated).
    pub fn new(database: &PgDatabase) -> Self {
        Self {
            database: database.clone(),
            waiters: Arc::new(OnceLock::new()),
        }
    }

    /// Connects to `url` with at most `max_connections` and migrates the schema.
    pub async fn connect(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        Ok(Self::new(&PgDatabase::connect(url, max_connections).await?))
    }

    fn pool(&self) -> &Pool {
        self.database.pool()
    }

    fn waiters(&self) -> &WaitList {
        self.waiters
            .get_or_init(|| WaitList::start(self.database.clone()))
    }
}

const DOC_COLUMNS: &str = "kind, id, version, doc";

/// What a time bound reads as a timestamp (`DateTime<Utc>` as serde writes it); anything
/// else in the field matches no bound instead of failing the cast.
const RFC3339: &str = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$";

fn doc_from_row(row: &tokio_postgres::Row) -> Result<ViewDoc, StoreError> {
    Ok(ViewDoc {
        kind: row.try_get(0).map_err(corrupt)?,
        id: row.try_get(1).map_err(corrupt)?,
        version: row.try_get(2).map_err(corrupt)?,
        doc: row.try_get(3).map_err(corrupt)?,
    })
}

const SKIPPED_SQL: &str = "SELECT stream_id, version, position, event_type, schema_version
     FROM read.skipped WHERE projector = $1 ORDER BY position";

fn skipped_from_row(row: &tokio_postgres::Row) -> Result<SkippedEvent, StoreError> {
    Ok(SkippedEvent {
        stream_id: parse_stream_id(row.try_get(0).map_err(corrupt)?)?,
        version: row.try_get(1).map_err(corrupt)?,
        position: row.try_get(2).map_err(corrupt)?,
        event_type: row.try_get(3).map_err(corrupt)?,
        schema_version: row.try_get(4).map_err(corrupt)?,
    })
}

fn sequence_from_row(row: &tokio_postgres::Row) -> Result<u64, StoreError> {
    let sequence: i64 = row.try_get(0).map_err(corrupt)?;
    u64::try_from(sequence)
        .map_err(|_| StoreError::Corrupt(format!("negative checkpoint {sequence}")))
}

#[async_trait]
impl ViewStore for PostgresViewStore {
    async fn get(&self, kind: &str, id: Uuid) -> Result<Option<ViewDoc>, StoreError> {
        let client = self.pool().get().await.map_err(unavailable)?;
        let sql = format!("SELECT {DOC_COLUMNS} FROM read.views WHERE kind = $1 AND id = $2");
        let rows = query(&client, &sql, &[&kind, &id])
            .await
            .map_err(unavailable)?;
        rows.first().map(doc_from_row).transpose()
    }

    async fn find(
        &self,
        kind: &str,
        field: &str,
        value: &serde_json::Value,
    ) -> Result<Option<ViewDoc>, StoreError> {
        let client = self.pool().get().await.map_err(unavailable)?;
        let sql = format!(
            "SELECT {DOC_COLUMNS} FROM read.views
             WHERE kind = $1 AND doc @> jsonb_build_object($2::text, $3::jsonb)
             ORDER BY created_position, id LIMIT 1"
        );
        let rows = query(&client, &sql, &[&kind, &field, value])
            .await
            .map_err(unavailable)?;
        rows.first().map(doc_from_row).transpose()
    }

    /// Filters become one containment test (`doc @> {"field": value, …}`, served by the
    /// GIN index): for scalar values that is equality. A time bound compares the field
    /// read as a timestamp (`NULL`, so no match, where it is missing or no timestamp).
    async fn list(&self, kind: &str, request: &ListQuery) -> Result<Page, StoreError> {
        let client = self.pool().get().await.map_err(unavailable)?;
        let filter: serde_json::Map<String, serde_json::Value> =
            request.filters.iter().cloned().collect();
        let filter = serde_json::Value::Object(filter);
        let (offset, limit) = (to_bigint(request.offset), to_bigint(request.limit));
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&kind, &filter];
        let mut conditions = String::new();
        let bounds: Vec<(&str, &str, chrono::DateTime<chrono::Utc>)> = request
            .time_bounds
            .iter()
            .map(|bound| match bound {
                TimeBound::AtOrBefore(field, at) => (field.as_str(), "<=", *at),
                TimeBound::After(field, at) => (field.as_str(), ">", *at),
            })
            .collect();
        for (field, op, at) in &bounds {
            let n = params.len();
            conditions.push_str(&format!(
                " AND CASE WHEN doc->>(${f}::text) ~ '{RFC3339}' \
                 THEN (doc->>(${f}::text))::timestamptz END {op} ${t}",
                f = n + 1,
                t = n + 2
            ));
            params.push(field);
            params.push(at);
        }
        let counted = params.len();
        let order = if request.newest_first {
            "created_position DESC, id DESC"
        } else {
            "created_position, id"
        };
        let sql = format!(
            "SELECT {DOC_COLUMNS}, count(*) OVER () FROM read.views
             WHERE kind = $1 AND doc @> $2::jsonb{conditions}
             ORDER BY {order} OFFSET ${} LIMIT ${}",
            counted + 1,
            counted + 2
        );
        let mut paged = params.clone();
        paged.push(&offset);
        paged.push(&limit);
        let rows = query(&client, &sql, &paged).await.map_err(unavailable)?;
        let total: i64 = match rows.first() {
            Some(row) => row.try_get(4).map_err(corrupt)?,
            // No row on this page: the window count is not there, count separately.
            None => {
                let sql = format!(
                    "SELECT count(*) FROM read.views WHERE kind = $1 AND doc @> $2::jsonb{conditions}"
                );
                let rows = query(&client, &sql, &params).await.map_err(unavailable)?;
                rows.first()
                    .map(|row| row.try_get(0))
                    .transpose()
                    .map_err(corrupt)?
                    .unwrap_or(0)
            }
        };
        Ok(Page {
            items: rows.iter().map(doc_from_row).collect::<Result<_, _>>()?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn applied_version(&self, stream_id: &StreamId) -> Result<Option<i64>, StoreError> {
        let client = self.pool().get().await.map_err(unavailable)?;
        let sql = "SELECT version FROM read.applied WHERE stream_id = $1";
        let rows = query(&client, sql, &[&stream_id.as_str()])
            .await
            .map_err(unavailable)?;
        rows.first()
            .map(|row| row.try_get(0))
            .transpose()
            .map_err(corrupt)
    }

    /// Woken by the notification of the commit that applies `version` (`waiters.rs`),
    /// looking again now and then in case one is lost.
    async fn wait_applied(
        &self,
        stream_id: &StreamId,
        version: i64,
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        let deadline = Instant::now() + timeout;
        let registration = self.waiters().register(stream_id.as_str(), version);
        loop {
            if self.applied_version(stream_id).await?.unwrap_or(0) >= version {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let poll = if registration.listening() {
                POLL_WHILE_LISTENING
            } else {
                POLL_FALLBACK
            };
            let pause = (deadline - now).min(poll);
            if tokio::time::timeout(pause, registration.woken())
                .await
                .is_ok()
            {
                return Ok(true);
            }
        }
    }

    async fn load_streams(
        &self,
        streams: &[(StreamId, Option<&'static str>)],
    ) -> Result<HashMap<StreamId, StreamState>, StoreError> {
        let client = self.pool().get().await.map_err(unavailable)?;
        let stream_ids: Vec<&str> = streams.iter().map(|(s, _)| s.as_str()).collect();
        let (kinds, ids): (Vec<&str>, Vec<Uuid>) = streams
            .iter()
            .filter_map(|(stream_id, kind)| Some(((*kind)?, stream_id.id()?)))
            .unzip();
        // Both queries go out at once (tokio-postgres pipelines them on one connection).
        let applied_params: [&(dyn ToSql + Sync); 1] = [&stream_ids];
        let doc_params: [&(dyn ToSql + Sync); 2] = [&kinds, &ids];
        // No documents wanted (a batch of creations): no query for them.
        let docs = async {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            query(
                &client,
                "SELECT v.kind, v.id, v.doc FROM unnest($1::text[], $2::uuid[]) AS w(kind, id)
                 JOIN read.views v ON v.kind = w.kind AND v.id = w.id",
                &doc_params,
            )
            .await
        };
        let (applied_rows, doc_rows) = futures::try_join!(
            query(
                &client,
                "SELECT stream_id, version FROM read.applied WHERE stream_id = ANY($1)",
                &applied_params
            ),
            docs,
        )
        .map_err(unavailable)?;

        let mut applied: HashMap<String, i64> = HashMap::new();
        for row in &applied_rows {
            applied.insert(
                row.try_get(0).map_err(corrupt)?,
                row.try_get(1).map_err(corrupt)?,
            );
        }
        let mut docs: HashMap<(String, Uuid), serde_json::Value> = HashMap::new();
        for row in &doc_rows {
            let key = (
                row.try_get(0).map_err(corrupt)?,
                row.try_get(1).map_err(corrupt)?,
            );
            docs.insert(key, row.try_get(2).map_err(corrupt)?);
        }
        Ok(streams
            .iter()
            .map(|(stream_id, kind)| {
                let doc = match (kind, stream_id.id()) {
                    (Some(kind), Some(id)) => docs.remove(&((*kind).to_owned(), id)),
                    _ => None,
                };
                let applied = applied.get(stream_id.as_str()).copied().unwrap_or(0);
                (stream_id.clone(), StreamState { applied, doc })
            })
            .collect())
    }

    /// One statement, so one round trip and its own transaction: the applied versions
    /// (under the version guard; a refolded stream may stay at its version), the documents
    /// of the streams that moved forward, the skip records, the checkpoint and the
    /// `NOTIFY` that wakes [`ViewStore::wait_applied`] callers (delivered at commit).
    ///
    /// It was a transaction of six statements, one round trip each; under load the
    /// projector spent most of each batch waiting on them, and every event of the next
    /// batch waited with it (`docs/benchmarks.md`, projection lag).
    #[tracing::instrument(skip_all, fields(projector = %batch.projector, streams = batch.streams.len()), err)]
    async fn commit(&self, batch: BatchWrite) -> Result<(), StoreError> {
        self.commit_checking(batch, &[]).await?;
        Ok(())
    }

    /// The read models live beside the log (the same migrations make both), and
    /// [`COMMIT_SQL`] guards every stream's version.
    fn sees_log(&self) -> bool {
        true
    }

    /// [`COMMIT_SQL`], with `events` compared column by column with the log's rows in the
    /// same statement: when one differs or is missing, no part of the statement writes.
    /// Read models pointed at another database than the log's would never find them: the
    /// runner then checks every batch first, which is slower but right.
    #[tracing::instrument(skip_all, fields(projector = %batch.projector, streams = batch.streams.len()), err)]
    async fn commit_if_logged(
        &self,
        batch: BatchWrite,
        events: &[&RecordedEvent],
    ) -> Result<bool, StoreError> {
        self.commit_checking(batch, events).await
    }
    async fn checkpoint(&self, projector: &str) -> Result<Option<u64>, StoreError> {
        let client = self.pool().get().await.map_err(unavailable)?;
        let rows = query(
            &client,
            "SELECT sequence FROM read.checkpoints WHERE projector = $1",
            &[&projector],
        )
        .await
        .map_err(unavailable)?;
        rows.first().map(sequence_from_row).transpose()
    }

    /// Reads in one `REPEATABLE READ` transaction: documents, applied versions and the
    /// checkpoint all reflect the same set of commits.
    async fn snapshot(&self, kinds: &[&str], projector: &str) -> Result<ViewSnapshot, StoreError> {
        let mut client = self.pool().get().await.map_err(unavailable)?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(unavailable)?;
        let docs_sql = format!(
            "SELECT {DOC_COLUMNS} FROM read.views WHERE kind = ANY($1) ORDER BY created_position, id"
        );
        let docs_params: [&(dyn ToSql + Sync); 1] = [&kinds];
        let checkpoint_params: [&(dyn ToSql + Sync); 1] = [&projector];
        let (doc_rows, applied_rows, checkpoint_rows, skipped_rows) = futures::try_join!(
            query(&tx, &docs_sql, &docs_params),
            query(&tx, "SELECT stream_id, version FROM read.applied", &[]),
            query(
                &tx,
                "SELECT sequence FROM read.checkpoints WHERE projector = $1",
                &checkpoint_params
            ),
            query(&tx, SKIPPED_SQL, &checkpoint_params),
        )
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;

        let mut applied = HashMap::with_capacity(applied_rows.len());
        for row in &applied_rows {
            let stream_id: &str = row.try_get(0).map_err(corrupt)?;
            applied.insert(
                parse_stream_id(stream_id)?,
                row.try_get(1).map_err(corrupt)?,
            );
        }
        Ok(ViewSnapshot {
            docs: doc_rows
                .iter()
                .map(doc_from_row)
                .collect::<Result<_, _>>()?,
            applied,
            checkpoint: checkpoint_rows
                .first()
                .map(sequence_from_row)
                .transpose()?
                .unwrap_or(0),
            skipped: skipped_rows
                .iter()
                .map(skipped_from_row)
                .collect::<Result<_, _>>()?,
        })
    }

    async fn skipped(&self, projector: &str) -> Result<Vec<SkippedEvent>, StoreError> {
        let client = self.pool().get().await.map_err(unavailable)?;
        let rows = query(&client, SKIPPED_SQL, &[&projector])
            .await
            .map_err(unavailable)?;
        rows.iter().map(skipped_from_row).collect()
    }

    async fn record_use(
        &self,
        kind: &str,
        id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let client = self.pool().get().await.map_err(unavailable)?;
        execute(
            &client,
            "INSERT INTO last_used (kind, id, at) VALUES ($1, $2, $3)
             ON CONFLICT (kind, id) DO UPDATE SET at = GREATEST(last_used.at, EXCLUDED.at)",
            &[&kind, &id, &at],
        )
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn last_used(
        &self,
        kind: &str,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, chrono::DateTime<chrono::Utc>>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let client = self.pool().get().await.map_err(unavailable)?;
        let ids = ids.to_vec();
        let rows = query(
            &client,
            "SELECT id, at FROM last_used WHERE kind = $1 AND id = ANY($2)",
            &[&kind, &ids],
        )
        .await
        .map_err(unavailable)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn reset(&self) -> Result<(), StoreError> {
        let client = self.pool().get().await.map_err(unavailable)?;
        client
            .batch_execute("TRUNCATE read.views, read.applied, read.checkpoints, read.skipped")
            .await
            .map_err(unavailable)
    }
}

impl PostgresViewStore {
    /// [`COMMIT_SQL`]: commits `batch` if the log holds `events` as given (nothing to
    /// check always holds); returns whether it committed.
    async fn commit_checking(
        &self,
        batch: BatchWrite,
        events: &[&RecordedEvent],
    ) -> Result<bool, StoreError> {
        let client = self.pool().get().await.map_err(unavailable)?;
        let writes = latest_per_stream(batch.streams);
        let columns = WriteColumns::of(&writes);
        let refolded: Vec<&str> = batch.refolded.iter().map(StreamId::as_str).collect();
        let skipped = &batch.skipped;
        let skipped_streams: Vec<&str> = skipped.iter().map(|s| s.stream_id.as_str()).collect();
        let skipped_versions: Vec<i64> = skipped.iter().map(|s| s.version).collect();
        let skipped_positions: Vec<i64> = skipped.iter().map(|s| s.position).collect();
        let skipped_types: Vec<&str> = skipped.iter().map(|s| s.event_type.as_str()).collect();
        let skipped_schemas: Vec<i32> = skipped.iter().map(|s| s.schema_version).collect();
        let logged = LoggedColumns::of(events);
        let rows = query(
            &client,
            COMMIT_SQL,
            &[
                &columns.stream_ids,
                &columns.versions,
                &columns.positions,
                &columns.kinds,
                &columns.ids,
                &columns.docs,
                &columns.created,
                &refolded,
                &batch.projector,
                &skipped_streams,
                &skipped_versions,
                &skipped_positions,
                &skipped_types,
                &skipped_schemas,
                &to_bigint(batch.checkpoint),
                &PROJECTED_CHANNEL,
                &logged.event_ids,
                &logged.stream_ids,
                &logged.versions,
                &logged.positions,
                &logged.event_types,
                &logged.schema_versions,
                &logged.payloads,
                &logged.metadata,
                &logged.recorded_at,
            ],
        )
        .await
        .map_err(unavailable)?;
        match rows.first() {
            Some(row) => row.try_get(0).map_err(corrupt),
            None => Err(StoreError::Corrupt(
                "the view commit returned no row".into(),
            )),
        }
    }
}

/// Events as the bus delivered them, as column arrays, for [`COMMIT_SQL`]'s check.
struct LoggedColumns<'a> {
    event_ids: Vec<Uuid>,
    stream_ids: Vec<&'a str>,
    versions: Vec<i64>,
    positions: Vec<i64>,
    event_types: Vec<&'a str>,
    schema_versions: Vec<i32>,
    payloads: Vec<&'a serde_json::Value>,
    metadata: Vec<Json<&'a EventMetadata>>,
    recorded_at: Vec<chrono::DateTime<chrono::Utc>>,
}

impl<'a> LoggedColumns<'a> {
    fn of(events: &[&'a RecordedEvent]) -> Self {
        Self {
            event_ids: events.iter().map(|e| e.event_id).collect(),
            stream_ids: events.iter().map(|e| e.stream_id.as_str()).collect(),
            versions: events.iter().map(|e| e.version).collect(),
            positions: events.iter().map(|e| e.position).collect(),
            event_types: events.iter().map(|e| e.event_type.as_str()).collect(),
            schema_versions: events.iter().map(|e| e.schema_version).collect(),
            payloads: events.iter().map(|e| &e.payload).collect(),
            metadata: events.iter().map(|e| Json(&e.metadata)).collect(),
            recorded_at: events.iter().map(|e| e.recorded_at).collect(),
        }
    }
}

/// One write per stream (the highest version wins), so that one `INSERT … ON CONFLICT`
/// never meets the same key twice.
fn latest_per_stream(streams: Vec<StreamWrite>) -> Vec<StreamWrite> {
    let mut latest: HashMap<StreamId, StreamWrite> = HashMap::with_capacity(streams.len());
    for write in streams {
        match latest.get(&write.stream_id) {
            Some(kept) if kept.applied >= write.applied => {}
            _ => {
                latest.insert(write.stream_id.clone(), write);
            }
        }
    }
    latest.into_values().collect()
}

/// A batch's stream writes as column arrays, for [`COMMIT_SQL`].
struct WriteColumns<'a> {
    stream_ids: Vec<&'a str>,
    versions: Vec<i64>,
    positions: Vec<i64>,
    /// `None` for a stream without a document (no projection, or an id that is not one).
    kinds: Vec<Option<&'a str>>,
    ids: Vec<Option<Uuid>>,
    /// `None` deletes the document.
    docs: Vec<Option<&'a serde_json::Value>>,
    /// The listing position of a new document (an existing one keeps its own).
    created: Vec<i64>,
}

impl<'a> WriteColumns<'a> {
    fn of(writes: &'a [StreamWrite]) -> Self {
        let mut columns = Self {
            stream_ids: Vec::with_capacity(writes.len()),
            versions: Vec::with_capacity(writes.len()),
            positions: Vec::with_capacity(writes.len()),
            kinds: Vec::with_capacity(writes.len()),
            ids: Vec::with_capacity(writes.len()),
            docs: Vec::with_capacity(writes.len()),
            created: Vec::with_capacity(writes.len()),
        };
        for write in writes {
            let (kind, id) = match (write.kind, write.stream_id.id()) {
                (Some(kind), Some(id)) => (Some(kind), Some(id)),
                _ => (None, None),
            };
            columns.stream_ids.push(write.stream_id.as_str());
            columns.versions.push(write.applied);
            columns.positions.push(write.position);
            columns.kinds.push(kind);
            columns.ids.push(id);
            columns.docs.push(write.doc.as_ref());
            columns
                .created
                .push(write.created_position.unwrap_or(write.position));
        }
        columns
    }
}

/// [`ViewStore::commit`] as one statement. Its parts see one snapshot and not each
/// other's changes, so no two of them touch the same row: a document is upserted or
/// deleted (one write per stream), and a refolded stream's skip records are deleted only
/// where this batch does not record them again.
///
/// For [`ViewStore::commit_if_logged`], `verified` compares the delivered events ($17 to
/// $25; none for a plain commit) with the log's rows, and every part that writes takes its
/// rows through it: when one event differs or is missing, none writes. The statement
/// returns whether it committed. The comparison is of stored values (`jsonb` equality for
/// payload and metadata): what it finds equal folds as the log's copy does.
const COMMIT_SQL: &str = "
    WITH verified AS (
        -- One primary-key look-up per event, whatever the planner estimates for the arrays.
        SELECT coalesce(bool_and(EXISTS (
            SELECT 1 FROM events e
            WHERE e.position = b.position AND e.event_id = b.event_id
              AND e.stream_id = b.stream_id AND e.version = b.version
              AND e.event_type = b.event_type AND e.schema_version = b.schema_version
              AND e.payload = b.payload AND e.metadata = b.metadata AND e.recorded_at = b.recorded_at
        )), true) AS ok
        FROM unnest($17::uuid[], $18::text[], $19::bigint[], $20::bigint[], $21::text[], $22::int[], $23::jsonb[], $24::jsonb[], $25::timestamptz[])
            AS b(event_id, stream_id, version, position, event_type, schema_version, payload, metadata, recorded_at)
    ), w AS (
        SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::uuid[], $6::jsonb[], $7::bigint[])
            AS w(stream_id, version, position, kind, id, doc, created_position)
        WHERE (SELECT ok FROM verified)
    ), advanced AS (
        -- The version guard: a stream moves only forward.
        INSERT INTO read.applied AS a (stream_id, version, position)
        SELECT stream_id, version, position FROM w
        ON CONFLICT (stream_id) DO UPDATE
            SET version = excluded.version, position = excluded.position, applied_at = clock_timestamp()
            WHERE a.version < excluded.version
               OR (a.version = excluded.version AND a.stream_id = ANY($8))
        RETURNING stream_id
    ), moved AS (
        SELECT w.* FROM w JOIN advanced USING (stream_id) WHERE w.kind IS NOT NULL
    ), upserted AS (
        INSERT INTO read.views AS v (kind, id, version, doc, created_position)
        SELECT kind, id, version, doc, created_position FROM moved WHERE doc IS NOT NULL
        ON CONFLICT (kind, id) DO UPDATE
            SET version = excluded.version, doc = excluded.doc, projected_at = clock_timestamp()
    ), deleted AS (
        DELETE FROM read.views v USING moved
        WHERE moved.doc IS NULL AND v.kind = moved.kind AND v.id = moved.id
    ), skips AS (
        SELECT * FROM unnest($10::text[], $11::bigint[], $12::bigint[], $13::text[], $14::int[])
            AS s(stream_id, version, position, event_type, schema_version)
        WHERE (SELECT ok FROM verified)
    ), unskipped AS (
        DELETE FROM read.skipped r
        WHERE r.projector = $9 AND r.stream_id = ANY($8) AND (SELECT ok FROM verified)
          AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.stream_id = r.stream_id AND s.version = r.version)
    ), reskipped AS (
        INSERT INTO read.skipped (projector, stream_id, version, position, event_type, schema_version)
        SELECT $9, * FROM skips
        ON CONFLICT DO NOTHING
    ), checkpointed AS (
        -- The checkpoint never moves back.
        INSERT INTO read.checkpoints AS c (projector, sequence, updated_at)
        SELECT $9, $15, clock_timestamp() WHERE (SELECT ok FROM verified)
        ON CONFLICT (projector) DO UPDATE
            SET sequence = GREATEST(c.sequence, excluded.sequence), updated_at = excluded.updated_at
    )
    -- Wakes the waiters of the streams that moved (`waiters.rs`); a list too long for a
    -- notification goes as none, and its waiters look themselves.
    SELECT ok, (
        SELECT pg_notify($16, CASE WHEN octet_length(moved) <= 7900 THEN moved ELSE '' END)
        FROM (SELECT string_agg(w.stream_id || ' ' || w.version, E'\n') AS moved
              FROM w JOIN advanced USING (stream_id)) m
        WHERE moved IS NOT NULL
    ) AS notified
    FROM verified";
