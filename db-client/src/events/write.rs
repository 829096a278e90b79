//! The writer's statements on `events`, `event_types`, `removals` and the cursor sequence
//! (feature `writer`): the cursors of a batch, its event types, its binary `COPY`, the
//! rollback that turns orphaned events into the journal's `removed` entries, and the reads
//! the reorg walk needs.

use std::collections::HashMap;
use std::pin::{Pin, pin};

use serde_json::Value;
use tokio_postgres::GenericClient;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::error::{DbError, Result, stored_u64};
use crate::hex::stored_bytes;
use crate::statements::{Statements, narrow, signed};

/// A decoded log, ready to store: one row of `events` without its cursor and chain id,
/// which the writer adds.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Block number.
    pub block_number: u64,
    /// 0x block hash.
    pub block_hash: String,
    /// Unix seconds.
    pub block_timestamp: u64,
    /// 0x transaction hash.
    pub tx_hash: String,
    /// Transaction index in the block.
    pub tx_index: u64,
    /// Log index in the block.
    pub log_index: u64,
    /// Emitting address, lowercase.
    pub address: String,
    /// Contract name.
    pub contract: String,
    /// Event name.
    pub event: String,
    /// Canonical signature.
    pub signature: String,
    /// 0x topics.
    pub topics: Vec<String>,
    /// 0x data.
    pub data: String,
    /// Decoded args; `None` when the log does not fit its ABI.
    pub args: Option<Value>,
    /// Why `args` is `None`.
    pub decode_error: Option<String>,
}

/// The ids of an event type (layout 4, `event_types`): its own, and the lowest of its
/// contract's and of its contract's types of the same event name, which `events` carries
/// per row for the `contract` and `contract` + `event` filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TypeIds {
    /// `type_id`: contract, event and signature.
    pub(crate) id: i32,
    /// `contract_id`.
    pub(crate) contract: i32,
    /// `event_id`.
    pub(crate) event: i32,
}

/// A type as the writer knows it: its ids, and the first topic its rows leave out when
/// it is theirs (`event_types.topic0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeEntry {
    pub(crate) ids: TypeIds,
    pub(crate) topic0: Option<Vec<u8>>,
}

/// A type to register: contract, event, signature and the first topic of its first row.
pub(crate) type NewType<'r> = (&'r str, &'r str, &'r str, Option<&'r str>);

/// The event types of an instance by contract, event and signature: a copy of
/// `event_types` the writer keeps. Types are only ever added, and an id or a type's
/// `topic0` never changes, so an entry stays true; a row whose type is missing makes the
/// writer register it ([`Statements::register_event_types`]) before its batch's
/// transaction.
#[derive(Debug, Default)]
pub(crate) struct EventTypes(HashMap<String, HashMap<String, HashMap<String, TypeEntry>>>);

impl EventTypes {
    /// `row`'s type, if known.
    pub(crate) fn get(&self, row: &EventRow) -> Option<&TypeEntry> {
        self.0.get(&row.contract)?.get(&row.event)?.get(&row.signature)
    }

    /// The types of `rows` not known yet, once each (with the first topic of the first row
    /// of each).
    pub(crate) fn missing<'r>(&self, rows: &'r [EventRow]) -> Vec<NewType<'r>> {
        let mut out: Vec<NewType<'r>> = Vec::new();
        for r in rows {
            let key = (r.contract.as_str(), r.event.as_str(), r.signature.as_str());
            if self.get(r).is_none() && !out.iter().any(|k| (k.0, k.1, k.2) == key) {
                out.push((key.0, key.1, key.2, r.topics.first().map(String::as_str)));
            }
        }
        out
    }

    fn insert(&mut self, contract: String, event: String, signature: String, entry: TypeEntry) {
        self.0.entry(contract).or_default().entry(event).or_default().insert(signature, entry);
    }
}

/// Columns of `events` in the order of [`COPY_TYPES`] and of the values [`write_row`]
/// sends.
const COPY_COLUMNS: &str = "cursor, chain_id, block_number, block_timestamp, tx_index, log_index, \
     contract_id, event_id, type_id, block_hash, tx_hash, address, topic0, topic1, topic2, topic3, data, args, \
     decode_error";

