//! Epochs (DESIGN §8, after PowerLoom's epoch monitoring): each committed batch of one
//! chain is an epoch `{chainId, epochId, fromBlock, toBlock, stage, stages, error}` moving
//! `planned → fetched → decoded → stored → finalized`; `reorged` marks one rolled back.
//!
//! Cost: intermediate stages are recorded off the indexing path — the pipeline hands them
//! to the [`Recorder`] through a bounded channel, which coalesces them and flushes one bulk
//! upsert every 250 ms. `stored` is written inside the batch's commit transaction (see
//! [`crate::store::Writer::commit`]), and `finalized` by the same transaction for earlier
//! epochs whose last block is now `finality_depth` behind the head.
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

use serde::{Deserialize, Serialize};
use tidemark_db_client::{DbError, PgPool};
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

/// One entry of an epoch's stage history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageEntry {
    /// Stage reached.
    pub stage: EpochStage,
    /// When (unix seconds, millisecond precision, the indexer's clock).
    pub at: f64,
}

/// An epoch as the pipeline tracks it until it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Epoch {
    /// Chain.
    pub chain_id: u64,
    /// Per-chain id.
    pub id: i64,
    /// First block.
    pub from: u64,
    /// Last block.
    pub to: u64,
    /// History, oldest first.
    pub stages: Vec<StageEntry>,
    /// Last failure, as `<stage>: <message>`.
    pub error: Option<String>,
}

impl Epoch {
    /// The current stage.
    pub fn stage(&self) -> EpochStage {
        self.stages.last().map_or(EpochStage::Planned, |s| s.stage)
    }

    /// Appends `stage` now.
    pub fn push(&mut self, stage: EpochStage) {
        let at = now_secs();
        // Never decreasing, even if the wall clock steps back.
        let at = self.stages.last().map_or(at, |l| at.max(l.at));
        self.stages.push(StageEntry { stage, at });
    }

    /// History as JSON.
    pub fn stages_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.stages).unwrap_or(serde_json::Value::Array(Vec::new()))
    }
}

/// Unix seconds with millisecond precision.
pub fn now_secs() -> f64 {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    ms as f64 / 1000.0
}

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
                Epoch { chain_id: self.chain_id, id, from, to, stages: Vec::new(), error: None }
            }
        };
        epoch.push(EpochStage::Planned);
        self.record(&epoch);
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

/// An epoch left in an intermediate stage.
struct Unfinished {
    epoch_id: i64,
    from_block: i64,
    to_block: i64,
    stages: serde_json::Value,
    error: Option<String>,
}

