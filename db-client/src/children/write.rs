//! The writer's statements on `children` (feature `writer`).

use tokio_postgres::GenericClient;

use crate::error::{Result, stored_u64};
use crate::hex::stored_bytes;
use crate::statements::{Statements, narrow, signed};

/// A child of a factory contract, as the writer stores it: the contract it belongs to,
/// its address and the log that created it (0x hex strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRow {
    /// The factory contract (the child's contract, not the creator).
    pub contract: String,
    /// Lowercase 0x address.
    pub address: String,
    /// The creating log's block.
    pub block_number: u64,
    /// Its hash.
    pub block_hash: String,
    /// The creating log's index.
    pub log_index: u64,
    /// The creating transaction.
    pub tx_hash: String,
}

impl<C: GenericClient + Sync> Statements<'_, C> {
    /// Stores `rows` as children of `chain_id`; an address already stored under the same
    /// contract keeps its first creation.
    pub(crate) async fn insert_children(&self, chain_id: u64, rows: &[ChildRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut contracts = Vec::with_capacity(rows.len());
        let (mut addresses, mut hashes, mut txs) = (Vec::new(), Vec::new(), Vec::new());
        let (mut numbers, mut indexes) = (Vec::new(), Vec::new());
        for r in rows {
            contracts.push(r.contract.as_str());
            addresses.push(stored_bytes(&r.address, "address")?);
            numbers.push(signed(r.block_number, "block_number")?);
            hashes.push(stored_bytes(&r.block_hash, "block_hash")?);
            indexes.push(narrow::<i32>(r.log_index, "log_index")?);
            txs.push(stored_bytes(&r.tx_hash, "tx_hash")?);
        }
        let sql = format!(
            "INSERT INTO {}.children (chain_id, contract, address, block_number, block_hash, log_index, tx_hash)
             SELECT $1, * FROM unnest($2::text[], $3::bytea[], $4::int8[], $5::bytea[], $6::int4[], $7::bytea[])
             ON CONFLICT DO NOTHING",
            self.s
        );
        self.c
            .execute(
                &sql,
                &[&signed(chain_id, "chain_id")?, &contracts, &addresses, &numbers, &hashes, &indexes, &txs],
            )
            .await?;
        Ok(())
    }

    /// Deletes the children of `chain_id` created above block `above`; returns how many.
    pub(crate) async fn delete_children_above(&self, chain_id: u64, above: i64) -> Result<u64> {
        let sql = format!("DELETE FROM {}.children WHERE chain_id = $1 AND block_number > $2", self.s);
        Ok(self.c.execute(&sql, &[&signed(chain_id, "chain_id")?, &above]).await?)
    }

    /// Every child of `chain_id`, by creating block and log index.
    pub(crate) async fn children(&self, chain_id: u64) -> Result<Vec<ChildRow>> {
        let sql = format!(
            "SELECT contract, '0x' || encode(address, 'hex'), block_number, '0x' || encode(block_hash, 'hex'),
                    log_index, '0x' || encode(tx_hash, 'hex')
               FROM {}.children WHERE chain_id = $1 ORDER BY block_number, log_index, contract",
            self.s
        );
        let rows = self.c.query(&sql, &[&signed(chain_id, "chain_id")?]).await?;
        rows.iter()
            .map(|r| {
                Ok(ChildRow {
                    contract: r.try_get(0)?,
                    address: r.try_get(1)?,
                    block_number: stored_u64(r.try_get::<_, i64>(2)?, "children", "block_number")?,
                    block_hash: r.try_get(3)?,
                    log_index: stored_u64(r.try_get::<_, i32>(4)?, "children", "log_index")?,
                    tx_hash: r.try_get(5)?,
                })
            })
            .collect()
    }
}
