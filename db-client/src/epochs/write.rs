//! The writer's statements on `epochs` (feature `writer`): the `stored` stage inside a
//! batch's commit, `finalized` and `reorged` marks, the recorder's bulk
//! upserts of intermediate stages, discards, pruning, and the start-up read of the epochs
//! a crash left unfinished.
//!
//! Invariant: an upsert of an intermediate stage never moves an epoch backwards — it only
//! touches rows still in `planned`, `fetched` or `decoded`.

use tidemark_shared_types::{EpochStage, EpochStageEntry};
use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use crate::error::{Result, stored_u64};
use crate::statements::{Statements, signed};

/// An epoch as the indexer tracks it until it is stored: one batch of one chain.
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
    pub stages: Vec<EpochStageEntry>,
    /// Last failure, as `<stage>: <message>`.
    pub error: Option<String>,
    /// The added source it belongs to (`None`: the chain's own).
    pub source: Option<String>,
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
        self.stages.push(EpochStageEntry { stage, at });
    }

    /// History as JSON.
    fn stages_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.stages).unwrap_or(serde_json::Value::Array(Vec::new()))
    }
}

/// Unix seconds with millisecond precision (the clock of stage histories).
pub fn now_secs() -> f64 {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    ms as f64 / 1000.0
}

/// Stages an epoch is in while its batch is on the way.
const UNFINISHED: &str = "('planned', 'fetched', 'decoded')";

