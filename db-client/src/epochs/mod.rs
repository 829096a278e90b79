//! Epoch queries (DESIGN §8): pages of an instance's epochs, newest first, and the
//! per-chain summaries behind [`DbClient::epoch_summary`](crate::DbClient::epoch_summary).
//!
//! Order: `epoch_id` descending, then `chain_id` ascending. Epoch ids increase per chain,
//! so within a chain (`chain_id` set) this is exactly newest first; across chains ids are
//! unrelated and the order interleaves chains by id. `(chain_id, epoch_id)` is the table's
//! primary key, so the order is total: walking pages `1..=pages` of an unchanging table
//! returns every matching epoch exactly once. Pages are offsets: an epoch added or pruned
//! between two page reads shifts the later pages by one.
//!
//! Stages this reader does not know (a newer indexer's additions) are left out: epochs in
//! such a stage match no query and count nowhere, and unknown entries of a stage history are
//! skipped. Malformed rows (negative numbers, a history that is not a list of `{stage, at}`)
//! are [`DbError::InvalidStoredValue`] errors.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use tidemark_shared_types::{EpochItem, EpochStage, EpochStageEntry, EpochSummary, SchemaName};

use crate::error::{DbError, Result, stored_u64};
use crate::paging;

#[cfg(feature = "writer")]
pub(crate) mod write;

/// Which page of epochs to read. Filters are optional and combine with AND.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochQuery {
    /// Only this chain.
    pub chain_id: Option<u64>,
    /// Only epochs currently in this stage.
    pub stage: Option<EpochStage>,
    /// The page, from 1.
    pub page: u64,
    /// Epochs per page, 1 to [`EpochQuery::MAX_PAGE_SIZE`].
    pub size: u64,
}

impl Default for EpochQuery {
    /// Every epoch, first page, [`EpochQuery::DEFAULT_PAGE_SIZE`] per page.
    fn default() -> Self {
        Self { chain_id: None, stage: None, page: 1, size: Self::DEFAULT_PAGE_SIZE }
    }
}

impl EpochQuery {
    /// Page size when none is given.
    pub const DEFAULT_PAGE_SIZE: u64 = 10;
    /// Largest page size.
    pub const MAX_PAGE_SIZE: u64 = 100;

    /// Checks the bounds: `page` at least 1, `size` from 1 to [`EpochQuery::MAX_PAGE_SIZE`].
    /// Errors are [`DbError::InvalidQuery`] naming `page` or `size`.
    ///
    /// ```
    /// use tidemark_db_client::EpochQuery;
    ///
    /// assert!(EpochQuery::default().validate().is_ok());
    /// let too_large = EpochQuery { size: EpochQuery::MAX_PAGE_SIZE + 1, ..EpochQuery::default() };
    /// assert!(too_large.validate().is_err_and(|e| e.is_invalid_input()));
    /// ```
    pub fn validate(&self) -> Result<()> {
        paging::validate(self.page, self.size, Self::MAX_PAGE_SIZE)
    }

    /// How many matching epochs come before this page: `(page - 1) * size`, saturating.
    pub(crate) fn offset(&self) -> u64 {
        paging::offset(self.page, self.size)
    }
}

/// One page of epochs, newest first (camelCase JSON: `{items, total, page, size, pages}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochPage {
    /// The epochs of this page: at most `size`, empty past the last page.
    pub items: Vec<EpochItem>,
    /// How many epochs match the filters.
    pub total: u64,
    /// The page read, from 1.
    pub page: u64,
    /// The page size asked for.
    pub size: u64,
    /// How many pages there are: `ceil(total / size)`, 0 when nothing matches.
    pub pages: u64,
}

impl EpochPage {
    /// A page of `query` holding `items` out of `total` matching epochs.
    pub(crate) fn new(query: &EpochQuery, items: Vec<EpochItem>, total: u64) -> Self {
        Self { items, total, page: query.page, size: query.size, pages: pages(total, query.size) }
    }
}

use crate::paging::pages;

/// The epoch summaries of an instance, per chain id (chains with at least one epoch).
pub type EpochSummaries = BTreeMap<u64, EpochSummary>;

/// Names of every stage this reader knows.
fn known_stages() -> Vec<&'static str> {
    EpochStage::ALL.iter().map(|s| s.as_str()).collect()
}

#[derive(QueryableByName)]
struct PageRow {
    #[diesel(sql_type = BigInt)]
    total: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    chain_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    epoch_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    from_block: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    to_block: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    stage: Option<String>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    stages: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    source: Option<String>,
}

