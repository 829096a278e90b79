//! A chain's pipeline from start to end: resolve the range, repair a checkpoint a reorg
//! orphaned while no indexer ran, backfill in bulk up to the finalized part of the chain,
//! then follow the head.

use super::chain::{ChainPipeline, PipelineError};
use super::{follow, reorg};
use crate::progress::Phase;
use tidemark_shared_types::BlockRef;

/// Bulk backfill stops this many blocks (or the finality depth, when larger) below the
/// highest head seen; the follower, which checks every block's header and bloom, indexes
/// the rest.
pub const TIP_MARGIN: u64 = 64;

impl ChainPipeline {
    /// Runs until shutdown (`Ok`) or a failure that needs a new writer term (`Err`).
    pub async fn run(self) -> Result<(), PipelineError> {
        // The chain's counters exist from the start (at zero), so `rate()` and alerts on
        // them work before the first event, reorg or removal.
        let chain_id = self.id().to_string();
        for name in [
            "tidemark_events_indexed_total",
            "tidemark_blocks_indexed_total",
            "tidemark_reorgs_total",
            "tidemark_removed_events_total",
        ] {
            metrics::counter!(name, "chain_id" => chain_id.clone()).increment(0);
        }
        match self.start().await {
            Err(PipelineError::Shutdown) => Ok(()),
            other => other,
        }
    }

    async fn start(&self) -> Result<(), PipelineError> {
        let id = self.id();
        // The block every endpoint must agree on: the start block as first indexed (from
        // the stored status), so a failover endpoint on another chain is set aside instead
        // of being taken as evidence of a reorg.
        let stored_anchor = self.writer.lock().await.stored_start_block(id).await?;
        if let Some(anchor) = stored_anchor.clone() {
            self.rpc.set_anchor(anchor);
        }
        self.retry("endpoint check", || async {
            self.rpc.ensure_usable().await.map_err(|e| self.rpc_err(e))
        })
        .await?;
        let start_n = self.chain.start_block();
        let end_n = self.chain.end_block();
        // Wait until the chain has reached the start block, then resolve it.
        let start = (self
            .retry("start block", || async { self.rpc.header(start_n).await.map_err(|e| self.rpc_err(e)) })
            .await?)
            .block;
        if stored_anchor.is_none() {
            self.rpc.set_anchor(start.clone());
        }
        let checkpoint = self.writer.lock().await.checkpoint(id).await?;
        self.load_children().await?;
        if let Some(c) = &checkpoint {
            self.rpc.set_floor(c.number);
        }
        let head = self
            .retry("head", || async { self.rpc.block_number().await.map_err(|e| self.rpc_err(e)) })
            .await?;
        let backfill_end_n = end_n.map_or(head, |e| e.min(head));
        let backfill_end = (self
            .retry("backfill end", || async {
                self.rpc.header(backfill_end_n).await.map_err(|e| self.rpc_err(e))
            })
            .await?)
            .block;
        let end_ref = end_n.filter(|e| *e <= head).map(|_| backfill_end.clone());
        self.progress.update(id, |s| {
            s.start = Some(start.clone());
            s.end = end_ref;
            s.backfill_end = Some(backfill_end.clone());
            s.latest_known = Some(backfill_end.clone());
            s.latest_indexed = checkpoint.clone();
            s.phase = if checkpoint.is_some() { Phase::Backfill } else { Phase::Queued };
        });
        tracing::info!(target: "tidemark::pipeline", chain_id = id, start = start_n, backfill_end = backfill_end_n, checkpoint = checkpoint.as_ref().map(|c| c.number), "chain range resolved");

        let mut cp = checkpoint;
        // A reorg while no indexer ran may have orphaned the checkpoint. Bulk ranges are not
        // linked to it by parent hash, so repair before backfilling on top of it.
        if let Some(c) = cp.clone() {
            let canonical = self
                .retry("checkpoint", || async {
                    self.rpc.header(c.number).await.map_err(|e| self.rpc_err(e))
                })
                .await?;
            if canonical.block.hash != c.hash {
                cp = reorg::repair(self, &c, start_n).await?;
                if cp.as_ref() == Some(&c) {
                    // Repair refused (the node serves another chain): no bulk ranges on top
                    // of it; the follower checks every step against the checkpoint.
                    self.epochs.drop_leftovers();
                    return self.follow(cp, start_n, end_n).await;
                }
            }
        }
        // Sources added to the chain since it was indexed up to `cp` are backfilled beside
        // the chain's own bulk backfill and follower.
        let mut pending = self.pending_sources().await?;
        // The follower must know every child created up to the checkpoint: an added factory
        // contract's children are discovered first.
        self.discover_source_children(&mut pending).await?;
        let sources = self.backfill_sources(pending);
        let chain = self.bulk_then_follow(cp, start_n, end_n, backfill_end_n);
        tokio::try_join!(sources, chain).map(|_| ())
    }

    /// Bulk backfill while the finalized part of the chain is far ahead, then following.
    async fn bulk_then_follow(
        &self,
        mut cp: Option<BlockRef>,
        start_n: u64,
        end_n: Option<u64>,
        backfill_end_n: u64,
    ) -> Result<(), PipelineError> {
        // Bulk backfill while the finalized part of the chain is far ahead.
        loop {
            let head = self
                .retry("head", || async { self.rpc.block_number().await.map_err(|e| self.rpc_err(e)) })
                .await?;
            // Bulk ranges are checked against their end block only, so they stay clear of
            // the tip, where lagging nodes answer short; the follower checks every block.
            let safe = head.saturating_sub(self.chain.finality_depth.max(TIP_MARGIN)).min(backfill_end_n);
            let next = cp.as_ref().map_or(start_n, |c| c.number + 1);
            if next > safe
                || safe - next < follow::FOLLOW_BATCH.min(self.chain.max_block_range) && cp.is_some()
            {
                break;
            }
            if let Some(last) = self.bulk(next, safe, safe).await? {
                cp = Some(last);
            }
            if safe >= backfill_end_n {
                break;
            }
        }
        // Unfinished epochs of an earlier run that bulk backfill did not retry.
        self.epochs.drop_leftovers();
        self.follow(cp, start_n, end_n).await
    }
}
