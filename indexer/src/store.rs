//! The instance's single writer (DESIGN §3 "One writer per instance").
//!
//! [`Writer`] owns one dedicated connection holding the session advisory lock keyed by
//! the instance schema. Every data write goes through that connection, so a process that
//! lost its lock (e.g. its connection died with a database restart) cannot commit: its
//! connection is gone, and a new one must win the lock first. Callers share the writer
//! behind a mutex, which also makes it the one committer: cursor order is commit order.
//!
//! The connection is a plain `tokio-postgres` one (not diesel-async): events are written
//! with binary `COPY`, which diesel-async does not offer and which PostgreSQL loads
//! markedly faster than an `INSERT` of the same rows.

use std::future::Future;
use std::pin::{Pin, pin};
use std::time::Duration;

use tidemark_db_client::instance;
use tidemark_db_client::metadata::{self, PUBLIC_CONFIG_KEY};
use tidemark_db_client::migrate::MIGRATION_LOCK_KEY;
use tidemark_db_client::{DbError, PgPool};
use tidemark_shared_types::{BlockRef, IndexingStatus, PublicConfig, SchemaName};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, GenericClient, Row};

use crate::epochs::Epoch;
use crate::pipeline::decode::EventRow;
use crate::rpc::Header;

/// Advisory-lock class of the per-instance writer lock (`pg_advisory_lock(class, hashtext(schema))`).
const WRITER_LOCK_CLASS: i32 = 0x7464_6d01;
/// Advisory-lock class taken per transaction before cursors are drawn.
const COMMIT_LOCK_CLASS: i32 = 0x7464_6d02;

/// Client-side limit on one call of the writer other than a commit or a rollback.
const QUERY_LIMIT: Duration = Duration::from_secs(15);
/// Client-side limit on a batch's commit or a rollback (the session's `statement_timeout`
/// is 120 s per statement).
const COMMIT_LIMIT: Duration = Duration::from_secs(125);

/// Session settings of the writer's connection. `lock_timeout`: a write waiting this
/// long for a row or advisory lock (e.g. held by a stuck session) fails and the term
/// restarts, instead of hanging. `idle_in_transaction_session_timeout`: if this process
/// hangs inside a transaction, the server ends its session, releasing the writer lock
/// and every row lock it held, so a standby can take over.
const WRITER_SESSION: &str = "SET statement_timeout = '120s'; SET lock_timeout = '10s';
     SET idle_in_transaction_session_timeout = '30s'; SET application_name = 'tidemark-indexer-writer'";

/// `f`, or [`DbError::Timeout`] when it has not finished within `limit`.
///
/// Invariant: no call of the writer waits forever on a server that hangs without
/// closing its socket. A call that timed out may leave its statement in flight on the
/// connection; the lock watcher's next check (itself limited) then times out too and
/// ends the term, which drops the connection.
async fn timed<T>(limit: Duration, f: impl Future<Output = Result<T, DbError>>) -> Result<T, DbError> {
    tokio::time::timeout(limit, f).await.map_err(|_| DbError::Timeout(limit))?
}

/// Columns of `events` in the order of [`EVENT_TYPES`] and of the rows written by `COPY`.
pub const EVENT_COLUMNS: &str = "cursor, chain_id, block_number, block_hash, block_timestamp, tx_hash, tx_index, \
     log_index, address, contract, event, signature, topics, data, args, decode_error";
/// The PostgreSQL types of [`EVENT_COLUMNS`], for binary `COPY`.
pub const EVENT_TYPES: [Type; 16] = [
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::INT4,
    Type::INT4,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT_ARRAY,
    Type::TEXT,
    Type::JSONB,
    Type::TEXT,
];

/// Backend process ids seen by the session probe ([`probe_session_pinning`]): the first
/// connection, a second connection opened while the first is idle, then the first again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionProbe {
    /// `pg_backend_pid()` of the first connection.
    pub first: i32,
    /// `pg_backend_pid()` of a second connection, asked while the first is idle.
    pub other: i32,
    /// `pg_backend_pid()` of the first connection, asked again.
    pub first_again: i32,
}