#[derive(QueryableByName)]
struct SummaryRow {
    #[diesel(sql_type = BigInt)]
    chain_id: i64,
    #[diesel(sql_type = BigInt)]
    not_finalized: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    epoch_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    from_block: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    to_block: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    stage: Option<String>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    stages: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Text>)]
    error: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    source: Option<String>,
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

/// The columns of one epoch row, all present.
struct Columns {
    chain_id: i64,
    epoch_id: i64,
    from_block: i64,
    to_block: i64,
    stage: String,
    stages: serde_json::Value,
    error: Option<String>,
    source: Option<String>,
}

fn invalid(message: String) -> DbError {
    DbError::InvalidStoredValue { key: "epochs", message }
}

fn unsigned(value: i64, column: &str) -> Result<u64> {
    stored_u64(value, "epochs", column)
}

/// A history entry as stored, before its stage name is checked.
#[derive(Deserialize)]
struct RawEntry {
    stage: String,
    at: f64,
}

impl Columns {
    fn into_item(self) -> Result<EpochItem> {
        let stage = EpochStage::parse(&self.stage)
            .ok_or_else(|| invalid(format!("unknown stage {:?}", self.stage)))?;
        let raw: Vec<RawEntry> = serde_json::from_value(self.stages).map_err(|e| {
            invalid(format!("stages of epoch {} of chain {}: {e}", self.epoch_id, self.chain_id))
        })?;
        let stages = raw
            .into_iter()
            .filter_map(|e| EpochStage::parse(&e.stage).map(|stage| EpochStageEntry { stage, at: e.at }))
            .collect();
        Ok(EpochItem {
            chain_id: unsigned(self.chain_id, "chain_id")?,
            epoch_id: unsigned(self.epoch_id, "epoch_id")?,
            from_block: unsigned(self.from_block, "from_block")?,
            to_block: unsigned(self.to_block, "to_block")?,
            stage,
            stages,
            error: self.error,
            source: self.source,
        })
    }
}

/// True when `schema`'s `epochs` table exists.
async fn epochs_table_exists(conn: &mut AsyncPgConnection, schema: &SchemaName) -> Result<bool> {
    let found: Exists = diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS exists")
        .bind::<Text, _>(format!("{}.epochs", schema.quoted()))
        .get_result(conn)
        .await?;
    Ok(found.exists)
}

/// Adds `n` to `queries`, when counting.
fn count(queries: Option<&AtomicU64>, n: u64) {
    if let Some(q) = queries {
        q.fetch_add(n, Ordering::Relaxed);
    }
}

