//! The state one chain's pipeline carries through its steps ([`ChainPipeline`]), how a
//! step fails ([`PipelineError`]) and the helpers every step shares: retrying transient
//! RPC errors, pausing until shutdown, decoding a range and recording a commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use alloy::rpc::types::{Filter, Log};
use tidemark_db_client::DbError;
use tidemark_shared_types::BlockRef;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::children::ChildSet;
use super::decode::{Decoder, EventRow};
use super::fetch::{self, RangeSize};
use crate::config::ChainConfig;
use crate::epochs::ChainEpochs;
use crate::progress::{Phase, Progress};
use crate::rpc::{ChainRpc, Header, Interest, RpcError};
use crate::store::Writer;
use crate::webhooks::ChainHints;

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
    /// Shutdown was requested: every step returns at its next safe point (a fetch is
    /// dropped, a commit in flight completes) and [`ChainPipeline::run`] ends with `Ok`.
    #[error("shutdown requested")]
    Shutdown,
}

/// A chain's pipeline.
pub struct ChainPipeline {
    pub(crate) chain: ChainConfig,
    pub(crate) rpc: ChainRpc,
    pub(crate) writer: Arc<Mutex<Writer>>,
    pub(crate) progress: Progress,
    pub(crate) shutdown: CancellationToken,
    pub(crate) epochs: Arc<ChainEpochs>,
    /// What webhook deliveries tell the follower, when the chain has webhooks.
    pub(crate) hints: Option<Arc<ChainHints>>,
    pub(super) decoder: Decoder,
    pub(super) filter: Filter,
    pub(super) interest: Interest,
    pub(super) size: RangeSize,
    /// The adaptive range size of factory children's queries.
    pub(super) child_size: RangeSize,
    /// The children of the chain's factory contracts known so far (see [`super::children`]).
    pub(super) children: std::sync::RwLock<ChildSet>,
    /// Bulk backfill: the first block whose creating logs are not in `children` yet. A
    /// range asks for its children's logs once every range below it has added its own.
    pub(super) discovered_below: tokio::sync::watch::Sender<u64>,
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
        let child_size = RangeSize::new(chain.max_block_range);
        Self {
            chain,
            rpc,
            writer,
            progress,
            shutdown,
            epochs,
            hints: None,
            decoder,
            filter,
            interest,
            child_size,
            size,
            children: Default::default(),
            discovered_below: tokio::sync::watch::Sender::new(0),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.chain.chain_id
    }

    /// Retries `f` on transient RPC errors with backoff, forever, until shutdown
    /// ([`PipelineError::Shutdown`]); records RPC health in the progress. A step that keeps
    /// state across attempts writes the loop itself with [`Self::attempt`] and [`Backoff`].
    pub(crate) async fn retry<T, Fut>(
        &self,
        what: &'static str,
        mut f: impl FnMut() -> Fut,
    ) -> Result<T, PipelineError>
    where
        Fut: std::future::Future<Output = Result<T, PipelineError>>,
    {
        let mut backoff = self.backoff(what);
        loop {
            match self.attempt(f()).await {
                Ok(v) => return Ok(v),
                Err(e) => backoff.wait_after(e).await?,
            }
        }
    }