impl SessionProbe {
    /// Whether the sessions are not pinned to backends, i.e. a pooler in transaction or
    /// statement mode sits between the indexer and PostgreSQL. On a direct connection (or
    /// through a pooler in session mode) a connection keeps its backend for its lifetime
    /// and no other connection shares it. Under transaction pooling an idle connection's
    /// backend goes back to the pool: the next connection is handed that backend
    /// (PgBouncer reuses the most recently released one), or the first connection's next
    /// statement lands on another one.
    pub fn unpinned(&self) -> bool {
        self.other == self.first || self.first_again != self.first
    }
}

/// The backend pid of `client`, by a simple-protocol query (no prepared statement: those
/// do not survive a transaction-mode pooler).
async fn backend_pid(client: &Client) -> Result<i32, DbError> {
    let messages =
        timed(QUERY_LIMIT, async { Ok(client.simple_query("SELECT pg_backend_pid()").await?) }).await?;
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .ok_or_else(|| DbError::InvalidStoredValue {
            key: "pg_backend_pid",
            message: "no pid returned".into(),
        })
}

/// Asks two connections of `pool` for their backend pids ([`SessionProbe`]), to detect a
/// pooler in transaction mode before anything relies on a session advisory lock.
pub async fn probe_session_pinning(pool: &PgPool) -> Result<SessionProbe, DbError> {
    let first_conn = pool.connect_raw().await?;
    let first = backend_pid(&first_conn).await?;
    let other_conn = pool.connect_raw().await?;
    let other = backend_pid(&other_conn).await?;
    let first_again = backend_pid(&first_conn).await?;
    Ok(SessionProbe { first, other, first_again })
}

/// The lock-holding connection of the instance.
pub struct Writer {
    client: Client,
    schema: SchemaName,
}

/// A batch of one chain: its events and the checkpoint they lead to.
#[derive(Debug)]
pub struct Batch<'a> {
    /// Chain id.
    pub chain_id: u64,
    /// Decoded events, in block and log order.
    pub events: &'a [EventRow],
    /// Headers to add to the unfinalized window (follow mode), ascending.
    pub headers: &'a [Header],
    /// The last block the batch covers.
    pub checkpoint: &'a BlockRef,
    /// Window headers below this number are pruned.
    pub prune_below: Option<u64>,
    /// The batch's epoch, with its `stored` stage already appended.
    pub epoch: Option<&'a Epoch>,
    /// Stored epochs ending at or below this block become `finalized`, at this time.
    pub finalize_upto: Option<(u64, f64)>,
}

