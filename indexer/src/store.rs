//! The instance's single writer (DESIGN §3 "One writer per instance").
//!
//! [`Writer`] owns one dedicated connection holding the session advisory lock keyed by
//! the instance schema. Every data write goes through that connection, so a process that
//! lost its lock (e.g. its connection died with a database restart) cannot commit: its
//! connection is gone, and a new one must win the lock first. Callers share the writer
//! behind a mutex, which also makes it the one committer: cursor order is commit order.

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Jsonb, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tidemark_db_client::{DbError, PgPool};
use tidemark_shared_types::{BlockRef, SchemaName};

use crate::epochs::Epoch;
use crate::pipeline::decode::EventRow;
use crate::rpc::Header;

/// Advisory-lock class of the per-instance writer lock (`pg_advisory_lock(class, hashtext(schema))`).
const WRITER_LOCK_CLASS: i32 = 0x7464_6d01;
/// Advisory-lock class taken per transaction before cursors are drawn.
const COMMIT_LOCK_CLASS: i32 = 0x7464_6d02;

/// The lock-holding connection of the instance.
pub struct Writer {
    conn: AsyncPgConnection,
    schema: SchemaName,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct CheckpointRow {
    #[diesel(sql_type = BigInt)]
    block_number: i64,
    #[diesel(sql_type = Text)]
    block_hash: String,
    #[diesel(sql_type = BigInt)]
    block_timestamp: i64,
}

#[derive(QueryableByName)]
struct HashRow {
    #[diesel(sql_type = BigInt)]
    number: i64,
    #[diesel(sql_type = Text)]
    hash: String,
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

impl Writer {
    /// Opens a connection and tries to take the writer lock once. `Ok(None)` when another
    /// process holds it.
    pub async fn try_acquire(pool: &PgPool, schema: &SchemaName) -> Result<Option<Self>, DbError> {
        let mut conn = pool.connect_dedicated().await?;
        // Batches may be large: the pool's statement timeout is for readers.
        conn.batch_execute("SET statement_timeout = '120s'").await?;
        let row: Locked = diesel::sql_query(format!(
            "SELECT pg_try_advisory_lock({WRITER_LOCK_CLASS}, hashtext($1)) AS locked"
        ))
        .bind::<Text, _>(schema.as_str())
        .get_result(&mut conn)
        .await?;
        Ok(row.locked.then(|| Self { conn, schema: schema.clone() }))
    }

    /// Checks that the connection is alive and still holds the lock.
    pub async fn still_holds_lock(&mut self) -> Result<bool, DbError> {
        let row: Locked = diesel::sql_query(format!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                AND classid = {WRITER_LOCK_CLASS}::oid AND objid = hashtext($1)::oid AND objsubid = 2 AND granted) AS locked"
        ))
        .bind::<Text, _>(self.schema.as_str())
        .get_result(&mut self.conn)
        .await?;
        Ok(row.locked)
    }

    /// The connection, for start-up work that must also be fenced (config store).
    pub fn conn(&mut self) -> &mut AsyncPgConnection {
        &mut self.conn
    }

    /// The chain's checkpoint.
    pub async fn checkpoint(&mut self, chain_id: u64) -> Result<Option<BlockRef>, DbError> {
        let s = self.schema.quoted();
        let row: Option<CheckpointRow> = diesel::sql_query(format!(
            "SELECT block_number, block_hash, block_timestamp FROM {s}.checkpoints WHERE chain_id = $1"
        ))
        .bind::<BigInt, _>(u(chain_id))
        .get_results(&mut self.conn)
        .await?
        .into_iter()
        .next();
        Ok(row.map(|r| BlockRef {
            number: r.block_number as u64,
            timestamp: r.block_timestamp as u64,
            hash: r.block_hash,
        }))
    }

    /// Stored hashes for `chain_id` at heights `[from, to]`, from the window and, below
    /// it, from the events themselves (descending by number).
    pub async fn stored_hashes(
        &mut self,
        chain_id: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, String)>, DbError> {
        let s = self.schema.quoted();
        let rows: Vec<HashRow> = diesel::sql_query(format!(
            "SELECT number, hash FROM {s}.blocks WHERE chain_id = $1 AND number BETWEEN $2 AND $3
             UNION
             SELECT DISTINCT block_number, block_hash FROM {s}.events
              WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3
             ORDER BY 1 DESC"
        ))
        .bind::<BigInt, _>(u(chain_id))
        .bind::<BigInt, _>(u(from))
        .bind::<BigInt, _>(u(to))
        .get_results(&mut self.conn)
        .await?;
        Ok(rows.into_iter().map(|r| (r.number as u64, r.hash)).collect())
    }

