//! Epochs (DESIGN §8, after PowerLoom's epoch monitoring): each committed batch of one
//! chain is an epoch `{chainId, epochId, fromBlock, toBlock, stage, stages, error}` moving
//! `planned → fetched → decoded → stored → finalized`; `reorged` marks one rolled back.
//!
//! Cost: intermediate stages are recorded off the indexing path — the pipeline hands them
//! to the [`Recorder`] through a bounded channel, which coalesces them and flushes one bulk
//! upsert every 250 ms. `stored` is written inside the batch's commit transaction (see
//! [`crate::store::Writer::commit`]), and `finalized` by the same transaction for earlier
//! epochs whose last block is now `finality_depth` behind the head. The statements belong
//! to the db-client's `epochs` module; this module decides what to write and when.
//!
//! Invariants:
//! - every write here (stages, discards, pruning, stale-epoch cleanup) goes through the
//!   writer's lock-holding connection (DESIGN §3): a process that lost the lock writes
//!   no epoch; only the summary for the HTTP server is read through the pool;
//! - epoch ids increase per chain; finished epochs (`stored`, `finalized`) of a chain cover
//!   the indexed range with no gap and no overlap (a reorg rolls back to an epoch boundary,
//!   marks the epochs above it `reorged` and re-indexes: the replacements get new ids);
//! - a flush never moves an epoch backwards: upserts only touch rows still in an
//!   intermediate stage;
//! - an epoch left unfinished by a crash is retried under the same id with its history
//!   when the pipeline plans the same first block again, and is deleted otherwise, so none
//!   stays in an intermediate stage.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidemark_db_client::DbError;
pub use tidemark_db_client::writer::{Epoch, now_secs};
use tidemark_db_client::writer::{PgPool, epoch_summaries};
use tidemark_shared_types::SchemaName;
use tidemark_shared_types::epoch::EpochStage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::Writer;

/// Longest error text stored with a failed epoch (provider messages can be long).
pub const MAX_ERROR_CHARS: usize = 500;

