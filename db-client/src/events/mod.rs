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

use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Oid, Text};
use diesel::{Queryable, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tidemark_shared_types::{ChainSnapshot, Cursor, EventItem, IndexingStatus, PublicConfig, SchemaName};

use crate::error::{DbError, Result, stored_u64};
use crate::prepared::PreparedSql;

#[cfg(feature = "writer")]
pub(crate) mod indexes;
pub(crate) mod journal;
// Public to the plans test and the bench through `test_utils::plans`.
#[cfg_attr(not(feature = "test-utils"), allow(unreachable_pub, dead_code))]
pub(crate) mod shape;
pub(crate) mod types;
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
/// (`address`, `tx_hash`, topics) are `0x` hex in either case; one that is not matches
/// nothing.
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
    /// Only events after this cursor in the page order (exclusive): the previous page's
    /// `nextCursor`. With [`Order::Desc`], the events below it.
    pub after: Option<Cursor>,
    /// Page size.
    pub limit: Limit,
    /// Ascending cursors (oldest first, the default) or descending (newest first).
    pub order: Order,
}

/// The order of an events page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first: `nextCursor` pages towards newer events.
    #[default]
    Asc,
    /// Newest first: `nextCursor` pages towards older events.
    Desc,
}

impl EventQuery {
    /// Checks that an index of the instance's `events` table serves this filter shape,
    /// so that no accepted query walks the table past rows it discards (the rule and the
    /// index behind each shape: [`shape`](self::shape)). In short: `event` needs
    /// `contract`; a block range needs `chainId`, `fromBlock` and `toBlock`; a `txHash` or
    /// a topic serves any shape.
    ///
    /// Errors are [`DbError::InvalidQuery`] naming the missing companion parameter as the
    /// API spells it.
    ///
    /// ```
    /// use tidemark_db_client::EventQuery;
    ///
    /// let q = EventQuery { chain_id: Some(1), event: Some("Transfer".into()), ..Default::default() };
    /// assert!(q.check_indexed().is_err());
    /// let q = EventQuery { contract: Some("Token".into()), ..q };
    /// assert!(q.check_indexed().is_ok());
    /// ```
    pub fn check_indexed(&self) -> Result<()> {
        shape::Shape::of(self)
            .check()
            .map_err(|m| DbError::InvalidQuery { field: m.field, message: m.message.into() })
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
    /// Per chain id, the blocks indexed so far: the start block and the latest indexed.
    spans: BTreeMap<u64, (u64, u64)>,
}

impl Finality {
    /// Derives finality from a public config (finality depths) and a status snapshot
    /// (heads). Chains missing from either have no final blocks.
    pub(crate) fn new(config: Option<&PublicConfig>, status: Option<&IndexingStatus>) -> Self {
        let Some(status) = status else { return Self::default() };
        let chains = &status.omnichain_snapshot.chains;
        let spans = chains
            .iter()
            .filter_map(|(id, c)| {
                Some((*id, (c.config().start_block().number, c.latest_indexed_block()?.number)))
            })
            .collect();
        let Some(config) = config else { return Self { spans, ..Self::default() } };
        let final_up_to = config
            .chains
            .iter()
            .filter_map(|chain| {
                let head = match chains.get(&chain.chain_id)? {
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
        Self { final_up_to, spans }
    }

    /// True when the range `from..=to` holds at least half of the blocks `chain_id` has
    /// indexed (unknown: false).
    pub(crate) fn covers_most_of(&self, chain_id: u64, from: u64, to: u64) -> bool {
        let Some(&(start, head)) = self.spans.get(&chain_id) else { return false };
        let span = head.saturating_sub(start) + 1;
        let inside = to.min(head).saturating_add(1).saturating_sub(from.max(start));
        inside.saturating_mul(2) >= span
    }

    /// True when `block` of `chain_id` is final.
    pub(crate) fn is_final(&self, chain_id: u64, block: u64) -> bool {
        self.final_up_to.get(&chain_id).is_some_and(|&f| block <= f)
    }
}

/// The SQL types of [`Row`], in the order of [`SELECT_COLUMNS`].
pub(crate) type RowSql = (
    BigInt,
    BigInt,
    BigInt,
    Text,
    BigInt,
    Text,
    Integer,
    Integer,
    Text,
    Oid,
    Integer,
    Nullable<Text>,
    Nullable<Text>,
);

/// The columns of a page, in the order of [`Row`]'s fields (rows load by position):
/// hashes and the address as `0x` hex, and the row's event type as the `events` table's
/// OID and the type's id, whose names the reader supplies ([`types`]).
pub(crate) const SELECT_COLUMNS: &str = "cursor, chain_id, block_number, '0x' || encode(block_hash, 'hex'), \
     block_timestamp, '0x' || encode(tx_hash, 'hex'), tx_index, log_index, '0x' || encode(address, 'hex'), \
     tableoid, type_id, args::text, decode_error";

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
    /// The OID of the `events` table (the key of `type_id`, see [`types`]).
    table: u32,
    /// The row's event type.
    type_id: i32,
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
    fn into_item(self, finality: &Finality, types: &types::Loaded) -> Result<EventItem<Box<RawValue>>> {
        let chain_id = unsigned(self.chain_id, "chain_id")?;
        let block_number = unsigned(self.block_number, "block_number")?;
        let Some(types::Names { contract, event, signature }) = types.get(self.table, self.type_id).cloned()
        else {
            return Err(DbError::InvalidStoredValue {
                key: "events",
                message: format!("the event type of cursor {} is not in event_types", self.cursor),
            });
        };
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
            contract,
            event,
            signature,
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
/// Filtered statements keep `LIMIT` bound. PostgreSQL plans their first five executions
/// with the values and may then switch to a generic plan (at 10 M rows, 42 of 57 measured
/// shapes did). A generic plan estimates `contract = $2` as matching 1/(distinct values)
/// of the rows, so it is only safe when the index the shape needs is also the generic
/// plan's choice: the rule admits only such shapes ([`shape`]), and
/// `db-client/tests/it/plans.rs` checks both plans, the first execution's and the
/// seventh's.
fn is_unfiltered(query: &EventQuery) -> bool {
    shape::Shape::of(query).is_empty()
}

/// Parses the arguments of a raw page.
pub(crate) fn parse_args(page: EventPage<Box<RawValue>>) -> Result<EventPage> {
    let items = page.items.into_iter().map(parse_item).collect::<Result<Vec<_>>>()?;
    Ok(EventPage { items, next_cursor: page.next_cursor })
}

/// Parses the arguments of one raw event.
pub(crate) fn parse_item(i: EventItem<Box<RawValue>>) -> Result<EventItem> {
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
}

/// The statement of an events page: `None` when nothing can match (a bound beyond the
/// `bigint` range, a NUL in a text filter), an error when no index serves the shape
/// ([`EventQuery::check_indexed`]).
pub(crate) fn statement(
    schema: &SchemaName,
    query: &EventQuery,
    finality: &Finality,
) -> Result<Option<PreparedSql<RowSql>>> {
    query.check_indexed()?;
    Ok(unchecked_statement(schema, query, finality))
}

/// A filter's bound value.
enum Bound {
    BigInt(i64),
    Bytes(Vec<u8>),
    /// The `contract_id` of a contract name: the lowest id of its event types.
    ContractId(String),
    /// The `event_id` of a contract's event name: the lowest id of its types of that name.
    EventId(String, String),
    /// The ids of every type of an event name, whatever the contract (a shape the rule
    /// refuses; kept for the plans test).
    TypeIds(String),
}

impl Bound {
    /// Appends the value to `q`: a bound parameter, or for a name the subquery that
    /// finds its id in `event_types` (an unknown name yields NULL, which matches nothing).
    fn bind(&self, q: &mut PreparedSql<RowSql>, s: &str) {
        match self {
            Bound::BigInt(v) => q.bigint(*v),
            Bound::Bytes(v) => q.bytes(v.clone()),
            Bound::ContractId(c) => q
                .sql(&format!("(SELECT min(id) FROM {s}.event_types WHERE contract = "))
                .text(c.clone())
                .sql(")"),
            Bound::EventId(c, e) => q
                .sql(&format!("(SELECT min(id) FROM {s}.event_types WHERE contract = "))
                .text(c.clone())
                .sql(" AND event = ")
                .text(e.clone())
                .sql(")"),
            Bound::TypeIds(e) => q
                .sql(&format!("ANY (ARRAY(SELECT id FROM {s}.event_types WHERE event = "))
                .text(e.clone())
                .sql("))"),
        };
    }
}

/// What reads a page's rows. PostgreSQL estimates a `LIMIT` in cursor order as if the
/// matching rows were spread evenly over the table; when they are not (a chain or a
/// contract added late, a range of recent blocks), it walks the primary key past every
/// row before them. So the statement names the index instead, by the most specific
/// filter it has (see [`shape`]): topics, then a block range narrower than half the
/// chain, `address`, `contract` + `event`, `contract`, `chainId`.
enum Driver {
    /// An index `(key…, cursor)`: the statement selects `(key…, cursor)` between
    /// `(values…, after)` and `(values…, max)` and orders by `key…, cursor`, an order only
    /// that index yields.
    Key(Vec<&'static str>),
    /// A block range of one chain over less than half of the blocks it has indexed (by its
    /// status; unknown counts as less): the rows of the range or of another filter, as
    /// PostgreSQL estimates fewer, sorted (`ORDER BY cursor + 0`). A wider range is read
    /// by the shape's key.
    Range,
    /// No filter (the primary key), or a transaction hash (few rows): the plain
    /// statement.
    Planner,
}

impl Driver {
    fn of(query: &EventQuery, finality: &Finality) -> Self {
        let key = |columns: &[&'static str]| Self::Key(columns.to_vec());
        if query.tx_hash.is_some() {
            return Self::Planner;
        }
        for (topic, column) in
            [(&query.topic1, "topic1"), (&query.topic2, "topic2"), (&query.topic3, "topic3")]
        {
            if topic.is_some() {
                return key(&[column]);
            }
        }
        if let (Some(chain), Some(from), Some(to)) = (query.chain_id, query.from_block, query.to_block) {
            // A range over less than half of what the chain has indexed (or of unknown
            // share) is read by its rows, or by those of a more selective filter of the
            // shape, whichever PostgreSQL estimates fewer: no index yields `cursor + 0` in
            // order, so it cannot walk one past the rows before the range. Over most of the
            // chain, the range's rows are most of the chain's, and walking a key in cursor
            // order finds them at once, where sorting them would cost them all per page.
            if !finality.covers_most_of(chain, from, to) {
                return Self::Range;
            }
        }
        if query.address.is_some() {
            return key(&["address"]);
        }
        if query.contract.is_some() && query.event.is_some() {
            return key(&["event_id"]);
        }
        if query.contract.is_some() {
            return key(&["contract_id"]);
        }
        if query.chain_id.is_some() { key(&["chain_id"]) } else { Self::Planner }
    }
}

/// [`statement`] without the rule: also for shapes no index serves (the plans test shows
/// what they cost).
pub(crate) fn unchecked_statement(
    schema: &SchemaName,
    query: &EventQuery,
    finality: &Finality,
) -> Option<PreparedSql<RowSql>> {
    // Bounds beyond the bigint range: nothing can match, or the bound is no bound.
    let to_i64 = |v: u64| i64::try_from(v).ok();
    let chain_id = match query.chain_id.map(to_i64) {
        Some(None) => return None,
        other => other.flatten(),
    };
    let from_block = match query.from_block.map(to_i64) {
        Some(None) => return None,
        other => other.flatten(),
    };
    let to_block = query.to_block.map(|v| to_i64(v).unwrap_or(i64::MAX));
    // PostgreSQL text cannot hold NUL, so a filter containing one matches nothing (and
    // sending it would be an encoding error).
    let texts = [&query.contract, &query.event, &query.address, &query.tx_hash, &query.topic1, &query.topic2];
    if texts.into_iter().chain([&query.topic3]).flatten().any(|t| t.contains('\0')) {
        return None;
    }

    let desc = query.order == Order::Desc;
    // The page's bounds on the cursor: strictly beyond `after` in the page's order, up to
    // the end of the cursor range.
    let (beyond, after, to_end, end) = match query.order {
        Order::Asc => (" > ", query.after.map_or(i64::MIN, |c| c.0), " <= ", i64::MAX),
        Order::Desc => (" < ", query.after.map_or(i64::MAX, |c| c.0), " >= ", i64::MIN),
    };
    // Hex filters compare bytes; a value that is not `0x` hex matches nothing.
    let mut hex = Vec::new();
    for value in [&query.address, &query.tx_hash, &query.topic1, &query.topic2, &query.topic3] {
        hex.push(match value {
            Some(v) => Some(Bound::Bytes(crate::hex::filter_bytes(v)?)),
            None => None,
        });
    }
    let [address, tx_hash, topic1, topic2, topic3]: [Option<Bound>; 5] = hex.try_into().ok()?;
    // The filters as (column, value) conditions, in the order of the SQL text.
    let mut conditions: Vec<(&str, Bound)> = Vec::new();
    let mut push = |column, value: Option<Bound>| {
        if let Some(v) = value {
            conditions.push((column, v));
        }
    };
    push("chain_id", chain_id.map(Bound::BigInt));
    push("contract_id", query.contract.clone().map(Bound::ContractId));
    match (&query.contract, &query.event) {
        (Some(c), Some(e)) => push("event_id", Some(Bound::EventId(c.clone(), e.clone()))),
        (None, Some(e)) => push("type_id", Some(Bound::TypeIds(e.clone()))),
        _ => {}
    }
    push("address", address);
    push("tx_hash", tx_hash);
    push("topic1", topic1);
    push("topic2", topic2);
    push("topic3", topic3);
    let driver = Driver::of(query, finality);

    let s = schema.quoted();
    let mut q = PreparedSql::<RowSql>::new(format!("SELECT {SELECT_COLUMNS} FROM {s}.events WHERE "));
    match &driver {
        Driver::Key(key) => {
            // `(key…, cursor)` between `(values…, after)` and `(values…, max)`: only the
            // index on `(key…, cursor)` yields these rows in the `ORDER BY` below.
            let values: Vec<&Bound> =
                key.iter().filter_map(|k| conditions.iter().find(|(c, _)| c == k).map(|(_, v)| v)).collect();
            let tuple = format!("({}, cursor)", key.join(", "));
            for (op, last) in [(beyond, Bound::BigInt(after)), (to_end, Bound::BigInt(end))] {
                if op == to_end {
                    q.sql(" AND ");
                }
                q.sql(&tuple).sql(op).sql("(");
                for v in &values {
                    v.bind(&mut q, &s);
                    q.sql(", ");
                }
                last.bind(&mut q, &s);
                q.sql(")");
            }
            // A topic's index holds only the rows that have that topic (partial): say so,
            // as the row comparison above does not imply it to the planner.
            for column in key.iter().filter(|c| c.starts_with("topic")) {
                q.sql(" AND ").sql(column).sql(" IS NOT NULL");
            }
            conditions.retain(|(c, _)| !key.contains(c));
        }
        Driver::Range | Driver::Planner => {
            q.sql("cursor").sql(beyond).bigint(after);
        }
    }
    // Each filter adds a condition and its bound value; the SQL text depends only on which
    // filters are present (and, unfiltered, on the page size if it is one of
    // `COMMON_LIMITS`), so there are few distinct statements to prepare per connection.
    // Behind a key, a block range is checked on the key's rows only: written so that no
    // index matches it (`+ 0`), or PostgreSQL may combine the chain's block index with the
    // key's (measured at 10 M rows: a topic with an open range read every block entry of
    // the chain, 29 ms where the key alone takes 0.4). Equalities stay as they are: their
    // estimates steer the plan to the key.
    let block = if matches!(driver, Driver::Key(_)) { "block_number + 0" } else { "block_number" };
    for (column, value) in &conditions {
        q.sql(" AND ").sql(column).sql(" = ");
        value.bind(&mut q, &s);
    }
    if let Some(v) = from_block {
        q.sql(" AND ").sql(block).sql(" >= ").bigint(v);
    }
    if let Some(v) = to_block {
        q.sql(" AND ").sql(block).sql(" <= ").bigint(v);
    }
    // Descending, each index is walked backwards.
    let dir = if desc { " DESC" } else { "" };
    q.sql(&match &driver {
        Driver::Key(key) => {
            format!(
                " ORDER BY {}, cursor{dir}",
                key.iter().map(|k| format!("{k}{dir}")).collect::<Vec<_>>().join(", ")
            )
        }
        // No index yields `cursor + 0` in order: the range's rows (index
        // `(chain_id, block_number)`) are read and sorted, never the table walked in
        // cursor order past the rows before the range.
        Driver::Range => format!(" ORDER BY cursor + 0{dir}"),
        Driver::Planner => format!(" ORDER BY cursor{}", if desc { " DESC" } else { " ASC" }),
    });
    // One row more than the page tells whether another page follows.
    q.sql(" LIMIT ");
    let limit = query.limit.get();
    if is_unfiltered(query) && COMMON_LIMITS.contains(&limit) {
        q.sql(&(limit + 1).to_string());
    } else {
        q.bigint(i64::from(limit) + 1);
    }
    Some(q)
}

/// What reading a page needs besides its connection and query.
pub(crate) struct PageRead<'a> {
    /// The instance.
    pub(crate) schema: &'a SchemaName,
    /// Which blocks are final (each item's `finalized`).
    pub(crate) finality: &'a Finality,
    /// The names of the event types.
    pub(crate) types: &'a types::EventTypes,
    /// Counts the SQL statements run.
    pub(crate) queries: Option<&'a AtomicU64>,
    /// The connection's statement timeout (zero when unknown): a failure at or past it is
    /// [`DbError::StatementTimeout`].
    pub(crate) statement_timeout: Duration,
}

impl PageRead<'_> {
    fn count(&self, n: u64) {
        if let Some(q) = self.queries {
            q.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Reads one page of events, by cursor in the query's order, with `finalized` set from
/// `read.finality` and each event's arguments as the stored JSON text.
pub(crate) async fn query_events_counted(
    conn: &mut AsyncPgConnection,
    read: &PageRead<'_>,
    query: &EventQuery,
) -> Result<EventPage<Box<RawValue>>> {
    let schema = read.schema;
    let Some(q) = statement(schema, query, read.finality)? else { return Ok(EventPage::empty()) };
    let limit = query.limit.get();
    read.count(1);
    let sent = Instant::now();
    let mut rows: Vec<Row> = match q.load(conn).await {
        Ok(rows) => rows,
        Err(e @ diesel::result::Error::DatabaseError(..)) => {
            let e = DbError::from(e).timed(sent.elapsed(), read.statement_timeout);
            // A missing schema or table is "uninitialized": an empty page.
            read.count(1);
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
    rows.truncate(limit as usize);
    let keys: Vec<(u32, i32)> = rows.iter().map(|r| (r.table, r.type_id)).collect();
    let types = read.types.covering(conn, schema, &keys, read.queries).await?;
    let items = rows.into_iter().map(|r| r.into_item(read.finality, &types)).collect::<Result<Vec<_>>>()?;
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
                    webhooks: None,
                    progress: None,
                    sources: Vec::new(),
                    config: ChainIndexingConfig::LeftBounded { start_block: block(0) },
                    latest_indexed_block: block(90),
                    latest_known_block: block(100),
                },
            ),
            (
                2,
                ChainSnapshot::Following {
                    stalled: None,
                    webhooks: None,
                    progress: None,
                    sources: Vec::new(),
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

        // Chain 1 has indexed blocks 0..=90: a range over half of them or more is read by
        // the chain's key, a narrower one by its own rows.
        assert!(f.covers_most_of(1, 0, 1000));
        assert!(f.covers_most_of(1, 45, 90));
        assert!(!f.covers_most_of(1, 46, 90));
        assert!(!f.covers_most_of(1, 80, 85));
        assert!(!f.covers_most_of(3, 0, u64::MAX), "unknown chain");
        let range = |from, to| EventQuery {
            chain_id: Some(1),
            from_block: Some(from),
            to_block: Some(to),
            ..EventQuery::default()
        };
        assert!(matches!(Driver::of(&range(0, 90), &f), Driver::Key(k) if k == ["chain_id"]));
        assert!(matches!(Driver::of(&range(80, 90), &f), Driver::Range));
        assert!(matches!(Driver::of(&range(0, 90), &Finality::default()), Driver::Range));
    }
}