    /// The highest block below `below` that has stored events (for walking back past
    /// the window).
    pub async fn previous_event_block(&mut self, chain_id: u64, below: u64) -> Result<Option<u64>, DbError> {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = Nullable<BigInt>)]
            n: Option<i64>,
        }
        let s = self.schema.quoted();
        let row: N = diesel::sql_query(format!(
            "SELECT max(block_number) AS n FROM {s}.events WHERE chain_id = $1 AND block_number < $2"
        ))
        .bind::<BigInt, _>(u(chain_id))
        .bind::<BigInt, _>(u(below))
        .get_result(&mut self.conn)
        .await?;
        Ok(row.n.map(|n| n as u64))
    }

    /// Commits a batch: events (bulk, through UNNEST of bound arrays), window headers and
    /// the checkpoint, in one transaction.
    ///
    /// Invariant (DESIGN §9.2): data and checkpoint commit together or not at all.
    /// Invariant (§9.3): the commit lock is taken before cursors are drawn, so cursor
    /// order is commit order across every chain of the instance.
    pub async fn commit(&mut self, batch: Batch<'_>) -> Result<(), DbError> {
        let s = self.schema.quoted();
        let chain = u(batch.chain_id);
        let schema_name = self.schema.as_str().to_owned();
        let ev = batch.events;
        self.conn
            .transaction::<_, DbError, _>(async |c| {
                diesel::sql_query(format!("SELECT pg_advisory_xact_lock({COMMIT_LOCK_CLASS}, hashtext($1))"))
                    .bind::<Text, _>(&schema_name)
                    .execute(c)
                    .await?;
                if !ev.is_empty() {
                    diesel::sql_query(format!(
                        // One block of `n` cursors drawn at once (under the commit lock, so
                        // still in commit order), numbered in the batch's order.
                        "WITH base AS (
                             SELECT setval('{schema_name}.cursor_seq', nextval('{schema_name}.cursor_seq') + $15 - 1) - $15 AS b
                         )
                         INSERT INTO {s}.events (cursor, chain_id, block_number, block_hash, block_timestamp, tx_hash,
                                tx_index, log_index, address, contract, event, signature, topics, data, args)
                         SELECT base.b + u.ord, $1, u.bn, u.bh, u.bt, u.th, u.ti, u.li, u.ad, u.co,
                                u.ev, u.si, string_to_array(u.tp, ','), u.da, u.ar
                           FROM base, UNNEST($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::int[], $7::int[],
                                       $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
                                       $14::jsonb[]) WITH ORDINALITY
                                AS u(bn, bh, bt, th, ti, li, ad, co, ev, si, tp, da, ar, ord)"
                    ))
                    .bind::<BigInt, _>(chain)
                    .bind::<Array<BigInt>, _>(ev.iter().map(|e| u(e.block_number)).collect::<Vec<_>>())
                    .bind::<Array<Text>, _>(ev.iter().map(|e| e.block_hash.as_str()).collect::<Vec<_>>())
                    .bind::<Array<BigInt>, _>(ev.iter().map(|e| u(e.block_timestamp)).collect::<Vec<_>>())
                    .bind::<Array<Text>, _>(ev.iter().map(|e| e.tx_hash.as_str()).collect::<Vec<_>>())
                    .bind::<Array<Integer>, _>(ev.iter().map(|e| e.tx_index as i32).collect::<Vec<_>>())
                    .bind::<Array<Integer>, _>(ev.iter().map(|e| e.log_index as i32).collect::<Vec<_>>())
                    .bind::<Array<Text>, _>(ev.iter().map(|e| e.address.as_str()).collect::<Vec<_>>())
                    .bind::<Array<Text>, _>(ev.iter().map(|e| e.contract.as_str()).collect::<Vec<_>>())
                    .bind::<Array<Text>, _>(ev.iter().map(|e| e.event.as_str()).collect::<Vec<_>>())
                    .bind::<Array<Text>, _>(ev.iter().map(|e| e.signature.as_str()).collect::<Vec<_>>())
                    .bind::<Array<Text>, _>(ev.iter().map(|e| e.topics.join(",")).collect::<Vec<_>>())
                    .bind::<Array<Text>, _>(ev.iter().map(|e| e.data.as_str()).collect::<Vec<_>>())
                    .bind::<Array<Jsonb>, _>(ev.iter().map(|e| &e.args).collect::<Vec<_>>())
                    .bind::<BigInt, _>(ev.len() as i64)
                    .execute(c)
                    .await?;
                }
                if !batch.headers.is_empty() {
                    let h = batch.headers;
                    diesel::sql_query(format!(
                        "INSERT INTO {s}.blocks (chain_id, number, hash, parent_hash, timestamp)
                         SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::bigint[])
                         ON CONFLICT (chain_id, number) DO UPDATE
                            SET hash = EXCLUDED.hash, parent_hash = EXCLUDED.parent_hash, timestamp = EXCLUDED.timestamp"
                    ))
                    .bind::<BigInt, _>(chain)
                    .bind::<Array<BigInt>, _>(h.iter().map(|x| u(x.block.number)).collect::<Vec<_>>())
                    .bind::<Array<Text>, _>(h.iter().map(|x| x.block.hash.as_str()).collect::<Vec<_>>())
                    .bind::<Array<Text>, _>(h.iter().map(|x| x.parent_hash.as_str()).collect::<Vec<_>>())
                    .bind::<Array<BigInt>, _>(h.iter().map(|x| u(x.block.timestamp)).collect::<Vec<_>>())
                    .execute(c)
                    .await?;
                }
                if let Some(below) = batch.prune_below {
                    diesel::sql_query(format!("DELETE FROM {s}.blocks WHERE chain_id = $1 AND number < $2"))
                        .bind::<BigInt, _>(chain)
                        .bind::<BigInt, _>(u(below))
                        .execute(c)
                        .await?;
                }
                upsert_checkpoint(c, &s, chain, batch.checkpoint).await?;
                if let Some(e) = batch.epoch {
                    diesel::sql_query(format!(
                        "INSERT INTO {s}.epochs (chain_id, epoch_id, from_block, to_block, stage, stages, error, updated_at)
                         VALUES ($1, $2, $3, $4, 'stored', $5, $6, now())
                         ON CONFLICT (chain_id, epoch_id) DO UPDATE SET from_block = EXCLUDED.from_block,
                             to_block = EXCLUDED.to_block, stage = 'stored', stages = EXCLUDED.stages,
                             error = EXCLUDED.error, updated_at = now()"
                    ))
                    .bind::<BigInt, _>(chain)
                    .bind::<BigInt, _>(e.id)
                    .bind::<BigInt, _>(u(e.from))
                    .bind::<BigInt, _>(u(e.to))
                    .bind::<Jsonb, _>(e.stages_json())
                    .bind::<Nullable<Text>, _>(e.error.clone())
                    .execute(c)
                    .await?;
                }
                if let Some((upto, at)) = batch.finalize_upto {
                    finalize_epochs(c, &s, chain, upto, at).await?;
                }
                Ok(())
            })
            .await
    }

    /// Marks stored epochs ending at or below `upto` as finalized (outside a batch, e.g.
    /// while the head moves on without new blocks to commit).
    pub async fn finalize(&mut self, chain_id: u64, upto: u64) -> Result<(), DbError> {
        let s = self.schema.quoted();
        finalize_epochs(&mut self.conn, &s, u(chain_id), upto, crate::epochs::now_secs()).await
    }

    /// The first block of the lowest finished epoch that ends above `ancestor`: a rollback
    /// to `ancestor` must go back to just before it, so finished epochs never overlap.
    pub async fn epoch_boundary(&mut self, chain_id: u64, ancestor: u64) -> Result<Option<u64>, DbError> {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = Nullable<BigInt>)]
            n: Option<i64>,
        }
        let s = self.schema.quoted();
        let row: N = diesel::sql_query(format!(
            "SELECT min(from_block) AS n FROM {s}.epochs
              WHERE chain_id = $1 AND stage IN ('stored', 'finalized') AND to_block > $2"
        ))
        .bind::<BigInt, _>(u(chain_id))
        .bind::<BigInt, _>(u(ancestor))
        .get_result(&mut self.conn)
        .await?;
        Ok(row.n.map(|n| n as u64))
    }

    /// Rolls a chain back to `ancestor` (or to nothing, before the start block) in one
    /// transaction: orphaned events are deleted and recorded as `removed` journal entries
    /// (with fresh cursors, in the order they were added), the window above the ancestor
    /// is dropped and the checkpoint rewound. Returns the number of events removed.
    ///
    /// Invariant (§9.1): after this commits, no stored event lies above the checkpoint.
    pub async fn rollback(&mut self, chain_id: u64, ancestor: Option<&BlockRef>) -> Result<usize, DbError> {
        let s = self.schema.quoted();
        let chain = u(chain_id);
        let schema_name = self.schema.as_str().to_owned();
        let above = ancestor.map_or(-1, |a| u(a.number));
        self.conn
            .transaction::<_, DbError, _>(async |c| {
                diesel::sql_query(format!("SELECT pg_advisory_xact_lock({COMMIT_LOCK_CLASS}, hashtext($1))"))
                    .bind::<Text, _>(&schema_name)
                    .execute(c)
                    .await?;
                let removed = diesel::sql_query(format!(
                    "WITH gone AS (
                        DELETE FROM {s}.events WHERE chain_id = $1 AND block_number > $2 RETURNING *
                     )
                     INSERT INTO {s}.removals (cursor, chain_id, block_number, block_hash, log_index, event_cursor, payload)
                     SELECT nextval('{schema_name}.cursor_seq'), g.chain_id, g.block_number, g.block_hash, g.log_index,
                            g.cursor, to_jsonb(g)
                       FROM (SELECT * FROM gone ORDER BY cursor) g"
                ))
                .bind::<BigInt, _>(chain)
                .bind::<BigInt, _>(above)
                .execute(c)
                .await?;
                diesel::sql_query(format!("DELETE FROM {s}.blocks WHERE chain_id = $1 AND number > $2"))
                    .bind::<BigInt, _>(chain)
                    .bind::<BigInt, _>(above)
                    .execute(c)
                    .await?;
                diesel::sql_query(format!(
                    "UPDATE {s}.epochs SET stage = 'reorged', updated_at = now(),
                            stages = stages || jsonb_build_array(jsonb_build_object('stage', 'reorged', 'at', $3::float8))
                      WHERE chain_id = $1 AND to_block > $2 AND stage IN ('stored', 'finalized')"
                ))
                .bind::<BigInt, _>(chain)
                .bind::<BigInt, _>(above)
                .bind::<diesel::sql_types::Double, _>(crate::epochs::now_secs())
                .execute(c)
                .await?;
                match ancestor {
                    Some(a) => upsert_checkpoint(c, &s, chain, a).await?,
                    None => {
                        diesel::sql_query(format!("DELETE FROM {s}.checkpoints WHERE chain_id = $1"))
                            .bind::<BigInt, _>(chain)
                            .execute(c)
                            .await?;
                    }
                }
                Ok(removed)
            })
            .await
    }
}

