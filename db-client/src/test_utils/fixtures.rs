//! What an indexer would write — public configs, status snapshots, events, epochs — so
//! that the read side can be tested against a real database without an indexer.

use std::collections::BTreeMap;

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Double, Integer, Jsonb, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tidemark_shared_types::config::{PublicChainConfig, PublicContractConfig};
use tidemark_shared_types::{
    BlockRef, ChainIndexingConfig, ChainSnapshot, Cursor, EpochItem, EpochStage, EpochStageEntry,
    IndexingStatus, PublicConfig, SchemaName, VersionInfo,
};

use crate::error::{DbError, Result};
use crate::events::write::EventRow;
use crate::migrate;
use crate::pool::{PgPool, PoolConfig, PooledConnection};
use crate::statements::{narrow, signed};
use crate::test_utils::TestDb;
use crate::test_utils::metadata::{write_indexing_status, write_public_config};
use crate::writer::Writer;

/// The columns of an events page as the client selects them, in its order
/// (for benchmarks that run the same statement on a connection of their own).
pub fn event_page_columns() -> &'static str {
    crate::events::SELECT_COLUMNS
}

/// The event signature of the fixtures' contracts.
pub const TRANSFER: &str = "event Transfer(address indexed from, address indexed to, uint256 value)";
/// keccak256 of `Transfer(address,address,uint256)`.
pub const TRANSFER_TOPIC0: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// The address of contract `Token` on every chain of [`public_config`].
pub fn token_address(chain_id: u64) -> String {
    format!("0x{:040x}", 0x7000_0000_u64 + chain_id)
}

/// A public config for `schema` indexing one contract, `Token`, on each of `chain_ids`
/// (finality depth 12, from block 0).
pub fn public_config(schema: &str, chain_ids: &[u64]) -> PublicConfig {
    PublicConfig {
        namespace: "test".into(),
        instance_schema: schema.into(),
        chains: chain_ids
            .iter()
            .map(|&chain_id| PublicChainConfig {
                chain_id,
                finality_depth: 12,
                contracts: vec![PublicContractConfig {
                    name: "Token".into(),
                    addresses: vec![token_address(chain_id)],
                    factory: None,
                    start_block: 0,
                    end_block: None,
                    events: vec![TRANSFER.into()],
                }],
            })
            .collect(),
        version_info: VersionInfo::current(),
    }
    .normalized()
}

/// A block whose timestamp is `1_795_400_000 + number` and whose hash encodes its number.
pub fn block(number: u64) -> BlockRef {
    BlockRef { number, timestamp: 1_795_400_000 + number, hash: format!("0x{number:064x}") }
}

/// A snapshot where every chain of `heads` follows its head: `(chain_id,
/// latest_indexed, latest_known)`.
pub fn following_status(heads: &[(u64, u64, u64)]) -> IndexingStatus {
    let chains: BTreeMap<u64, ChainSnapshot> = heads
        .iter()
        .map(|&(chain_id, indexed, known)| {
            (
                chain_id,
                ChainSnapshot::Following {
                    stalled: None,
                    webhooks: None,
                    progress: None,
                    sources: Vec::new(),
                    config: ChainIndexingConfig::LeftBounded { start_block: block(0) },
                    latest_indexed_block: block(indexed),
                    latest_known_block: block(known),
                },
            )
        })
        .collect();
    let time = heads.iter().map(|h| block(h.2).timestamp).max().unwrap_or(0);
    IndexingStatus::derive(chains, time).unwrap_or_else(|e| panic!("fixture status: {e}"))
}

/// A fresh database with the migrations run and `schema`'s tables created, and a pool
/// on it — the state an indexer leaves after start-up.
pub async fn migrated_instance(url: &str, schema: &SchemaName) -> PgPool {
    let pool = PgPool::new(PoolConfig::new(url)).unwrap_or_else(|e| panic!("pool: {e}"));
    create_instance(&pool, schema).await.unwrap_or_else(|e| panic!("instance {schema}: {e}"));
    pool
}

