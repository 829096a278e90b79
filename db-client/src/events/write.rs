//! The writer's statements on `events`, `removals` and the cursor sequence (feature
//! `writer`): the cursors of a batch, its binary `COPY`, the rollback that turns orphaned
//! events into the journal's `removed` entries, and the reads the reorg walk needs.

use std::pin::{Pin, pin};

use serde_json::Value;
use tokio_postgres::GenericClient;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::error::{Result, stored_u64};
use crate::statements::{Statements, narrow, signed};

/// A decoded log, ready to store: one row of `events` without its cursor and chain id,
/// which the writer adds.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Block number.
    pub block_number: u64,
    /// 0x block hash.
    pub block_hash: String,
    /// Unix seconds.
    pub block_timestamp: u64,
    /// 0x transaction hash.
    pub tx_hash: String,
    /// Transaction index in the block.
    pub tx_index: u64,
    /// Log index in the block.
    pub log_index: u64,
    /// Emitting address, lowercase.
    pub address: String,
    /// Contract name.
    pub contract: String,
    /// Event name.
    pub event: String,
    /// Canonical signature.
    pub signature: String,
    /// 0x topics.
    pub topics: Vec<String>,
    /// 0x data.
    pub data: String,
    /// Decoded args; `None` when the log does not fit its ABI.
    pub args: Option<Value>,
    /// Why `args` is `None`.
    pub decode_error: Option<String>,
}

/// Columns of `events` in the order of [`COPY_TYPES`] and of the values [`write_row`]
/// sends.
const COPY_COLUMNS: &str = "cursor, chain_id, block_number, block_hash, block_timestamp, tx_hash, \
     tx_index, log_index, address, contract, event, signature, topics, data, args, decode_error";

