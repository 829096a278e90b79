//! `checkpoints` (per chain: the last indexed block, written in the same transaction as
//! the data it covers) and `blocks` (the hashes of the unfinalized window, for reorg
//! detection). Both belong to the writer (feature `writer`): readers learn how far an
//! instance is indexed from the status snapshot. Only
//! [`Writer`](crate::writer::Writer) runs these statements, on its fenced connection.

use tidemark_shared_types::{BlockRef, SchemaName};
use tokio_postgres::{GenericClient, Row};

use crate::error::{DbError, Result};
use crate::events::write::signed;

/// A block of the unfinalized window, as the writer stores it in `blocks`: implemented by
/// whatever header type the caller fetched ([`WindowBlock`] when it has nothing else).
pub trait WindowHeader {
    /// Number, timestamp and hash.
    fn block(&self) -> &BlockRef;
    /// 0x hash of the parent.
    fn parent_hash(&self) -> &str;
}

/// A block of the unfinalized window and its parent's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowBlock {
    /// Number, timestamp and hash.
    pub block: BlockRef,
    /// 0x hash of the parent.
    pub parent_hash: String,
}

impl WindowHeader for WindowBlock {
    fn block(&self) -> &BlockRef {
        &self.block
    }

    fn parent_hash(&self) -> &str {
        &self.parent_hash
    }
}

/// A stored number of `table` that must not be negative (block numbers, timestamps).
fn stored_u64(row: &Row, column: usize, table: &'static str) -> Result<u64> {
    let v: i64 = row.try_get(column)?;
    u64::try_from(v).map_err(|_| DbError::InvalidStoredValue {
        key: table,
        message: format!("negative block number or timestamp {v}"),
    })
}

/// The checkpoint of `chain_id`.
pub(crate) async fn read(
    c: &impl GenericClient,
    schema: &SchemaName,
    chain_id: u64,
) -> Result<Option<BlockRef>> {
    let sql = format!(
        "SELECT block_number, block_hash, block_timestamp FROM {}.checkpoints WHERE chain_id = $1",
        schema.quoted()
    );
    let Some(row) = c.query_opt(&sql, &[&signed(chain_id)]).await? else { return Ok(None) };
    Ok(Some(BlockRef {
        number: stored_u64(&row, 0, "checkpoints")?,
        hash: row.try_get(1)?,
        timestamp: stored_u64(&row, 2, "checkpoints")?,
    }))
}

/// Sets the checkpoint of `chain_id` to `b`.
pub(crate) async fn upsert(
    c: &impl GenericClient,
    schema: &SchemaName,
    chain_id: u64,
    b: &BlockRef,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO {}.checkpoints (chain_id, block_number, block_hash, block_timestamp, updated_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (chain_id) DO UPDATE SET block_number = EXCLUDED.block_number,
             block_hash = EXCLUDED.block_hash, block_timestamp = EXCLUDED.block_timestamp, updated_at = now()",
        schema.quoted()
    );
    c.execute(&sql, &[&signed(chain_id), &signed(b.number), &b.hash, &signed(b.timestamp)]).await?;
    Ok(())
}

/// Removes the checkpoint of `chain_id` (nothing indexed).
pub(crate) async fn delete(c: &impl GenericClient, schema: &SchemaName, chain_id: u64) -> Result<()> {
    let sql = format!("DELETE FROM {}.checkpoints WHERE chain_id = $1", schema.quoted());
    c.execute(&sql, &[&signed(chain_id)]).await?;
    Ok(())
}

/// Adds `headers` to `chain_id`'s window (replacing the hashes stored at their heights).
pub(crate) async fn insert_window<H: WindowHeader>(
    c: &impl GenericClient,
    schema: &SchemaName,
    chain_id: u64,
    headers: &[H],
) -> Result<()> {
    let sql = format!(
        "INSERT INTO {}.blocks (chain_id, number, hash, parent_hash, timestamp)
         SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::bigint[])
         ON CONFLICT (chain_id, number) DO UPDATE
            SET hash = EXCLUDED.hash, parent_hash = EXCLUDED.parent_hash, timestamp = EXCLUDED.timestamp",
        schema.quoted()
    );
    c.execute(
        &sql,
        &[
            &signed(chain_id),
            &headers.iter().map(|h| signed(h.block().number)).collect::<Vec<_>>(),
            &headers.iter().map(|h| h.block().hash.as_str()).collect::<Vec<_>>(),
            &headers.iter().map(|h| h.parent_hash()).collect::<Vec<_>>(),
            &headers.iter().map(|h| signed(h.block().timestamp)).collect::<Vec<_>>(),
        ],
    )
    .await?;
    Ok(())
}

/// Drops `chain_id`'s window below block `below`.
pub(crate) async fn prune_window(
    c: &impl GenericClient,
    schema: &SchemaName,
    chain_id: u64,
    below: u64,
) -> Result<()> {
    let sql = format!("DELETE FROM {}.blocks WHERE chain_id = $1 AND number < $2", schema.quoted());
    c.execute(&sql, &[&signed(chain_id), &signed(below)]).await?;
    Ok(())
}

/// Drops `chain_id`'s window above block `above` (-1: all of it).
pub(crate) async fn drop_window_above(
    c: &impl GenericClient,
    schema: &SchemaName,
    chain_id: u64,
    above: i64,
) -> Result<()> {
    let sql = format!("DELETE FROM {}.blocks WHERE chain_id = $1 AND number > $2", schema.quoted());
    c.execute(&sql, &[&signed(chain_id), &above]).await?;
    Ok(())
}

/// The `(number, hash)` pairs of `chain_id`'s window in `[from, to]`.
pub(crate) async fn window_hashes(
    c: &impl GenericClient,
    schema: &SchemaName,
    chain_id: u64,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, String)>> {
    let sql = format!(
        "SELECT number, hash FROM {}.blocks WHERE chain_id = $1 AND number BETWEEN $2 AND $3",
        schema.quoted()
    );
    let rows = c.query(&sql, &[&signed(chain_id), &signed(from), &signed(to)]).await?;
    rows.iter().map(|r| Ok((stored_u64(r, 0, "blocks")?, r.try_get(1)?))).collect()
}
