//! [`PostgresViewStore`]: read models in schema `read`.
//!
//! - `read.views`: one JSON document per (kind, aggregate id), with the stream version it
//!   reflects and the position of the stream's first event (the listing order).
//! - `read.applied`: the last version applied per stream: the guard that makes redelivery
//!   harmless.
//! - `read.checkpoints`: the feed sequence each projector has committed.
//! - `read.skipped`: the events each projector skipped as unknown to its build
//!   (`docs/decisions/0012-unknown-event-types.md`), committed with its checkpoint.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use gatehouse_contracts::envelope::StreamId;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::store::{corrupt, execute, parse_stream_id, query};
use super::{PROJECTED_CHANNEL, PgDatabase, error_chain, to_bigint, unavailable};
use crate::store::StoreError;
use crate::views::{
    BatchWrite, ListQuery, Page, SkippedEvent, StreamState, StreamWrite, TimeBound, ViewDoc,
    ViewSnapshot, ViewStore,
};

/// How often [`ViewStore::wait_applied`] looks again when no notification arrives (a lost
/// notification, or the listening connection is down): a lost wake-up costs only latency.
const POLL_FALLBACK: Duration = Duration::from_millis(20);

/// Read models on Postgres.
#[derive(Clone)]
pub struct PostgresViewStore {
    database: PgDatabase,
    /// Bumped by a background task on every `NOTIFY gatehouse_projected`; started on the
    /// first [`ViewStore::wait_applied`], shared by clones, stopped when they are all gone.
    commits: Arc<OnceLock<watch::Receiver<u64>>>,
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
            commits: Arc::new(OnceLock::new()),
        }
    }

    /// Connects to `url` with at most `max_connections` and migrates the schema.
    pub async fn connect(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        Ok(Self::new(&PgDatabase::connect(url, max_connections).await?))
    }

    fn pool(&self) -> &Pool {
        self.database.pool()
    }

    /// A receiver that changes after every view commit (of any process).
    fn commit_signal(&self) -> watch::Receiver<u64> {
        self.commits
            .get_or_init(|| {
                let (sender, receiver) = watch::channel(0);
                tokio::spawn(listen_for_commits(self.database.clone(), sender));
                receiver
            })
            .clone()
    }
}

