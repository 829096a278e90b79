//! `webhook_deliveries` and `pending_blocks` (DESIGN §8 "Webhook ingestion", feature
//! `writer`): provider pushes recorded before they are acknowledged, and the blocks they
//! announce parked until the follower has stored that very block.
//!
//! Invariants:
//! - A delivery is recorded ([`record_delivery`]) before its 2xx, at most once per
//!   provider delivery id. Any indexer process may insert (a standby too, so a failover
//!   loses nothing): the one insert-only exception to "every write is the writer's".
//! - A delivery carries no rows: what is stored always comes from the RPC. It only tells
//!   the writer which block to look for.
//! - Every other write (marking a delivery processed, parking, releasing, expiring,
//!   pruning) is a [`Statements`] method, run on the writer's lock-holding connection.
//! - A parked block leaves `pending_blocks` only when a commit stored that number with
//!   that hash (released), or after the TTL (expired).

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;
use tidemark_shared_types::SchemaName;
use tokio_postgres::GenericClient;

use crate::error::{Result, stored_u64};
use crate::pool::PgPool;
use crate::statements::{Statements, narrow, signed};

/// The channel on which a recorded delivery is announced; the payload is the instance
/// schema.
pub const WEBHOOK_CHANNEL: &str = "tidemark_webhooks";

/// A valid delivery, as the endpoint parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery<'a> {
    /// `alchemy` or `standard`.
    pub provider: &'a str,
    /// Chain id from the path.
    pub chain_id: u64,
    /// The provider's delivery id (idempotency key).
    pub delivery_id: &'a str,
    /// The announced block.
    pub block_number: u64,
    /// Its 0x hash.
    pub block_hash: &'a str,
    /// Its parent's 0x hash, when the payload has it.
    pub parent_hash: Option<&'a str>,
    /// The provider's sequence number (decimal digits), when it has one.
    pub sequence: Option<&'a str>,
    /// Logs in the payload.
    pub log_count: u32,
}

/// What [`record_delivery`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Stored; the writer is told.
    New,
    /// Its id was recorded before: nothing new.
    Duplicate,
    /// The block is at or below the finalized checkpoint: nothing stored.
    Final,
}

#[derive(QueryableByName)]
struct RecordRow {
    #[diesel(sql_type = Bool)]
    is_final: bool,
    #[diesel(sql_type = Bool)]
    inserted: bool,
}

/// Records `d` unless its id was recorded before or its block is at or below
/// `checkpoint − finality_depth`, and announces a new row on [`WEBHOOK_CHANNEL`], in one
/// statement. Fails when the instance has no webhook tables yet (no writer of layout 6
/// ran): the endpoint answers 503 and the provider retries.
pub async fn record_delivery(
    pool: &PgPool,
    schema: &SchemaName,
    d: &NewDelivery<'_>,
    finality_depth: u64,
) -> Result<Recorded> {
    let s = schema.quoted();
    let sql = format!(
        "WITH fin AS (SELECT EXISTS (SELECT 1 FROM {s}.checkpoints WHERE chain_id = $2 AND block_number - $9 >= $4) AS f),
              ins AS (INSERT INTO {s}.webhook_deliveries
                          (provider, chain_id, delivery_id, block_number, block_hash, parent_hash, sequence, log_count)
                      SELECT $1, $2, $3, $4, $5, $6, $7::numeric, $8 WHERE NOT (SELECT f FROM fin)
                      ON CONFLICT (provider, chain_id, delivery_id) DO NOTHING RETURNING id),
              n AS (SELECT pg_notify($10, $11) FROM ins)
         SELECT (SELECT f FROM fin) AS is_final, EXISTS (SELECT 1 FROM ins) AS inserted, (SELECT count(*) FROM n) AS _n"
    );
    let chain_id = signed(d.chain_id, "chain_id")?;
    let number = signed(d.block_number, "block number")?;
    let depth = signed(finality_depth, "finality_depth")?;
    let logs: i32 = narrow(u64::from(d.log_count), "log count")?;
    let row: RecordRow = pool
        .run(async |c| {
            Ok(diesel::sql_query(sql)
                .bind::<Text, _>(d.provider)
                .bind::<BigInt, _>(chain_id)
                .bind::<Text, _>(d.delivery_id)
                .bind::<BigInt, _>(number)
                .bind::<Text, _>(d.block_hash)
                .bind::<Nullable<Text>, _>(d.parent_hash)
                .bind::<Nullable<Text>, _>(d.sequence)
                .bind::<Integer, _>(logs)
                .bind::<BigInt, _>(depth)
                .bind::<Text, _>(WEBHOOK_CHANNEL)
                .bind::<Text, _>(schema.as_str())
                .get_result(c)
                .await?)
        })
        .await?;
    Ok(match (row.is_final, row.inserted) {
        (true, _) => Recorded::Final,
        (false, true) => Recorded::New,
        (false, false) => Recorded::Duplicate,
    })
}

