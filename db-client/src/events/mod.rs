//! Reading indexed events: the filters of DESIGN §6 over the instance's `events` table,
//! with keyset pagination by cursor.
//!
//! Every value is bound as a query parameter; the only text spliced into the SQL is the
//! instance schema, as the quoted identifier of a validated [`SchemaName`], and for an
//! unfiltered page a `LIMIT` from a fixed list of page sizes. A missing
//! instance schema or table reads as an empty page (the instance is uninitialized), not
//! as an error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel::{Queryable, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tidemark_shared_types::{ChainSnapshot, Cursor, EventItem, IndexingStatus, PublicConfig, SchemaName};

use crate::error::{DbError, Result, stored_u64};
use crate::prepared::PreparedSql;

#[cfg(feature = "writer")]
pub(crate) mod write;

/// Page size when none is given.
const DEFAULT_LIMIT: u32 = 100;
/// Largest page size.
const MAX_LIMIT: u32 = 1000;

/// A page size between 1 and [`Limit::MAX`]; [`Limit::DEFAULT`] by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Limit(u32);

/// A page size outside `1..=MAX_LIMIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("limit must be between 1 and {MAX_LIMIT}")]
pub struct InvalidLimit;

impl Limit {
    /// The page size when none is given: 100.
    pub const DEFAULT: Self = Self(DEFAULT_LIMIT);
    /// The largest page size: 1000.
    pub const MAX: Self = Self(MAX_LIMIT);

    /// Validates a page size.
    ///
    /// ```
    /// use tidemark_db_client::Limit;
    ///
    /// assert_eq!(Limit::new(500).map(Limit::get), Ok(500));
    /// assert!(Limit::new(0).is_err());
    /// assert!(Limit::new(1001).is_err());
    /// assert_eq!(Limit::default(), Limit::DEFAULT);
    /// ```
    pub fn new(n: u64) -> std::result::Result<Self, InvalidLimit> {
        match u32::try_from(n) {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(Self(n)),
            _ => Err(InvalidLimit),
        }
    }

    /// The page size.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Self(DEFAULT_LIMIT)
    }
}

/// Which events to read. Every filter is optional; they combine with AND. Hex values
/// (`address`, `tx_hash`, topics) are compared in lowercase, the form the indexer stores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only this chain.
    pub chain_id: Option<u64>,
    /// Only this contract name (from the config).
    pub contract: Option<String>,
    /// Only this event name.
    pub event: Option<String>,
    /// Only events emitted by this contract address.
    pub address: Option<String>,
    /// Only events of this transaction.
    pub tx_hash: Option<String>,
    /// Only events whose first indexed topic (`topics[1]`, after the signature) is this.
    pub topic1: Option<String>,
    /// Only events whose second indexed topic is this.
    pub topic2: Option<String>,
    /// Only events whose third indexed topic is this.
    pub topic3: Option<String>,
    /// Only blocks at or above this number.
    pub from_block: Option<u64>,
    /// Only blocks at or below this number.
    pub to_block: Option<u64>,
    /// Only events after this cursor (exclusive): the previous page's `nextCursor`.
    pub after: Option<Cursor>,
    /// Page size.
    pub limit: Limit,
}

impl EventQuery {
    /// Checks that an index of the instance's `events` table serves this filter shape,
    /// so that no accepted query reads the whole table. Each of `chain_id`, `contract`,
    /// `address`, `tx_hash` and `topic1..3` leads an index; `event` is only served after
    /// `contract` (index `(contract, event, cursor)`) and a block range only after
    /// `chain_id` (index `(chain_id, block_number)`). So either no filter is set (the
    /// cursor's primary key serves the page), or at least one of those leading filters.
    ///
    /// Errors are [`DbError::InvalidQuery`] naming the missing companion parameter as the
    /// API spells it: `contract` for `event` alone, `chainId` for a block range alone.
    pub fn check_indexed(&self) -> Result<()> {
        let leading = self.chain_id.is_some()
            || [&self.contract, &self.address, &self.tx_hash, &self.topic1, &self.topic2, &self.topic3]
                .iter()
                .any(|f| f.is_some());
        if leading {
            return Ok(());
        }
        if self.event.is_some() {
            let message =
                "event needs contract (or another indexed filter: chainId, address, txHash, topic1..3)";
            return Err(DbError::InvalidQuery { field: "contract", message: message.into() });
        }
        if self.from_block.is_some() || self.to_block.is_some() {
            let message = "fromBlock and toBlock need chainId (or another indexed filter: contract, address, \
                           txHash, topic1..3)";
            return Err(DbError::InvalidQuery { field: "chainId", message: message.into() });
        }
        Ok(())
    }
}