/// Reads one page of `schema`'s epochs, newest first (see the module documentation for
/// the order), adding the number of SQL statements run to `queries`. A missing schema or
/// table reads as an empty page; a page past the last one has no items but the right
/// `total` and `pages`. A failure at or past `statement_timeout` (the connection's, zero
/// when unknown) is [`DbError::StatementTimeout`](crate::DbError::StatementTimeout).
///
/// One statement: the count and the page come from the same snapshot, so `total` always
/// agrees with the items.
pub(crate) async fn query_epochs_counted(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    query: &EpochQuery,
    queries: Option<&AtomicU64>,
    statement_timeout: Duration,
) -> Result<EpochPage> {
    query.validate()?;
    // A chain id beyond the bigint range matches nothing.
    let chain_id = match query.chain_id.map(i64::try_from) {
        Some(Err(_)) => return Ok(EpochPage::new(query, Vec::new(), 0)),
        Some(Ok(c)) => Some(c),
        None => None,
    };
    // Placeholders: $1 stage(s), then the chain, the limit and the offset.
    // `delivered` is a stage of the history only (the current stage stays `stored` or
    // `finalized`): it matches the epochs whose history has it.
    let mut condition = match query.stage {
        Some(EpochStage::Delivered) => {
            "stages @> jsonb_build_array(jsonb_build_object('stage', $1::text))".to_owned()
        }
        Some(_) => "stage = $1".to_owned(),
        None => "stage = ANY($1)".to_owned(),
    };
    let mut n = 1;
    if chain_id.is_some() {
        n += 1;
        condition.push_str(&format!(" AND chain_id = ${n}"));
    }
    let s = schema.quoted();
    let sql = format!(
        "SELECT t.total, p.chain_id, p.epoch_id, p.from_block, p.to_block, p.stage, p.stages, p.error, p.source
           FROM (SELECT count(*) AS total FROM {s}.epochs WHERE {condition}) t
           LEFT JOIN LATERAL (
                SELECT chain_id, epoch_id, from_block, to_block, stage, stages, error,
                       to_jsonb(e) ->> 'source' AS source
                  FROM {s}.epochs e WHERE {condition}
                 ORDER BY epoch_id DESC, chain_id ASC LIMIT ${limit} OFFSET ${offset}) p ON true
          ORDER BY p.epoch_id DESC, p.chain_id ASC",
        limit = n + 1,
        offset = n + 2,
    );
    let mut q = diesel::sql_query(sql).into_boxed::<Pg>();
    q = match query.stage {
        Some(stage) => q.bind::<Text, _>(stage.as_str()),
        None => q.bind::<Array<Text>, _>(known_stages()),
    };
    if let Some(c) = chain_id {
        q = q.bind::<BigInt, _>(c);
    }
    // `validate` bounds the size; an offset beyond the bigint range skips everything anyway.
    q = q.bind::<BigInt, _>(i64::try_from(query.size).unwrap_or(i64::MAX));
    q = q.bind::<BigInt, _>(i64::try_from(query.offset()).unwrap_or(i64::MAX));

    count(queries, 1);
    let sent = Instant::now();
    let rows: Vec<PageRow> = match q.load(conn).await {
        Ok(rows) => rows,
        Err(e @ diesel::result::Error::DatabaseError(..)) => {
            let e = DbError::from(e).timed(sent.elapsed(), statement_timeout);
            // A missing schema or table is "uninitialized": an empty page.
            count(queries, 1);
            if epochs_table_exists(conn, schema).await? {
                return Err(e);
            }
            return Ok(EpochPage::new(query, Vec::new(), 0));
        }
        Err(e) => return Err(e.into()),
    };
    let total = rows.as_slice().first().map_or(Ok(0), |r| unsigned(r.total, "count"))?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        // The left join yields one row of nulls when the page is empty.
        let (Some(chain_id), Some(epoch_id), Some(from_block), Some(to_block), Some(stage), Some(stages)) =
            (r.chain_id, r.epoch_id, r.from_block, r.to_block, r.stage, r.stages)
        else {
            continue;
        };
        items.push(
            Columns {
                chain_id,
                epoch_id,
                from_block,
                to_block,
                stage,
                stages,
                error: r.error,
                source: r.source,
            }
            .into_item()?,
        );
    }
    Ok(EpochPage::new(query, items, total))
}

/// Reads the summary of every chain of `schema` that has epochs: its latest epoch (the
/// highest id) and how many of its epochs are neither finalized nor reorged. A missing
/// schema or table reads as no chains.
///
/// One statement, whose cost grows with the number of chains, not of epochs: the chains
/// are found by stepping through the primary key (a recursive "loose index scan"), the
/// latest epoch of each is one backward step on the primary key, and the count walks the
/// `(chain_id, stage)` index over the unfinished stages only.
#[cfg(feature = "writer")]
pub(crate) async fn query_epoch_summaries(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
) -> Result<EpochSummaries> {
    query_epoch_summaries_counted(conn, schema, None).await
}

/// The summary of every chain of `schema` that has epochs (as
/// [`DbClient::epoch_summary`](crate::DbClient::epoch_summary) caches it), read through
/// `pool` within its query time limit: the summary the indexer serves on its own HTTP.
#[cfg(feature = "writer")]
pub async fn epoch_summaries(pool: &crate::pool::PgPool, schema: &SchemaName) -> Result<EpochSummaries> {
    pool.run(async |c| query_epoch_summaries(c, schema).await).await
}