/// The PostgreSQL types of [`COPY_COLUMNS`], for binary `COPY`.
const COPY_TYPES: [Type; 16] = [
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

/// Writes one row of [`COPY_COLUMNS`] to a binary `COPY`.
async fn write_row(
    rows: Pin<&mut BinaryCopyInWriter>,
    cursor: i64,
    chain_id: i64,
    e: &EventRow,
) -> Result<()> {
    let values: [&(dyn ToSql + Sync); 16] = [
        &cursor,
        &chain_id,
        &signed(e.block_number, "block_number")?,
        &e.block_hash,
        &signed(e.block_timestamp, "block_timestamp")?,
        &e.tx_hash,
        &narrow::<i32>(e.tx_index, "tx_index")?,
        &narrow::<i32>(e.log_index, "log_index")?,
        &e.address,
        &e.contract,
        &e.event,
        &e.signature,
        &e.topics,
        &e.data,
        &e.args,
        &e.decode_error,
    ];
    Ok(rows.write(&values).await?)
}

impl<C: GenericClient + Sync> Statements<'_, C> {
    /// Draws one block of `n` cursors at once and returns the number before the first:
    /// the batch's rows are `base + 1 ..= base + n`. Run under the commit lock, so cursors
    /// stay in commit order.
    pub(crate) async fn draw_cursors(&self, n: i64) -> Result<i64> {
        let seq = self.schema.as_str();
        let sql = format!("SELECT setval('{seq}.cursor_seq', nextval('{seq}.cursor_seq') + $1 - 1) - $1");
        Ok(self.c.query_one(&sql, &[&n]).await?.try_get(0)?)
    }

    /// Tells the sessions that `LISTEN` on [`JOURNAL_CHANNEL`](super::journal::JOURNAL_CHANNEL)
    /// that the journal grew, in the transaction that grows it: PostgreSQL delivers the
    /// notification when it commits, once its entries are visible, and never for one that
    /// rolls back. The payload is `<schema>:<head cursor>`; run under the commit lock, the
    /// sequence's last value is this transaction's last cursor.
    pub(crate) async fn notify_journal(&self) -> Result<()> {
        let sql =
            format!("SELECT pg_notify($1, $2 || ':' || (SELECT last_value FROM {}.cursor_seq))", self.s);
        self.c.execute(&sql, &[&super::journal::JOURNAL_CHANNEL, &self.schema.as_str()]).await?;
        Ok(())
    }

    /// Loads `rows` of `chain_id` by binary `COPY`, numbered `first_cursor`,
    /// `first_cursor + 1`, … in their order.
    pub(crate) async fn copy_events(
        &self,
        first_cursor: i64,
        chain_id: u64,
        rows: &[EventRow],
    ) -> Result<()> {
        let sql = format!("COPY {}.events ({COPY_COLUMNS}) FROM STDIN (FORMAT binary)", self.s);
        let sink = self.c.client().copy_in(&sql).await?;
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &COPY_TYPES));
        let chain = signed(chain_id, "chain_id")?;
        for (cursor, e) in (first_cursor..).zip(rows) {
            write_row(writer.as_mut(), cursor, chain, e).await?;
        }
        writer.as_mut().finish().await?;
        Ok(())
    }

    /// Deletes the events of `chain_id` above block `above` and records each as a
    /// `removed` journal entry (the removed row as payload, a fresh cursor, in the order
    /// the events were added). Returns how many were removed.
    pub(crate) async fn remove_events_above(&self, chain_id: u64, above: i64) -> Result<u64> {
        let (s, seq) = (&self.s, self.schema.as_str());
        let sql = format!(
            "WITH gone AS (
                DELETE FROM {s}.events WHERE chain_id = $1 AND block_number > $2 RETURNING *
             )
             INSERT INTO {s}.removals (cursor, chain_id, block_number, block_hash, log_index, event_cursor, payload)
             SELECT nextval('{seq}.cursor_seq'), g.chain_id, g.block_number, g.block_hash, g.log_index, g.cursor,
                    to_jsonb(g)
               FROM (SELECT * FROM gone ORDER BY cursor) g"
        );
        Ok(self.c.execute(&sql, &[&signed(chain_id, "chain_id")?, &above]).await?)
    }

    /// Deletes the removals recorded more than `retention` ago (by the database clock);
    /// returns how many and the highest cursor among them.
    pub(crate) async fn prune_removals(&self, retention: std::time::Duration) -> Result<(u64, Option<i64>)> {
        let sql = format!(
            "WITH gone AS (
                DELETE FROM {}.removals WHERE removed_at < now() - make_interval(secs => $1) RETURNING cursor
             )
             SELECT count(*), max(cursor) FROM gone",
            self.s
        );
        let row = self.c.query_one(&sql, &[&retention.as_secs_f64()]).await?;
        let count = stored_u64(row.try_get::<_, i64>(0)?, "removals", "count")?;
        Ok((count, row.try_get(1)?))
    }

    /// The distinct `(block number, hash)` pairs of `chain_id`'s stored events in
    /// `[from, to]`.
    pub(crate) async fn event_block_hashes(
        &self,
        chain_id: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, String)>> {
        let sql = format!(
            "SELECT DISTINCT block_number, block_hash FROM {}.events
              WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3",
            self.s
        );
        let rows = self
            .c
            .query(&sql, &[&signed(chain_id, "chain_id")?, &signed(from, "from")?, &signed(to, "to")?])
            .await?;
        rows.iter()
            .map(|r| Ok((stored_u64(r.try_get::<_, i64>(0)?, "events", "block_number")?, r.try_get(1)?)))
            .collect()
    }

    /// The highest block below `below` that has stored events of `chain_id`.
    pub(crate) async fn previous_event_block(&self, chain_id: u64, below: u64) -> Result<Option<u64>> {
        let sql = format!(
            "SELECT max(block_number) FROM {}.events WHERE chain_id = $1 AND block_number < $2",
            self.s
        );
        let row = self.c.query_one(&sql, &[&signed(chain_id, "chain_id")?, &signed(below, "below")?]).await?;
        row.try_get::<_, Option<i64>>(0)?.map(|n| stored_u64(n, "events", "block_number")).transpose()
    }

    /// `Ok` when PostgreSQL accepts `args` as `jsonb` on its own; a value error (e.g. a
    /// NUL escape) otherwise.
    pub(crate) async fn check_args(&self, args: &Value) -> Result<()> {
        self.c.query_one("SELECT $1::jsonb IS NOT NULL", &[args]).await?;
        Ok(())
    }
}
