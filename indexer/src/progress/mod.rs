//! Per-chain progress shared by the pipelines (which update it), the status loop (which
//! persists it as the snapshot, [`crate::status`]), the HTTP server and the progress
//! log ([`log`]).

pub mod log;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use tidemark_shared_types::{
    BlockRef, ChainIndexingConfig, ChainProgress, ChainSnapshot, IndexBuild, IndexingStatus, Latency,
    SinkStatus, Stalled, WebhookStatus,
};

use crate::rpc::Standing;

/// Phase of one chain's pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Start block not resolved yet, or nothing committed.
    Queued,
    /// Catching up.
    Backfill,
    /// At the head.
    Following,
    /// Bounded range done.
    Completed,
}

/// What the status loop and the HTTP server know about one chain.
#[derive(Debug, Clone)]
pub struct ChainState {
    /// Current phase.
    pub phase: Phase,
    /// Configured start block, once resolved.
    pub start: Option<BlockRef>,
    /// Configured end block number.
    pub end_number: Option<u64>,
    /// End block, once it exists on chain.
    pub end: Option<BlockRef>,
    /// Highest committed block.
    pub latest_indexed: Option<BlockRef>,
    /// Fixed at start: min(end, head).
    pub backfill_end: Option<BlockRef>,
    /// Highest block seen.
    pub latest_known: Option<BlockRef>,
    /// Whether the last RPC call succeeded.
    pub rpc_healthy: bool,
    /// Events committed by this process.
    pub events_indexed: u64,
    /// Blocks committed by this process.
    pub blocks_indexed: u64,
    /// Each RPC endpoint's label and standing, as last seen.
    pub endpoints: Vec<(String, Standing)>,
    /// Highest head the pipeline has seen.
    pub head_seen: Option<u64>,
    /// When the pipeline last made progress (a commit, or finding itself at the head), on
    /// tokio's clock (so tests can pause and advance it).
    pub progress_at: Instant,
    /// The same, in unix seconds.
    pub progress_unix: u64,
    /// The last error the pipeline retried, redacted.
    pub last_error: Option<String>,
    /// No progress for this long while the head is ahead: stalled.
    pub stall_after: Duration,
    /// Webhook ingestion counters, for a chain with webhooks configured.
    pub webhooks: Option<WebhookStatus>,
    /// The latest head→stored latencies (ms) of blocks announced by a webhook delivery.
    pub webhook_latency: VecDeque<u64>,
    /// The same, of blocks found by polling alone.
    pub polling_latency: VecDeque<u64>,
    /// Sources added to the chain that are still backfilling, with their progress.
    pub sources: Vec<tidemark_shared_types::SourceBackfill>,
    /// `(when, blocks_indexed, events_indexed)` about once a second over the last
    /// [`RATE_WINDOW`], oldest first: the rates of the snapshot and the progress log.
    samples: VecDeque<(Instant, u64, u64)>,
}

/// The window the rates are taken over.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Latency samples kept per path.
const LATENCY_SAMPLES: usize = 512;

impl ChainState {
    fn new(end_number: Option<u64>) -> Self {
        Self {
            phase: Phase::Queued,
            start: None,
            end_number,
            end: None,
            latest_indexed: None,
            backfill_end: None,
            latest_known: None,
            rpc_healthy: true,
            events_indexed: 0,
            blocks_indexed: 0,
            endpoints: Vec::new(),
            head_seen: None,
            progress_at: Instant::now(),
            progress_unix: unix_now(),
            last_error: None,
            stall_after: Duration::from_secs(30),
            webhooks: None,
            webhook_latency: VecDeque::new(),
            polling_latency: VecDeque::new(),
            samples: VecDeque::new(),
            sources: Vec::new(),
        }
    }

    /// Records the counters for the rates (at most one sample a second is kept).
    pub fn sample(&mut self, now: Instant) {
        if self.samples.back().is_some_and(|(at, ..)| now.duration_since(*at) < Duration::from_secs(1)) {
            return;
        }
        while self.samples.front().is_some_and(|(at, ..)| now.duration_since(*at) > RATE_WINDOW) {
            self.samples.pop_front();
        }
        self.samples.push_back((now, self.blocks_indexed, self.events_indexed));
    }

