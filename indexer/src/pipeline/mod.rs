//! One chain's pipeline: resolve the range, backfill in bulk up to the finalized part of
//! the chain, then follow the head block by block with parent-hash checks, repairing
//! reorgs (see [`crate::reorg`]).
//!
//! Ownership: the pipeline owns its RPC client and progress entry; commits go through the
//! instance's single [`Writer`](crate::store::Writer), shared behind a mutex. It stops at
//! the next safe point when the shutdown token fires: fetches are dropped, a commit in
//! flight completes.

pub mod decode;
pub mod fetch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::rpc::types::{Filter, Log};
use futures::StreamExt;
use futures::future::BoxFuture;
use tidemark_db_client::DbError;
use tidemark_shared_types::BlockRef;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::ChainConfig;
use crate::rpc::{ChainRpc, Header, RpcError};
use crate::status::{Phase, Progress};
use crate::store::{Batch, Writer};
use decode::{DecodeError, Decoder, EventRow};
use fetch::RangeSize;

/// Why a pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The writer's database connection failed: the term ends and the lock is re-taken.
    #[error("database: {0}")]
    Db(#[from] DbError),
    /// An RPC error that retrying cannot fix (e.g. a single block rejected as too large).
    #[error("chain {chain_id}: {source}")]
    Rpc {
        /// Chain.
        chain_id: u64,
        /// Cause.
        source: RpcError,
    },
    /// The node returned malformed logs.
    #[error("chain {chain_id}: {source}")]
    Decode {
        /// Chain.
        chain_id: u64,
        /// Cause.
        source: DecodeError,
    },
    /// The endpoint serves another chain than configured.
    #[error("chain {configured}: the RPC endpoint reports chain id {reported}")]
    WrongChain {
        /// Configured id.
        configured: u64,
        /// Reported id.
        reported: u64,
    },
}

/// Blocks handled per follow step.
const FOLLOW_BATCH: u64 = 200;

/// A chain's pipeline.
pub struct ChainPipeline {
    pub(crate) chain: ChainConfig,
    pub(crate) rpc: ChainRpc,
    pub(crate) writer: Arc<Mutex<Writer>>,
    pub(crate) progress: Progress,
    pub(crate) shutdown: CancellationToken,
    decoder: Decoder,
    filter: Filter,
    size: RangeSize,
}

/// Outcome of one retried step: its value, or the shutdown signal.
pub enum Step<T> {
    /// The step finished.
    Done(T),
    /// Shutdown was requested first.
    Shutdown,
}

impl ChainPipeline {
    /// A pipeline for `chain`.
    pub fn new(
        chain: ChainConfig,
        rpc: ChainRpc,
        writer: Arc<Mutex<Writer>>,
        progress: Progress,
        shutdown: CancellationToken,
    ) -> Self {
        let decoder = Decoder::new(&chain);
        let filter = fetch::base_filter(&chain);
        let size = RangeSize::new(chain.max_block_range);
        Self { chain, rpc, writer, progress, shutdown, decoder, filter, size }
    }

    pub(crate) fn id(&self) -> u64 {
        self.chain.chain_id
    }