impl Unfinished {
    fn from_row(r: &tokio_postgres::Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            epoch_id: r.try_get(0)?,
            from_block: r.try_get(1)?,
            to_block: r.try_get(2)?,
            stages: r.try_get(3)?,
            error: r.try_get(4)?,
        })
    }
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
        let s = self.schema.quoted();
        let chain = chain_id as i64;
        let mut w = self.writer.lock().await;
        let max: Option<i64> = w
            .query(&format!("SELECT max(epoch_id) FROM {s}.epochs WHERE chain_id = $1"), &[&chain])
            .await?
            .first()
            .map(|r| r.try_get(0))
            .transpose()?
            .flatten();
        let rows = w
            .query(
                &format!(
                    "SELECT epoch_id, from_block, to_block, stages, error FROM {s}.epochs
                      WHERE chain_id = $1 AND stage IN ('planned', 'fetched', 'decoded') ORDER BY epoch_id"
                ),
                &[&chain],
            )
            .await?
            .iter()
            .map(Unfinished::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut leftovers = BTreeMap::new();
        let mut stale = Vec::new();
        for r in rows {
            if checkpoint.is_some_and(|c| r.from_block as u64 <= c)
                || leftovers.contains_key(&(r.from_block as u64))
            {
                stale.push(r.epoch_id);
                continue;
            }
            let stages: Vec<StageEntry> = serde_json::from_value(r.stages).unwrap_or_default();
            leftovers.insert(
                r.from_block as u64,
                Epoch {
                    chain_id,
                    id: r.epoch_id,
                    from: r.from_block as u64,
                    to: r.to_block as u64,
                    stages,
                    error: r.error,
                },
            );
        }
        if !stale.is_empty() {
            w.execute(
                &format!(
                    "DELETE FROM {s}.epochs WHERE chain_id = $1 AND epoch_id = ANY($2)
                        AND stage IN ('planned', 'fetched', 'decoded')"
                ),
                &[&chain, &stale],
            )
            .await?;
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
        let s = self.schema.quoted();
        let result: Result<(), DbError> = async {
            let mut w = self.writer.lock().await;
            if !upserts.is_empty() {
                let chains: Vec<i64> = upserts.iter().map(|e| e.chain_id as i64).collect();
                let ids: Vec<i64> = upserts.iter().map(|e| e.id).collect();
                let froms: Vec<i64> = upserts.iter().map(|e| e.from as i64).collect();
                let tos: Vec<i64> = upserts.iter().map(|e| e.to as i64).collect();
                let stages: Vec<&str> = upserts.iter().map(|e| e.stage().as_str()).collect();
                let histories: Vec<serde_json::Value> = upserts.iter().map(|e| e.stages_json()).collect();
                let errors: Vec<Option<String>> = upserts.iter().map(|e| e.error.clone()).collect();
                w.execute(
                    &format!(
                        "INSERT INTO {s}.epochs AS e (chain_id, epoch_id, from_block, to_block, stage, stages, error, updated_at)
                         SELECT u.c, u.i, u.f, u.t, u.s, u.h, u.e, now()
                           FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::jsonb[], $7::text[])
                                AS u(c, i, f, t, s, h, e)
                         ON CONFLICT (chain_id, epoch_id) DO UPDATE
                            SET from_block = EXCLUDED.from_block, to_block = EXCLUDED.to_block, stage = EXCLUDED.stage,
                                stages = EXCLUDED.stages, error = EXCLUDED.error, updated_at = now()
                          WHERE e.stage IN ('planned', 'fetched', 'decoded')"
                    ),
                    &[&chains, &ids, &froms, &tos, &stages, &histories, &errors],
                )
                .await?;
            }
            if !discards.is_empty() {
                let chains: Vec<i64> = discards.iter().map(|((c, _), _)| *c as i64).collect();
                let ids: Vec<i64> = discards.iter().map(|((_, i), _)| *i).collect();
                w.execute(
                    &format!(
                        "DELETE FROM {s}.epochs e USING UNNEST($1::bigint[], $2::bigint[]) AS d(c, i)
                          WHERE e.chain_id = d.c AND e.epoch_id = d.i AND e.stage IN ('planned', 'fetched', 'decoded')"
                    ),
                    &[&chains, &ids],
                )
                .await?;
            }
            Ok(())
        }
        .await;
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
        let result = async {
            let mut conn = self.pool.get().await?;
            tidemark_db_client::epochs::query_epoch_summaries(&mut conn, &self.schema).await
        }
        .await;
        match result {
            Ok(s) => {
                if let Ok(mut guard) = self.summaries.write() {
                    *guard = s;
                }
            }
            Err(e) => tracing::debug!(target: "tidemark::epochs", error = %e, "epoch summary not refreshed"),
        }
    }

    async fn prune(&self, chain_ids: &[u64]) {
        let s = self.schema.quoted();
        for &chain_id in chain_ids {
            let (chain, retain) = (chain_id as i64, self.retain as i64);
            let result = self
                .writer
                .lock()
                .await
                .execute(
                    &format!(
                        "DELETE FROM {s}.epochs WHERE chain_id = $1 AND epoch_id <
                           (SELECT epoch_id FROM {s}.epochs WHERE chain_id = $1 ORDER BY epoch_id DESC OFFSET $2 - 1 LIMIT 1)"
                    ),
                    &[&chain, &retain],
                )
                .await;
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
