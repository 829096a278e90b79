//! The instance's single writer (DESIGN §3 "One writer per instance"): feature `writer`,
//! for the indexer.
//!
//! [`Writer`] owns one dedicated connection holding the session advisory lock keyed by
//! the instance schema. Every write of the instance goes through that connection: each
//! statement lives beside the readers' queries in the module of the table it writes
//! (`events`, `checkpoints`, `epochs`, `metadata`, `instance`), as a crate-private method
//! of `Statements`, which only this type makes, on its own connection. So a process that
//! lost its lock (e.g. its connection died with a database restart) cannot commit: its
//! connection is gone, and a new one must win the lock first. Callers share the writer
//! behind a mutex, which also makes it the one committer: cursor order is commit order.
//!
//! The connection is a plain `tokio-postgres` one (not diesel-async): events are written
//! with binary `COPY`, which diesel-async does not offer and which PostgreSQL loads
//! markedly faster than an `INSERT` of the same rows.
//!
//! Outside the lock the indexer needs only reads and set-up, through a [`PgPool`]:
//! [`run_migrations`], [`probe_session_pinning`], [`stored_public_config`] and
//! [`epoch_summaries`].

mod limits;
mod probe;

use tidemark_shared_types::{BlockRef, Cursor, IndexingStatus, PublicConfig, SchemaName, SourceBackfill};
use tokio_postgres::{Client, Transaction};

use self::limits::{COMMIT_LIMIT, QUERY_LIMIT, UPGRADE_LIMIT, timed};
pub use self::probe::{SessionProbe, probe_session_pinning};
pub use crate::checkpoints::{WindowBlock, WindowHeader};
pub use crate::children::write::ChildRow;
pub use crate::epochs::epoch_summaries;
pub use crate::epochs::write::{Epoch, now_secs};
use crate::error::{DbError, Result};
pub use crate::events::indexes::{DEFERRABLE, DeferrableIndex, INDEX_BUILD_KEY, IndexBuilder};
pub use crate::events::write::EventRow;
use crate::events::write::EventTypes;
pub use crate::metadata::stored_public_config;
use crate::metadata::{INDEXING_STATUS_KEY, PUBLIC_CONFIG_KEY};
pub use crate::migrate::run_migrations;
pub use crate::pool::{PgPool, PooledConnection, VERIFY_AFTER_IDLE};
pub use crate::sinks::{
    RequestOutcome, SinkAction, SinkJob, SinkRequest, SinkRow, entries_after, request as request_sink_action,
    request_outcome as sink_request_outcome, sink_rows,
};
use crate::statements::{Statements, signed};
pub use crate::webhooks::{
    DeliveryOutcome, NewDelivery, PendingDelivery, Recorded, WEBHOOK_CHANNEL, listen_deliveries,
    record_delivery,
};

/// Advisory-lock class of the per-instance writer lock (`pg_advisory_lock(class, hashtext(schema))`).
const WRITER_LOCK_CLASS: i32 = 0x7464_6d01;
/// Advisory-lock class taken per transaction before cursors are drawn.
const COMMIT_LOCK_CLASS: i32 = 0x7464_6d02;

/// Session settings of the writer's connection. `lock_timeout`: a write waiting this
/// long for a row or advisory lock (e.g. held by a stuck session) fails and the term
/// restarts, instead of hanging. `idle_in_transaction_session_timeout`: if this process
/// hangs inside a transaction, the server ends its session, releasing the writer lock
/// and every row lock it held, so a standby can take over.
const WRITER_SESSION: &str = "SET statement_timeout = '120s'; SET lock_timeout = '10s';
     SET idle_in_transaction_session_timeout = '30s'; SET application_name = 'tidemark-indexer-writer'";

/// The lock-holding connection of the instance.
pub struct Writer {
    client: Client,
    schema: SchemaName,
    /// The instance's event types, as far as this writer has registered or read them.
    types: EventTypes,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("schema", &self.schema).finish_non_exhaustive()
    }
}

