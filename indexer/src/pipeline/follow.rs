//! Following the head, block by block: each step links new headers to the checkpoint by
//! parent hash, checks every log against its block's header, and commits events, window,
//! epoch and checkpoint together. A checkpoint that is no longer canonical triggers a
//! reorg repair ([`super::reorg`]).

use std::collections::HashMap;
use std::time::Duration;

use tidemark_db_client::writer::ChildRow;
use tidemark_shared_types::BlockRef;
use tidemark_shared_types::epoch::EpochStage;

use super::chain::{ChainPipeline, PipelineError};
use super::decode::EventRow;
use super::{fetch, reorg};
use crate::epochs::Epoch;
use crate::progress::Phase;
use crate::rpc::Header;
use crate::store::Batch;

/// Blocks handled per follow step.
pub(super) const FOLLOW_BATCH: u64 = 200;

/// The first wait before polling again while a parked block is ahead of the checkpoint.
const EAGER_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between polls while a parked block is ahead of the checkpoint: a
/// node behind a load balancer catches up within a block or two.
const EAGER_LAST: Duration = Duration::from_secs(1);
/// How far beyond the RPC's head a parked block may be for the follower to poll eagerly.
const EAGER_MARGIN: u64 = 32;

enum FollowStep {
    Idle(u64),
    Unlinked,
    Reorg,
    Batch { rows: Vec<EventRow>, children: Vec<ChildRow>, headers: Vec<Header>, head: u64 },
}

impl ChainPipeline {
    /// Follows from `cp` until shutdown (or, for a bounded range, until the end block).
    pub(super) async fn follow(
        &self,
        mut cp: Option<BlockRef>,
        start_n: u64,
        end_n: Option<u64>,
    ) -> Result<(), PipelineError> {
        let id = self.id();
        // The epoch of the step in progress; kept across retries of the same range.
        let mut pending: Option<Epoch> = None;
        let mut finalized_upto = 0u64;
        // The next wait while a parked block is ahead of the checkpoint.
        let mut eager = EAGER_FIRST;
        loop {
            self.check_shutdown()?;
            if let (Some(end), Some(c)) = (end_n, &cp)
                && c.number >= end
            {
                let newly = self.progress.update(id, |s| {
                    s.end = Some(c.clone());
                    std::mem::replace(&mut s.phase, Phase::Completed) != Phase::Completed
                });
                if newly == Some(true) {
                    tracing::info!(target: "tidemark::pipeline", chain_id = id, end, "bounded range completed");
                }
                // Until the end block is final, a reorg can still replace it: keep checking.
                match self.watch_unfinalized_end(c, end).await? {
                    None => return self.finalize_until_shutdown(end).await,
                    Some(new_cp) => {
                        self.progress.update(id, |s| {
                            s.end = None;
                            s.phase = Phase::Following;
                        });
                        cp = new_cp;
                        continue;
                    }
                }
            }
            let step = {
                let mut backoff = self.backoff("follow");
                loop {
                    match self.attempt(self.follow_once(cp.as_ref(), start_n, end_n, &mut pending)).await {
                        Ok(step) => break step,
                        Err(e) => backoff.wait_after(e).await?,
                    }
                }
            };
            match step {
                FollowStep::Idle(head) => {
                    // Nothing new: the head is the checkpoint (or the bounded end is reached).
                    self.progress.update(id, |s| {
                        s.progressed();
                        s.latest_known = s.latest_indexed.clone();
                        if s.latest_indexed.is_some() && s.phase != Phase::Completed {
                            s.phase = Phase::Following;
                        }
                    });
                    let upto = head.saturating_sub(self.chain.finality_depth);
                    if upto > finalized_upto && self.epochs.enabled() {
                        self.writer.lock().await.finalize(id, upto).await?;
                        finalized_upto = upto;
                    }
                    self.idle(cp.as_ref().map_or(0, |c| c.number), head, &mut eager).await?;
                }
                FollowStep::Unlinked => {
                    // The chain moved under us; the next step re-checks the checkpoint.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                FollowStep::Reorg => {
                    if let Some(e) = pending.take() {
                        self.epochs.discard(&e);
                    }
                    let Some(c) = cp.clone() else { continue };
                    cp = reorg::repair(self, &c, start_n).await?;
                }
                FollowStep::Batch { rows, children, headers, head } => {
                    let Some(last) = headers.last().cloned() else { continue };
                    let mut epoch = pending.take();
                    if let Some(e) = epoch.as_mut() {
                        e.push(EpochStage::Stored);
                    }
                    finalized_upto = head.saturating_sub(self.chain.finality_depth);
                    {
                        let mut w = self.writer.lock().await;
                        let started = std::time::Instant::now();
                        w.commit(Batch {
                            chain_id: id,
                            events: &rows,
                            children: &children,
                            headers: &headers,
                            checkpoint: &last.block,
                            prune_below: Some(last.block.number.saturating_sub(self.chain.finality_depth)),
                            epoch: epoch.as_ref().filter(|_| self.epochs.enabled()),
                            finalize_upto: self
                                .epochs
                                .enabled()
                                .then(|| (finalized_upto, crate::epochs::now_secs())),
                        })
                        .await?;
                        metrics::histogram!("tidemark_commit_seconds", "chain_id" => id.to_string(), "phase" => "following")
                            .record(started.elapsed().as_secs_f64());
                    }
                    let released = match &self.hints {
                        Some(_) => {
                            let stored: Vec<(u64, &str)> =
                                headers.iter().map(|h| (h.block.number, h.block.hash.as_str())).collect();
                            self.writer.lock().await.release_pending(id, &stored).await?
                        }
                        None => Vec::new(),
                    };
                    let known = if head == last.block.number { Some(last.block.clone()) } else { None };
                    self.committed(&rows, &last.block, known.as_ref());
                    if self.hints.is_some() {
                        self.record_latency(&headers, &released, head == last.block.number);
                    }
                    self.progress.update(id, |s| {
                        if s.latest_known.as_ref().is_none_or(|k| k.number < last.block.number) {
                            s.latest_known = Some(last.block.clone());
                        }
                        if s.phase != Phase::Completed
                            && last.block.number >= s.backfill_end.as_ref().map_or(0, |b| b.number)
                        {
                            s.phase = Phase::Following;
                        }
                    });
                    cp = Some(last.block);
                }
            }
        }
    }

