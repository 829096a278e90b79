//! The journal (DESIGN §3, §8 "Streams"): `events` as `log` entries and `removals` as
//! `removed` entries, in one cursor order. Replaying it (add on `log`, delete on
//! `removed` by `event_cursor`) yields exactly the stored events.
//!
//! A page reads the events page of the same filter (its statement and index, see
//! [`super::shape`]) and the removals after the same cursor, and merges them. Cursors are
//! drawn under the writer's commit lock, so a reader that has passed a cursor never later
//! finds an entry below it: resuming after the last cursor received misses nothing.

use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::{Queryable, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::value::RawValue;
use tidemark_shared_types::{Cursor, JournalEntry, RemovedItem, SchemaName};

use super::{EventQuery, Limit, Order, PageRead, query_events_counted};
use crate::error::{DbError, Result, stored_u64};
use crate::metadata::read_journal_floor;
use crate::prepared::PreparedSql;

/// The channel the writer notifies in each transaction that adds journal entries, with
/// the payload `<schema>:<cursor>` (the new head cursor).
pub const JOURNAL_CHANNEL: &str = "tidemark_journal";

/// Which journal entries to read: the filters of `/v1/events` without a block range. A
/// `removed` entry passes when the log it removes did. The same shapes are accepted as
/// for events ([`EventQuery::check_indexed`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalFilter {
    /// Only this chain.
    pub chain_id: Option<u64>,
    /// Only this contract name.
    pub contract: Option<String>,
    /// Only this event name (with `contract`).
    pub event: Option<String>,
    /// Only this emitting address.
    pub address: Option<String>,
    /// Only this transaction.
    pub tx_hash: Option<String>,
    /// Only this first indexed topic.
    pub topic1: Option<String>,
    /// Only this second indexed topic.
    pub topic2: Option<String>,
    /// Only this third indexed topic.
    pub topic3: Option<String>,
}

impl JournalFilter {
    /// The events query of this filter, after `after`, `limit` entries.
    pub fn to_query(&self, after: Cursor, limit: Limit) -> EventQuery {
        EventQuery {
            chain_id: self.chain_id,
            contract: self.contract.clone(),
            event: self.event.clone(),
            address: self.address.clone(),
            tx_hash: self.tx_hash.clone(),
            topic1: self.topic1.clone(),
            topic2: self.topic2.clone(),
            topic3: self.topic3.clone(),
            from_block: None,
            to_block: None,
            after: Some(after),
            limit,
            order: Order::Asc,
        }
    }

    /// Checks that an index serves this filter (see [`EventQuery::check_indexed`]).
    pub fn check_indexed(&self) -> Result<()> {
        self.to_query(Cursor(0), Limit::default()).check_indexed()
    }
}

impl From<EventQuery> for JournalFilter {
    /// The filters of `query`; its block range, cursor and limit are not filters of the
    /// journal and are dropped.
    fn from(q: EventQuery) -> Self {
        Self {
            chain_id: q.chain_id,
            contract: q.contract,
            event: q.event,
            address: q.address,
            tx_hash: q.tx_hash,
            topic1: q.topic1,
            topic2: q.topic2,
            topic3: q.topic3,
        }
    }
}

/// One page of the journal in cursor order.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalPage<A = serde_json::Value> {
    /// The entries, ascending by cursor.
    pub entries: Vec<JournalEntry<A>>,
    /// The cursor to read after for the next page; `None` when no further entry matched
    /// when this page was read.
    pub next_cursor: Option<Cursor>,
}

/// The SQL types of [`RemovedRow`].
type RemovedSql = (
    BigInt,
    BigInt,
    BigInt,
    BigInt,
    Text,
    Integer,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
);

/// One row of `removals`, with the fields of the removed row its payload holds.
#[derive(Queryable)]
struct RemovedRow {
    cursor: i64,
    event_cursor: i64,
    chain_id: i64,
    block_number: i64,
    block_hash: String,
    log_index: i32,
    tx_hash: Option<String>,
    address: Option<String>,
    contract: Option<String>,
    event: Option<String>,
    /// `payload->'topics'` as JSON text.
    topics: Option<String>,
}