/// What [`Writer::commit_source`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceCommit {
    /// The events and the progress are stored.
    Committed,
    /// Nothing: the range ends above the chain's checkpoint.
    AboveCheckpoint,
    /// Nothing: an event's block differs from the chain's stored block.
    Reorged,
    /// Nothing: a rollback rewound the source's progress to this block meanwhile; the
    /// source resumes there.
    Rewound(u64),
}

/// A batch of one chain: its events and the checkpoint they lead to, committed in one
/// transaction by [`Writer::commit`]. `H` is the caller's header type.
#[derive(Debug)]
pub struct Batch<'a, H = WindowBlock> {
    /// Chain id.
    pub chain_id: u64,
    /// Decoded events, in block and log order.
    pub events: &'a [EventRow],
    /// Children of factory contracts created in the batch's blocks.
    pub children: &'a [ChildRow],
    /// Headers to add to the unfinalized window (follow mode), ascending.
    pub headers: &'a [H],
    /// The last block the batch covers.
    pub checkpoint: &'a BlockRef,
    /// Window headers below this number are pruned.
    pub prune_below: Option<u64>,
    /// The batch's epoch, with its `stored` stage already appended.
    pub epoch: Option<&'a Epoch>,
    /// Stored epochs ending at or below this block become `finalized`, at this time.
    pub finalize_upto: Option<(u64, f64)>,
}

impl<'a> Batch<'a> {
    /// The events of `chain_id` up to `checkpoint`, with no window headers, pruning or
    /// epochs.
    pub fn new(chain_id: u64, events: &'a [EventRow], checkpoint: &'a BlockRef) -> Self {
        Self {
            chain_id,
            events,
            children: &[],
            headers: &[],
            checkpoint,
            prune_below: None,
            epoch: None,
            finalize_upto: None,
        }
    }
}

/// True for errors about a value (SQLSTATE class 22, e.g. `\u0000` in `jsonb`) or a size
/// limit (class 54): the same rows would fail again.
fn is_value_error(e: &DbError) -> bool {
    e.sqlstate().is_some_and(|c| matches!(&c[..2], "22" | "54"))
}

