//! One chain's pipeline: resolve the range, backfill in bulk up to the finalized part of
//! the chain, then follow the head block by block with parent-hash checks, repairing
//! reorgs (see [`crate::reorg`]).
//!
//! Ownership: the pipeline owns its RPC client and progress entry; commits go through the
//! instance's single [`Writer`](crate::store::Writer), shared behind a mutex. It stops at
//! the next safe point when the shutdown token fires: fetches are dropped, a commit in
//! flight completes.

mod backfill;
pub mod decode;
pub mod fetch;
mod follow;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::rpc::types::{Filter, Log};
use tidemark_db_client::DbError;
use tidemark_shared_types::BlockRef;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::ChainConfig;
use crate::epochs::ChainEpochs;
use crate::rpc::{ChainRpc, Header, Interest, RpcError};
use crate::status::{Phase, Progress};
use crate::store::Writer;
use decode::{Decoder, EventRow};
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
}

/// Bulk backfill stops this many blocks (or the finality depth, when larger) below the
/// highest head seen; the follower, which checks every block's header and bloom, indexes
/// the rest.
pub const TIP_MARGIN: u64 = 64;

/// A chain's pipeline.
pub struct ChainPipeline {
    pub(crate) chain: ChainConfig,
    pub(crate) rpc: ChainRpc,
    pub(crate) writer: Arc<Mutex<Writer>>,
    pub(crate) progress: Progress,
    pub(crate) shutdown: CancellationToken,
    pub(crate) epochs: Arc<ChainEpochs>,
    decoder: Decoder,
    filter: Filter,
    interest: Interest,
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
        epochs: Arc<ChainEpochs>,
    ) -> Self {
        let decoder = Decoder::new(&chain);
        let filter = fetch::base_filter(&chain);
        let interest = fetch::interest(&chain);
        let size = RangeSize::new(chain.max_block_range);
        Self { chain, rpc, writer, progress, shutdown, epochs, decoder, filter, interest, size }
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
                    self.progress.update(self.id(), |s| {
                        s.rpc_healthy = true;
                        self.observe(s);
                    });
                    return Ok(Step::Done(v));
                }
                Err(PipelineError::Rpc { source, .. }) if source.is_retryable() => {
                    self.progress.update(self.id(), |s| {
                        s.rpc_healthy = false;
                        s.last_error = Some(source.to_string());
                        self.observe(s);
                    });
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

    /// Copies what the RPC client knows (endpoint standings, highest head) into `s`.
    fn observe(&self, s: &mut crate::status::ChainState) {
        s.endpoints = self.rpc.standings();
        let head = self.rpc.max_head();
        if head > 0 {
            s.head_seen = Some(head);
        }
    }

    pub(crate) fn rpc_err(&self, source: RpcError) -> PipelineError {
        PipelineError::Rpc { chain_id: self.id(), source }
    }

    /// Runs until shutdown (`Ok`) or a failure that needs a new writer term (`Err`).
    pub async fn run(self) -> Result<(), PipelineError> {
        let id = self.id();
        // The block every endpoint must agree on: the start block as first indexed (from
        // the stored status), so a failover endpoint on another chain is set aside instead
        // of being taken as evidence of a reorg.
        let stored_anchor = self.writer.lock().await.stored_start_block(id).await?;
        if let Some(anchor) = stored_anchor.clone() {
            self.rpc.set_anchor(anchor);
        }
        if let Step::Shutdown = self
            .retry("endpoint check", || async { self.rpc.ensure_usable().await.map_err(|e| self.rpc_err(e)) })
            .await?
        {
            return Ok(());
        }
        let start_n = self.chain.start_block();
        let end_n = self.chain.end_block();
        // Wait until the chain has reached the start block, then resolve it.
        let start = match self
            .retry("start block", || async { self.rpc.header(start_n).await.map_err(|e| self.rpc_err(e)) })
            .await?
        {
            Step::Done(h) => h.block,
            Step::Shutdown => return Ok(()),
        };
        if stored_anchor.is_none() {
            self.rpc.set_anchor(start.clone());
        }
        let checkpoint = self.writer.lock().await.checkpoint(id).await?;
        if let Some(c) = &checkpoint {
            self.rpc.set_floor(c.number);
        }
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
                self.rpc.header(backfill_end_n).await.map_err(|e| self.rpc_err(e))
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
        // A reorg while no indexer ran may have orphaned the checkpoint. Bulk ranges are not
        // linked to it by parent hash, so repair before backfilling on top of it.
        if let Some(c) = cp.clone() {
            let canonical = match self
                .retry("checkpoint", || async {
                    self.rpc.header(c.number).await.map_err(|e| self.rpc_err(e))
                })
                .await?
            {
                Step::Done(h) => h,
                Step::Shutdown => return Ok(()),
            };
            if canonical.block.hash != c.hash {
                cp = match crate::reorg::repair(&self, &c, start_n).await? {
                    Step::Done(ancestor) => ancestor,
                    Step::Shutdown => return Ok(()),
                };
                if cp.as_ref() == Some(&c) {
                    // Repair refused (the node serves another chain): no bulk ranges on top
                    // of it; the follower checks every step against the checkpoint.
                    self.epochs.drop_leftovers();
                    return self.follow(cp, start_n, end_n).await;
                }
            }
        }
        // Bulk backfill while the finalized part of the chain is far ahead.
        loop {
            let head = match self
                .retry("head", || async { self.rpc.block_number().await.map_err(|e| self.rpc_err(e)) })
                .await?
            {
                Step::Done(h) => h,
                Step::Shutdown => return Ok(()),
            };
            // Bulk ranges are checked against their end block only, so they stay clear of
            // the tip, where lagging nodes answer short; the follower checks every block.
            let safe = head.saturating_sub(self.chain.finality_depth.max(TIP_MARGIN)).min(backfill_end_n);
            let next = cp.as_ref().map_or(start_n, |c| c.number + 1);
            if next > safe
                || safe - next < follow::FOLLOW_BATCH.min(self.chain.max_block_range) && cp.is_some()
            {
                break;
            }
            match self.bulk(next, safe, safe).await? {
                Step::Done(Some(last)) => cp = Some(last),
                Step::Done(None) => {}
                Step::Shutdown => return Ok(()),
            }
            if safe >= backfill_end_n {
                break;
            }
        }
        // Unfinished epochs of an earlier run that bulk backfill did not retry.
        self.epochs.drop_leftovers();
        self.follow(cp, start_n, end_n).await
    }

    /// Decodes a range's logs into rows, in block and log order. Every log of a
    /// configured (address, topic0) inside its contract's range becomes a row, decoded or
    /// not (DESIGN §9.8); a log the node returned malformed (e.g. pending, without a block
    /// hash) makes the step fail as a transient RPC error, so the range is fetched again.
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
                Err(e) => return Err(self.rpc_err(RpcError::Transient { message: e.to_string() })),
            }
        }
        let undecoded: Vec<&EventRow> = rows.iter().filter(|r| r.decode_error.is_some()).collect();
        if let Some(first) = undecoded.first() {
            tracing::warn!(target: "tidemark::decode", chain_id = self.id(), count = undecoded.len(),
                contract = first.contract, event = first.event, block = first.block_number,
                error = first.decode_error.as_deref().unwrap_or_default(),
                "logs do not fit their ABI; stored raw with decode_error");
        }
        rows.sort_by_key(|r| (r.block_number, r.log_index));
        Ok(rows)
    }

    fn committed(&self, rows: &[EventRow], cp: &BlockRef, known: Option<&BlockRef>) {
        let id = self.id();
        self.rpc.set_floor(cp.number);
        metrics::counter!("tidemark_events_indexed_total", "chain_id" => id.to_string())
            .increment(rows.len() as u64);
        metrics::gauge!("tidemark_latest_indexed_block", "chain_id" => id.to_string()).set(cp.number as f64);
        self.progress.update(id, |s| {
            let before_start = s.start.as_ref().map_or(cp.number, |b| b.number).saturating_sub(1);
            let prev = s.latest_indexed.as_ref().map_or(before_start, |p| p.number);
            s.blocks_indexed += cp.number.saturating_sub(prev);
            s.events_indexed += rows.len() as u64;
            s.latest_indexed = Some(cp.clone());
            s.progressed();
            if let Some(k) = known {
                s.latest_known = Some(k.clone());
            }
            if s.phase == Phase::Queued {
                s.phase = Phase::Backfill;
            }
        });
    }
}