    /// One attempt of a step: its outcome, or [`PipelineError::Shutdown`] as soon as
    /// shutdown is requested (the attempt is dropped). A success marks the RPC healthy.
    pub(crate) async fn attempt<T>(
        &self,
        step: impl std::future::Future<Output = Result<T, PipelineError>>,
    ) -> Result<T, PipelineError> {
        let v = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => return Err(PipelineError::Shutdown),
            r = step => r?,
        };
        self.progress.update(self.id(), |s| {
            s.rpc_healthy = true;
            self.observe(s);
        });
        Ok(v)
    }

    /// The backoff of a retried step named `what` (250 ms, doubling up to 10 s).
    pub(crate) fn backoff(&self, what: &'static str) -> Backoff<'_> {
        Backoff { pipeline: self, what, delay: Duration::from_millis(250) }
    }

    /// Waits `delay`, or returns [`PipelineError::Shutdown`] when shutdown comes first.
    pub(crate) async fn pause(&self, delay: Duration) -> Result<(), PipelineError> {
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(PipelineError::Shutdown),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }

    /// Shutdown as an error, to stop at a safe point with `?`.
    pub(crate) fn check_shutdown(&self) -> Result<(), PipelineError> {
        if self.shutdown.is_cancelled() { Err(PipelineError::Shutdown) } else { Ok(()) }
    }

    /// Copies what the RPC client knows (endpoint standings, highest head) into `s`.
    fn observe(&self, s: &mut crate::progress::ChainState) {
        s.endpoints = self.rpc.standings();
        let head = self.rpc.max_head();
        if head > 0 {
            s.head_seen = Some(head);
        }
    }

    /// The error of a lock whose holder panicked (never expected: the pipeline restarts).
    pub(super) fn poisoned(&self) -> PipelineError {
        self.rpc_err(RpcError::Fatal { message: "children set lock poisoned".into() })
    }

    pub(crate) fn rpc_err(&self, source: RpcError) -> PipelineError {
        PipelineError::Rpc { chain_id: self.id(), source }
    }

    /// Decodes a range's logs into rows, in block and log order. Every log of a
    /// configured (address, topic0) inside its contract's range becomes a row, decoded or
    /// not (DESIGN §9.8); a log the node returned malformed (e.g. pending, without a block
    /// hash) makes the step fail as a transient RPC error, so the range is fetched again.
    pub(super) async fn decode(
        &self,
        logs: &[Log],
        known: &HashMap<u64, Header>,
    ) -> Result<Vec<EventRow>, PipelineError> {
        let ts = fetch::missing_timestamps(&self.rpc, logs, known, self.chain.max_concurrency)
            .await
            .map_err(|e| self.rpc_err(e))?;
        let mut rows = Vec::with_capacity(logs.len());
        let children = self.children.read().map_err(|_| self.poisoned())?;
        for log in logs {
            if log.removed {
                continue;
            }
            let t = log
                .block_timestamp
                .or_else(|| log.block_number.and_then(|n| ts.get(&n).copied()))
                .unwrap_or(0);
            match self.decoder.decode_in(log, t, &children) {
                Ok(Some(row)) => rows.push(row),
                Ok(None) => {}
                Err(e) => return Err(self.rpc_err(RpcError::Transient { message: e.to_string() })),
            }
        }
        drop(children);
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

    pub(super) fn committed(&self, rows: &[EventRow], cp: &BlockRef, known: Option<&BlockRef>) {
        let id = self.id();
        self.rpc.set_floor(cp.number);
        metrics::counter!("tidemark_events_indexed_total", "chain_id" => id.to_string())
            .increment(rows.len() as u64);
        metrics::gauge!("tidemark_latest_indexed_block", "chain_id" => id.to_string()).set(cp.number as f64);
        let blocks = self.progress.update(id, |s| {
            let before_start = s.start.as_ref().map_or(cp.number, |b| b.number).saturating_sub(1);
            let prev = s.latest_indexed.as_ref().map_or(before_start, |p| p.number);
            let blocks = cp.number.saturating_sub(prev);
            s.blocks_indexed += blocks;
            s.events_indexed += rows.len() as u64;
            s.latest_indexed = Some(cp.clone());
            s.progressed();
            if let Some(k) = known {
                s.latest_known = Some(k.clone());
            }
            if s.phase == Phase::Queued {
                s.phase = Phase::Backfill;
            }
            blocks
        });
        metrics::counter!("tidemark_blocks_indexed_total", "chain_id" => id.to_string())
            .increment(blocks.unwrap_or(0));
    }
}

/// The waits between attempts of one retried step.
pub(crate) struct Backoff<'p> {
    pipeline: &'p ChainPipeline,
    what: &'static str,
    delay: Duration,
}

impl Backoff<'_> {
    /// After a failed attempt: waits and returns `Ok` when the error is a transient RPC
    /// error (recorded in the progress: RPC unhealthy, last error); returns the error
    /// itself otherwise, or [`PipelineError::Shutdown`] when shutdown comes first.
    pub(crate) async fn wait_after(&mut self, e: PipelineError) -> Result<(), PipelineError> {
        let p = self.pipeline;
        let PipelineError::Rpc { source, .. } = &e else { return Err(e) };
        if !source.is_retryable() {
            return Err(e);
        }
        p.progress.update(p.id(), |s| {
            s.rpc_healthy = false;
            s.last_error = Some(source.to_string());
            p.observe(s);
        });
        let retry_in_ms = u64::try_from(self.delay.as_millis()).unwrap_or(u64::MAX);
        tracing::warn!(target: "tidemark::pipeline", chain_id = p.id(), step = self.what, error = %source, retry_in_ms, "rpc unavailable; backing off");
        p.pause(self.delay).await?;
        self.delay = (self.delay * 2).min(Duration::from_secs(10));
        Ok(())
    }
}