/// [`query_epoch_summaries`], adding the number of SQL statements run to `queries`.
pub(crate) async fn query_epoch_summaries_counted(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    queries: Option<&AtomicU64>,
) -> Result<EpochSummaries> {
    let s = schema.quoted();
    let sql = format!(
        "WITH RECURSIVE chains(chain_id) AS (
             (SELECT chain_id FROM {s}.epochs ORDER BY chain_id LIMIT 1)
           UNION ALL
             SELECT (SELECT e.chain_id FROM {s}.epochs e WHERE e.chain_id > c.chain_id ORDER BY e.chain_id LIMIT 1)
               FROM chains c WHERE c.chain_id IS NOT NULL
         )
         SELECT c.chain_id,
                (SELECT count(*) FROM {s}.epochs n WHERE n.chain_id = c.chain_id AND n.stage = ANY($2)) AS not_finalized,
                l.epoch_id, l.from_block, l.to_block, l.stage, l.stages, l.error, l.source
           FROM chains c
           LEFT JOIN LATERAL (
                SELECT epoch_id, from_block, to_block, stage, stages, error, to_jsonb(e) ->> 'source' AS source
                  FROM {s}.epochs e
                 WHERE e.chain_id = c.chain_id AND e.stage = ANY($1)
                 ORDER BY e.epoch_id DESC LIMIT 1) l ON true
          WHERE c.chain_id IS NOT NULL
          ORDER BY c.chain_id"
    );
    let not_finalized: Vec<&str> = EpochStage::NOT_FINALIZED.iter().map(|s| s.as_str()).collect();
    count(queries, 1);
    let rows: Vec<SummaryRow> = match diesel::sql_query(sql)
        .bind::<Array<Text>, _>(known_stages())
        .bind::<Array<Text>, _>(not_finalized)
        .load(conn)
        .await
    {
        Ok(rows) => rows,
        Err(e @ diesel::result::Error::DatabaseError(..)) => {
            count(queries, 1);
            if epochs_table_exists(conn, schema).await? {
                return Err(e.into());
            }
            return Ok(EpochSummaries::new());
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = EpochSummaries::new();
    for r in rows {
        let chain_id = unsigned(r.chain_id, "chain_id")?;
        let latest = match (r.epoch_id, r.from_block, r.to_block, r.stage, r.stages) {
            (Some(epoch_id), Some(from_block), Some(to_block), Some(stage), Some(stages)) => Some(
                Columns {
                    chain_id: r.chain_id,
                    epoch_id,
                    from_block,
                    to_block,
                    stage,
                    stages,
                    error: r.error,
                    source: r.source,
                }
                .into_item()?,
            ),
            _ => None,
        };
        out.insert(chain_id, EpochSummary { latest, not_finalized: unsigned(r.not_finalized, "count")? });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_round_up_and_are_zero_when_nothing_matches() {
        assert_eq!(pages(0, 10), 0);
        assert_eq!(pages(1, 10), 1);
        assert_eq!(pages(10, 10), 1);
        assert_eq!(pages(11, 10), 2);
        assert_eq!(pages(250, 7), 36);
        assert_eq!(pages(5, 0), 0);
        assert_eq!(pages(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn bounds_name_the_field() {
        let field = |q: EpochQuery| match q.validate() {
            Err(DbError::InvalidQuery { field, .. }) => field,
            other => panic!("expected an invalid query, got {other:?}"),
        };
        assert!(EpochQuery::default().validate().is_ok());
        assert_eq!(field(EpochQuery { page: 0, ..Default::default() }), "page");
        assert_eq!(field(EpochQuery { size: 0, ..Default::default() }), "size");
        assert_eq!(field(EpochQuery { size: EpochQuery::MAX_PAGE_SIZE + 1, ..Default::default() }), "size");
        assert!(
            EpochQuery { size: EpochQuery::MAX_PAGE_SIZE, page: u64::MAX, ..Default::default() }
                .validate()
                .is_ok()
        );
        assert_eq!(EpochQuery { page: 3, size: 7, ..Default::default() }.offset(), 14);
        assert_eq!(EpochQuery { page: u64::MAX, size: 100, ..Default::default() }.offset(), u64::MAX);
    }

    #[test]
    fn unknown_stages_in_the_history_are_skipped_and_malformed_ones_rejected() {
        let columns = |stage: &str, stages: serde_json::Value| Columns {
            chain_id: 1,
            epoch_id: 2,
            from_block: 10,
            to_block: 19,
            stage: stage.into(),
            stages,
            error: None,
            source: None,
        };
        let item = columns(
            "finalized",
            serde_json::json!([{"stage": "planned", "at": 1.5}, {"stage": "archived", "at": 2.0},
                               {"stage": "finalized", "at": 3.25, "by": "newer"}]),
        )
        .into_item()
        .expect("valid");
        assert_eq!(
            item.stages.iter().map(|e| e.stage).collect::<Vec<_>>(),
            [EpochStage::Planned, EpochStage::Finalized]
        );
        assert!(columns("stored", serde_json::json!({"stage": "stored"})).into_item().is_err());
        assert!(columns("stored", serde_json::json!([{"stage": "stored"}])).into_item().is_err());
        assert!(columns("bogus", serde_json::json!([])).into_item().is_err());
        let negative = Columns { from_block: -1, ..columns("stored", serde_json::json!([])) };
        assert!(negative.into_item().is_err());
    }
}