/// Keeps a `LISTEN gatehouse_projected` connection open and bumps `signal` on every
/// notification, reconnecting after failures, until every receiver is gone.
async fn listen_for_commits(database: PgDatabase, signal: watch::Sender<u64>) {
    let signal = Arc::new(signal);
    loop {
        let bump = {
            let signal = signal.clone();
            move |_| signal.send_modify(|n| *n = n.wrapping_add(1))
        };
        let listening = async {
            let listener = database.connect_dedicated(bump).await?;
            listener.listen(PROJECTED_CHANNEL).await?;
            Ok::<_, StoreError>(listener)
        };
        match listening.await {
            Ok(mut listener) => {
                // Commits may have happened while we were not listening.
                signal.send_modify(|n| *n = n.wrapping_add(1));
                tokio::select! {
                    ended = &mut listener.driver => {
                        let reason = match ended {
                            Ok(Ok(())) => "closed".to_owned(),
                            Ok(Err(error)) => error_chain(&error),
                            Err(join) => error_chain(&join),
                        };
                        tracing::warn!(error = %reason, "the view-store listener connection ended; reconnecting, waiters poll meanwhile");
                    }
                    () = signal.closed() => return,
                }
            }
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "cannot listen for view commits; retrying, waiters poll meanwhile");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = signal.closed() => return,
        }
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

    /// Wakes on `NOTIFY gatehouse_projected` (sent by every [`ViewStore::commit`]), and
    /// looks again every 20 ms regardless.
    async fn wait_applied(
        &self,
        stream_id: &StreamId,
        version: i64,
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        let deadline = Instant::now() + timeout;
        let mut commits = Some(self.commit_signal());
        loop {
            // Mark the signal seen before reading: a commit after the read wakes us.
            if let Some(commits) = commits.as_mut() {
                commits.borrow_and_update();
            }
            if self.applied_version(stream_id).await?.unwrap_or(0) >= version {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let pause = (deadline - now).min(POLL_FALLBACK);
            match commits.as_mut() {
                Some(signal) => {
                    if let Ok(Err(_listener_gone)) =
                        tokio::time::timeout(pause, signal.changed()).await
                    {
                        commits = None;
                    }
                }
                None => tokio::time::sleep(pause).await,
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
        let (applied_rows, doc_rows) = futures::try_join!(
            query(
                &client,
                "SELECT stream_id, version FROM read.applied WHERE stream_id = ANY($1)",
                &applied_params
            ),
            query(
                &client,
                "SELECT v.kind, v.id, v.doc FROM unnest($1::text[], $2::uuid[]) AS w(kind, id)
                 JOIN read.views v ON v.kind = w.kind AND v.id = w.id",
                &doc_params,
            ),
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

    /// One transaction: applied versions (under the version guard; a refolded stream may
    /// stay at its version), then the documents of the streams that moved forward, then the
    /// skip records and the checkpoint, then `NOTIFY`.
    #[tracing::instrument(skip_all, fields(projector = %batch.projector, streams = batch.streams.len()), err)]
    async fn commit(&self, batch: BatchWrite) -> Result<(), StoreError> {
        let mut client = self.pool().get().await.map_err(unavailable)?;
        let tx = client.transaction().await.map_err(unavailable)?;
        let writes = latest_per_stream(batch.streams);

        // 1. The version guard: a stream moves only forward. The rows returned are the
        //    streams whose documents this batch may write.
        let stream_ids: Vec<&str> = writes.iter().map(|w| w.stream_id.as_str()).collect();
        let versions: Vec<i64> = writes.iter().map(|w| w.applied).collect();
        let positions: Vec<i64> = writes.iter().map(|w| w.position).collect();
        let refolded: Vec<&str> = batch.refolded.iter().map(StreamId::as_str).collect();
        let advanced_rows = query(
            &tx,
            "INSERT INTO read.applied AS a (stream_id, version, position)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])
             ON CONFLICT (stream_id) DO UPDATE
                 SET version = excluded.version, position = excluded.position, applied_at = clock_timestamp()
                 WHERE a.version < excluded.version
                    OR (a.version = excluded.version AND a.stream_id = ANY($4))
             RETURNING stream_id",
            &[&stream_ids, &versions, &positions, &refolded],
        )
        .await
        .map_err(unavailable)?;
        let advanced: HashSet<String> = advanced_rows
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(corrupt)?;

        // 2. The documents: upserted (keeping the original listing position) or deleted.
        let mut upserts = DocUpserts::default();
        let (mut delete_kinds, mut delete_ids): (Vec<&str>, Vec<Uuid>) = (Vec::new(), Vec::new());
        for write in writes
            .iter()
            .filter(|w| advanced.contains(w.stream_id.as_str()))
        {
            let (Some(kind), Some(id)) = (write.kind, write.stream_id.id()) else {
                continue;
            };
            match &write.doc {
                Some(doc) => upserts.push(kind, id, write, doc),
                None => {
                    delete_kinds.push(kind);
                    delete_ids.push(id);
                }
            }
        }
        if !upserts.kinds.is_empty() {
            execute(
                &tx,
                "INSERT INTO read.views AS v (kind, id, version, doc, created_position)
                 SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::jsonb[], $5::bigint[])
                 ON CONFLICT (kind, id) DO UPDATE
                     SET version = excluded.version, doc = excluded.doc, projected_at = clock_timestamp()",
                &[&upserts.kinds, &upserts.ids, &upserts.versions, &upserts.docs, &upserts.created],
            )
            .await
            .map_err(unavailable)?;
        }
        if !delete_kinds.is_empty() {
            execute(
                &tx,
                "DELETE FROM read.views v USING unnest($1::text[], $2::uuid[]) AS d(kind, id)
                 WHERE v.kind = d.kind AND v.id = d.id",
                &[&delete_kinds, &delete_ids],
            )
            .await
            .map_err(unavailable)?;
        }

        // 3. The skip records: a refolded stream's go, this batch's are added.
        if !refolded.is_empty() {
            execute(
                &tx,
                "DELETE FROM read.skipped WHERE projector = $1 AND stream_id = ANY($2)",
                &[&batch.projector, &refolded],
            )
            .await
            .map_err(unavailable)?;
        }
        if !batch.skipped.is_empty() {
            let skipped = &batch.skipped;
            let stream_ids: Vec<&str> = skipped.iter().map(|s| s.stream_id.as_str()).collect();
            let versions: Vec<i64> = skipped.iter().map(|s| s.version).collect();
            let positions: Vec<i64> = skipped.iter().map(|s| s.position).collect();
            let types: Vec<&str> = skipped.iter().map(|s| s.event_type.as_str()).collect();
            let schemas: Vec<i32> = skipped.iter().map(|s| s.schema_version).collect();
            execute(
                &tx,
                "INSERT INTO read.skipped (projector, stream_id, version, position, event_type, schema_version)
                 SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::int[])
                 ON CONFLICT DO NOTHING",
                &[&batch.projector, &stream_ids, &versions, &positions, &types, &schemas],
            )
            .await
            .map_err(unavailable)?;
        }

        // 4. The checkpoint never moves back.
        execute(
            &tx,
            "INSERT INTO read.checkpoints AS c (projector, sequence, updated_at) VALUES ($1, $2, clock_timestamp())
             ON CONFLICT (projector) DO UPDATE
                 SET sequence = GREATEST(c.sequence, excluded.sequence), updated_at = excluded.updated_at",
            &[&batch.projector, &to_bigint(batch.checkpoint)],
        )
        .await
        .map_err(unavailable)?;

        // 5. Wake `wait_applied` callers (delivered at commit).
        execute(&tx, "SELECT pg_notify($1, '')", &[&PROJECTED_CHANNEL])
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
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

/// Column arrays for the documents upsert.
#[derive(Default)]
struct DocUpserts<'a> {
    kinds: Vec<&'a str>,
    ids: Vec<Uuid>,
    versions: Vec<i64>,
    docs: Vec<&'a serde_json::Value>,
    created: Vec<i64>,
}

impl<'a> DocUpserts<'a> {
    fn push(&mut self, kind: &'a str, id: Uuid, write: &StreamWrite, doc: &'a serde_json::Value) {
        self.kinds.push(kind);
        self.ids.push(id);
        self.versions.push(write.applied);
        self.docs.push(doc);
        self.created
            .push(write.created_position.unwrap_or(write.position));
    }
}