impl<C: GenericClient + Sync> Statements<'_, C> {
    /// Stores `e` in stage `stored` (inside its batch's transaction).
    pub(crate) async fn store_epoch(&self, e: &Epoch) -> Result<()> {
        let sql = format!(
            "INSERT INTO {}.epochs (chain_id, epoch_id, from_block, to_block, stage, stages, error, source, updated_at)
             VALUES ($1, $2, $3, $4, 'stored', $5, $6, $7, now())
             ON CONFLICT (chain_id, epoch_id) DO UPDATE SET from_block = EXCLUDED.from_block,
                 to_block = EXCLUDED.to_block, stage = 'stored', stages = EXCLUDED.stages,
                 error = EXCLUDED.error, source = EXCLUDED.source, updated_at = now()",
            self.s
        );
        let params: [&(dyn ToSql + Sync); 7] = [
            &signed(e.chain_id, "chain_id")?,
            &e.id,
            &signed(e.from, "from_block")?,
            &signed(e.to, "to_block")?,
            &e.stages_json(),
            &e.error,
            &e.source,
        ];
        self.c.execute(&sql, &params).await?;
        Ok(())
    }

    /// Marks `chain_id`'s stored epochs ending at or below `upto` as finalized at `at`.
    pub(crate) async fn finalize_epochs(&self, chain_id: u64, upto: u64, at: f64) -> Result<()> {
        let sql = format!(
            "UPDATE {}.epochs SET stage = 'finalized', updated_at = now(),
                    stages = stages || jsonb_build_array(jsonb_build_object('stage', 'finalized', 'at', $3::float8))
              WHERE chain_id = $1 AND stage = 'stored' AND to_block <= $2",
            self.s
        );
        self.c.execute(&sql, &[&signed(chain_id, "chain_id")?, &signed(upto, "upto")?, &at]).await?;
        Ok(())
    }

    /// Marks `chain_id`'s finished epochs ending above block `above` as reorged at `at`.
    pub(crate) async fn reorg_epochs(&self, chain_id: u64, above: i64, at: f64) -> Result<()> {
        let sql = format!(
            "UPDATE {}.epochs SET stage = 'reorged', updated_at = now(),
                    stages = stages || jsonb_build_array(jsonb_build_object('stage', 'reorged', 'at', $3::float8))
              WHERE chain_id = $1 AND to_block > $2 AND stage IN ('stored', 'finalized')",
            self.s
        );
        self.c.execute(&sql, &[&signed(chain_id, "chain_id")?, &above, &at]).await?;
        Ok(())
    }

    /// Appends `delivered` to the history of every stored epoch whose entries each of the
    /// configured `sinks` has delivered: its events' highest cursor is at or below every
    /// sink's cursor (an epoch without events is delivered once stored). With
    /// `finalized_first` (a sink delivers finalized entries only), only finalized epochs.
    /// Does nothing until every configured sink has its row. Returns how many epochs.
    pub(crate) async fn deliver_epochs(
        &self,
        sinks: &[String],
        finalized_first: bool,
        at: f64,
    ) -> Result<u64> {
        let sql = format!(
            "WITH floor AS (SELECT min(cursor) AS c, count(*) AS n FROM {s}.sink_cursors WHERE name = ANY($1))
             UPDATE {s}.epochs e SET updated_at = now(),
                    stages = e.stages || jsonb_build_array(jsonb_build_object('stage', 'delivered', 'at', $3::float8))
               FROM floor
              WHERE floor.n = cardinality($1::text[]) AND floor.n > 0
                AND e.stage IN ('stored', 'finalized') AND (NOT $2 OR e.stage = 'finalized')
                AND NOT e.stages @> '[{{\"stage\": \"delivered\"}}]'
                AND coalesce((SELECT max(v.cursor) FROM {s}.events v WHERE v.chain_id = e.chain_id
                                 AND v.block_number BETWEEN e.from_block AND e.to_block), 0) <= floor.c",
            s = self.s
        );
        Ok(self.c.execute(&sql, &[&sinks, &finalized_first, &at]).await?)
    }

    /// Cuts `chain_id`'s finished epoch that spans the ancestor (`above`) back to it: its
    /// blocks above were orphaned, those up to it stay stored (or finalized), so a reorg
    /// rolls back only the orphaned blocks and epochs stay adjacent without overlap.
    pub(crate) async fn truncate_epochs(&self, chain_id: u64, above: i64) -> Result<()> {
        let sql = format!(
            "UPDATE {}.epochs SET to_block = $2, updated_at = now()
              WHERE chain_id = $1 AND from_block <= $2 AND to_block > $2 AND stage IN ('stored', 'finalized')",
            self.s
        );
        self.c.execute(&sql, &[&signed(chain_id, "chain_id")?, &above]).await?;
        Ok(())
    }

    /// `chain_id`'s highest epoch id, and its epochs still in an intermediate stage (left
    /// by a crash), by id.
    pub(crate) async fn unfinished_epochs(&self, chain_id: u64) -> Result<(Option<i64>, Vec<Epoch>)> {
        let chain = signed(chain_id, "chain_id")?;
        let max_sql = format!("SELECT max(epoch_id) FROM {}.epochs WHERE chain_id = $1", self.s);
        let max: Option<i64> = self.c.query_one(&max_sql, &[&chain]).await?.try_get(0)?;
        let sql = format!(
            "SELECT epoch_id, from_block, to_block, stages, error FROM {}.epochs
              WHERE chain_id = $1 AND stage IN {UNFINISHED} AND source IS NULL ORDER BY epoch_id",
            self.s
        );
        let mut unfinished = Vec::new();
        for r in self.c.query(&sql, &[&chain]).await? {
            let (from, to, stages): (i64, i64, serde_json::Value) =
                (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
            unfinished.push(Epoch {
                chain_id,
                id: r.try_get(0)?,
                from: stored_u64(from, "epochs", "from_block")?,
                to: stored_u64(to, "epochs", "to_block")?,
                stages: serde_json::from_value(stages).unwrap_or_default(),
                error: r.try_get(4)?,
                source: None,
            });
        }
        Ok((max, unfinished))
    }

    /// Upserts epochs in their current (intermediate) stage, in one statement; epochs
    /// that moved on (stored, finalized, reorged) are left alone.
    pub(crate) async fn upsert_unfinished_epochs(&self, epochs: &[&Epoch]) -> Result<()> {
        let sql = format!(
            "INSERT INTO {}.epochs AS e (chain_id, epoch_id, from_block, to_block, stage, stages, error, updated_at)
             SELECT u.c, u.i, u.f, u.t, u.s, u.h, u.e, now()
               FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::jsonb[], $7::text[])
                    AS u(c, i, f, t, s, h, e)
             ON CONFLICT (chain_id, epoch_id) DO UPDATE
                SET from_block = EXCLUDED.from_block, to_block = EXCLUDED.to_block, stage = EXCLUDED.stage,
                    stages = EXCLUDED.stages, error = EXCLUDED.error, updated_at = now()
              WHERE e.stage IN {UNFINISHED}",
            self.s
        );
        let chains: Vec<i64> =
            epochs.iter().map(|e| signed(e.chain_id, "chain_id")).collect::<Result<_>>()?;
        let ids: Vec<i64> = epochs.iter().map(|e| e.id).collect();
        let froms: Vec<i64> = epochs.iter().map(|e| signed(e.from, "from_block")).collect::<Result<_>>()?;
        let tos: Vec<i64> = epochs.iter().map(|e| signed(e.to, "to_block")).collect::<Result<_>>()?;
        let stages: Vec<&str> = epochs.iter().map(|e| e.stage().as_str()).collect();
        let histories: Vec<serde_json::Value> = epochs.iter().map(|e| e.stages_json()).collect();
        let errors: Vec<Option<&str>> = epochs.iter().map(|e| e.error.as_deref()).collect();
        self.c.execute(&sql, &[&chains, &ids, &froms, &tos, &stages, &histories, &errors]).await?;
        Ok(())
    }

    /// Deletes the epochs `(chain_id, epoch_id)` that are still unfinished.
    pub(crate) async fn discard_epochs(&self, keys: &[(u64, i64)]) -> Result<()> {
        let sql = format!(
            "DELETE FROM {}.epochs e USING UNNEST($1::bigint[], $2::bigint[]) AS d(c, i)
              WHERE e.chain_id = d.c AND e.epoch_id = d.i AND e.stage IN {UNFINISHED}",
            self.s
        );
        let chains: Vec<i64> = keys.iter().map(|(c, _)| signed(*c, "chain_id")).collect::<Result<_>>()?;
        let ids: Vec<i64> = keys.iter().map(|(_, i)| *i).collect();
        self.c.execute(&sql, &[&chains, &ids]).await?;
        Ok(())
    }

    /// Deletes `chain_id`'s epochs older than its newest `retain`; returns how many.
    pub(crate) async fn prune_epochs(&self, chain_id: u64, retain: u64) -> Result<u64> {
        let s = &self.s;
        let sql = format!(
            "DELETE FROM {s}.epochs WHERE chain_id = $1 AND epoch_id <
               (SELECT epoch_id FROM {s}.epochs WHERE chain_id = $1 ORDER BY epoch_id DESC OFFSET $2::bigint - 1 LIMIT 1)"
        );
        Ok(self.c.execute(&sql, &[&signed(chain_id, "chain_id")?, &signed(retain, "retain")?]).await?)
    }
}