/// One page of events in cursor order; `A` holds each event's arguments (see
/// [`EventItem`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPage<A = Value> {
    /// The events, ascending by cursor.
    pub items: Vec<EventItem<A>>,
    /// The cursor to pass as `after` for the next page; `None` when this page is the
    /// last one (no further event matched when it was read).
    pub next_cursor: Option<Cursor>,
}

impl<A> EventPage<A> {
    fn empty() -> Self {
        Self { items: Vec::new(), next_cursor: None }
    }
}

/// Which blocks are final, per chain: a block is final when it is at least the chain's
/// `finalityDepth` behind the chain's latest known block (the latest indexed block when
/// no head is known).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Finality {
    /// Per chain id, the highest final block number.
    final_up_to: BTreeMap<u64, u64>,
}

impl Finality {
    /// Derives finality from a public config (finality depths) and a status snapshot
    /// (heads). Chains missing from either have no final blocks.
    pub(crate) fn new(config: Option<&PublicConfig>, status: Option<&IndexingStatus>) -> Self {
        let (Some(config), Some(status)) = (config, status) else { return Self::default() };
        let final_up_to = config
            .chains
            .iter()
            .filter_map(|chain| {
                let head = match status.omnichain_snapshot.chains.get(&chain.chain_id)? {
                    ChainSnapshot::Queued { .. } => return None,
                    ChainSnapshot::Backfill { latest_indexed_block, backfill_end_block, .. } => {
                        latest_indexed_block.number.max(backfill_end_block.number)
                    }
                    ChainSnapshot::Following { latest_known_block, .. } => latest_known_block.number,
                    ChainSnapshot::Completed { latest_indexed_block, .. } => latest_indexed_block.number,
                };
                Some((chain.chain_id, head.checked_sub(chain.finality_depth)?))
            })
            .collect();
        Self { final_up_to }
    }

    /// True when `block` of `chain_id` is final.
    pub(crate) fn is_final(&self, chain_id: u64, block: u64) -> bool {
        self.final_up_to.get(&chain_id).is_some_and(|&f| block <= f)
    }
}

/// The SQL types of [`Row`], in the order of [`SELECT_COLUMNS`].
type RowSql = (
    BigInt,
    BigInt,
    BigInt,
    Text,
    BigInt,
    Text,
    Integer,
    Integer,
    Text,
    Text,
    Text,
    Text,
    Nullable<Text>,
    Nullable<Text>,
);

/// The columns of a page, in the order of [`Row`]'s fields (rows load by position).
pub(crate) const SELECT_COLUMNS: &str = "cursor, chain_id, block_number, block_hash, block_timestamp, tx_hash, tx_index, \
     log_index, address, contract, event, signature, args::text, decode_error";