    /// Waits after a step that found nothing new: the poll interval, cut short by a
    /// webhook delivery for this chain. While a parked block is ahead of `checkpoint` but
    /// within [`EAGER_MARGIN`] of the RPC's `head` (the node has not caught up with the
    /// provider that announced it), polls again after `eager`, doubling up to 1 s (or the
    /// poll interval when shorter). A block announced far beyond the head (another
    /// network's webhook, a broken relay) never makes it poll faster.
    async fn idle(&self, checkpoint: u64, head: u64, eager: &mut Duration) -> Result<(), PipelineError> {
        let poll = self.chain.poll_interval;
        let Some(hints) = &self.hints else { return self.pause(poll).await };
        let ahead = hints.ahead();
        let delay = if ahead > checkpoint && ahead <= head.saturating_add(EAGER_MARGIN) {
            let d = (*eager).min(poll);
            *eager = (*eager * 2).min(EAGER_LAST);
            d
        } else {
            poll
        };
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(PipelineError::Shutdown),
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = hints.woken() => {
                *eager = EAGER_FIRST;
                Ok(())
            }
        }
    }

    /// Records the head→stored latency of the blocks just stored, when the batch reached
    /// the head (a catch-up batch measures the outage, not the path): `announced` are the
    /// parked blocks it released, which a webhook delivery announced first.
    fn record_latency(&self, headers: &[Header], announced: &[u64], at_head: bool) {
        let id = self.id();
        if !announced.is_empty() {
            self.progress.webhooks(id, |w| w.released += announced.len() as u64);
        }
        if !at_head {
            return;
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.progress.update(id, |s| {
            for h in headers {
                let ms = now_ms.saturating_sub(h.block.timestamp.saturating_mul(1000));
                let by_webhook = announced.contains(&h.block.number);
                s.stored_after(ms, by_webhook);
                let path = if by_webhook { "webhook" } else { "polling" };
                metrics::histogram!("tidemark_head_to_stored_seconds", "chain_id" => id.to_string(), "path" => path)
                    .record(ms as f64 / 1000.0);
            }
        });
    }

    /// One attempt of a follow step: is the checkpoint still canonical, is there anything
    /// new, and if so the next batch fetched and decoded (its epoch planned in `pending`,
    /// kept across attempts of the same range; a failure is recorded in its history).
    async fn follow_once(
        &self,
        cp: Option<&BlockRef>,
        start_n: u64,
        end_n: Option<u64>,
        pending: &mut Option<Epoch>,
    ) -> Result<FollowStep, PipelineError> {
        let head = self.rpc.block_number().await.map_err(|e| self.rpc_err(e))?;
        // Is the checkpoint still canonical?
        if let Some(c) = cp {
            // A node without the block answers `null`: asked again, never a reorg.
            let canonical = self.rpc.header(c.number).await.map_err(|e| self.rpc_err(e))?;
            if canonical.block.hash != c.hash {
                return Ok(FollowStep::Reorg);
            }
        }
        let next = cp.map_or(start_n, |c| c.number + 1);
        let target = end_n.map_or(head, |e| e.min(head));
        if next > target {
            return Ok(FollowStep::Idle(head));
        }
        let to = target.min(next + FOLLOW_BATCH - 1);
        match pending.take() {
            // Same range as the interrupted attempt: retry it, history kept.
            Some(mut e) if e.from == next && e.to == to => {
                e.push(EpochStage::Planned);
                *pending = Some(e);
            }
            other => {
                if let Some(e) = other {
                    self.epochs.discard(&e);
                }
                *pending = Some(self.epochs.plan(next, to));
            }
        }
        let result = self.fetch_step(cp, next, to, head, pending.as_mut()).await;
        if let Err(e) = &result
            && let Some(epoch) = pending.as_mut()
        {
            self.epochs.fail(epoch, &e.to_string());
        }
        result
    }

    /// Fetches headers and logs of `[next, to]` and decodes them, or reports that the
    /// chain moved under the step.
    async fn fetch_step(
        &self,
        cp: Option<&BlockRef>,
        next: u64,
        to: u64,
        head: u64,
        mut epoch: Option<&mut Epoch>,
    ) -> Result<FollowStep, PipelineError> {
        let headers = fetch::headers(&self.rpc, next, to, self.chain.max_concurrency)
            .await
            .map_err(|e| self.rpc_err(e))?;
        let mut parent = cp.map(|c| c.hash.clone());
        for h in &headers {
            if parent.as_ref().is_some_and(|p| *p != h.parent_hash) {
                return Ok(FollowStep::Unlinked);
            }
            parent = Some(h.block.hash.clone());
        }
        let hashes: HashMap<u64, String> =
            headers.iter().map(|h| (h.block.number, h.block.hash.clone())).collect();
        let mut logs = fetch::logs_in_range(&self.rpc, &self.filter, next, to, &self.size, &hashes)
            .await
            .map_err(|e| self.rpc_err(e))?;
        // Near the head, nodes behind a load balancer answer short: every block whose bloom
        // may hold a match and that came back empty is confirmed by hash.
        let refs: Vec<&Header> = headers.iter().collect();
        fetch::complete(
            &self.rpc,
            std::slice::from_ref(&self.filter),
            &self.interest,
            &refs,
            &mut logs,
            self.chain.max_concurrency,
        )
        .await
        .map_err(|e| self.rpc_err(e))?;
        let mut children = Vec::new();
        if self.has_factories() {
            // What an earlier attempt added above the checkpoint was never committed.
            self.forget_children_above(next.saturating_sub(1))?;
            let found = super::children::discover(&self.chain, &logs);
            self.add_children(&found)?;
            let topics = self.chain.child_topic0s();
            let mut child = self.child_logs(next, to, &hashes, None, &topics).await?;
            if !child.filters.is_empty() {
                fetch::complete(
                    &self.rpc,
                    &child.filters,
                    &child.interest,
                    &refs,
                    &mut child.logs,
                    self.chain.max_concurrency,
                )
                .await
                .map_err(|e| self.rpc_err(e))?;
                logs.extend(child.logs);
                fetch::dedup(&mut logs);
            }
            children = found.into_iter().map(|d| d.row).collect();
        }
        let by_number: HashMap<u64, Header> = headers.iter().map(|h| (h.block.number, h.clone())).collect();
        if let Some(e) = epoch.as_deref_mut() {
            self.epochs.advance(e, EpochStage::Fetched);
        }
        let rows = self.decode(&logs, &by_number).await?;
        if let Some(e) = epoch {
            self.epochs.advance(e, EpochStage::Decoded);
        }
        Ok(FollowStep::Batch { rows, children, headers, head })
    }

    /// A completed bounded range whose end block `cp` is not final yet: checks every poll
    /// interval that it is still canonical. `None` once it is final; `Some(new checkpoint)`
    /// after a reorg replaced it (repaired: the follower indexes the new branch up to the
    /// end again).
    async fn watch_unfinalized_end(
        &self,
        cp: &BlockRef,
        end: u64,
    ) -> Result<Option<Option<BlockRef>>, PipelineError> {
        let start_n = self.chain.start_block();
        loop {
            let step = self
                .retry("end block", || async {
                    let head = self.rpc.block_number().await.map_err(|e| self.rpc_err(e))?;
                    if head.saturating_sub(self.chain.finality_depth) >= end {
                        return Ok(None);
                    }
                    let canonical = self.rpc.header(cp.number).await.map_err(|e| self.rpc_err(e))?;
                    Ok(Some((canonical.block.hash == cp.hash, head)))
                })
                .await?;
            match step {
                None => return Ok(None),
                Some((false, _)) => return Ok(Some(reorg::repair(self, cp, start_n).await?)),
                Some((true, head)) => {
                    if self.epochs.enabled() {
                        let upto = head.saturating_sub(self.chain.finality_depth).min(end);
                        self.writer.lock().await.finalize(self.id(), upto).await?;
                    }
                }
            }
            self.pause(self.chain.poll_interval).await?;
        }
    }

    /// A completed bounded range: keep finalizing its epochs as the head moves on, then
    /// wait for shutdown.
    async fn finalize_until_shutdown(&self, end: u64) -> Result<(), PipelineError> {
        loop {
            let head = self
                .retry("head", || async { self.rpc.block_number().await.map_err(|e| self.rpc_err(e)) })
                .await?;
            let upto = head.saturating_sub(self.chain.finality_depth);
            if !self.epochs.enabled() {
                self.shutdown.cancelled().await;
                return Ok(());
            }
            self.writer.lock().await.finalize(self.id(), upto.min(end)).await?;
            if upto >= end {
                self.shutdown.cancelled().await;
                return Ok(());
            }
            self.pause(self.chain.poll_interval).await?;
        }
    }
}
