//! `checkpoints` (per chain: the last indexed block, written in the same transaction as
//! the data it covers) and `blocks` (the hashes of the unfinalized window, for reorg
//! detection). Both belong to the writer (feature `writer`): readers learn how far an
//! instance is indexed from the status snapshot.

use tidemark_shared_types::BlockRef;
use tokio_postgres::{GenericClient, Row};

use crate::error::{Result, stored_u64};
use crate::statements::{Statements, signed};

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

/// Column `i` of `row` of `table`, a block number or timestamp: never negative.
fn column_u64(row: &Row, i: usize, table: &'static str) -> Result<u64> {
    stored_u64(row.try_get::<_, i64>(i)?, table, row.columns()[i].name())
}

impl<C: GenericClient + Sync> Statements<'_, C> {
    /// The checkpoint of `chain_id`.
    pub(crate) async fn checkpoint(&self, chain_id: u64) -> Result<Option<BlockRef>> {
        let sql = format!(
            "SELECT block_number, block_hash, block_timestamp FROM {}.checkpoints WHERE chain_id = $1",
            self.s
        );
        let Some(row) = self.c.query_opt(&sql, &[&signed(chain_id, "chain_id")?]).await? else {
            return Ok(None);
        };
        Ok(Some(BlockRef {
            number: column_u64(&row, 0, "checkpoints")?,
            hash: row.try_get(1)?,
            timestamp: column_u64(&row, 2, "checkpoints")?,
        }))
    }

    /// Sets the checkpoint of `chain_id` to `b`, or removes it (`None`: nothing indexed).
    pub(crate) async fn set_checkpoint(&self, chain_id: u64, b: Option<&BlockRef>) -> Result<()> {
        let Some(b) = b else {
            let sql = format!("DELETE FROM {}.checkpoints WHERE chain_id = $1", self.s);
            return Ok(self.c.execute(&sql, &[&signed(chain_id, "chain_id")?]).await.map(drop)?);
        };
        let sql = format!(
            "INSERT INTO {}.checkpoints (chain_id, block_number, block_hash, block_timestamp, updated_at)
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (chain_id) DO UPDATE SET block_number = EXCLUDED.block_number,
                 block_hash = EXCLUDED.block_hash, block_timestamp = EXCLUDED.block_timestamp, updated_at = now()",
            self.s
        );
        self.c
            .execute(
                &sql,
                &[
                    &signed(chain_id, "chain_id")?,
                    &signed(b.number, "block_number")?,
                    &b.hash,
                    &signed(b.timestamp, "block_timestamp")?,
                ],
            )
            .await?;
        Ok(())
    }

    /// Adds `headers` to `chain_id`'s window (replacing the hashes stored at their heights).
    pub(crate) async fn insert_window<H: WindowHeader + Sync>(
        &self,
        chain_id: u64,
        headers: &[H],
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO {}.blocks (chain_id, number, hash, parent_hash, timestamp)
             SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::bigint[])
             ON CONFLICT (chain_id, number) DO UPDATE
                SET hash = EXCLUDED.hash, parent_hash = EXCLUDED.parent_hash, timestamp = EXCLUDED.timestamp",
            self.s
        );
        let numbers: Vec<i64> =
            headers.iter().map(|h| signed(h.block().number, "number")).collect::<Result<_>>()?;
        let hashes: Vec<&str> = headers.iter().map(|h| h.block().hash.as_str()).collect();
        let parents: Vec<&str> = headers.iter().map(|h| h.parent_hash()).collect();
        let timestamps: Vec<i64> =
            headers.iter().map(|h| signed(h.block().timestamp, "timestamp")).collect::<Result<_>>()?;
        self.c
            .execute(&sql, &[&signed(chain_id, "chain_id")?, &numbers, &hashes, &parents, &timestamps])
            .await?;
        Ok(())
    }

    /// Drops `chain_id`'s window below block `below`.
    pub(crate) async fn prune_window(&self, chain_id: u64, below: u64) -> Result<()> {
        let sql = format!("DELETE FROM {}.blocks WHERE chain_id = $1 AND number < $2", self.s);
        self.c.execute(&sql, &[&signed(chain_id, "chain_id")?, &signed(below, "below")?]).await?;
        Ok(())
    }

    /// Drops `chain_id`'s window above block `above` (-1: all of it).
    pub(crate) async fn drop_window_above(&self, chain_id: u64, above: i64) -> Result<()> {
        let sql = format!("DELETE FROM {}.blocks WHERE chain_id = $1 AND number > $2", self.s);
        self.c.execute(&sql, &[&signed(chain_id, "chain_id")?, &above]).await?;
        Ok(())
    }

    /// The `(number, hash)` pairs of `chain_id`'s window in `[from, to]`.
    pub(crate) async fn window_hashes(
        &self,
        chain_id: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, String)>> {
        let sql = format!(
            "SELECT number, hash FROM {}.blocks WHERE chain_id = $1 AND number BETWEEN $2 AND $3",
            self.s
        );
        let rows = self
            .c
            .query(&sql, &[&signed(chain_id, "chain_id")?, &signed(from, "from")?, &signed(to, "to")?])
            .await?;
        rows.iter().map(|r| Ok((column_u64(r, 0, "blocks")?, r.try_get(1)?))).collect()
    }
}
