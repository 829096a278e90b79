//! The simulation loop: head polling, reorg detection, fault decisions and the shuffle
//! buffer; the deliveries themselves go to the senders ([`super::send`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use alloy::primitives::B256;
use alloy::providers::{Provider, RootProvider};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::payload::{alchemy_delivery, fetch_block, standard_delivery};
use super::send::{Job, Shared};
use super::sign::standard_signer;
use super::{Delivery, FIRST_SEQUENCE, SimError, SimOptions, SimSummary, WebhookFormat};

/// Progress is logged this often.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Buffered (shuffled) deliveries are all released when no new block came for this long.
const SHUFFLE_IDLE_FLUSH: Duration = Duration::from_secs(1);
/// Block hashes remembered to detect reorgs.
const RECENT_HASHES: usize = 256;
/// Consecutive failed polls after which the run fails.
const MAX_POLL_FAILURES: u32 = 100;
/// Deliveries in progress (sending, retrying or waiting for a permit) beyond which no
/// new block is read: a long backlog is generated as it drains.
const MAX_IN_PROGRESS: usize = 4_096;
/// Longest wait before a duplicate re-send.
const MAX_DUPLICATE_DELAY_MS: u64 = 1_000;

/// Watches the chain and delivers its blocks as `opts` says until every block up to
/// [`SimOptions::until_block`] was delivered (or dropped or given up), or until
/// `shutdown` fires; requests in flight then finish, pending retries are abandoned.
///
/// # Errors
/// Invalid options, an unreachable chain at start, or 100 failed polls
/// in a row.
pub async fn run(opts: SimOptions, shutdown: CancellationToken) -> Result<SimSummary, SimError> {
    opts.validate()?;
    let rpc = crate::provider(&opts.rpc_url).map_err(|e| SimError::InvalidUrl(e.to_string()))?;
    let client =
        reqwest::Client::builder().timeout(opts.request_timeout).build().map_err(SimError::Client)?;
    let signer = match opts.format {
        WebhookFormat::Standard => Some(standard_signer(&opts.secret)?),
        WebhookFormat::Alchemy => None,
    };
    let head = rpc.get_block_number().await.map_err(SimError::rpc("eth_blockNumber"))?;
    let next = opts.from_block.unwrap_or(head + 1);
    tracing::info!(
        endpoint = %opts.endpoint,
        format = %opts.format,
        from_block = next,
        until_block = ?opts.until_block,
        "webhook simulator started"
    );
    let rng = match opts.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };
    // Down after 0 blocks: down from the start.
    let down_until = (opts.down_after_blocks == Some(0)).then(|| Instant::now() + opts.down_for);
    let shared = Arc::new(Shared {
        client,
        signer,
        permits: Semaphore::new(opts.concurrency),
        stats: Mutex::new(SimSummary::default()),
        down_until: Mutex::new(down_until),
        shutdown,
        opts,
    });
    let mut sim = Sim {
        shared,
        rpc,
        rng,
        next,
        sequence: FIRST_SEQUENCE,
        recent: BTreeMap::new(),
        buffer: Vec::new(),
        tasks: JoinSet::new(),
    };
    sim.watch().await?;
    let summary = sim.shared.stats().clone();
    tracing::info!(
        blocks = summary.blocks,
        sent = summary.sent,
        accepted = summary.accepted,
        given_up = summary.given_up,
        "webhook simulator stopped"
    );
    Ok(summary)
}

struct Sim {
    shared: Arc<Shared>,
    rpc: RootProvider,
    rng: StdRng,
    next: u64,
    sequence: u128,
    recent: BTreeMap<u64, B256>,
    buffer: Vec<Job>,
    tasks: JoinSet<()>,
}