/// Listens on [`WEBHOOK_CHANNEL`] and calls `wake` once listening and at each delivery
/// recorded for `schema` (by any process); returns when the connection ends or fails.
pub async fn listen_deliveries(pool: &PgPool, schema: &SchemaName, mut wake: impl FnMut()) -> Result<()> {
    pool.listen(WEBHOOK_CHANNEL, |payload| {
        if payload.is_none_or(|p| p == schema.as_str()) {
            wake();
        }
    })
    .await
}

/// A recorded delivery not processed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    /// Row id.
    pub id: i64,
    /// Chain.
    pub chain_id: u64,
    /// The provider's delivery id.
    pub delivery_id: String,
    /// The announced block.
    pub block_number: u64,
    /// Its hash.
    pub block_hash: String,
}

/// What the writer did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The block is parked: the follower confirms it over RPC.
    Parked,
    /// That very block is stored already.
    Stored,
    /// At or below the finalized checkpoint: dropped.
    Final,
    /// A delivery with a higher sequence number announced another hash for this number.
    Superseded,
}

impl<C: GenericClient + Sync> Statements<'_, C> {
    /// Processes up to `limit` recorded deliveries, oldest first, in one statement: each
    /// announced block is parked unless it is final (at or below its chain's number in
    /// `finalized`), stored already (the window holds that hash), or superseded (a parked
    /// row for the number with another hash has a higher sequence number); every delivery
    /// is marked processed with its outcome. Returns them with their outcomes.
    pub(crate) async fn process_deliveries(
        &self,
        limit: i64,
        finalized: &[(u64, u64)],
    ) -> Result<Vec<(PendingDelivery, DeliveryOutcome)>> {
        let chains = finalized.iter().map(|(c, _)| signed(*c, "chain_id")).collect::<Result<Vec<i64>>>()?;
        let upto = finalized.iter().map(|(_, n)| signed(*n, "block number")).collect::<Result<Vec<i64>>>()?;
        // Several deliveries of one batch may announce the same block (another id, another
        // webhook): one pending row each (DISTINCT ON), the highest sequence kept.
        let sql = format!(
            "WITH d AS (SELECT id, chain_id, delivery_id, block_number, block_hash, sequence, received_at
                          FROM {s}.webhook_deliveries WHERE processed_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE),
                  o AS (SELECT d.*, CASE
                            WHEN d.block_number <= coalesce(f.upto, -1) THEN 'final'
                            WHEN EXISTS (SELECT 1 FROM {s}.blocks b WHERE b.chain_id = d.chain_id
                                            AND b.number = d.block_number AND b.hash = d.block_hash) THEN 'stored'
                            WHEN EXISTS (SELECT 1 FROM {s}.pending_blocks p WHERE p.chain_id = d.chain_id
                                            AND p.number = d.block_number AND p.hash <> d.block_hash
                                            AND p.sequence > d.sequence) THEN 'superseded'
                            ELSE 'parked' END AS outcome
                          FROM d LEFT JOIN unnest($2::bigint[], $3::bigint[]) AS f(chain_id, upto)
                            ON f.chain_id = d.chain_id),
                  ins AS (INSERT INTO {s}.pending_blocks (chain_id, number, hash, delivery_id, sequence, received_at)
                          SELECT DISTINCT ON (chain_id, block_number, block_hash)
                                 chain_id, block_number, block_hash, delivery_id, sequence, received_at
                            FROM o WHERE outcome = 'parked'
                           ORDER BY chain_id, block_number, block_hash, sequence DESC NULLS LAST
                          ON CONFLICT (chain_id, number, hash) DO UPDATE
                             SET sequence = greatest({s}.pending_blocks.sequence, EXCLUDED.sequence)),
                  upd AS (UPDATE {s}.webhook_deliveries w SET processed_at = now(), outcome = o.outcome
                            FROM o WHERE w.id = o.id)
             SELECT id, chain_id, delivery_id, block_number, block_hash, outcome FROM o ORDER BY id",
            s = self.s
        );
        self.c
            .query(&sql, &[&limit, &chains, &upto])
            .await?
            .iter()
            .map(|r| {
                let outcome = match r.try_get::<_, &str>(5)? {
                    "final" => DeliveryOutcome::Final,
                    "stored" => DeliveryOutcome::Stored,
                    "superseded" => DeliveryOutcome::Superseded,
                    _ => DeliveryOutcome::Parked,
                };
                let d = PendingDelivery {
                    id: r.try_get(0)?,
                    chain_id: stored_u64(r.try_get::<_, i64>(1)?, "webhook_deliveries", "chain_id")?,
                    delivery_id: r.try_get(2)?,
                    block_number: stored_u64(r.try_get::<_, i64>(3)?, "webhook_deliveries", "block_number")?,
                    block_hash: r.try_get(4)?,
                };
                Ok((d, outcome))
            })
            .collect()
    }

    /// Releases the parked blocks of `chain_id` among `stored` (the (number, hash) of
    /// every block a commit just stored); returns their numbers.
    pub(crate) async fn release_pending(&self, chain_id: u64, stored: &[(u64, &str)]) -> Result<Vec<u64>> {
        let numbers = stored.iter().map(|(n, _)| signed(*n, "block number")).collect::<Result<Vec<i64>>>()?;
        let hashes: Vec<&str> = stored.iter().map(|(_, h)| *h).collect();
        let sql = format!(
            "DELETE FROM {}.pending_blocks p USING unnest($2::bigint[], $3::text[]) AS b(number, hash)
              WHERE p.chain_id = $1 AND p.number = b.number AND p.hash = b.hash
             RETURNING p.number",
            self.s
        );
        self.c
            .query(&sql, &[&signed(chain_id, "chain_id")?, &numbers, &hashes])
            .await?
            .iter()
            .map(|r| stored_u64(r.try_get::<_, i64>(0)?, "pending_blocks", "number"))
            .collect()
    }

    /// Deletes the blocks parked more than `ttl` ago; returns how many per chain.
    pub(crate) async fn expire_pending(&self, ttl: std::time::Duration) -> Result<Vec<(u64, u64)>> {
        let sql = format!(
            "WITH gone AS (DELETE FROM {}.pending_blocks WHERE parked_at < now() - make_interval(secs => $1)
                           RETURNING chain_id)
             SELECT chain_id, count(*) FROM gone GROUP BY chain_id",
            self.s
        );
        self.c
            .query(&sql, &[&ttl.as_secs_f64()])
            .await?
            .iter()
            .map(|r| {
                Ok((
                    stored_u64(r.try_get::<_, i64>(0)?, "pending_blocks", "chain_id")?,
                    stored_u64(r.try_get::<_, i64>(1)?, "pending_blocks", "count")?,
                ))
            })
            .collect()
    }

    /// The highest parked block number per chain.
    pub(crate) async fn highest_pending(&self) -> Result<Vec<(u64, u64)>> {
        let sql = format!("SELECT chain_id, max(number) FROM {}.pending_blocks GROUP BY chain_id", self.s);
        self.c
            .query(&sql, &[])
            .await?
            .iter()
            .map(|r| {
                Ok((
                    stored_u64(r.try_get::<_, i64>(0)?, "pending_blocks", "chain_id")?,
                    stored_u64(r.try_get::<_, i64>(1)?, "pending_blocks", "number")?,
                ))
            })
            .collect()
    }

    /// Deletes processed deliveries received more than `retention` ago whose block is
    /// final (`finalized`: per chain, the finalized block number; a chain not listed is no
    /// longer configured: all of its old deliveries go); returns how many.
    pub(crate) async fn prune_deliveries(
        &self,
        retention: std::time::Duration,
        finalized: &[(u64, u64)],
    ) -> Result<u64> {
        let chains = finalized.iter().map(|(c, _)| signed(*c, "chain_id")).collect::<Result<Vec<i64>>>()?;
        let upto = finalized.iter().map(|(_, n)| signed(*n, "block number")).collect::<Result<Vec<i64>>>()?;
        let sql = format!(
            "DELETE FROM {}.webhook_deliveries d
              WHERE d.processed_at IS NOT NULL AND d.received_at < now() - make_interval(secs => $1)
                AND d.block_number <= coalesce((SELECT f.upto FROM unnest($2::bigint[], $3::bigint[]) AS f(chain_id, upto)
                                                 WHERE f.chain_id = d.chain_id), 9223372036854775807)",
            self.s
        );
        Ok(self.c.execute(&sql, &[&retention.as_secs_f64(), &chains, &upto]).await?)
    }
}