    /// Blocks/s and events/s over the samples of the last minute (up to the counters
    /// now), and the backfill's ETA at that rate; `None` before two samples a second
    /// apart exist.
    pub fn rates(&self, now: Instant) -> Option<ChainProgress> {
        let (at, blocks, events) = *self.samples.front()?;
        let secs = now.duration_since(at).as_secs_f64();
        if secs < 1.0 {
            return None;
        }
        let per_s = |now: u64, then: u64| (now.saturating_sub(then) as f64 / secs * 100.0).round() / 100.0;
        let blocks_per_second = per_s(self.blocks_indexed, blocks);
        let eta_seconds = match (self.phase, &self.backfill_end, &self.latest_indexed) {
            (Phase::Backfill | Phase::Queued, Some(end), Some(latest)) if blocks_per_second > 0.0 => {
                Some((end.number.saturating_sub(latest.number) as f64 / blocks_per_second).ceil() as u64)
            }
            _ => None,
        };
        Some(ChainProgress {
            blocks_per_second,
            events_per_second: per_s(self.events_indexed, events),
            eta_seconds,
        })
    }

    /// Records the head→stored latency of one block stored by this process.
    pub fn stored_after(&mut self, latency_ms: u64, announced: bool) {
        if self.webhooks.is_none() {
            return;
        }
        let ring = if announced { &mut self.webhook_latency } else { &mut self.polling_latency };
        if ring.len() == LATENCY_SAMPLES {
            ring.pop_front();
        }
        ring.push_back(latency_ms);
    }

    /// The chain's webhook status (with latencies), when it has webhooks.
    fn webhooks(&self) -> Option<WebhookStatus> {
        let mut w = self.webhooks.clone()?;
        w.webhook_latency = Latency::of(&self.webhook_latency.iter().copied().collect::<Vec<_>>());
        w.polling_latency = Latency::of(&self.polling_latency.iter().copied().collect::<Vec<_>>());
        Some(w)
    }

    /// Records progress: a commit, or the pipeline at the head.
    pub fn progressed(&mut self) {
        self.progress_at = Instant::now();
        self.progress_unix = unix_now();
        self.last_error = None;
    }

    /// Stalled: no progress for `stall_after` while the head seen is ahead of what is
    /// indexed (a completed chain never is).
    pub fn stalled(&self) -> Option<Stalled> {
        let behind = match (&self.head_seen, &self.latest_indexed) {
            (Some(head), Some(indexed)) => *head > indexed.number,
            (Some(_), None) => true,
            (None, _) => false,
        };
        (self.phase != Phase::Completed && behind && self.progress_at.elapsed() >= self.stall_after)
            .then(|| Stalled { since: self.progress_unix, last_error: self.last_error.clone() })
    }

    /// The chain's snapshot, or `None` while its start block is unknown.
    pub fn snapshot(&self) -> Option<ChainSnapshot> {
        let start = self.start.clone()?;
        let config = match &self.end {
            Some(end) => ChainIndexingConfig::Bounded { start_block: start, end_block: end.clone() },
            // An end beyond the head has no hash yet: left-bounded until it exists.
            None => ChainIndexingConfig::LeftBounded { start_block: start },
        };
        let Some(latest) = self.latest_indexed.clone() else {
            return Some(ChainSnapshot::Queued {
                stalled: self.stalled(),
                webhooks: self.webhooks(),
                config,
            });
        };
        Some(match self.phase {
            Phase::Queued | Phase::Backfill => match &self.backfill_end {
                Some(end) if end.number >= latest.number => ChainSnapshot::Backfill {
                    stalled: self.stalled(),
                    webhooks: self.webhooks(),
                    config,
                    latest_indexed_block: latest,
                    backfill_end_block: end.clone(),
                    progress: self.rates(Instant::now()),
                    sources: self.sources.clone(),
                },
                _ => ChainSnapshot::Following {
                    stalled: self.stalled(),
                    webhooks: self.webhooks(),
                    config,
                    latest_known_block: self.known_at_least(&latest),
                    latest_indexed_block: latest,
                    progress: self.rates(Instant::now()),
                    sources: self.sources.clone(),
                },
            },
            Phase::Following => ChainSnapshot::Following {
                stalled: self.stalled(),
                webhooks: self.webhooks(),
                config,
                latest_known_block: self.known_at_least(&latest),
                latest_indexed_block: latest,
                progress: self.rates(Instant::now()),
                sources: self.sources.clone(),
            },
            Phase::Completed => ChainSnapshot::Completed { config, latest_indexed_block: latest },
        })
    }