/// The PostgreSQL types of [`COPY_COLUMNS`], for binary `COPY`.
const COPY_TYPES: [Type; 19] = [
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::INT4,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::JSONB,
    Type::TEXT,
];

/// Writes one row of [`COPY_COLUMNS`] to a binary `COPY`: hex text as bytes, a log's
/// topics in `topic0` to `topic3` (a log has at most four; more is refused, not cut).
async fn write_row(
    rows: Pin<&mut BinaryCopyInWriter>,
    cursor: i64,
    chain_id: i64,
    ty: &TypeEntry,
    e: &EventRow,
) -> Result<()> {
    if e.topics.len() > 4 {
        return Err(DbError::InvalidQuery {
            field: "topics",
            message: format!("a log has at most 4 topics, this one {}", e.topics.len()),
        });
    }
    let topic = |i: usize| e.topics.get(i).map(|t| stored_bytes(t, "topics")).transpose();
    let (t0, t1, t2, t3) = (topic(0)?, topic(1)?, topic(2)?, topic(3)?);
    // NULL is the type's first topic: a row leaves it out when it is that one, and a row
    // without topics under a type that has one could not be told apart.
    let t0 = match (t0, &ty.topic0) {
        (Some(t), Some(of_type)) if &t == of_type => None,
        (None, Some(_)) => {
            return Err(DbError::InvalidQuery {
                field: "topics",
                message: format!("a {} {} log without topics", e.contract, e.event),
            });
        }
        (t, _) => t,
    };
    let ids = ty.ids;
    let values: [&(dyn ToSql + Sync); 19] = [
        &cursor,
        &chain_id,
        &signed(e.block_number, "block_number")?,
        &signed(e.block_timestamp, "block_timestamp")?,
        &narrow::<i32>(e.tx_index, "tx_index")?,
        &narrow::<i32>(e.log_index, "log_index")?,
        &ids.contract,
        &ids.event,
        &ids.id,
        &stored_bytes(&e.block_hash, "block_hash")?,
        &stored_bytes(&e.tx_hash, "tx_hash")?,
        &stored_bytes(&e.address, "address")?,
        &t0,
        &t1,
        &t2,
        &t3,
        &stored_bytes(&e.data, "data")?,
        &e.args,
        &e.decode_error,
    ];
    Ok(rows.write(&values).await?)
}