    /// Retries `f` on transient RPC errors with backoff, forever, until shutdown; records
    /// RPC health in the progress.
    pub(crate) async fn retry<T, F, Fut>(&self, what: &'static str, f: F) -> Result<Step<T>, PipelineError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, PipelineError>>,
    {
        let mut delay = Duration::from_millis(250);
        loop {
            let result = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(Step::Shutdown),
                r = f() => r,
            };
            match result {
                Ok(v) => {
                    self.progress.update(self.id(), |s| s.rpc_healthy = true);
                    return Ok(Step::Done(v));
                }
                Err(PipelineError::Rpc { source, .. }) if source.is_retryable() => {
                    self.progress.update(self.id(), |s| s.rpc_healthy = false);
                    tracing::warn!(target: "tidemark::pipeline", chain_id = self.id(), step = what, error = %source, retry_in_ms = delay.as_millis() as u64, "rpc unavailable; backing off");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Ok(Step::Shutdown),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn rpc_err(&self, source: RpcError) -> PipelineError {
        PipelineError::Rpc { chain_id: self.id(), source }
    }

    /// Runs until shutdown (`Ok`) or a failure that needs a new writer term (`Err`).
    pub async fn run(self) -> Result<(), PipelineError> {
        let id = self.id();
        let reported = match self
            .retry("chain id", || async { self.rpc.remote_chain_id().await.map_err(|e| self.rpc_err(e)) })
            .await?
        {
            Step::Done(v) => v,
            Step::Shutdown => return Ok(()),
        };
        if reported != id {
            return Err(PipelineError::WrongChain { configured: id, reported });
        }
        let start_n = self.chain.start_block();
        let end_n = self.chain.end_block();
        // Wait until the chain has reached the start block, then resolve it.
        let start = match self
            .retry("start block", || async {
                self.rpc.require_header(start_n).await.map_err(|e| self.rpc_err(e))
            })
            .await?
        {
            Step::Done(h) => h.block,
            Step::Shutdown => return Ok(()),
        };
        let checkpoint = self.writer.lock().await.checkpoint(id).await?;
        let head = match self
            .retry("head", || async { self.rpc.block_number().await.map_err(|e| self.rpc_err(e)) })
            .await?
        {
            Step::Done(h) => h,
            Step::Shutdown => return Ok(()),
        };
        let backfill_end_n = end_n.map_or(head, |e| e.min(head));
        let backfill_end = match self
            .retry("backfill end", || async {
                self.rpc.require_header(backfill_end_n).await.map_err(|e| self.rpc_err(e))
            })
            .await?
        {
            Step::Done(h) => h.block,
            Step::Shutdown => return Ok(()),
        };
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
        // Bulk backfill while the finalized part of the chain is far ahead.
        loop {
            let head = match self
                .retry("head", || async { self.rpc.block_number().await.map_err(|e| self.rpc_err(e)) })
                .await?
            {
                Step::Done(h) => h,
                Step::Shutdown => return Ok(()),
            };
            let safe = head.saturating_sub(self.chain.finality_depth).min(backfill_end_n);
            let next = cp.as_ref().map_or(start_n, |c| c.number + 1);
            if next > safe || safe - next < FOLLOW_BATCH.min(self.chain.max_block_range) && cp.is_some() {
                break;
            }
            match self.bulk(next, safe).await? {
                Step::Done(Some(last)) => cp = Some(last),
                Step::Done(None) => {}
                Step::Shutdown => return Ok(()),
            }
            if safe >= backfill_end_n {
                break;
            }
        }
        self.follow(cp, start_n, end_n).await
    }

    /// Fetches `[from, to]` in ranges, `max_concurrency` at a time, committing strictly
    /// in block order. Returns the last checkpoint.
    async fn bulk(&self, from: u64, to: u64) -> Result<Step<Option<BlockRef>>, PipelineError> {
        let id = self.id();
        // Ranges are planned lazily, so each takes the range size current when it starts.
        let size = &self.size;
        let mut next = from;
        let plan = std::iter::from_fn(move || {
            if next > to {
                return None;
            }
            let end = to.min(next.saturating_add(size.get() - 1));
            let range = (next, end);
            next = end + 1;
            Some(range)
        });
        let fetched = futures::stream::iter(plan)
            .map(|(a, b)| -> BoxFuture<'_, _> { Box::pin(self.fetch_range(a, b)) })
            .buffered(self.chain.max_concurrency);
        let mut fetched = std::pin::pin!(fetched);
        let mut last = None;
        loop {
            let item = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(Step::Shutdown),
                item = fetched.next() => item,
            };
            let Some(result) = item else { break };
            let (rows, end_header) = match result? {
                Step::Done(v) => v,
                Step::Shutdown => return Ok(Step::Shutdown),
            };
            let started = std::time::Instant::now();
            {
                let mut w = self.writer.lock().await;
                w.commit(Batch {
                    chain_id: id,
                    events: &rows,
                    headers: std::slice::from_ref(&end_header),
                    checkpoint: &end_header.block,
                    prune_below: Some(end_header.block.number.saturating_sub(self.chain.finality_depth)),
                })
                .await?;
            }
            metrics::histogram!("tidemark_commit_seconds").record(started.elapsed().as_secs_f64());
            self.committed(&rows, &end_header.block, None);
            last = Some(end_header.block);
        }
        Ok(Step::Done(last))
    }

    /// One range: end header first (so a lagging node cannot answer empty for blocks it
    /// does not have), then logs, checked against the end block's hash.
    async fn fetch_range(&self, from: u64, to: u64) -> Result<Step<(Vec<EventRow>, Header)>, PipelineError> {
        self.retry("fetch range", || async {
            let end = self.rpc.require_header(to).await.map_err(|e| self.rpc_err(e))?;
            let logs = fetch::logs_in_range(&self.rpc, &self.filter, from, to, &self.size)
                .await
                .map_err(|e| self.rpc_err(e))?;
            let mismatch = logs.iter().any(|l| {
                l.block_number == Some(to)
                    && l.block_hash.map(|h| format!("{h:#x}")) != Some(end.block.hash.clone())
            });
            if mismatch {
                return Err(self.rpc_err(RpcError::Transient {
                    message: format!("logs of block {to} disagree with its header; refetching"),
                }));
            }
            let known = HashMap::from([(to, end.clone())]);
            let rows = self.decode(&logs, &known).await?;
            Ok((rows, end))
        })
        .await
    }

    async fn decode(
        &self,
        logs: &[Log],
        known: &HashMap<u64, Header>,
    ) -> Result<Vec<EventRow>, PipelineError> {
        let ts = fetch::missing_timestamps(&self.rpc, logs, known, self.chain.max_concurrency)
            .await
            .map_err(|e| self.rpc_err(e))?;
        let mut rows = Vec::with_capacity(logs.len());
        for log in logs {
            if log.removed {
                continue;
            }
            let t = log
                .block_timestamp
                .or_else(|| log.block_number.and_then(|n| ts.get(&n).copied()))
                .unwrap_or(0);
            match self.decoder.decode(log, t) {
                Ok(Some(row)) => rows.push(row),
                Ok(None) => {}
                Err(source) => return Err(PipelineError::Decode { chain_id: self.id(), source }),
            }
        }
        rows.sort_by_key(|r| (r.block_number, r.log_index));
        Ok(rows)
    }

    fn committed(&self, rows: &[EventRow], cp: &BlockRef, known: Option<&BlockRef>) {
        let id = self.id();
        metrics::counter!("tidemark_events_indexed_total", "chain_id" => id.to_string())
            .increment(rows.len() as u64);
        metrics::gauge!("tidemark_latest_indexed_block", "chain_id" => id.to_string()).set(cp.number as f64);
        self.progress.update(id, |s| {
            let before_start = s.start.as_ref().map_or(cp.number, |b| b.number).saturating_sub(1);
            let prev = s.latest_indexed.as_ref().map_or(before_start, |p| p.number);
            s.blocks_indexed += cp.number.saturating_sub(prev);
            s.events_indexed += rows.len() as u64;
            s.latest_indexed = Some(cp.clone());
            if let Some(k) = known {
                s.latest_known = Some(k.clone());
            }
            if s.phase == Phase::Queued {
                s.phase = Phase::Backfill;
            }
        });
    }

    /// Follows the head: each step links new headers to the checkpoint by parent hash,
    /// checks every log against its block's header, and commits events, window and
    /// checkpoint together. A checkpoint that is no longer canonical triggers a reorg
    /// repair.
    async fn follow(
        &self,
        mut cp: Option<BlockRef>,
        start_n: u64,
        end_n: Option<u64>,
    ) -> Result<(), PipelineError> {
        let id = self.id();
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            if let (Some(end), Some(c)) = (end_n, &cp)
                && c.number >= end
            {
                self.progress.update(id, |s| {
                    s.end = Some(c.clone());
                    s.phase = Phase::Completed;
                });
                tracing::info!(target: "tidemark::pipeline", chain_id = id, end, "bounded range completed");
                self.shutdown.cancelled().await;
                return Ok(());
            }
            let step = self
                .retry("follow", || async {
                    let head = self.rpc.block_number().await.map_err(|e| self.rpc_err(e))?;
                    // Is the checkpoint still canonical?
                    if let Some(c) = &cp {
                        let canonical = self.rpc.header(c.number).await.map_err(|e| self.rpc_err(e))?;
                        if canonical.as_ref().map(|h| &h.block.hash) != Some(&c.hash) {
                            return Ok(FollowStep::Reorg);
                        }
                    }
                    let next = cp.as_ref().map_or(start_n, |c| c.number + 1);
                    let target = end_n.map_or(head, |e| e.min(head));
                    if next > target {
                        return Ok(FollowStep::Idle);
                    }
                    let to = target.min(next + FOLLOW_BATCH - 1);
                    let headers = fetch::headers(&self.rpc, next, to, self.chain.max_concurrency)
                        .await
                        .map_err(|e| self.rpc_err(e))?;
                    let mut parent = cp.as_ref().map(|c| c.hash.clone());
                    for h in &headers {
                        if parent.as_ref().is_some_and(|p| *p != h.parent_hash) {
                            return Ok(FollowStep::Unlinked);
                        }
                        parent = Some(h.block.hash.clone());
                    }
                    let logs = fetch::logs_in_range(&self.rpc, &self.filter, next, to, &self.size)
                        .await
                        .map_err(|e| self.rpc_err(e))?;
                    let by_number: HashMap<u64, Header> =
                        headers.iter().map(|h| (h.block.number, h.clone())).collect();
                    let consistent = logs.iter().all(|l| {
                        l.block_number.and_then(|n| by_number.get(&n)).map(|h| h.block.hash.clone())
                            == l.block_hash.map(|x| format!("{x:#x}"))
                    });
                    if !consistent {
                        return Ok(FollowStep::Unlinked);
                    }
                    let rows = self.decode(&logs, &by_number).await?;
                    Ok(FollowStep::Batch { rows, headers, head })
                })
                .await?;
            let step = match step {
                Step::Done(s) => s,
                Step::Shutdown => return Ok(()),
            };
            match step {
                FollowStep::Idle => {
                    // Nothing new: the head is the checkpoint (or the bounded end is reached).
                    self.progress.update(id, |s| {
                        s.latest_known = s.latest_indexed.clone();
                        if s.latest_indexed.is_some() && s.phase != Phase::Completed {
                            s.phase = Phase::Following;
                        }
                    });
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(self.chain.poll_interval) => {}
                    }
                }
                FollowStep::Unlinked => {
                    // The chain moved under us; the next step re-checks the checkpoint.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                FollowStep::Reorg => {
                    let Some(c) = cp.clone() else { continue };
                    cp = match crate::reorg::repair(self, &c, start_n).await? {
                        Step::Done(new_cp) => new_cp,
                        Step::Shutdown => return Ok(()),
                    };
                }
                FollowStep::Batch { rows, headers, head } => {
                    let Some(last) = headers.last().cloned() else { continue };
                    {
                        let mut w = self.writer.lock().await;
                        w.commit(Batch {
                            chain_id: id,
                            events: &rows,
                            headers: &headers,
                            checkpoint: &last.block,
                            prune_below: Some(last.block.number.saturating_sub(self.chain.finality_depth)),
                        })
                        .await?;
                    }
                    let known = if head == last.block.number { Some(last.block.clone()) } else { None };
                    self.committed(&rows, &last.block, known.as_ref());
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
}

enum FollowStep {
    Idle,
    Unlinked,
    Reorg,
    Batch { rows: Vec<EventRow>, headers: Vec<Header>, head: u64 },
}