/// The preamble of reader tests: a fresh database with `schema`'s instance created
/// ([`migrated_instance`]), a connection on it, and, when `heads` names chains, what an
/// indexer following them stores: a [`public_config`] for their ids and a
/// [`following_status`] at `heads`. The database lives as long as the [`TestDb`].
///
/// # Panics
/// When a step fails.
pub async fn seeded_instance(
    schema: &SchemaName,
    heads: &[(u64, u64, u64)],
) -> (TestDb, PgPool, PooledConnection) {
    let db = TestDb::new().await;
    let pool = migrated_instance(&db.url, schema).await;
    let mut conn = pool.get().await.unwrap_or_else(|e| panic!("connection: {e}"));
    if !heads.is_empty() {
        let ids: Vec<u64> = heads.iter().map(|h| h.0).collect();
        let config = public_config(schema.as_str(), &ids);
        write_public_config(&mut conn, &config).await.unwrap_or_else(|e| panic!("config: {e}"));
        let status = following_status(heads);
        write_indexing_status(&mut conn, schema, &status).await.unwrap_or_else(|e| panic!("status: {e}"));
    }
    (db, pool, conn)
}

/// Runs the migrations and creates `schema`'s tables as the indexer does at start-up:
/// through a [`Writer`], which holds the instance's lock until it returns.
pub async fn create_instance(pool: &PgPool, schema: &SchemaName) -> Result<()> {
    migrate::run_migrations(pool).await?;
    let mut writer = Writer::try_acquire(pool, schema)
        .await?
        .ok_or_else(|| DbError::Unavailable(format!("the writer lock of {schema} is taken")))?;
    writer.ensure_instance_schema().await
}

/// Binary `COPY` of `rows` of `chain_id` into `schema`'s `events` (cursors from 1) on
/// `client`, outside any writer and transaction — the writer's `COPY` alone, the raw
/// write rate the benchmark compares the writer with.
pub async fn copy_events(
    client: &tokio_postgres::Client,
    schema: &SchemaName,
    chain_id: u64,
    rows: &[EventRow],
) -> Result<()> {
    crate::statements::Statements::new(client, schema).register_and_copy_events(1, chain_id, rows).await
}

/// One row of `events`, as the indexer would store it.
#[derive(Debug, Clone, PartialEq)]
pub struct TestEvent {
    /// Chain id.
    pub chain_id: u64,
    /// Block number; the block hash and timestamp follow from it ([`block`]).
    pub block_number: u64,
    /// Transaction hash (lowercase).
    pub tx_hash: String,
    /// Transaction index.
    pub tx_index: u32,
    /// Log index.
    pub log_index: u32,
    /// Emitting contract (lowercase).
    pub address: String,
    /// Contract name.
    pub contract: String,
    /// Event name.
    pub event: String,
    /// Canonical signature.
    pub signature: String,
    /// `topics[0]` is the event's topic0; then the indexed arguments.
    pub topics: Vec<String>,
    /// Decoded arguments.
    pub args: serde_json::Value,
}

/// A 32-byte word whose value is `n`, as a topic or hash.
pub fn word(n: u64) -> String {
    format!("0x{n:064x}")
}

impl TestEvent {
    /// A `Token` `Transfer` at `block_number`/`log_index` from `word(from)` to `word(to)`.
    pub fn transfer(chain_id: u64, block_number: u64, log_index: u32, from: u64, to: u64) -> Self {
        Self {
            chain_id,
            block_number,
            tx_hash: word(block_number * 1000 + u64::from(log_index)),
            tx_index: 0,
            log_index,
            address: token_address(chain_id),
            contract: "Token".into(),
            event: "Transfer".into(),
            signature: TRANSFER.into(),
            topics: vec![TRANSFER_TOPIC0.into(), word(from), word(to)],
            args: serde_json::json!({"from": word(from), "to": word(to), "value": "1"}),
        }
    }
}

/// The SQL of `event_types` with each type's `contract_id` and `event_id` (layout 4).
fn types_sql(schema: &SchemaName) -> String {
    format!(
        "SELECT id, contract, event, signature, topic0, min(id) OVER (PARTITION BY contract) AS contract_id,
                min(id) OVER (PARTITION BY contract, event) AS event_id FROM {}.event_types",
        schema.quoted()
    )
}

/// The `bytea` of the `0x` hex text that SQL expression `text` yields.
fn from_hex(text: &str) -> String {
    format!("decode(substr({text}, 3), 'hex')")
}