impl Sim {
    async fn watch(&mut self) -> Result<(), SimError> {
        let shutdown = self.shared.shutdown.clone();
        let mut poll = tokio::time::interval(self.shared.opts.poll);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut report = tokio::time::interval_at(Instant::now() + REPORT_EVERY, REPORT_EVERY);
        let mut last_block = Instant::now();
        let mut failures = 0u32;
        while !self.reached_until() {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = report.tick() => { self.report(); continue; }
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    log_join(done);
                    continue;
                }
                _ = poll.tick() => {}
            }
            match self.catch_up().await {
                Ok(generated) => {
                    failures = 0;
                    if generated > 0 {
                        last_block = Instant::now();
                    }
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "polling the chain failed");
                    if failures >= MAX_POLL_FAILURES {
                        return Err(e);
                    }
                }
            }
            if !self.buffer.is_empty() && (last_block.elapsed() >= SHUFFLE_IDLE_FLUSH || self.reached_until())
            {
                self.flush();
            }
        }
        if shutdown.is_cancelled() {
            if !self.buffer.is_empty() {
                tracing::info!(unsent = self.buffer.len(), "stopping: buffered deliveries not sent");
            }
        } else {
            self.flush();
        }
        // Senders stop at the shutdown token themselves; requests in flight are bounded by
        // the request timeout.
        while let Some(done) = tokio::select! {
            done = self.tasks.join_next() => done,
            _ = report.tick() => { self.report(); Some(Ok(())) }
        } {
            log_join(done);
        }
        Ok(())
    }

    fn reached_until(&self) -> bool {
        self.shared.opts.until_block.is_some_and(|until| self.next > until)
    }

    /// Generates the deliveries of every block up to the head; returns how many.
    async fn catch_up(&mut self) -> Result<u64, SimError> {
        while let Some(done) = self.tasks.try_join_next() {
            log_join(done);
        }
        let head = self.rpc.get_block_number().await.map_err(SimError::rpc("eth_blockNumber"))?;
        let last = self.shared.opts.until_block.map_or(head, |until| until.min(head));
        let mut generated = 0;
        while self.next <= last
            && !self.shared.shutdown.is_cancelled()
            && self.tasks.len() + self.buffer.len() < MAX_IN_PROGRESS
        {
            let number = self.next;
            let Some(block) = fetch_block(&self.rpc, number, &self.shared.opts.addresses).await? else {
                break; // The head moved back (a reorg): next poll.
            };
            if let Some(prev) = number.checked_sub(1).and_then(|p| self.recent.get(&p))
                && *prev != block.parent_hash
            {
                self.rewind(number - 1).await?;
                continue;
            }
            self.recent.insert(number, block.hash);
            while self.recent.len() > RECENT_HASHES {
                self.recent.pop_first();
            }
            let id = self.shared.opts.format.new_id(&mut self.rng);
            let delivery = match self.shared.opts.format {
                WebhookFormat::Alchemy => alchemy_delivery(&block, id, SystemTime::now(), self.sequence)?,
                WebhookFormat::Standard => standard_delivery(&block, id)?,
            };
            self.sequence += 1;
            self.next += 1;
            generated += 1;
            self.generated(delivery);
        }
        Ok(generated)
    }

    /// Block `from` was replaced: walks back to the newest remembered block still on the
    /// chain and continues after it (a provider sends the new blocks as they come).
    async fn rewind(&mut self, from: u64) -> Result<(), SimError> {
        let mut number = from;
        while let Some(known) = self.recent.get(&number).copied() {
            let canonical = fetch_block(&self.rpc, number, &[]).await?.map(|b| b.hash);
            if canonical == Some(known) {
                break;
            }
            self.recent.remove(&number);
            match number.checked_sub(1) {
                Some(n) => number = n,
                None => break,
            }
        }
        let resume = if self.recent.contains_key(&number) { number + 1 } else { number };
        tracing::info!(
            replaced_from = resume,
            replaced_to = self.next - 1,
            "reorg: delivering the new blocks"
        );
        self.recent.retain(|n, _| *n < resume);
        self.next = resume;
        Ok(())
    }

    /// Draws the faults of a new delivery and buffers it.
    fn generated(&mut self, delivery: Delivery) {
        let opts = &self.shared.opts;
        let blocks = {
            let mut stats = self.shared.stats();
            stats.blocks += 1;
            stats.blocks
        };
        if opts.down_after_blocks == Some(blocks) && !opts.down_for.is_zero() {
            tracing::info!(blocks, down_for = ?opts.down_for, "receiver down: deliveries wait");
            *self.shared.down_until.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(Instant::now() + opts.down_for);
        }
        if self.rng.random_bool(opts.drop) {
            self.shared.stats().dropped += 1;
            tracing::debug!(block = delivery.block_number, id = %delivery.id, "dropped");
            return;
        }
        let forge = self.rng.random_bool(opts.forge);
        let duplicate_after = self
            .rng
            .random_bool(opts.duplicate)
            .then(|| Duration::from_millis(self.rng.random_range(0..=MAX_DUPLICATE_DELAY_MS)));
        self.buffer.push(Job { delivery, forge, duplicate_after });
        if self.buffer.len() >= opts.shuffle_window.max(1) {
            let pick = self.rng.random_range(0..self.buffer.len());
            let job = self.buffer.remove(pick);
            self.release(job);
        }
    }

    /// Releases every buffered delivery, in random order.
    fn flush(&mut self) {
        while !self.buffer.is_empty() {
            let pick = self.rng.random_range(0..self.buffer.len());
            let job = self.buffer.remove(pick);
            self.release(job);
        }
    }

    fn release(&mut self, job: Job) {
        self.tasks.spawn(self.shared.clone().deliver(job));
    }

    fn report(&self) {
        let s = self.shared.stats().clone();
        tracing::info!(
            blocks = s.blocks,
            next_block = self.next,
            sent = s.sent,
            accepted = s.accepted,
            retries = s.retries,
            dropped = s.dropped,
            duplicates = s.duplicates_sent,
            forged = s.forged,
            given_up = s.given_up,
            in_progress = self.tasks.len(),
            buffered = self.buffer.len(),
            "webhook simulator progress"
        );
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "a delivery task failed");
    }
}