    fn known_at_least(&self, latest: &BlockRef) -> BlockRef {
        match &self.latest_known {
            Some(k) if k.number >= latest.number => k.clone(),
            _ => latest.clone(),
        }
    }
}

/// Shared progress of every chain, and of the deferred index build.
#[derive(Debug, Clone)]
pub struct Progress {
    chains: Arc<Mutex<BTreeMap<u64, ChainState>>>,
    index_build: Arc<Mutex<Option<IndexBuild>>>,
    /// Woken when the index build's state changes, so that the status shows it at once.
    index_build_changed: Arc<tokio::sync::Notify>,
    /// Each configured sink's state, as its task last reported it.
    sinks: Arc<Mutex<BTreeMap<String, SinkStatus>>>,
}

impl Progress {
    /// Progress for the configured chains: `(chain_id, end block)`.
    pub fn new(chains: impl IntoIterator<Item = (u64, Option<u64>)>) -> Self {
        Self {
            chains: Arc::new(Mutex::new(
                chains.into_iter().map(|(id, end)| (id, ChainState::new(end))).collect(),
            )),
            index_build: Arc::new(Mutex::new(None)),
            index_build_changed: Arc::new(tokio::sync::Notify::new()),
            sinks: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// Sets a sink's state (carried in every snapshot from now on).
    pub fn set_sink(&self, name: &str, status: SinkStatus) {
        self.sinks.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), status);
    }