/// Adds an event type to `event_types` unless it is there, with `topic0` (hex) as its
/// first topic.
async fn register_type(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    contract: &str,
    event: &str,
    signature: &str,
    topic0: Option<&String>,
) -> Result<()> {
    diesel::sql_query(format!(
        "INSERT INTO {}.event_types (contract, event, signature, topic0)
         VALUES ($1, $2, $3, {}) ON CONFLICT DO NOTHING",
        schema.quoted(),
        from_hex("$4")
    ))
    .bind::<Text, _>(contract)
    .bind::<Text, _>(event)
    .bind::<Text, _>(signature)
    .bind::<diesel::sql_types::Nullable<Text>, _>(topic0)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = BigInt)]
    cursor: i64,
}

/// Inserts one event with the next cursor of the instance's sequence.
pub async fn insert_event(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    e: &TestEvent,
) -> Result<Cursor> {
    let b = block(e.block_number);
    register_type(conn, schema, &e.contract, &e.event, &e.signature, <[String]>::first(&e.topics)).await?;
    let row: Inserted = diesel::sql_query(format!(
        "INSERT INTO {s}.events (cursor, chain_id, block_number, block_hash, block_timestamp, tx_hash, tx_index,
            log_index, address, contract_id, event_id, type_id, topic0, topic1, topic2, topic3, data, args)
         SELECT nextval($1::regclass), $2, $3, {b4}, $5, {b6}, $7, $8, {b9}, t.contract_id, t.event_id, t.id,
                nullif({t1}, t.topic0), {t2}, {t3}, {t4}, '\\x', $14
           FROM ({TYPES}) t WHERE t.contract = $10 AND t.event = $11 AND t.signature = $12
         RETURNING cursor",
        s = schema.quoted(),
        TYPES = types_sql(schema),
        b4 = from_hex("$4"),
        b6 = from_hex("$6"),
        b9 = from_hex("$9"),
        t1 = from_hex("($13::text[])[1]"),
        t2 = from_hex("($13::text[])[2]"),
        t3 = from_hex("($13::text[])[3]"),
        t4 = from_hex("($13::text[])[4]"),
    ))
    .bind::<Text, _>(format!("{}.cursor_seq", schema.quoted()))
    .bind::<BigInt, _>(signed(e.chain_id, "chain_id")?)
    .bind::<BigInt, _>(signed(e.block_number, "block_number")?)
    .bind::<Text, _>(b.hash)
    .bind::<BigInt, _>(signed(b.timestamp, "block_timestamp")?)
    .bind::<Text, _>(&e.tx_hash)
    .bind::<Integer, _>(narrow::<i32>(e.tx_index.into(), "tx_index")?)
    .bind::<Integer, _>(narrow::<i32>(e.log_index.into(), "log_index")?)
    .bind::<Text, _>(&e.address)
    .bind::<Text, _>(&e.contract)
    .bind::<Text, _>(&e.event)
    .bind::<Text, _>(&e.signature)
    .bind::<Array<Text>, _>(&e.topics)
    .bind::<Jsonb, _>(&e.args)
    .get_result(conn)
    .await?;
    Ok(Cursor(row.cursor))
}