/// One stored event, loaded by position from [`SELECT_COLUMNS`].
#[derive(Queryable)]
struct Row {
    cursor: i64,
    chain_id: i64,
    block_number: i64,
    block_hash: String,
    block_timestamp: i64,
    tx_hash: String,
    tx_index: i32,
    log_index: i32,
    address: String,
    contract: String,
    event: String,
    signature: String,
    /// `args` as stored JSON text (`args::text`): passed through, not parsed here; NULL
    /// when the log did not decode.
    args: Option<String>,
    /// Why the log did not decode.
    decode_error: Option<String>,
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

fn unsigned<T: TryInto<u64> + Copy + std::fmt::Display>(value: T, column: &str) -> Result<u64> {
    stored_u64(value, "events", column)
}

impl Row {
    fn into_item(self, finality: &Finality) -> Result<EventItem<Box<RawValue>>> {
        let chain_id = unsigned(self.chain_id, "chain_id")?;
        let block_number = unsigned(self.block_number, "block_number")?;
        let args = RawValue::from_string(self.args.unwrap_or_else(|| "null".to_owned())).map_err(|e| {
            DbError::InvalidStoredValue {
                key: "events",
                message: format!("column args of cursor {} is not JSON: {e}", self.cursor),
            }
        })?;
        Ok(EventItem {
            cursor: Cursor(self.cursor),
            chain_id,
            block_number,
            block_hash: self.block_hash,
            block_timestamp: unsigned(self.block_timestamp, "block_timestamp")?,
            transaction_hash: self.tx_hash,
            transaction_index: unsigned(self.tx_index, "tx_index")?,
            log_index: unsigned(self.log_index, "log_index")?,
            address: self.address,
            contract: self.contract,
            event: self.event,
            signature: self.signature,
            args,
            decode_error: self.decode_error,
            finalized: finality.is_final(chain_id, block_number),
        })
    }
}

/// Page sizes written into the SQL text as `LIMIT n + 1` for an unfiltered page (see
/// [`is_unfiltered`]); other sizes are bound. A short list, so that the statements
/// prepared per connection stay few.
const COMMON_LIMITS: [u32; 9] = [10, 20, 25, 50, 100, 200, 250, 500, MAX_LIMIT];

/// True when no filter is set (only `after` and `limit`): the statement is then
/// `cursor > $1 ORDER BY cursor LIMIT n`, whose best plan (the primary key's scan) is the
/// same for every value, so PostgreSQL may plan it once per connection (a generic plan)
/// instead of at every call. It chooses a generic plan only when `LIMIT` is in the SQL
/// text: with `LIMIT` as a parameter it estimates a large share of the table for the
/// generic plan and re-plans each execution (planning was about a fifth of the server's
/// time per page).
///
/// Filtered statements keep `LIMIT` bound and are planned per call with their values: a
/// generic plan estimates `contract = $2` as matching 1/(distinct values) of the rows, and
/// with few contracts prefers the primary key's scan with a filter, which reads the whole
/// table for a value that matches few rows or none (seen on 1 M rows:
/// `Index Scan using events_pkey … Filter: ((contract = $2) AND (event = $3))`).
fn is_unfiltered(query: &EventQuery) -> bool {
    let EventQuery {
        chain_id,
        contract,
        event,
        address,
        tx_hash,
        topic1,
        topic2,
        topic3,
        from_block,
        to_block,
        after: _,
        limit: _,
    } = query;
    [contract, event, address, tx_hash, topic1, topic2, topic3].iter().all(|f| f.is_none())
        && chain_id.is_none()
        && from_block.is_none()
        && to_block.is_none()
}

/// Parses the arguments of a raw page.
pub(crate) fn parse_args(page: EventPage<Box<RawValue>>) -> Result<EventPage> {
    let items = page
        .items
        .into_iter()
        .map(|i| {
            let args = serde_json::from_str(i.args.get()).map_err(|e| DbError::InvalidStoredValue {
                key: "events",
                message: format!("column args of cursor {} is not JSON: {e}", i.cursor),
            })?;
            Ok(EventItem {
                cursor: i.cursor,
                chain_id: i.chain_id,
                block_number: i.block_number,
                block_hash: i.block_hash,
                block_timestamp: i.block_timestamp,
                transaction_hash: i.transaction_hash,
                transaction_index: i.transaction_index,
                log_index: i.log_index,
                address: i.address,
                contract: i.contract,
                event: i.event,
                signature: i.signature,
                args,
                decode_error: i.decode_error,
                finalized: i.finalized,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EventPage { items, next_cursor: page.next_cursor })
}

/// Reads one page of events of `schema`, ascending by cursor, with `finalized` set from
/// `finality` and each event's arguments as the stored JSON text; adds the number of SQL
/// statements run to `queries`. A failure at or past `statement_timeout` (the
/// connection's, zero when unknown) is [`DbError::StatementTimeout`].
pub(crate) async fn query_events_counted(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    query: &EventQuery,
    finality: &Finality,
    queries: Option<&AtomicU64>,
    statement_timeout: Duration,
) -> Result<EventPage<Box<RawValue>>> {
    query.check_indexed()?;
    let count = |n| {
        if let Some(q) = queries {
            q.fetch_add(n, Ordering::Relaxed);
        }
    };
    // Bounds beyond the bigint range: nothing can match, or the bound is no bound.
    let to_i64 = |v: u64| i64::try_from(v).ok();
    let chain_id = match query.chain_id.map(to_i64) {
        Some(None) => return Ok(EventPage::empty()),
        other => other.flatten(),
    };
    let from_block = match query.from_block.map(to_i64) {
        Some(None) => return Ok(EventPage::empty()),
        other => other.flatten(),
    };
    let to_block = query.to_block.map(|v| to_i64(v).unwrap_or(i64::MAX));
    // PostgreSQL text cannot hold NUL, so a filter containing one matches nothing (and
    // sending it would be an encoding error).
    let texts = [&query.contract, &query.event, &query.address, &query.tx_hash, &query.topic1, &query.topic2];
    if texts.into_iter().chain([&query.topic3]).flatten().any(|t| t.contains('\0')) {
        return Ok(EventPage::empty());
    }

    let limit = query.limit.get();
    let mut q = PreparedSql::<RowSql>::new(format!(
        "SELECT {SELECT_COLUMNS} FROM {}.events WHERE cursor > ",
        schema.quoted()
    ));
    q.bigint(query.after.map_or(i64::MIN, |c| c.0));
    // Each filter adds a condition and its bound value; the SQL text depends only on which
    // filters are present (and, unfiltered, on the page size if it is one of
    // `COMMON_LIMITS`), so there are few distinct statements to prepare per connection.
    if let Some(v) = chain_id {
        q.sql(" AND chain_id = ").bigint(v);
    }
    if let Some(v) = &query.contract {
        q.sql(" AND contract = ").text(v.clone());
    }
    if let Some(v) = &query.event {
        q.sql(" AND event = ").text(v.clone());
    }
    let hex = [
        (" AND address = ", &query.address),
        (" AND tx_hash = ", &query.tx_hash),
        (" AND topics[2] = ", &query.topic1),
        (" AND topics[3] = ", &query.topic2),
        (" AND topics[4] = ", &query.topic3),
    ];
    for (condition, value) in hex {
        if let Some(v) = value {
            q.sql(condition).text(v.to_ascii_lowercase());
        }
    }
    if let Some(v) = from_block {
        q.sql(" AND block_number >= ").bigint(v);
    }
    if let Some(v) = to_block {
        q.sql(" AND block_number <= ").bigint(v);
    }
    // One row more than the page tells whether another page follows.
    q.sql(" ORDER BY cursor ASC LIMIT ");
    if is_unfiltered(query) && COMMON_LIMITS.contains(&limit) {
        q.sql(&(limit + 1).to_string());
    } else {
        q.bigint(i64::from(limit) + 1);
    }

    count(1);
    let sent = Instant::now();
    let rows: Vec<Row> = match q.load(conn).await {
        Ok(rows) => rows,
        Err(e @ diesel::result::Error::DatabaseError(..)) => {
            let e = DbError::from(e).timed(sent.elapsed(), statement_timeout);
            // A missing schema or table is "uninitialized": an empty page.
            count(1);
            let table = format!("{}.events", schema.quoted());
            let found: Exists = diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS exists")
                .bind::<Text, _>(table)
                .get_result(conn)
                .await?;
            if found.exists {
                return Err(e);
            }
            return Ok(EventPage::empty());
        }
        Err(e) => return Err(e.into()),
    };
    let more = rows.len() > limit as usize;
    let items =
        rows.into_iter().take(limit as usize).map(|r| r.into_item(finality)).collect::<Result<Vec<_>>>()?;
    let next_cursor = if more { items.last().map(|i| i.cursor) } else { None };
    Ok(EventPage { items, next_cursor })
}

#[cfg(test)]
mod tests {
    use tidemark_shared_types::config::{PublicChainConfig, VersionInfo};
    use tidemark_shared_types::{BlockRef, ChainIndexingConfig};

    use super::*;

    fn block(number: u64) -> BlockRef {
        BlockRef { number, timestamp: number, hash: format!("0x{number:064x}") }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(Limit::default().get(), 100);
        assert!(Limit::new(0).is_err());
        assert!(Limit::new(1001).is_err());
        assert!(Limit::new(u64::MAX).is_err());
        assert_eq!(Limit::new(1000).map(Limit::get), Ok(1000));
    }

    #[test]
    fn finality_uses_the_latest_known_block_and_the_depth() {
        let config = PublicConfig {
            namespace: "n".into(),
            instance_schema: "s".into(),
            chains: vec![
                PublicChainConfig { chain_id: 1, finality_depth: 12, contracts: vec![] },
                PublicChainConfig { chain_id: 2, finality_depth: 100, contracts: vec![] },
            ],
            version_info: VersionInfo::current(),
        };
        let chains = BTreeMap::from([
            (
                1,
                ChainSnapshot::Following {
                    stalled: None,
                    config: ChainIndexingConfig::LeftBounded { start_block: block(0) },
                    latest_indexed_block: block(90),
                    latest_known_block: block(100),
                },
            ),
            (
                2,
                ChainSnapshot::Following {
                    stalled: None,
                    config: ChainIndexingConfig::LeftBounded { start_block: block(0) },
                    latest_indexed_block: block(50),
                    latest_known_block: block(50),
                },
            ),
        ]);
        let status = IndexingStatus::derive(chains, 1000).expect("valid");
        let f = Finality::new(Some(&config), Some(&status));
        assert!(f.is_final(1, 88));
        assert!(!f.is_final(1, 89));
        assert!(!f.is_final(2, 0), "depth beyond the head: nothing final");
        assert!(!f.is_final(3, 0), "unknown chain");
        assert!(!Finality::new(Some(&config), None).is_final(1, 0));
    }
}
