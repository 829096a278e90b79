//! Reorg repair (DESIGN §7 "Follow").
//!
//! When the checkpoint is no longer canonical, walk down over the stored hashes — the
//! unfinalized window first, then, for a reorg deeper than the window, the hashes the
//! stored events carry — to the highest block whose stored hash is still canonical: the
//! common ancestor. Then roll back to it in one transaction (orphaned events deleted and
//! journaled as `removed`, checkpoint rewound) and let the follower index the new branch.

use tidemark_shared_types::BlockRef;

use super::chain::{ChainPipeline, PipelineError};

/// Heights examined per database round-trip.
const WALK_CHUNK: u64 = 64;

/// Repairs a reorg below `cp`; returns the new checkpoint (`None`: nothing canonical
/// remains, indexing restarts at the start block; `cp` itself: refused, see below).
///
/// Invariant (9): rows are deleted only on hashes a node returned, and never when the node
/// shares no indexed block with the index beyond the finality depth: that is another
/// chain, and the repair is refused (counted as a `wrong-chain` answer, logged, `cp`
/// returned unchanged).
pub async fn repair(
    p: &ChainPipeline,
    cp: &BlockRef,
    start_n: u64,
) -> Result<Option<BlockRef>, PipelineError> {
    let id = p.id();
    let ancestor = find_ancestor(p, cp, start_n).await?;
    let depth = cp.number - ancestor.as_ref().map_or(start_n.saturating_sub(1), |a| a.number);
    if ancestor.is_none() && depth > p.chain.finality_depth {
        // No block the index holds is on the chain the node serves, and the difference is
        // deeper than finality: a node of another chain (a fork sharing the genesis, a fresh
        // node behind failover), not a reorg. Nothing is deleted; the endpoints are checked
        // again and the follower asks again after a pause.
        let message = format!(
            "the node shares none of the indexed blocks up to {} (deeper than the finality depth {}): another chain, not a reorg; nothing deleted",
            cp.number, p.chain.finality_depth
        );
        p.rpc.set_aside_active(&message);
        p.pause(p.chain.poll_interval.max(std::time::Duration::from_secs(1))).await?;
        return Ok(Some(cp.clone()));
    }
    if depth > p.chain.finality_depth {
        tracing::error!(target: "tidemark::reorg", chain_id = id, depth, finality_depth = p.chain.finality_depth, "reorg deeper than the finality depth; repaired from stored event hashes");
    }
    let removed = p.writer.lock().await.rollback(id, ancestor.as_ref()).await?;
    metrics::counter!("tidemark_reorgs_total", "chain_id" => id.to_string()).increment(1);
    metrics::counter!("tidemark_removed_events_total", "chain_id" => id.to_string())
        .increment(removed as u64);
    tracing::warn!(target: "tidemark::reorg", chain_id = id, from = cp.number, ancestor = ancestor.as_ref().map(|a| a.number), depth, removed, "reorg repaired");
    p.forget_children_above(ancestor.as_ref().map_or(start_n.saturating_sub(1), |a| a.number))?;
    p.progress.update(id, |s| s.latest_indexed = ancestor.clone());
    p.rpc.set_floor(ancestor.as_ref().map_or(0, |a| a.number));
    Ok(ancestor)
}

async fn find_ancestor(
    p: &ChainPipeline,
    cp: &BlockRef,
    start_n: u64,
) -> Result<Option<BlockRef>, PipelineError> {
    let id = p.id();
    let mut hi = cp.number;
    loop {
        if hi < start_n {
            return Ok(None);
        }
        let lo = hi.saturating_sub(WALK_CHUNK - 1).max(start_n);
        let stored = p.writer.lock().await.stored_hashes(id, lo, hi).await?;
        for (n, hash) in stored {
            let canonical =
                p.retry("reorg walk", || async { p.rpc.header(n).await.map_err(|e| p.rpc_err(e)) }).await?;
            // Only hashes the nodes returned decide: a node without the block answers
            // `null`, which `header` asks again instead of taking as a difference.
            if canonical.block.hash == hash {
                return Ok(Some(canonical.block));
            }
        }
        if lo == start_n {
            return Ok(None);
        }
        // Skip stretches with nothing stored: jump to the next block that has events.
        // Below the window only events carry hashes; with none left, nothing below is
        // known to be canonical and indexing restarts at the start block.
        hi = match p.writer.lock().await.previous_event_block(id, lo).await? {
            Some(n) => n,
            None => return Ok(None),
        };
    }
}