/// Inserts `n` `Token` `Transfer` events on `chain_id` in one statement: event `i`
/// (from 0) is in block `i / 10`, log index `i % 10`, from `word(i % 7)` to
/// `word(i % 11)`.
pub async fn insert_synthetic_events(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    chain_id: u64,
    n: u64,
) -> Result<()> {
    register_type(conn, schema, "Token", "Transfer", TRANSFER, Some(&TRANSFER_TOPIC0.to_owned())).await?;
    diesel::sql_query(format!(
        "INSERT INTO {s}.events (cursor, chain_id, block_number, block_hash, block_timestamp, tx_hash, tx_index,
            log_index, address, contract_id, event_id, type_id, topic0, topic1, topic2, data, args)
         SELECT nextval($1::regclass), $2, i / 10, decode(lpad(to_hex(i / 10), 64, '0'), 'hex'), 1795400000 + i / 10,
                decode(lpad(to_hex(i), 64, '0'), 'hex'), 0, i % 10, {address}, t.contract_id, t.event_id, t.id,
                nullif({topic0}, t.topic0), decode(lpad(to_hex(i % 7), 64, '0'), 'hex'), decode(lpad(to_hex(i % 11), 64, '0'), 'hex'),
                '\\x', jsonb_build_object('value', i::text)
           FROM generate_series(0::bigint, $6 - 1) AS i,
                ({TYPES}) t WHERE t.contract = 'Token' AND t.event = 'Transfer' AND t.signature = $4
          ORDER BY i",
        s = schema.quoted(),
        TYPES = types_sql(schema),
        address = from_hex("$3"),
        topic0 = from_hex("$5"),
    ))
    .bind::<Text, _>(format!("{}.cursor_seq", schema.quoted()))
    .bind::<BigInt, _>(signed(chain_id, "chain_id")?)
    .bind::<Text, _>(token_address(chain_id))
    .bind::<Text, _>(TRANSFER)
    .bind::<Text, _>(TRANSFER_TOPIC0)
    .bind::<BigInt, _>(signed(n, "n")?)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves the `updated_at` of `schema`'s metadata row `key` `secs` seconds into the past,
/// as if nothing had been written since (staleness is judged on the database clock).
pub async fn backdate_metadata(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    key: &str,
    secs: f64,
) -> Result<()> {
    diesel::sql_query(
        "UPDATE tidemark.metadata SET updated_at = now() - make_interval(secs => $3)
          WHERE instance_schema = $1 AND key = $2",
    )
    .bind::<Text, _>(schema.as_str())
    .bind::<Text, _>(key)
    .bind::<Double, _>(secs)
    .execute(conn)
    .await?;
    Ok(())
}

/// `n` events over chains 1 and 10 and two contracts (`Token` `Transfer`s with two
/// indexed topics, and every fourth a `Registry` `Registered` with three), with varied
/// topics, four per block.
pub fn varied_events(n: u64) -> Vec<TestEvent> {
    (0..n)
        .map(|i| {
            let chain = if i % 3 == 0 { 10 } else { 1 };
            let mut e = TestEvent::transfer(chain, i / 4, u32::try_from(i % 4).unwrap_or(0), i % 5, i % 7);
            if i % 4 == 3 {
                e.contract = "Registry".into();
                e.event = "Registered".into();
                e.signature =
                    "event Registered(bytes32 indexed id, address indexed owner, uint256 indexed n)".into();
                e.address = format!("0x{:040x}", 0xabc0 + chain);
                e.topics = vec![word(99), word(i % 3), word(i % 5), word(i % 2)];
            }
            e
        })
        .collect()
}

impl TestEvent {
    /// The model of the API's filters: true when this event matches every filter of `q`
    /// (ignoring `after` and `limit`).
    pub fn matches(&self, q: &crate::events::EventQuery) -> bool {
        let topic = |n: usize| self.topics.get(n).map(String::as_str);
        let hex_eq =
            |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w.eq_ignore_ascii_case(have));
        q.chain_id.is_none_or(|c| c == self.chain_id)
            && q.contract.as_deref().is_none_or(|c| c == self.contract)
            && q.event.as_deref().is_none_or(|v| v == self.event)
            && hex_eq(&q.address, &self.address)
            && hex_eq(&q.tx_hash, &self.tx_hash)
            && q.topic1.as_deref().is_none_or(|t| topic(1).is_some_and(|x| x.eq_ignore_ascii_case(t)))
            && q.topic2.as_deref().is_none_or(|t| topic(2).is_some_and(|x| x.eq_ignore_ascii_case(t)))
            && q.topic3.as_deref().is_none_or(|t| topic(3).is_some_and(|x| x.eq_ignore_ascii_case(t)))
            && q.from_block.is_none_or(|b| self.block_number >= b)
            && q.to_block.is_none_or(|b| self.block_number <= b)
    }
}