    /// Every sink's state.
    pub fn sinks(&self) -> BTreeMap<String, SinkStatus> {
        self.sinks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The deferred index build, while one is pending or this process finished it.
    pub fn index_build(&self) -> Option<IndexBuild> {
        self.index_build.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets the deferred index build's state (carried in every snapshot from now on).
    pub fn set_index_build(&self, build: Option<IndexBuild>) {
        *self.index_build.lock().unwrap_or_else(|e| e.into_inner()) = build;
        self.index_build_changed.notify_waiters();
    }

    /// Completes at the next change of the index build's state (a change made while no
    /// one waits is not remembered).
    pub async fn index_build_changed(&self) {
        self.index_build_changed.notified().await;
    }

    /// True when every chain has finished its backfill: each follows its head or has
    /// completed its bounded range.
    pub fn backfills_done(&self) -> bool {
        self.lock().values().all(|s| matches!(s.phase, Phase::Following | Phase::Completed))
    }

    /// Sets how long a chain may go without progress, while behind, before it is
    /// reported stalled: `2 × poll_interval + 30 s`.
    pub fn set_poll_interval(&self, chain_id: u64, poll_interval: Duration) {
        self.update(chain_id, |s| s.stall_after = 2 * poll_interval + Duration::from_secs(30));
    }

    /// Marks a chain as receiving provider webhooks: its snapshot carries `webhooks`.
    pub fn enable_webhooks(&self, chain_id: u64) {
        self.update(chain_id, |s| s.webhooks = Some(WebhookStatus::default()));
    }

    /// Updates a chain's webhook counters (nothing for a chain without webhooks).
    pub fn webhooks(&self, chain_id: u64, f: impl FnOnce(&mut WebhookStatus)) {
        self.update(chain_id, |s| s.webhooks.as_mut().map(f));
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, ChainState>> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.chains.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on a chain's state.
    pub fn update<R>(&self, chain_id: u64, f: impl FnOnce(&mut ChainState) -> R) -> Option<R> {
        self.lock().get_mut(&chain_id).map(f)
    }

    /// A copy of every chain's state.
    pub fn states(&self) -> BTreeMap<u64, ChainState> {
        self.lock().clone()
    }

    /// Samples every chain's counters for its rates (see [`ChainState::rates`]).
    pub fn sample(&self) {
        let now = Instant::now();
        self.lock().values_mut().for_each(|s| s.sample(now));
    }

    /// The snapshot, once every chain's start block is known (its rates sampled first).
    pub fn snapshot(&self, now: u64) -> Option<IndexingStatus> {
        self.sample();
        let chains = self
            .lock()
            .iter()
            .map(|(id, s)| s.snapshot().map(|snap| (*id, snap)))
            .collect::<Option<BTreeMap<_, _>>>()?;
        match IndexingStatus::derive(chains, now) {
            Ok(mut s) => {
                s.index_build = self.index_build();
                s.sinks = self.sinks();
                Some(s)
            }
            Err(e) => {
                tracing::error!(target: "tidemark::status", error = %e, "inconsistent status; not written");
                None
            }
        }
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(number: u64) -> BlockRef {
        BlockRef { number, hash: format!("0x{number:064x}"), timestamp: 1_800_000_000 + number }
    }

    /// Stall detection on simulated time: no real waiting, no flakiness.
    #[tokio::test(start_paused = true)]
    async fn a_chain_behind_without_progress_is_stalled_after_its_poll_interval_bound() {
        let progress = Progress::new([(1, None), (2, Some(10))]);
        progress.set_poll_interval(1, Duration::from_secs(2));
        progress.set_poll_interval(2, Duration::from_secs(2));
        progress.update(1, |s| {
            s.phase = Phase::Backfill;
            s.latest_indexed = Some(block(5));
            s.head_seen = Some(100);
            s.progressed();
            s.last_error = Some("rpc: 429".into());
        });
        progress.update(2, |s| {
            s.phase = Phase::Completed;
            s.latest_indexed = Some(block(10));
            s.head_seen = Some(100);
        });
        let stalled = |id| progress.states()[&id].stalled();
        // 2 × 2 s + 30 s = 34 s without progress while behind.
        tokio::time::advance(Duration::from_secs(33)).await;
        assert_eq!(stalled(1), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        let s = stalled(1).expect("stalled after 34 s");
        assert_eq!(s.last_error.as_deref(), Some("rpc: 429"), "the stall names the error retried");
        // A completed chain is never stalled; progress clears a stall.
        assert_eq!(stalled(2), None);
        progress.update(1, ChainState::progressed);
        assert_eq!(stalled(1), None);
        // At the head (nothing to do) is not stalled either.
        progress.update(1, |s| s.latest_indexed = Some(block(100)));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(stalled(1), None);
    }

    /// The snapshot's rates: over the last minute, from the counters the pipelines
    /// bump, with the ETA while backfilling.
    #[tokio::test(start_paused = true)]
    async fn rates_cover_the_last_minute_and_give_the_backfill_eta() {
        let progress = Progress::new([(1, None)]);
        progress.update(1, |s| {
            s.start = Some(block(0));
            s.phase = Phase::Backfill;
            s.backfill_end = Some(block(10_000));
            s.latest_indexed = Some(block(0));
        });
        let rates = |p: &Progress| match &p.snapshot(0).expect("snapshot").omnichain_snapshot.chains[&1] {
            ChainSnapshot::Backfill { progress, .. } | ChainSnapshot::Following { progress, .. } => *progress,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(rates(&progress), None, "no rate before a second has passed");
        // 100 blocks and 1,000 events a second for 90 s: the window holds the last minute.
        for second in 1..=90u64 {
            tokio::time::advance(Duration::from_secs(1)).await;
            progress.update(1, |s| {
                s.blocks_indexed += 100;
                s.events_indexed += if second <= 30 { 5_000 } else { 1_000 };
                s.latest_indexed = Some(block(100 * second));
            });
            progress.sample();
        }
        let r = rates(&progress).expect("rates");
        assert_eq!(r.blocks_per_second, 100.0);
        assert_eq!(r.events_per_second, 1_000.0, "the first 30 s are out of the window");
        // 1,000 blocks left at 100 blocks/s.
        assert_eq!(r.eta_seconds, Some(10));
        progress.update(1, |s| s.phase = Phase::Following);
        assert_eq!(rates(&progress).expect("rates").eta_seconds, None, "no ETA at the head");
    }
}