/// `text` cut to [`MAX_ERROR_CHARS`] characters, with `…` where it was cut.
fn cut_error(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The writer, shared by the pipelines, the status loop and the recorder.
type SharedWriter = Arc<tokio::sync::Mutex<Writer>>;

enum Op {
    Upsert(Epoch),
    Discard { chain_id: u64, id: i64 },
}

/// A chain's epoch bookkeeping, shared by its pipeline's tasks.
pub struct ChainEpochs {
    chain_id: u64,
    enabled: bool,
    next_id: Mutex<i64>,
    /// Unfinished epochs found at start-up, by first block: retried when planned again.
    leftovers: Mutex<BTreeMap<u64, Epoch>>,
    tx: mpsc::Sender<Op>,
}

impl ChainEpochs {
    /// Whether epochs are recorded at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Plans an epoch for `[from, to]`: a leftover starting at `from` is retried under its
    /// id (its range is kept when it fits in `to`), otherwise a new id is drawn.
    pub fn plan(&self, from: u64, to: u64) -> Epoch {
        let reused = self.leftovers.lock().unwrap_or_else(|e| e.into_inner()).remove(&from);
        let mut epoch = match reused {
            Some(mut e) if e.to <= to => {
                e.error = e.error.or_else(|| Some("planned: retried after a restart".into()));
                e
            }
            other => {
                if let Some(e) = other {
                    self.discard(&e);
                }
                let mut next = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
                let id = *next;
                *next += 1;
                Epoch { chain_id: self.chain_id, id, from, to, stages: Vec::new(), error: None, source: None }
            }
        };
        epoch.push(EpochStage::Planned);
        self.record(&epoch);
        epoch
    }

    /// Plans an epoch of the added source `source` for `[from, to]`, under the chain's next
    /// id. It is written only with its range's commit (`stored`): a source range is small
    /// and retried from its stored progress, so its intermediate stages are not recorded.
    pub fn plan_source(&self, source: String, from: u64, to: u64) -> Epoch {
        let mut next = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
        let id = *next;
        *next += 1;
        let mut epoch = Epoch {
            chain_id: self.chain_id,
            id,
            from,
            to,
            stages: Vec::new(),
            error: None,
            source: Some(source),
        };
        epoch.push(EpochStage::Planned);
        epoch
    }

    /// Appends `stage` and records it.
    pub fn advance(&self, epoch: &mut Epoch, stage: EpochStage) {
        epoch.push(stage);
        self.record(epoch);
    }

    /// Records a failure in the current stage; the epoch keeps its history and is retried.
    ///
    /// The message is served publicly (`/v1/epochs`): it is cut to
    /// [`MAX_ERROR_CHARS`] characters (RPC URLs are already redacted from it).
    pub fn fail(&self, epoch: &mut Epoch, message: &str) {
        epoch.error = Some(cut_error(format!("{}: {message}", epoch.stage().as_str())));
        self.record(epoch);
    }

    /// Drops an epoch that will not be stored (e.g. its range changed under a reorg).
    pub fn discard(&self, epoch: &Epoch) {
        self.send(Op::Discard { chain_id: self.chain_id, id: epoch.id });
    }

    /// Deletes the leftovers that were not retried (called once backfill has moved past them).
    pub fn drop_leftovers(&self) {
        let left: Vec<Epoch> = std::mem::take(&mut *self.leftovers.lock().unwrap_or_else(|e| e.into_inner()))
            .into_values()
            .collect();
        for e in left {
            self.discard(&e);
        }
    }

    fn record(&self, epoch: &Epoch) {
        self.send(Op::Upsert(epoch.clone()));
    }

    /// Bounded and never blocking: every upsert carries the epoch's whole history and
    /// `stored` is written by the commit itself, so an update dropped under pressure only
    /// delays what readers see.
    fn send(&self, op: Op) {
        if self.enabled && self.tx.try_send(op).is_err() {
            metrics::counter!("tidemark_epoch_updates_dropped_total").increment(1);
        }
    }
}

/// The epoch recorder of one instance: owns the channel and the flushing task.
pub struct Recorder {
    enabled: bool,
    summaries: crate::http::SharedSummaries,
    writer: SharedWriter,
    pool: PgPool,
    schema: SchemaName,
    tx: mpsc::Sender<Op>,
    rx: Option<mpsc::Receiver<Op>>,
    retain: u64,
}

impl Recorder {
    /// A recorder keeping the newest `retain` epochs per chain (`enabled = false` records
    /// nothing). It writes through `writer` and reads its summary through `pool`.
    pub fn new(
        writer: SharedWriter,
        pool: PgPool,
        schema: SchemaName,
        retain: u64,
        enabled: bool,
        summaries: crate::http::SharedSummaries,
    ) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        Self { enabled, summaries, writer, pool, schema, tx, rx: Some(rx), retain }
    }

    /// Bookkeeping for one chain: the next id and the unfinished epochs above `checkpoint`
    /// (those at or below it are covered by finished epochs and deleted now).
    pub async fn chain(&self, chain_id: u64, checkpoint: Option<u64>) -> Result<Arc<ChainEpochs>, DbError> {
        let mut w = self.writer.lock().await;
        let (max, rows) = w.unfinished_epochs(chain_id).await?;
        let mut leftovers = BTreeMap::new();
        let mut stale = Vec::new();
        for e in rows {
            if checkpoint.is_some_and(|c| e.from <= c) || leftovers.contains_key(&e.from) {
                stale.push((chain_id, e.id));
                continue;
            }
            leftovers.insert(e.from, e);
        }
        if !stale.is_empty() {
            w.record_epochs(&[], &stale).await?;
        }
        Ok(Arc::new(ChainEpochs {
            chain_id,
            enabled: self.enabled,
            next_id: Mutex::new(max.map_or(1, |m| m + 1)),
            leftovers: Mutex::new(leftovers),
            tx: self.tx.clone(),
        }))
    }

    /// Flushes recorded stages every 250 ms and prunes old epochs every 10 s, until
    /// `shutdown`; then flushes what is left.
    pub async fn run(mut self, chain_ids: Vec<u64>, shutdown: CancellationToken) {
        let Some(mut rx) = self.rx.take() else { return };
        let mut pending: HashMap<(u64, i64), Option<Epoch>> = HashMap::new();
        let mut flush = tokio::time::interval(Duration::from_millis(250));
        let mut prune = tokio::time::interval(Duration::from_secs(10));
        let mut summarize = tokio::time::interval(Duration::from_secs(1));
        summarize.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                op = rx.recv() => match op {
                    Some(Op::Upsert(e)) => { pending.insert((e.chain_id, e.id), Some(e)); }
                    Some(Op::Discard { chain_id, id }) => { pending.insert((chain_id, id), None); }
                    None => break,
                },
                _ = flush.tick() => self.flush(&mut pending).await,
                _ = prune.tick() => self.prune(&chain_ids).await,
                _ = summarize.tick() => self.summarize().await,
                _ = shutdown.cancelled() => break,
            }
        }
        while let Ok(op) = rx.try_recv() {
            match op {
                Op::Upsert(e) => pending.insert((e.chain_id, e.id), Some(e)),
                Op::Discard { chain_id, id } => pending.insert((chain_id, id), None),
            };
        }
        self.flush(&mut pending).await;
    }

    async fn flush(&self, pending: &mut HashMap<(u64, i64), Option<Epoch>>) {
        if pending.is_empty() {
            return;
        }
        let batch: Vec<((u64, i64), Option<Epoch>)> = pending.drain().collect();
        let (upserts, discards): (Vec<_>, Vec<_>) = batch.iter().partition(|(_, e)| e.is_some());
        let upserts: Vec<&Epoch> = upserts.iter().filter_map(|(_, e)| e.as_ref()).collect();
        let discards: Vec<(u64, i64)> = discards.iter().map(|(k, _)| *k).collect();
        let result = self.writer.lock().await.record_epochs(&upserts, &discards).await;
        if let Err(e) = result {
            tracing::warn!(target: "tidemark::epochs", error = %e, "epoch stages not recorded; retrying");
            // Keep them for the next flush, unless newer entries arrived meanwhile.
            for (k, v) in batch {
                pending.entry(k).or_insert(v);
            }
        }
    }

    /// Refreshes the summary the HTTP server serves (one query a second, none per request).
    async fn summarize(&self) {
        if !self.enabled {
            return;
        }
        match epoch_summaries(&self.pool, &self.schema).await {
            Ok(s) => {
                if let Ok(mut guard) = self.summaries.write() {
                    *guard = s;
                }
            }
            Err(e) => tracing::debug!(target: "tidemark::epochs", error = %e, "epoch summary not refreshed"),
        }
    }

    async fn prune(&self, chain_ids: &[u64]) {
        for &chain_id in chain_ids {
            let result = self.writer.lock().await.prune_epochs(chain_id, self.retain).await;
            match result {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(target: "tidemark::epochs", chain_id, pruned = n, "old epochs pruned")
                }
                Err(e) => {
                    tracing::warn!(target: "tidemark::epochs", chain_id, error = %e, "epoch pruning failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_provider_errors_are_cut_on_a_character_boundary() {
        assert_eq!(cut_error("fetched: short".into()), "fetched: short");
        let long = "é".repeat(MAX_ERROR_CHARS + 100);
        let cut = cut_error(long);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