impl<C: GenericClient + Sync> Statements<'_, C> {
    /// Draws one block of `n` cursors at once and returns the number before the first:
    /// the batch's rows are `base + 1 ..= base + n`. Run under the commit lock, so cursors
    /// stay in commit order.
    pub(crate) async fn draw_cursors(&self, n: i64) -> Result<i64> {
        let seq = self.schema.as_str();
        let sql = format!("SELECT setval('{seq}.cursor_seq', nextval('{seq}.cursor_seq') + $1 - 1) - $1");
        Ok(self.c.query_one(&sql, &[&n]).await?.try_get(0)?)
    }

    /// Takes the lock a `COPY` into `events` needs, in a statement of its own, inside the
    /// caller's transaction (pipeline it with [`Self::draw_cursors`]: no extra round trip).
    ///
    /// Invariant: a batch's `COPY` waits for no lock. A `COPY` that fails before the server
    /// accepts its data (a lock timeout, while a stray session holds the table) leaves the
    /// client library one `ReadyForQuery` ahead, and the connection dies as "connection
    /// closed", hiding the cause (`copy_in` sends `Sync` twice: rust-postgres issue 789,
    /// pull request 1337); a plain statement fails cleanly, names the lock timeout, and
    /// leaves the connection usable.
    pub(crate) async fn lock_events(&self) -> Result<()> {
        self.c.batch_execute(&format!("LOCK TABLE {}.events IN ROW EXCLUSIVE MODE", self.s)).await?;
        Ok(())
    }

    /// Tells the sessions that `LISTEN` on [`JOURNAL_CHANNEL`](super::journal::JOURNAL_CHANNEL)
    /// that the journal grew, in the transaction that grows it: PostgreSQL delivers the
    /// notification when it commits, once its entries are visible, and never for one that
    /// rolls back. The payload is `<schema>:<head cursor>`; run under the commit lock, the
    /// sequence's last value is this transaction's last cursor.
    pub(crate) async fn notify_journal(&self) -> Result<()> {
        let sql =
            format!("SELECT pg_notify($1, $2 || ':' || (SELECT last_value FROM {}.cursor_seq))", self.s);
        self.c.execute(&sql, &[&super::journal::JOURNAL_CHANNEL, &self.schema.as_str()]).await?;
        Ok(())
    }

    /// Adds the event types `missing` as `(contract, event, signature)` to `event_types`
    /// (those already there are kept) and reloads `types` from the table. Run outside a
    /// batch's transaction: what `types` holds is then committed, whatever becomes of the
    /// batch.
    pub(crate) async fn register_event_types(
        &self,
        missing: &[NewType<'_>],
        types: &mut EventTypes,
    ) -> Result<()> {
        let column = |i: usize| missing.iter().map(|k| [k.0, k.1, k.2][i]).collect::<Vec<&str>>();
        let topic0s = missing
            .iter()
            .map(|k| k.3.map(|t| stored_bytes(t, "topics")).transpose())
            .collect::<Result<Vec<Option<Vec<u8>>>>>()?;
        let sql = format!(
            "INSERT INTO {}.event_types (contract, event, signature, topic0)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) ORDER BY 1, 2, 3
             ON CONFLICT DO NOTHING",
            self.s
        );
        self.c.execute(&sql, &[&column(0), &column(1), &column(2), &topic0s]).await?;
        let sql = format!(
            "SELECT contract, event, signature, id, min(id) OVER (PARTITION BY contract),
                    min(id) OVER (PARTITION BY contract, event), topic0
               FROM {}.event_types",
            self.s
        );
        for r in self.c.query(&sql, &[]).await? {
            let ids = TypeIds { id: r.try_get(3)?, contract: r.try_get(4)?, event: r.try_get(5)? };
            let entry = TypeEntry { ids, topic0: r.try_get(6)? };
            types.insert(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, entry);
        }
        Ok(())
    }

    /// [`Self::copy_events`] after registering the rows' types (test fixtures: the writer
    /// registers them outside the batch's transaction).
    #[cfg(feature = "test-utils")]
    pub(crate) async fn register_and_copy_events(
        &self,
        first_cursor: i64,
        chain_id: u64,
        rows: &[EventRow],
    ) -> Result<()> {
        let mut types = EventTypes::default();
        self.register_event_types(&types.missing(rows), &mut types).await?;
        self.copy_events(first_cursor, chain_id, rows, &types).await
    }

    /// Loads `rows` of `chain_id` by binary `COPY`, numbered `first_cursor`,
    /// `first_cursor + 1`, … in their order. Every row's type must be in `types`
    /// ([`Self::register_event_types`]).
    pub(crate) async fn copy_events(
        &self,
        first_cursor: i64,
        chain_id: u64,
        rows: &[EventRow],
        types: &EventTypes,
    ) -> Result<()> {
        let sql = format!("COPY {}.events ({COPY_COLUMNS}) FROM STDIN (FORMAT binary)", self.s);
        let sink = self.c.client().copy_in(&sql).await?;
        let mut writer = pin!(BinaryCopyInWriter::new(sink, &COPY_TYPES));
        let chain = signed(chain_id, "chain_id")?;
        for (cursor, e) in (first_cursor..).zip(rows) {
            let ty = types.get(e).ok_or_else(|| DbError::InvalidQuery {
                field: "event type",
                message: format!("{} {} {} is not registered", e.contract, e.event, e.signature),
            })?;
            write_row(writer.as_mut(), cursor, chain, ty, e).await?;
        }
        writer.as_mut().finish().await?;
        Ok(())
    }

    /// Deletes the events of `chain_id` above block `above` and records each as a
    /// `removed` journal entry (the removed row as `tidemark.event_json` renders it, a
    /// fresh cursor, in the order the events were added). Returns how many were removed.
    pub(crate) async fn remove_events_above(&self, chain_id: u64, above: i64) -> Result<u64> {
        let (s, seq) = (&self.s, self.schema.as_str());
        let sql = format!(
            "WITH gone AS (
                DELETE FROM {s}.events WHERE chain_id = $1 AND block_number > $2 RETURNING *
             )
             INSERT INTO {s}.removals (cursor, chain_id, block_number, block_hash, log_index, event_cursor, payload)
             SELECT nextval('{seq}.cursor_seq'), g.chain_id, g.block_number, '0x' || encode(g.block_hash, 'hex'),
                    g.log_index, g.cursor,
                    tidemark.event_json(g.cursor, g.chain_id, g.block_number, g.block_hash, g.block_timestamp,
                        g.tx_hash, g.tx_index, g.log_index, g.address, g.contract, g.event, g.signature,
                        coalesce(g.topic0, g.type_topic0), g.topic1, g.topic2, g.topic3, g.data, g.args,
                        g.decode_error)
               FROM (SELECT gone.*, t.contract, t.event, t.signature, t.topic0 AS type_topic0
                       FROM gone JOIN {s}.event_types t ON t.id = gone.type_id
                      ORDER BY gone.cursor) g"
        );
        Ok(self.c.execute(&sql, &[&signed(chain_id, "chain_id")?, &above]).await?)
    }

    /// Deletes the removals recorded more than `retention` ago (by the database clock);
    /// returns how many and the highest cursor among them.
    pub(crate) async fn prune_removals(
        &self,
        retention: std::time::Duration,
        sinks: &[String],
    ) -> Result<(u64, Option<i64>)> {
        // A removal a configured sink has not delivered yet is kept (that sink's reads
        // would fail with `cursor_expired` otherwise); a sink no longer configured holds
        // nothing back.
        let sql = format!(
            "WITH gone AS (
                DELETE FROM {s}.removals WHERE removed_at < now() - make_interval(secs => $1)
                   AND cursor <= coalesce((SELECT min(cursor) FROM {s}.sink_cursors WHERE name = ANY($2)),
                                          9223372036854775807)
                RETURNING cursor
             )
             SELECT count(*), max(cursor) FROM gone",
            s = self.s
        );
        let row = self.c.query_one(&sql, &[&retention.as_secs_f64(), &sinks]).await?;
        let count = stored_u64(row.try_get::<_, i64>(0)?, "removals", "count")?;
        Ok((count, row.try_get(1)?))
    }

    /// The distinct `(block number, hash)` pairs of `chain_id`'s stored events in
    /// `[from, to]`.
    pub(crate) async fn event_block_hashes(
        &self,
        chain_id: u64,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, String)>> {
        let sql = format!(
            "SELECT DISTINCT block_number, '0x' || encode(block_hash, 'hex') FROM {}.events
              WHERE chain_id = $1 AND block_number BETWEEN $2 AND $3",
            self.s
        );
        let rows = self
            .c
            .query(&sql, &[&signed(chain_id, "chain_id")?, &signed(from, "from")?, &signed(to, "to")?])
            .await?;
        rows.iter()
            .map(|r| Ok((stored_u64(r.try_get::<_, i64>(0)?, "events", "block_number")?, r.try_get(1)?)))
            .collect()
    }

    /// The highest block below `below` that has stored events of `chain_id`.
    pub(crate) async fn previous_event_block(&self, chain_id: u64, below: u64) -> Result<Option<u64>> {
        let sql = format!(
            "SELECT max(block_number) FROM {}.events WHERE chain_id = $1 AND block_number < $2",
            self.s
        );
        let row = self.c.query_one(&sql, &[&signed(chain_id, "chain_id")?, &signed(below, "below")?]).await?;
        row.try_get::<_, Option<i64>>(0)?.map(|n| stored_u64(n, "events", "block_number")).transpose()
    }

    /// `Ok` when PostgreSQL accepts `args` as `jsonb` on its own; a value error (e.g. a
    /// NUL escape) otherwise.
    pub(crate) async fn check_args(&self, args: &Value) -> Result<()> {
        self.c.query_one("SELECT $1::jsonb IS NOT NULL", &[args]).await?;
        Ok(())
    }
}