/// Epoch `epoch_id` of `chain_id` in `stage`, covering blocks `10 * epoch_id` to
/// `10 * epoch_id + 9`. Its history goes through the pipeline up to `stage` (a reorged
/// epoch was stored first), one stage every 250 ms from `1_795_400_000 + epoch_id`
/// seconds; a `planned` epoch carries an error; a finalized epoch of even id has
/// `delivered` after `finalized`.
pub fn epoch(chain_id: u64, epoch_id: u64, stage: EpochStage) -> EpochItem {
    let path: &[EpochStage] = match stage {
        EpochStage::Reorged => {
            &[EpochStage::Planned, EpochStage::Fetched, EpochStage::Decoded, EpochStage::Stored]
        }
        _ => &EpochStage::NOT_FINALIZED,
    };
    let mut stages: Vec<EpochStage> = path.iter().copied().take_while(|s| *s != stage).collect();
    stages.push(stage);
    // Every other finalized epoch was delivered by the sinks too (a stage of the history).
    if stage == EpochStage::Finalized && epoch_id.is_multiple_of(2) {
        stages.push(EpochStage::Delivered);
    }
    let start = 1_795_400_000.0 + epoch_id as f64;
    EpochItem {
        chain_id,
        epoch_id,
        from_block: 10 * epoch_id,
        to_block: 10 * epoch_id + 9,
        stage,
        stages: stages
            .into_iter()
            .enumerate()
            .map(|(i, stage)| EpochStageEntry { stage, at: start + 0.25 * i as f64 })
            .collect(),
        error: (stage == EpochStage::Planned)
            .then(|| "planned: provider answered 429 to eth_getLogs".to_owned()),
        source: None,
    }
}

/// Epochs `1..=n` of `chain_id`, epoch `i` in stage `EpochStage::ALL[i % 6]`, so that
/// every stage occurs.
pub fn varied_epochs(chain_id: u64, n: u64) -> Vec<EpochItem> {
    (1..=n).map(|i| epoch(chain_id, i, EpochStage::ALL[(i % 6) as usize])).collect()
}

/// Inserts (or replaces) epochs as the indexer stores them, in one statement.
pub async fn insert_epochs(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    epochs: &[EpochItem],
) -> Result<()> {
    let history = |e: &EpochItem| serde_json::to_value(&e.stages).unwrap_or_else(|_| serde_json::json!([]));
    let column = |f: fn(&EpochItem) -> u64, name| {
        epochs.iter().map(|e| signed(f(e), name)).collect::<Result<Vec<_>>>()
    };
    diesel::sql_query(format!(
        "INSERT INTO {s}.epochs (chain_id, epoch_id, from_block, to_block, stage, stages, error, updated_at)
         SELECT u.c, u.i, u.f, u.t, u.s, u.h, u.e, now()
           FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::jsonb[], $7::text[])
                AS u(c, i, f, t, s, h, e)
         ON CONFLICT (chain_id, epoch_id) DO UPDATE
            SET from_block = EXCLUDED.from_block, to_block = EXCLUDED.to_block, stage = EXCLUDED.stage,
                stages = EXCLUDED.stages, error = EXCLUDED.error, updated_at = now()",
        s = schema.quoted()
    ))
    .bind::<Array<BigInt>, _>(column(|e| e.chain_id, "chain_id")?)
    .bind::<Array<BigInt>, _>(column(|e| e.epoch_id, "epoch_id")?)
    .bind::<Array<BigInt>, _>(column(|e| e.from_block, "from_block")?)
    .bind::<Array<BigInt>, _>(column(|e| e.to_block, "to_block")?)
    .bind::<Array<Text>, _>(epochs.iter().map(|e| e.stage.as_str()).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(epochs.iter().map(history).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(epochs.iter().map(|e| e.error.clone()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// The model of the epoch pages: the epochs matching `chain_id` and `stage`, newest first
/// (by `epoch_id` descending, then `chain_id` ascending).
pub fn epochs_matching(
    epochs: &[EpochItem],
    chain_id: Option<u64>,
    stage: Option<EpochStage>,
) -> Vec<EpochItem> {
    let mut out: Vec<EpochItem> = epochs
        .iter()
        .filter(|e| {
            chain_id.is_none_or(|c| c == e.chain_id)
                && stage.is_none_or(|s| match s {
                    // A stage of the history only.
                    EpochStage::Delivered => e.stages.iter().any(|h| h.stage == s),
                    s => s == e.stage,
                })
        })
        .cloned()
        .collect();
    out.sort_by(|a, b| b.epoch_id.cmp(&a.epoch_id).then(a.chain_id.cmp(&b.chain_id)));
    out
}