async fn finalize_epochs(
    c: &mut AsyncPgConnection,
    s: &str,
    chain: i64,
    upto: u64,
    at: f64,
) -> Result<(), DbError> {
    diesel::sql_query(format!(
        "UPDATE {s}.epochs SET stage = 'finalized', updated_at = now(),
                stages = stages || jsonb_build_array(jsonb_build_object('stage', 'finalized', 'at', $3::float8))
          WHERE chain_id = $1 AND stage = 'stored' AND to_block <= $2"
    ))
    .bind::<BigInt, _>(chain)
    .bind::<BigInt, _>(u(upto))
    .bind::<diesel::sql_types::Double, _>(at)
    .execute(c)
    .await?;
    Ok(())
}

async fn upsert_checkpoint(
    c: &mut AsyncPgConnection,
    s: &str,
    chain: i64,
    b: &BlockRef,
) -> Result<(), DbError> {
    diesel::sql_query(format!(
        "INSERT INTO {s}.checkpoints (chain_id, block_number, block_hash, block_timestamp, updated_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (chain_id) DO UPDATE SET block_number = EXCLUDED.block_number,
             block_hash = EXCLUDED.block_hash, block_timestamp = EXCLUDED.block_timestamp, updated_at = now()"
    ))
    .bind::<BigInt, _>(chain)
    .bind::<BigInt, _>(u(b.number))
    .bind::<Text, _>(&b.hash)
    .bind::<BigInt, _>(u(b.timestamp))
    .execute(c)
    .await?;
    Ok(())
}
