//! Backfills of sources added to indexed chains (feature `writer`): their list, with each
//! one's progress, is the instance's `added_sources` metadata row.
//!
//! Invariants:
//! - The list is written with the public config that added its sources, in one
//!   transaction ([`crate::writer::Writer::write_public_config_with_sources`]): a crash
//!   cannot leave a stored config whose additions nobody backfills.
//! - A source's events and its progress commit together
//!   ([`crate::writer::Writer::commit_source`]), so a restart resumes at the first block not
//!   stored, and never stores a log twice.

#[cfg(doc)]
use tidemark_shared_types::AddedSource;
use tidemark_shared_types::SourceBackfill;

use crate::error::{DbError, Result, stored_u64};
use crate::statements::{Statements, signed};

/// Metadata key of the list of added sources still backfilling.
pub(crate) const ADDED_SOURCES_KEY: &str = "added_sources";

impl<C: tokio_postgres::GenericClient + Sync> Statements<'_, C> {
    /// The sources still backfilling (none when the row is missing).
    pub(crate) async fn added_sources(&self) -> Result<Vec<SourceBackfill>> {
        let row = self
            .c
            .query_opt(
                "SELECT value FROM tidemark.metadata WHERE instance_schema = $1 AND key = $2",
                &[&self.schema.as_str(), &ADDED_SOURCES_KEY],
            )
            .await?;
        let Some(value) = row.map(|r| r.try_get::<_, serde_json::Value>(0)).transpose()? else {
            return Ok(Vec::new());
        };
        serde_json::from_value(value)
            .map_err(|e| DbError::InvalidStoredValue { key: ADDED_SOURCES_KEY, message: e.to_string() })
    }

    /// Replaces the stored entry of `source` (the same [`AddedSource`])
    /// with its new progress, dropping it once done. Runs under the commit lock: one
    /// chain's progress never overwrites another's.
    pub(crate) async fn update_added_source(&self, source: &SourceBackfill) -> Result<()> {
        let mut all = self.added_sources().await?;
        match all.iter_mut().find(|s| s.source == source.source) {
            Some(s) => *s = source.clone(),
            None => all.push(source.clone()),
        }
        self.set_added_sources(&all).await
    }

    /// The `(block_number, log_index)` of `chain_id`'s stored events in `[from, to]`.
    pub(crate) async fn stored_positions(
        &self,
        chain_id: u64,
        from: u64,
        to: u64,
    ) -> Result<std::collections::HashSet<(u64, u64)>> {
        let sql = format!(
            "SELECT block_number, log_index FROM {}.events WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3",
            self.s
        );
        let rows = self
            .c
            .query(&sql, &[&signed(chain_id, "chain_id")?, &signed(from, "from")?, &signed(to, "to")?])
            .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get(0)?;
                let i: i32 = r.try_get(1)?;
                Ok((stored_u64(n, "events", "block_number")?, stored_u64(i, "events", "log_index")?))
            })
            .collect()
    }

    /// Rewinds the progress of `chain_id`'s added sources to `next` where it is beyond
    /// (never below a source's first block): a rollback to block `next - 1`.
    pub(crate) async fn rewind_added_sources(&self, chain_id: u64, next: u64) -> Result<()> {
        let mut all = self.added_sources().await?;
        let mut changed = false;
        for s in all.iter_mut().filter(|s| s.source.chain_id == chain_id && s.next_block > next) {
            s.next_block = next.max(s.from_block);
            changed = true;
        }
        if changed { self.set_added_sources(&all).await } else { Ok(()) }
    }

    /// Stores the sources still backfilling (the done ones are dropped).
    pub(crate) async fn set_added_sources(&self, sources: &[SourceBackfill]) -> Result<()> {
        let pending: Vec<&SourceBackfill> = sources.iter().filter(|s| !s.is_done()).collect();
        self.upsert_metadata(ADDED_SOURCES_KEY, &pending).await
    }
}