fn u(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored number of `table` that must not be negative (block numbers, timestamps).
fn stored_u64(row: &Row, column: usize, table: &'static str) -> Result<u64, DbError> {
    let v: i64 = row.try_get(column)?;
    u64::try_from(v).map_err(|_| DbError::InvalidStoredValue {
        key: table,
        message: format!("negative block number or timestamp {v}"),
    })
}

/// Writes one event row of [`EVENT_COLUMNS`] to a binary `COPY`.
pub async fn write_event(
    rows: Pin<&mut BinaryCopyInWriter>,
    cursor: i64,
    chain_id: i64,
    e: &EventRow,
) -> Result<(), tokio_postgres::Error> {
    let values: [&(dyn ToSql + Sync); 16] = [
        &cursor,
        &chain_id,
        &u(e.block_number),
        &e.block_hash,
        &u(e.block_timestamp),
        &e.tx_hash,
        &i32::try_from(e.tx_index).unwrap_or(i32::MAX),
        &i32::try_from(e.log_index).unwrap_or(i32::MAX),
        &e.address,
        &e.contract,
        &e.event,
        &e.signature,
        &e.topics,
        &e.data,
        &e.args,
        &e.decode_error,
    ];
    rows.write(&values).await
}

/// True for errors about a value (SQLSTATE class 22, e.g. `\u0000` in `jsonb`) or a size
/// limit (class 54): the same rows would fail again.
fn is_value_error(e: &DbError) -> bool {
    matches!(e, DbError::Postgres(pg) if pg.code().is_some_and(|c| matches!(&c.code()[..2], "22" | "54")))
}

impl Writer {
    /// Opens a connection and tries to take the writer lock once. `Ok(None)` when another
    /// process holds it.
    pub async fn try_acquire(pool: &PgPool, schema: &SchemaName) -> Result<Option<Self>, DbError> {
        let client = pool.connect_raw().await?;
        timed(QUERY_LIMIT, async {
            // Batches may be large: the pool's statement timeout is for readers.
            client.batch_execute(WRITER_SESSION).await?;
            let row = client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))",
                    &[&WRITER_LOCK_CLASS, &schema.as_str()],
                )
                .await?;
            Ok(row.try_get::<_, bool>(0)?)
        })
        .await
        .map(|locked| locked.then(|| Self { client, schema: schema.clone() }))
    }

    /// The instance schema.
    pub fn schema(&self) -> &SchemaName {
        &self.schema
    }

    /// Runs one statement on the lock-holding connection (fenced: if the lock is lost,
    /// so is this connection), within the writer's query time limit. Returns the rows
    /// affected.
    pub async fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        timed(QUERY_LIMIT, async { Ok(self.client.execute(sql, params).await?) }).await
    }

    /// Runs one query on the lock-holding connection, within the writer's query time
    /// limit.
    pub async fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, DbError> {
        timed(QUERY_LIMIT, async { Ok(self.client.query(sql, params).await?) }).await
    }

    /// Stores the status snapshot (upsert; `updated_at` by the database clock), through
    /// the lock-holding connection like every other write of the instance.
    pub async fn write_status(&mut self, status: &IndexingStatus) -> Result<(), DbError> {
        let key = metadata::INDEXING_STATUS_KEY;
        let value = serde_json::to_value(status)
            .map_err(|e| DbError::InvalidStoredValue { key, message: e.to_string() })?;
        let schema = self.schema.as_str().to_owned();
        self.execute(metadata::UPSERT_SQL, &[&schema, &key, &value]).await?;
        Ok(())
    }

    /// Checks that the connection is alive and still holds the lock.
    pub async fn still_holds_lock(&mut self) -> Result<bool, DbError> {
        timed(QUERY_LIMIT, async {
            let row = self
                .client
                .query_one(
                    &format!(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                            AND classid = {WRITER_LOCK_CLASS}::oid AND objid = hashtext($1)::oid AND objsubid = 2 AND granted)"
                    ),
                    &[&self.schema.as_str()],
                )
                .await?;
            Ok(row.try_get(0)?)
        })
        .await
    }

    /// Creates the instance schema and tables if missing, or upgrades an earlier layout
    /// (under the migration lock, like every schema change).
    pub async fn ensure_instance_schema(&mut self) -> Result<(), DbError> {
        timed(QUERY_LIMIT, async {
            let tx = self.client.transaction().await?;
            tx.execute(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"), &[]).await?;
            tx.execute(instance::ENSURE_INSTANCE_SCHEMA_SQL, &[&self.schema.as_str()]).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The stored public config of the instance, if any (none while the metadata table
    /// does not exist yet).
    pub async fn read_public_config(&mut self) -> Result<Option<PublicConfig>, DbError> {
        timed(QUERY_LIMIT, async {
            let has_table =
                self.client.query_one("SELECT to_regclass('tidemark.metadata') IS NOT NULL", &[]).await?;
            if !has_table.try_get::<_, bool>(0)? {
                return Ok(None);
            }
            let row = self
                .client
                .query_opt(
                    "SELECT value::text FROM tidemark.metadata WHERE instance_schema = $1 AND key = $2",
                    &[&self.schema.as_str(), &PUBLIC_CONFIG_KEY],
                )
                .await?;
            let Some(row) = row else { return Ok(None) };
            let text: String = row.try_get(0)?;
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| DbError::InvalidStoredValue { key: PUBLIC_CONFIG_KEY, message: e.to_string() })
        })
        .await
    }

    /// Stores the public config (upsert; `updated_at` by the database clock).
    pub async fn write_public_config(&mut self, config: &PublicConfig) -> Result<(), DbError> {
        timed(QUERY_LIMIT, async {
            let value = serde_json::to_value(config).map_err(|e| DbError::InvalidStoredValue {
                key: PUBLIC_CONFIG_KEY,
                message: e.to_string(),
            })?;
            self.client
                .execute(metadata::UPSERT_SQL, &[&self.schema.as_str(), &PUBLIC_CONFIG_KEY, &value])
                .await?;
            Ok(())
        })
        .await
    }

    /// Drops the instance schema with all its data and deletes its metadata rows, in one
    /// transaction (for a deliberate reindex).
    pub async fn drop_instance(&mut self) -> Result<(), DbError> {
        timed(QUERY_LIMIT, async {
            let tx = self.client.transaction().await?;
            tx.execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema.quoted()), &[]).await?;
            let has_table = tx.query_one("SELECT to_regclass('tidemark.metadata') IS NOT NULL", &[]).await?;
            if has_table.try_get::<_, bool>(0)? {
                tx.execute(
                    "DELETE FROM tidemark.metadata WHERE instance_schema = $1",
                    &[&self.schema.as_str()],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// The chain's checkpoint.
    pub async fn checkpoint(&mut self, chain_id: u64) -> Result<Option<BlockRef>, DbError> {
        timed(QUERY_LIMIT, async {
            let s = self.schema.quoted();
            let row = self
                .client
                .query_opt(
                    &format!("SELECT block_number, block_hash, block_timestamp FROM {s}.checkpoints WHERE chain_id = $1"),
                    &[&u(chain_id)],
                )
                .await?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some(BlockRef {
                number: stored_u64(&row, 0, "checkpoints")?,
                hash: row.try_get(1)?,
                timestamp: stored_u64(&row, 2, "checkpoints")?,
            }))
        })
        .await
    }

    /// The chain's start block as the stored status snapshot has it (the block the index
    /// was built on), when a snapshot with that chain exists.
    pub async fn stored_start_block(&mut self, chain_id: u64) -> Result<Option<BlockRef>, DbError> {
        timed(QUERY_LIMIT, async {
            let (schema, chain) = (self.schema.as_str().to_owned(), chain_id.to_string());
            let row = self
                .client
                .query_opt(
                    "SELECT value -> 'omnichainSnapshot' -> 'chains' -> $2 -> 'config' -> 'startBlock'
                       FROM tidemark.metadata WHERE instance_schema = $1 AND key = 'indexing_status'",
                    &[&schema, &chain],
                )
                .await?;
            let Some(value) =
                row.map(|r| r.try_get::<_, Option<serde_json::Value>>(0)).transpose()?.flatten()
            else {
                return Ok(None);
            };
            // A snapshot this build cannot read is no anchor: the endpoints' chain id still is.
            Ok(serde_json::from_value(value).ok())
        })
        .await
    }

    /// Stored hashes for `chain_id` at heights `[from, to]`, from the window and, below
    /// it, from the events themselves (descending by number).
    pub async fn stored_hashes(
        &mut self,
        chain_id: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, String)>, DbError> {
        timed(QUERY_LIMIT, async {
            let s = self.schema.quoted();
            let rows = self
                .client
                .query(
                    &format!(
                        "SELECT number, hash FROM {s}.blocks WHERE chain_id = $1 AND number BETWEEN $2 AND $3
                         UNION
                         SELECT DISTINCT block_number, block_hash FROM {s}.events
                          WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
                         ORDER BY 1 DESC"
                    ),
                    &[&u(chain_id), &u(from), &u(to)],
                )
                .await?;
            rows.iter().map(|r| Ok((stored_u64(r, 0, "blocks and events")?, r.try_get(1)?))).collect()
        })
        .await
    }

    /// The highest block below `below` that has stored events (for walking back past
    /// the window).
    pub async fn previous_event_block(&mut self, chain_id: u64, below: u64) -> Result<Option<u64>, DbError> {
        timed(QUERY_LIMIT, async {
            let s = self.schema.quoted();
            let row = self
                .client
                .query_one(
                    &format!(
                        "SELECT max(block_number) FROM {s}.events WHERE chain_id = $1 AND block_number < $2"
                    ),
                    &[&u(chain_id), &u(below)],
                )
                .await?;
            let n: Option<i64> = row.try_get(0)?;
            Ok(n.map(|n| n as u64))
        })
        .await
    }

    /// Commits a batch: events (binary `COPY`), window headers and the checkpoint, in one
    /// transaction.
    ///
    /// Invariant (DESIGN §9.2): data and checkpoint commit together or not at all.
    /// Invariant (§9.3): the commit lock is taken before cursors are drawn, so cursor
    /// order is commit order across every chain of the instance.
    /// Invariant (§9.8): when PostgreSQL rejects a value of the batch (something decoding
    /// did not foresee), the batch is committed again with the args of each rejected row
    /// replaced by a `decode_error`, so one log can never stall the chain.
    pub async fn commit(&mut self, batch: Batch<'_>) -> Result<(), DbError> {
        timed(COMMIT_LIMIT, async {
            match self.commit_once(&batch).await {
                Err(e) if is_value_error(&e) && batch.events.iter().any(|r| r.args.is_some()) => {
                    tracing::warn!(target: "tidemark::store", chain_id = batch.chain_id, error = %e, "batch rejected by the database; storing the rejected args raw");
                    let events = self.storable(batch.events).await?;
                    self.commit_once(&Batch { events: &events, ..batch }).await
                }
                other => other,
            }
        })
        .await
    }

    /// `events` with the args that PostgreSQL rejects on their own replaced by a
    /// `decode_error` (one round trip per decoded row: only after a rejected batch).
    async fn storable(&mut self, events: &[EventRow]) -> Result<Vec<EventRow>, DbError> {
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let mut e = e.clone();
            if let Some(args) = &e.args
                && let Err(err) = self.client.query_one("SELECT $1::jsonb IS NOT NULL", &[args]).await
            {
                let err = DbError::from(err);
                if !is_value_error(&err) {
                    return Err(err);
                }
                e.args = None;
                e.decode_error = Some(format!("args not storable: {err}").replace('\0', "\u{fffd}"));
            }
            out.push(e);
        }
        Ok(out)
    }

    async fn commit_once(&mut self, batch: &Batch<'_>) -> Result<(), DbError> {
        let s = self.schema.quoted();
        let chain = u(batch.chain_id);
        let schema_name = self.schema.as_str();
        let tx = self.client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&COMMIT_LOCK_CLASS, &schema_name])
            .await?;
        let ev = batch.events;
        if !ev.is_empty() {
            // One block of `n` cursors drawn at once (under the commit lock, so still in
            // commit order), numbered in the batch's order: base + 1 ..= base + n.
            let n = i64::try_from(ev.len()).unwrap_or(i64::MAX);
            let row = tx
                .query_one(
                    &format!(
                        "SELECT setval('{schema_name}.cursor_seq', nextval('{schema_name}.cursor_seq') + $1 - 1) - $1"
                    ),
                    &[&n],
                )
                .await?;
            let base: i64 = row.try_get(0)?;
            let sink =
                tx.copy_in(&format!("COPY {s}.events ({EVENT_COLUMNS}) FROM STDIN (FORMAT binary)")).await?;
            let mut rows = pin!(BinaryCopyInWriter::new(sink, &EVENT_TYPES));
            for (cursor, e) in (base + 1..).zip(ev) {
                write_event(rows.as_mut(), cursor, chain, e).await?;
            }
            rows.as_mut().finish().await?;
        }
        if !batch.headers.is_empty() {
            let h = batch.headers;
            tx.execute(
                &format!(
                    "INSERT INTO {s}.blocks (chain_id, number, hash, parent_hash, timestamp)
                     SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::bigint[])
                     ON CONFLICT (chain_id, number) DO UPDATE
                        SET hash = EXCLUDED.hash, parent_hash = EXCLUDED.parent_hash, timestamp = EXCLUDED.timestamp"
                ),
                &[
                    &chain,
                    &h.iter().map(|x| u(x.block.number)).collect::<Vec<_>>(),
                    &h.iter().map(|x| x.block.hash.as_str()).collect::<Vec<_>>(),
                    &h.iter().map(|x| x.parent_hash.as_str()).collect::<Vec<_>>(),
                    &h.iter().map(|x| u(x.block.timestamp)).collect::<Vec<_>>(),
                ],
            )
            .await?;
        }
        if let Some(below) = batch.prune_below {
            tx.execute(
                &format!("DELETE FROM {s}.blocks WHERE chain_id = $1 AND number < $2"),
                &[&chain, &u(below)],
            )
            .await?;
        }
        upsert_checkpoint(&tx, &s, chain, batch.checkpoint).await?;
        if let Some(e) = batch.epoch {
            tx.execute(
                &format!(
                    "INSERT INTO {s}.epochs (chain_id, epoch_id, from_block, to_block, stage, stages, error, updated_at)
                     VALUES ($1, $2, $3, $4, 'stored', $5, $6, now())
                     ON CONFLICT (chain_id, epoch_id) DO UPDATE SET from_block = EXCLUDED.from_block,
                         to_block = EXCLUDED.to_block, stage = 'stored', stages = EXCLUDED.stages,
                         error = EXCLUDED.error, updated_at = now()"
                ),
                &[&chain, &e.id, &u(e.from), &u(e.to), &e.stages_json(), &e.error],
            )
            .await?;
        }
        if let Some((upto, at)) = batch.finalize_upto {
            finalize_epochs(&tx, &s, chain, upto, at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks stored epochs ending at or below `upto` as finalized (outside a batch, e.g.
    /// while the head moves on without new blocks to commit).
    pub async fn finalize(&mut self, chain_id: u64, upto: u64) -> Result<(), DbError> {
        timed(QUERY_LIMIT, async {
            let s = self.schema.quoted();
            finalize_epochs(&self.client, &s, u(chain_id), upto, crate::epochs::now_secs()).await
        })
        .await
    }

    /// The first block of the lowest finished epoch that ends above `ancestor`: a rollback
    /// to `ancestor` must go back to just before it, so finished epochs never overlap.
    pub async fn epoch_boundary(&mut self, chain_id: u64, ancestor: u64) -> Result<Option<u64>, DbError> {
        timed(QUERY_LIMIT, async {
            let s = self.schema.quoted();
            let row = self
                .client
                .query_one(
                    &format!(
                        "SELECT min(from_block) FROM {s}.epochs
                          WHERE chain_id = $1 AND stage IN ('stored', 'finalized') AND to_block > $2"
                    ),
                    &[&u(chain_id), &u(ancestor)],
                )
                .await?;
            let n: Option<i64> = row.try_get(0)?;
            Ok(n.map(|n| n as u64))
        })
        .await
    }

    /// Rolls a chain back to `ancestor` (or to nothing, before the start block) in one
    /// transaction: orphaned events are deleted and recorded as `removed` journal entries
    /// (with fresh cursors, in the order they were added), the window above the ancestor
    /// is dropped and the checkpoint rewound. Returns the number of events removed.
    ///
    /// Invariant (§9.1): after this commits, no stored event lies above the checkpoint.
    pub async fn rollback(&mut self, chain_id: u64, ancestor: Option<&BlockRef>) -> Result<usize, DbError> {
        timed(COMMIT_LIMIT, async {
            let s = self.schema.quoted();
            let chain = u(chain_id);
            let schema_name = self.schema.as_str();
            let above = ancestor.map_or(-1, |a| u(a.number));
            let tx = self.client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&COMMIT_LOCK_CLASS, &schema_name])
                .await?;
            let removed = tx
                .execute(
                    &format!(
                        "WITH gone AS (
                            DELETE FROM {s}.events WHERE chain_id = $1 AND block_number > $2 RETURNING *
                         )
                         INSERT INTO {s}.removals (cursor, chain_id, block_number, block_hash, log_index, event_cursor, payload)
                         SELECT nextval('{schema_name}.cursor_seq'), g.chain_id, g.block_number, g.block_hash, g.log_index,
                                g.cursor, to_jsonb(g)
                           FROM (SELECT * FROM gone ORDER BY cursor) g"
                    ),
                    &[&chain, &above],
                )
                .await?;
            tx.execute(&format!("DELETE FROM {s}.blocks WHERE chain_id = $1 AND number > $2"), &[&chain, &above])
                .await?;
            tx.execute(
                &format!(
                    "UPDATE {s}.epochs SET stage = 'reorged', updated_at = now(),
                            stages = stages || jsonb_build_array(jsonb_build_object('stage', 'reorged', 'at', $3::float8))
                      WHERE chain_id = $1 AND to_block > $2 AND stage IN ('stored', 'finalized')"
                ),
                &[&chain, &above, &crate::epochs::now_secs()],
            )
            .await?;
            match ancestor {
                Some(a) => upsert_checkpoint(&tx, &s, chain, a).await?,
                None => {
                    tx.execute(&format!("DELETE FROM {s}.checkpoints WHERE chain_id = $1"), &[&chain]).await?;
                }
            }
            tx.commit().await?;
            Ok(usize::try_from(removed).unwrap_or(usize::MAX))
        })
        .await
    }
}

async fn finalize_epochs(
    c: &impl GenericClient,
    s: &str,
    chain: i64,
    upto: u64,
    at: f64,
) -> Result<(), DbError> {
    c.execute(
        &format!(
            "UPDATE {s}.epochs SET stage = 'finalized', updated_at = now(),
                    stages = stages || jsonb_build_array(jsonb_build_object('stage', 'finalized', 'at', $3::float8))
              WHERE chain_id = $1 AND stage = 'stored' AND to_block <= $2"
        ),
        &[&chain, &u(upto), &at],
    )
    .await?;
    Ok(())
}

async fn upsert_checkpoint(c: &impl GenericClient, s: &str, chain: i64, b: &BlockRef) -> Result<(), DbError> {
    c.execute(
        &format!(
            "INSERT INTO {s}.checkpoints (chain_id, block_number, block_hash, block_timestamp, updated_at)
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (chain_id) DO UPDATE SET block_number = EXCLUDED.block_number,
                 block_hash = EXCLUDED.block_hash, block_timestamp = EXCLUDED.block_timestamp, updated_at = now()"
        ),
        &[&chain, &u(b.number), &b.hash, &u(b.timestamp)],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::SessionProbe;

    #[test]
    fn pinned_sessions_keep_their_backend_and_share_it_with_no_one() {
        // Direct connections, or a pooler in session mode.
        assert!(!SessionProbe { first: 100, other: 101, first_again: 100 }.unpinned());
    }

    #[test]
    fn a_backend_shared_by_two_connections_means_transaction_pooling() {
        // The idle first connection's backend was handed to the second one.
        assert!(SessionProbe { first: 100, other: 100, first_again: 100 }.unpinned());
        assert!(SessionProbe { first: 100, other: 100, first_again: 101 }.unpinned());
    }

    #[test]
    fn a_connection_moving_to_another_backend_means_transaction_pooling() {
        assert!(SessionProbe { first: 100, other: 101, first_again: 102 }.unpinned());
        assert!(SessionProbe { first: 100, other: 101, first_again: 101 }.unpinned());
    }
}