impl RemovedRow {
    fn into_item(self) -> Result<RemovedItem> {
        let topics = match self.topics.as_deref() {
            Some(t) => serde_json::from_str(t).map_err(|e| DbError::InvalidStoredValue {
                key: "removals",
                message: format!("topics of removal {} are not a JSON array of strings: {e}", self.cursor),
            })?,
            None => Vec::new(),
        };
        Ok(RemovedItem {
            cursor: Cursor(self.cursor),
            event_cursor: Cursor(self.event_cursor),
            chain_id: stored_u64(self.chain_id, "removals", "chain_id")?,
            block_number: stored_u64(self.block_number, "removals", "block_number")?,
            block_hash: self.block_hash,
            log_index: stored_u64(self.log_index, "removals", "log_index")?,
            transaction_hash: self.tx_hash.unwrap_or_default(),
            address: self.address.unwrap_or_default(),
            contract: self.contract.unwrap_or_default(),
            event: self.event.unwrap_or_default(),
            topics,
        })
    }
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// The removals after `after` that pass `filter`, at most `limit + 1` (one more tells
/// whether more follow). The table is small (reorged logs, pruned by retention), so its
/// filters read the payload. A missing table reads as none.
async fn removals_after(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    after: Cursor,
    filter: &EventQuery,
    limit: Limit,
) -> Result<Vec<RemovedItem>> {
    if [&filter.contract, &filter.event, &filter.address, &filter.tx_hash, &filter.topic1, &filter.topic2]
        .into_iter()
        .chain([&filter.topic3])
        .flatten()
        .any(|t| t.contains('\0'))
    {
        return Ok(Vec::new());
    }
    let mut q = PreparedSql::<RemovedSql>::new(format!(
        "SELECT cursor, event_cursor, chain_id, block_number, block_hash, log_index, payload->>'tx_hash', \
         payload->>'address', payload->>'contract', payload->>'event', (payload->'topics')::text \
         FROM {}.removals WHERE cursor > ",
        schema.quoted()
    ));
    q.bigint(after.0);
    if let Some(c) = filter.chain_id {
        let Ok(c) = i64::try_from(c) else { return Ok(Vec::new()) };
        q.sql(" AND chain_id = ").bigint(c);
    }
    let lower = |v: &Option<String>| v.as_ref().map(|v| v.to_ascii_lowercase());
    let texts = [
        (" AND payload->>'contract' = ", filter.contract.clone()),
        (" AND payload->>'event' = ", filter.event.clone()),
        (" AND payload->>'address' = ", lower(&filter.address)),
        (" AND payload->>'tx_hash' = ", lower(&filter.tx_hash)),
        (" AND payload->'topics'->>1 = ", lower(&filter.topic1)),
        (" AND payload->'topics'->>2 = ", lower(&filter.topic2)),
        (" AND payload->'topics'->>3 = ", lower(&filter.topic3)),
    ];
    for (condition, value) in texts {
        if let Some(v) = value {
            q.sql(condition).text(v);
        }
    }
    q.sql(" ORDER BY cursor LIMIT ").bigint(i64::from(limit.get()) + 1);
    match q.load::<RemovedRow>(conn).await {
        Ok(rows) => rows.into_iter().map(RemovedRow::into_item).collect(),
        Err(e @ diesel::result::Error::DatabaseError(..)) => {
            let found: Exists = diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS exists")
                .bind::<Text, _>(format!("{}.removals", schema.quoted()))
                .get_result(conn)
                .await?;
            if found.exists { Err(e.into()) } else { Ok(Vec::new()) }
        }
        Err(e) => Err(e.into()),
    }
}

/// Reads the journal entries after `query.after` that pass its filters (its block range
/// must be unset: [`JournalFilter::to_query`]), at most `query.limit`, in cursor order;
/// `log` entries carry their arguments as the stored JSON text. Adds the statements run
/// to `read.queries`. `since` is where the reader began: see [`check_floor`].
pub(crate) async fn journal_after(
    conn: &mut AsyncPgConnection,
    read: &PageRead<'_>,
    query: &EventQuery,
    since: Cursor,
) -> Result<JournalPage<Box<RawValue>>> {
    let schema = read.schema;
    let (after, limit) = (query.after.unwrap_or_default(), query.limit);
    // The two statements below each see the commits made before they started, and a
    // commit may land between them: a removal committed after the events were read, with
    // events of an earlier commit that the events statement missed, would end the page
    // past those events. The head read first bounds the page: every entry at or below it
    // was committed before either statement started (commits are serialized in cursor
    // order), so both see it; what lies beyond is left for the next page.
    let head = head(conn, schema).await?;
    let events = query_events_counted(conn, read, query).await?;
    let removed = removals_after(conn, schema, after, query, limit).await?;
    read.count(2);
    let more_beyond = events.next_cursor.is_some() || removed.len() > limit.get() as usize;
    let (mut logs, mut removed) = (events.items.into_iter().peekable(), removed.into_iter().peekable());
    let mut entries = Vec::with_capacity(limit.get() as usize);
    while entries.len() < limit.get() as usize {
        let take_log = match (logs.peek(), removed.peek()) {
            (Some(l), Some(r)) => l.cursor < r.cursor,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_log { logs.peek().map(|l| l.cursor) } else { removed.peek().map(|r| r.cursor) };
        if next.is_some_and(|c| c > head) {
            break;
        }
        let entry = if take_log {
            logs.next().map(JournalEntry::Log)
        } else {
            removed.next().map(JournalEntry::Removed)
        };
        entries.extend(entry);
    }
    let more = more_beyond || logs.peek().is_some() || removed.peek().is_some();
    let next_cursor = if more { entries.last().map(JournalEntry::cursor) } else { None };
    // After the reads: retention deletes removals and raises the floor in one
    // transaction, so a floor still at or below `after` now means none of the removals
    // after it was pruned before they were read.
    if after.0 > 0 {
        let floor = read_journal_floor(conn, schema).await?;
        read.count(1);
        check_floor(since, after, floor)?;
    }
    Ok(JournalPage { entries, next_cursor })
}

/// [`DbError::CursorExpired`] when a reader that began at `since` and has read up to
/// `after` could have missed a pruned removal (every pruned removal's cursor is at or
/// below `floor`).
///
/// A reader misses a removal only if it saw the log the removal removes. A reader that
/// began after cursor `s > 0` saw no log whose removal is at or below `s`; a replay from
/// 0 saw no log whose removal was committed before its first read, i.e. at or below the
/// journal head read before it (pass that head as `since`). So the read is refused when
/// `after < floor` and `floor > since`; at `after = 0` nothing was seen.
pub(crate) fn check_floor(since: Cursor, after: Cursor, floor: Cursor) -> Result<()> {
    if after.0 > 0 && after < floor && floor > since { Err(DbError::CursorExpired { floor }) } else { Ok(()) }
}

/// The indexed topics (`topics[0]` the signature's) of the stored events with these
/// cursors, lowercase as stored; a cursor without a stored event is absent.
pub(crate) async fn event_topics(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    cursors: &[Cursor],
) -> Result<Vec<(Cursor, Vec<String>)>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        cursor: i64,
        #[diesel(sql_type = diesel::sql_types::Array<Text>)]
        topics: Vec<String>,
    }
    let ids: Vec<i64> = cursors.iter().map(|c| c.0).collect();
    let hex = |c: &str| format!("'0x' || encode({c}, 'hex')");
    let sql = format!(
        "SELECT e.cursor, array_remove(ARRAY[{}, {}, {}, {}], NULL) AS topics
           FROM {s}.events e JOIN {s}.event_types t ON t.id = e.type_id WHERE e.cursor = ANY($1)",
        hex("coalesce(e.topic0, t.topic0)"),
        hex("e.topic1"),
        hex("e.topic2"),
        hex("e.topic3"),
        s = schema.quoted()
    );
    let rows: Vec<Row> =
        diesel::sql_query(sql).bind::<diesel::sql_types::Array<BigInt>, _>(ids).load(conn).await?;
    Ok(rows.into_iter().map(|r| (Cursor(r.cursor), r.topics)).collect())
}

/// The cursor of the newest committed entry of `schema`'s journal, `Cursor(0)` when there
/// is none or no instance yet (each table's primary key, read backwards).
pub(crate) async fn head(conn: &mut AsyncPgConnection, schema: &SchemaName) -> Result<Cursor> {
    #[derive(QueryableByName)]
    struct Head {
        #[diesel(sql_type = Nullable<BigInt>)]
        head: Option<i64>,
    }
    let s = schema.quoted();
    let sql = format!(
        "SELECT greatest((SELECT max(cursor) FROM {s}.events), (SELECT max(cursor) FROM {s}.removals)) AS head"
    );
    match diesel::sql_query(sql).get_result::<Head>(conn).await {
        Ok(h) => Ok(Cursor(h.head.unwrap_or(0))),
        Err(e @ diesel::result::Error::DatabaseError(..)) => {
            let found: Exists = diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS exists")
                .bind::<Text, _>(format!("{s}.removals"))
                .get_result(conn)
                .await?;
            if found.exists { Err(e.into()) } else { Ok(Cursor(0)) }
        }
        Err(e) => Err(e.into()),
    }
}