impl Writer {
    /// Opens a connection and tries to take the writer lock once. `Ok(None)` when another
    /// process holds it.
    pub async fn try_acquire(pool: &PgPool, schema: &SchemaName) -> Result<Option<Self>> {
        let client = pool.connect_raw().await?;
        timed(QUERY_LIMIT, async {
            // Batches may be large: the pool's statement timeout is for readers.
            client.batch_execute(WRITER_SESSION).await?;
            let row = client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))",
                    &[&WRITER_LOCK_CLASS, &schema.as_str()],
                )
                .await?;
            Ok(row.try_get::<_, bool>(0)?)
        })
        .await
        .map(|locked| locked.then(|| Self { client, schema: schema.clone(), types: EventTypes::default() }))
    }

    /// The instance schema.
    pub fn schema(&self) -> &SchemaName {
        &self.schema
    }

    /// Checks that the connection is alive and still holds the lock.
    pub async fn still_holds_lock(&mut self) -> Result<bool> {
        timed(QUERY_LIMIT, async {
            let sql = format!(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                    AND classid = {WRITER_LOCK_CLASS}::oid AND objid = hashtext($1)::oid AND objsubid = 2 AND granted)"
            );
            Ok(self.client.query_one(&sql, &[&self.schema.as_str()]).await?.try_get(0)?)
        })
        .await
    }

    fn statements(&self) -> Statements<'_, Client> {
        Statements::new(&self.client, &self.schema)
    }

    /// Takes the commit lock for `tx`'s transaction: commits are serialized, so cursor
    /// order is commit order across every chain of the instance.
    async fn commit_lock(tx: &Statements<'_, Transaction<'_>>) -> Result<()> {
        tx.c.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&COMMIT_LOCK_CLASS, &tx.schema.as_str()],
        )
        .await?;
        Ok(())
    }

    /// Creates the instance schema and tables if missing, or upgrades an earlier layout
    /// (under the migration lock, like every schema change).
    pub async fn ensure_instance_schema(&mut self) -> Result<()> {
        timed(UPGRADE_LIMIT, async {
            let tx = self.client.transaction().await?;
            Statements::new(&tx, &self.schema).ensure_instance().await?;
            Ok(tx.commit().await?)
        })
        .await
    }

    /// On a new instance (no events, no checkpoint), drops the secondary indexes of
    /// `events` that are built after the first backfill ([`DEFERRABLE`]) and records the
    /// build as pending, in one transaction; returns whether it did. Does nothing on an
    /// instance with data.
    pub async fn defer_indexes(&mut self) -> Result<bool> {
        timed(QUERY_LIMIT, async {
            let tx = self.client.transaction().await?;
            let deferred = Statements::new(&tx, &self.schema).defer_indexes().await?;
            tx.commit().await?;
            Ok(deferred)
        })
        .await
    }

    /// Whether a deferred index build is pending (recorded and not done).
    pub async fn index_build_pending(&mut self) -> Result<bool> {
        timed(QUERY_LIMIT, self.statements().index_build_pending()).await
    }

    /// How many of the [`DEFERRABLE`] indexes exist and are valid.
    pub async fn valid_indexes(&mut self) -> Result<usize> {
        timed(QUERY_LIMIT, async { Ok(self.statements().valid_indexes().await?.len()) }).await
    }

    /// A dedicated connection for the deferred index build, made like this writer's:
    /// `CREATE INDEX CONCURRENTLY` runs outside any transaction and must not hold up the
    /// writer's commits.
    pub async fn index_builder(&self, pool: &PgPool) -> Result<IndexBuilder> {
        timed(QUERY_LIMIT, IndexBuilder::connect(pool, &self.schema)).await
    }

    /// Records the deferred index build as done, when every [`DEFERRABLE`] index exists
    /// and is valid ([`DbError::IndexesMissing`] otherwise), in one transaction.
    pub async fn finish_index_build(&mut self) -> Result<()> {
        timed(QUERY_LIMIT, async {
            let tx = self.client.transaction().await?;
            Statements::new(&tx, &self.schema).finish_index_build().await?;
            Ok(tx.commit().await?)
        })
        .await
    }

    /// Drops the instance schema with all its data and deletes its metadata rows, in one
    /// transaction (for a deliberate reindex).
    pub async fn drop_instance(&mut self) -> Result<()> {
        timed(QUERY_LIMIT, async {
            let tx = self.client.transaction().await?;
            Statements::new(&tx, &self.schema).drop_instance().await?;
            tx.commit().await?;
            // A new instance numbers its event types afresh.
            self.types = EventTypes::default();
            Ok(())
        })
        .await
    }

    /// Stores the public config (upsert; `updated_at` by the database clock).
    pub async fn write_public_config(&mut self, config: &PublicConfig) -> Result<()> {
        timed(QUERY_LIMIT, self.statements().upsert_metadata(PUBLIC_CONFIG_KEY, config)).await
    }

    /// The sources added to indexed chains that are still backfilling.
    pub async fn added_sources(&mut self) -> Result<Vec<SourceBackfill>> {
        timed(QUERY_LIMIT, self.statements().added_sources()).await
    }

    /// Stores `config` and the added sources still backfilling, in one transaction (a
    /// stored config's additions are never without their backfills).
    pub async fn write_public_config_with_sources(
        &mut self,
        config: &PublicConfig,
        sources: &[SourceBackfill],
    ) -> Result<()> {
        timed(QUERY_LIMIT, async {
            let tx = self.client.transaction().await?;
            let t = Statements::new(&tx, &self.schema);
            t.upsert_metadata(PUBLIC_CONFIG_KEY, config).await?;
            t.set_added_sources(sources).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Commits the events of one range `[from, upto]` of an added source of `chain_id`,
    /// with the source's new progress (`source`) and the range's epoch (its
    /// `stored` stage appended), in one transaction. Nothing is
    /// written when `upto` is above the chain's checkpoint (the chain was rolled back
    /// meanwhile) or when an event's block hash differs from the chain's stored block
    /// (the chain reorganized): the caller fetches again once the follower has repaired.
    /// Events already stored (the follower, whose filter has the source, re-indexed their
    /// blocks after a reorg) are left out, so none is stored twice.
    ///
    /// Invariant (§9.1): no stored event lies above its chain's checkpoint; (§9.3) the
    /// commit lock orders this commit's cursors with every other commit.
    pub async fn commit_source(
        &mut self,
        chain_id: u64,
        events: &[EventRow],
        (from, upto): (u64, u64),
        source: &SourceBackfill,
        epoch: Option<&Epoch>,
    ) -> Result<SourceCommit> {
        timed(COMMIT_LIMIT, async {
            let missing = self.types.missing(events);
            if !missing.is_empty() {
                Statements::new(&self.client, &self.schema)
                    .register_event_types(&missing, &mut self.types)
                    .await?;
            }
            let tx = self.client.transaction().await?;
            let t = Statements::new(&tx, &self.schema);
            Self::commit_lock(&t).await?;
            // The stored progress must be where this range starts: a rollback may have
            // rewound it while the range was fetched.
            let stored_next = t
                .added_sources()
                .await?
                .into_iter()
                .find(|s| s.source == source.source)
                .map(|s| s.next_block);
            if let Some(n) = stored_next
                && n != from
            {
                return Ok(SourceCommit::Rewound(n));
            }
            let checkpoint = t.checkpoint(chain_id).await?;
            // (Progress alone, without events, needs no checkpoint.)
            if !events.is_empty() && checkpoint.as_ref().is_none_or(|c| c.number < upto) {
                return Ok(SourceCommit::AboveCheckpoint);
            }
            if let Some(low) = events.iter().map(|e| e.block_number).min() {
                let stored: std::collections::HashMap<u64, String> =
                    t.window_hashes(chain_id, low, upto).await?.into_iter().collect();
                if events.iter().any(|e| stored.get(&e.block_number).is_some_and(|h| *h != e.block_hash)) {
                    return Ok(SourceCommit::Reorged);
                }
                let stored = t.stored_positions(chain_id, low, upto).await?;
                let new: Vec<EventRow> = events
                    .iter()
                    .filter(|e| !stored.contains(&(e.block_number, e.log_index)))
                    .cloned()
                    .collect();
                if !new.is_empty() {
                    let n = i64::try_from(new.len()).unwrap_or(i64::MAX);
                    let ((), base) = futures::try_join!(t.lock_events(), t.draw_cursors(n))?;
                    t.copy_events(base + 1, chain_id, &new, &self.types).await?;
                    t.notify_journal().await?;
                }
            }
            t.update_added_source(source).await?;
            if let Some(e) = epoch {
                t.store_epoch(e).await?;
            }
            tx.commit().await?;
            Ok(SourceCommit::Committed)
        })
        .await
    }

    /// Stores the status snapshot (upsert; `updated_at` by the database clock).
    pub async fn write_status(&mut self, status: &IndexingStatus) -> Result<()> {
        timed(QUERY_LIMIT, self.statements().upsert_metadata(INDEXING_STATUS_KEY, status)).await
    }

    /// The chain's start block as the stored status snapshot has it (the block the index
    /// was built on), when a snapshot with that chain exists.
    pub async fn stored_start_block(&mut self, chain_id: u64) -> Result<Option<BlockRef>> {
        timed(QUERY_LIMIT, self.statements().stored_start_block(chain_id)).await
    }

    /// The chain's checkpoint.
    pub async fn checkpoint(&mut self, chain_id: u64) -> Result<Option<BlockRef>> {
        timed(QUERY_LIMIT, self.statements().checkpoint(chain_id)).await
    }

    /// Stored hashes for `chain_id` at heights `[from, to]`, from the window and, below
    /// it, from the events themselves (descending by number).
    pub async fn stored_hashes(&mut self, chain_id: u64, from: u64, to: u64) -> Result<Vec<(u64, String)>> {
        timed(QUERY_LIMIT, async {
            let statements = self.statements();
            let mut hashes = statements.window_hashes(chain_id, from, to).await?;
            hashes.extend(statements.event_block_hashes(chain_id, from, to).await?);
            hashes.sort_unstable_by(|a, b| b.cmp(a));
            hashes.dedup();
            Ok(hashes)
        })
        .await
    }

    /// The highest block below `below` that has stored events (for walking back past
    /// the window).
    pub async fn previous_event_block(&mut self, chain_id: u64, below: u64) -> Result<Option<u64>> {
        timed(QUERY_LIMIT, self.statements().previous_event_block(chain_id, below)).await
    }

    /// Commits a batch: events (binary `COPY`), window headers and the checkpoint, with
    /// the epoch's `stored` stage and the finalized marks, in one transaction.
    ///
    /// Invariant (DESIGN §9.2): data and checkpoint commit together or not at all.
    /// Invariant (§9.3): the commit lock is taken before cursors are drawn, so cursor
    /// order is commit order across every chain of the instance.
    /// Invariant (§9.8): when PostgreSQL rejects a value of the batch (something decoding
    /// did not foresee), the batch is committed again with the args of each rejected row
    /// replaced by a `decode_error`, so one log can never stall the chain.
    pub async fn commit<H: WindowHeader + Sync>(&mut self, batch: Batch<'_, H>) -> Result<()> {
        timed(COMMIT_LIMIT, async {
            let missing = self.types.missing(batch.events);
            if !missing.is_empty() {
                Statements::new(&self.client, &self.schema)
                    .register_event_types(&missing, &mut self.types)
                    .await?;
            }
            match self.commit_once(&batch).await {
                Err(e) if is_value_error(&e) && batch.events.iter().any(|r| r.args.is_some()) => {
                    tracing::warn!(target: "tidemark::store", chain_id = batch.chain_id, error = %e,
                        "batch rejected by the database; storing the rejected args raw");
                    let events = self.storable(batch.events).await?;
                    self.commit_once(&Batch { events: &events, ..batch }).await
                }
                other => other,
            }
        })
        .await
    }

    /// `events` with the args that PostgreSQL rejects on their own replaced by a
    /// `decode_error` (one round trip per decoded row: only after a rejected batch).
    async fn storable(&mut self, events: &[EventRow]) -> Result<Vec<EventRow>> {
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let mut e = e.clone();
            if let Some(args) = &e.args
                && let Err(err) = self.statements().check_args(args).await
            {
                if !is_value_error(&err) {
                    return Err(err);
                }
                e.args = None;
                e.decode_error = Some(format!("args not storable: {err}").replace('\0', "\u{fffd}"));
            }
            out.push(e);
        }
        Ok(out)
    }

    async fn commit_once<H: WindowHeader + Sync>(&mut self, batch: &Batch<'_, H>) -> Result<()> {
        let chain = batch.chain_id;
        let tx = self.client.transaction().await?;
        let t = Statements::new(&tx, &self.schema);
        Self::commit_lock(&t).await?;
        if !batch.events.is_empty() {
            // One block of `n` cursors drawn at once (under the commit lock, so still in
            // commit order), numbered in the batch's order: base + 1 ..= base + n.
            let n = i64::try_from(batch.events.len()).unwrap_or(i64::MAX);
            let ((), base) = futures::try_join!(t.lock_events(), t.draw_cursors(n))?;
            t.copy_events(base + 1, chain, batch.events, &self.types).await?;
            t.notify_journal().await?;
        }
        t.insert_children(chain, batch.children).await?;
        if !batch.headers.is_empty() {
            t.insert_window(chain, batch.headers).await?;
        }
        if let Some(below) = batch.prune_below {
            t.prune_window(chain, below).await?;
        }
        t.set_checkpoint(chain, Some(batch.checkpoint)).await?;
        if let Some(e) = batch.epoch {
            t.store_epoch(e).await?;
        }
        if let Some((upto, at)) = batch.finalize_upto {
            t.finalize_epochs(chain, upto, at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the stored progress of `source` (the same added source), under the commit
    /// lock (e.g. its children discovered).
    pub async fn update_added_source(&mut self, source: &SourceBackfill) -> Result<()> {
        timed(QUERY_LIMIT, async {
            let tx = self.client.transaction().await?;
            let t = Statements::new(&tx, &self.schema);
            Self::commit_lock(&t).await?;
            t.update_added_source(source).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Stores children of `chain_id` discovered below its checkpoint (an added factory
    /// contract's history), under the commit lock, in one transaction; rows above the
    /// checkpoint are left out (the follower stores those with their block). Returns how
    /// many were offered at or below the checkpoint.
    pub async fn store_children(&mut self, chain_id: u64, rows: &[ChildRow]) -> Result<usize> {
        timed(COMMIT_LIMIT, async {
            let tx = self.client.transaction().await?;
            let t = Statements::new(&tx, &self.schema);
            Self::commit_lock(&t).await?;
            let Some(checkpoint) = t.checkpoint(chain_id).await? else { return Ok(0) };
            let below: Vec<ChildRow> =
                rows.iter().filter(|r| r.block_number <= checkpoint.number).cloned().collect();
            t.insert_children(chain_id, &below).await?;
            tx.commit().await?;
            Ok(below.len())
        })
        .await
    }

    /// The children of `chain_id`'s factory contracts, by creating block and log index.
    pub async fn children(&mut self, chain_id: u64) -> Result<Vec<ChildRow>> {
        timed(QUERY_LIMIT, self.statements().children(chain_id)).await
    }

    /// Rolls a chain back to `ancestor` (or to nothing, before the start block) in one
    /// transaction: the added sources' progress above the ancestor is rewound to it,
    /// orphaned events and the children created on orphaned blocks are deleted and recorded as `removed` journal entries
    /// (with fresh cursors, in the order they were added), the window above the ancestor
    /// is dropped, the epochs above it are marked `reorged` and the checkpoint rewound.
    /// Returns the number of events removed.
    ///
    /// Invariant (§9.1): after this commits, no stored event lies above the checkpoint.
    pub async fn rollback(&mut self, chain_id: u64, ancestor: Option<&BlockRef>) -> Result<usize> {
        timed(COMMIT_LIMIT, async {
            let above = ancestor.map_or(Ok(-1), |a| signed(a.number, "ancestor"))?;
            let tx = self.client.transaction().await?;
            let t = Statements::new(&tx, &self.schema);
            Self::commit_lock(&t).await?;
            let removed = t.remove_events_above(chain_id, above).await?;
            if removed > 0 {
                t.notify_journal().await?;
            }
            // Children created on the orphaned blocks go with their events.
            t.delete_children_above(chain_id, above).await?;
            t.drop_window_above(chain_id, above).await?;
            // A finished epoch reaching above the ancestor keeps its blocks up to it; those
            // above are rolled back with the epochs wholly above it.
            t.truncate_epochs(chain_id, above).await?;
            t.reorg_epochs(chain_id, above, now_secs()).await?;
            // Added sources resume above the ancestor: their epochs stay gapless.
            t.rewind_added_sources(chain_id, ancestor.map_or(0, |a| a.number + 1)).await?;
            t.set_checkpoint(chain_id, ancestor).await?;
            tx.commit().await?;
            Ok(usize::try_from(removed).unwrap_or(usize::MAX))
        })
        .await
    }

    /// Marks stored epochs ending at or below `upto` as finalized (outside a batch, e.g.
    /// while the head moves on without new blocks to commit).
    pub async fn finalize(&mut self, chain_id: u64, upto: u64) -> Result<()> {
        timed(QUERY_LIMIT, self.statements().finalize_epochs(chain_id, upto, now_secs())).await
    }

    /// The chain's highest epoch id, and its epochs a crash left in an intermediate stage
    /// (by id).
    pub async fn unfinished_epochs(&mut self, chain_id: u64) -> Result<(Option<i64>, Vec<Epoch>)> {
        timed(QUERY_LIMIT, self.statements().unfinished_epochs(chain_id)).await
    }

    /// Records intermediate stages: upserts `upserts` (never moving a finished epoch
    /// backwards) and deletes the unfinished epochs `discards` (`(chain_id, epoch_id)`).
    pub async fn record_epochs(&mut self, upserts: &[&Epoch], discards: &[(u64, i64)]) -> Result<()> {
        timed(QUERY_LIMIT, async {
            let statements = self.statements();
            if !upserts.is_empty() {
                statements.upsert_unfinished_epochs(upserts).await?;
            }
            if !discards.is_empty() {
                statements.discard_epochs(discards).await?;
            }
            Ok(())
        })
        .await
    }

    /// Journal retention: deletes the removals recorded more than `retention` ago and
    /// raises the retained floor to the highest cursor among them, in one transaction
    /// (so a reader that finds the floor at or below its cursor after reading has missed
    /// no pruned removal). Events are never pruned. Returns how many removals went and
    /// the floor now stored.
    ///
    /// Removals that one of the configured `sinks` has not delivered yet are kept.
    pub async fn prune_journal(
        &mut self,
        retention: std::time::Duration,
        sinks: &[String],
    ) -> Result<(u64, Cursor)> {
        timed(COMMIT_LIMIT, async {
            let tx = self.client.transaction().await?;
            let t = Statements::new(&tx, &self.schema);
            let (pruned, highest) = t.prune_removals(retention, sinks).await?;
            let floor = t.raise_journal_floor(Cursor(highest.unwrap_or(0))).await?;
            tx.commit().await?;
            Ok((pruned, floor))
        })
        .await
    }

    /// Adds a configured sink (at cursor 0, or at the journal head with `from_head`)
    /// unless its row exists, and returns its row.
    pub async fn register_sink(&mut self, name: &str, kind: &str, from_head: bool) -> Result<SinkRow> {
        timed(QUERY_LIMIT, self.statements().register_sink(name, kind, from_head)).await
    }

    /// Every sink's row (configured or not), by name.
    pub async fn sink_rows(&mut self) -> Result<Vec<SinkRow>> {
        timed(QUERY_LIMIT, self.statements().sink_rows()).await
    }

    /// Records the batch about to be sent to sink `name`: its first and last entries.
    /// False when a replay changed the sink's generation meanwhile (reload the row).
    pub async fn record_sink_batch(
        &mut self,
        name: &str,
        generation: i64,
        first: Cursor,
        last: Cursor,
    ) -> Result<bool> {
        timed(QUERY_LIMIT, self.statements().record_sink_batch(name, generation, first, last)).await
    }

    /// Sink `name` has delivered every entry up to `upto` (`delivered`: anything was sent).
    /// False when a replay changed the sink's generation meanwhile (reload the row).
    pub async fn sink_delivered(
        &mut self,
        name: &str,
        generation: i64,
        upto: Cursor,
        delivered: bool,
    ) -> Result<bool> {
        timed(QUERY_LIMIT, self.statements().sink_delivered(name, generation, upto, delivered)).await
    }

    /// An attempt of sink `name` failed with `error` (redacted by the caller).
    pub async fn sink_failed(&mut self, name: &str, error: &str) -> Result<()> {
        timed(QUERY_LIMIT, self.statements().sink_failed(name, error)).await
    }

    /// Starts a rebroadcast run of sink `name` up to the journal head; returns its id.
    pub async fn start_sink_job(&mut self, name: &str) -> Result<(u64, Cursor)> {
        timed(QUERY_LIMIT, async {
            let tx = self.client.transaction().await?;
            let t = Statements::new(&tx, &self.schema);
            let head = t.journal_head().await?;
            let run = t.start_sink_job(name, head).await?;
            tx.commit().await?;
            Ok((run, head))
        })
        .await
    }

    /// The rebroadcast run `run` of sink `name` re-sent everything up to `next`.
    pub async fn sink_job_progress(
        &mut self,
        name: &str,
        run: u64,
        next: Cursor,
        finished: bool,
    ) -> Result<()> {
        timed(QUERY_LIMIT, self.statements().sink_job_progress(name, run, next, finished)).await
    }

    /// Applies the pending `sink …` requests, each in its own transaction with its mark;
    /// returns them with their outcomes.
    pub async fn apply_sink_requests(&mut self) -> Result<Vec<(SinkRequest, String)>> {
        timed(QUERY_LIMIT, async {
            let pending = self.statements().pending_sink_requests().await?;
            let mut applied = Vec::with_capacity(pending.len());
            for request in pending {
                let tx = self.client.transaction().await?;
                let t = Statements::new(&tx, &self.schema);
                let head = t.journal_head().await?;
                let outcome = t.apply_sink_request(&request, head).await?;
                tx.commit().await?;
                applied.push((request, outcome));
            }
            Ok(applied)
        })
        .await
    }

    /// Marks `delivered` the stored epochs every configured sink has delivered (see the
    /// `epochs` module); returns how many.
    pub async fn deliver_epochs(&mut self, sinks: &[String], finalized_first: bool) -> Result<u64> {
        timed(QUERY_LIMIT, self.statements().deliver_epochs(sinks, finalized_first, now_secs())).await
    }

    /// Deletes the chain's epochs older than its newest `retain`; returns how many.
    pub async fn prune_epochs(&mut self, chain_id: u64, retain: u64) -> Result<u64> {
        timed(QUERY_LIMIT, self.statements().prune_epochs(chain_id, retain)).await
    }

    /// Processes up to `limit` recorded webhook deliveries in one statement: each is
    /// parked, found stored, superseded, or final (at or below its chain's number in
    /// `finalized`), and marked processed. Returns them with their outcomes.
    pub async fn process_deliveries(
        &mut self,
        limit: i64,
        finalized: &[(u64, u64)],
    ) -> Result<Vec<(PendingDelivery, DeliveryOutcome)>> {
        timed(QUERY_LIMIT, self.statements().process_deliveries(limit, finalized)).await
    }

    /// Releases the parked blocks of `chain_id` among `stored`, the (number, hash) of the
    /// blocks a commit just stored; returns their numbers.
    pub async fn release_pending(&mut self, chain_id: u64, stored: &[(u64, &str)]) -> Result<Vec<u64>> {
        timed(QUERY_LIMIT, self.statements().release_pending(chain_id, stored)).await
    }

    /// Deletes parked blocks older than `ttl`; returns `(chain, count)` pairs.
    pub async fn expire_pending(&mut self, ttl: std::time::Duration) -> Result<Vec<(u64, u64)>> {
        timed(QUERY_LIMIT, self.statements().expire_pending(ttl)).await
    }

    /// The highest parked block number per chain.
    pub async fn highest_pending(&mut self) -> Result<Vec<(u64, u64)>> {
        timed(QUERY_LIMIT, self.statements().highest_pending()).await
    }

    /// Deletes processed deliveries older than `retention` whose block is at or below
    /// its chain's `finalized` number; returns how many.
    pub async fn prune_deliveries(
        &mut self,
        retention: std::time::Duration,
        finalized: &[(u64, u64)],
    ) -> Result<u64> {
        timed(QUERY_LIMIT, self.statements().prune_deliveries(retention, finalized)).await
    }
}
