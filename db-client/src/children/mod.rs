//! `children`: the addresses factory contracts created (layout 7). The writer stores a
//! block's children in the transaction that stores its events and checkpoint, and deletes
//! them with their events on a rollback ([`write`]); readers page through one contract's
//! children ([`query_children_counted`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bytea, Integer, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use tidemark_shared_types::{ContractAddress, SchemaName};

use crate::error::{DbError, Result, stored_u64};
use crate::paging;

#[cfg(feature = "writer")]
pub(crate) mod write;

/// Which page of a factory contract's children to read (oldest first: by creating block
/// and log index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildQuery {
    /// The factory contract's name.
    pub contract: String,
    /// Only this chain.
    pub chain_id: Option<u64>,
    /// The page, from 1.
    pub page: u64,
    /// Children per page, 1 to [`ChildQuery::MAX_PAGE_SIZE`].
    pub size: u64,
}

impl ChildQuery {
    /// Page size when none is given.
    pub const DEFAULT_PAGE_SIZE: u64 = 100;
    /// Largest page size.
    pub const MAX_PAGE_SIZE: u64 = 1000;

    /// The first page of `contract`'s children on every chain.
    pub fn new(contract: impl Into<String>) -> Self {
        Self { contract: contract.into(), chain_id: None, page: 1, size: Self::DEFAULT_PAGE_SIZE }
    }

    /// Checks the bounds: `page` at least 1, `size` from 1 to [`ChildQuery::MAX_PAGE_SIZE`].
    pub fn validate(&self) -> Result<()> {
        paging::validate(self.page, self.size, Self::MAX_PAGE_SIZE)
    }
}

/// One page of addresses (camelCase JSON: `{items, total, page, size, pages}`, the shape
/// of an epoch page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChildPage {
    /// The addresses of this page: at most `size`, empty past the last page.
    pub items: Vec<ContractAddress>,
    /// How many match.
    pub total: u64,
    /// The page read, from 1.
    pub page: u64,
    /// The page size asked for.
    pub size: u64,
    /// `ceil(total / size)`, 0 when nothing matches.
    pub pages: u64,
}

impl ChildPage {
    /// A page of `query` holding `items` out of `total`.
    pub fn new(query: &ChildQuery, items: Vec<ContractAddress>, total: u64) -> Self {
        Self { items, total, page: query.page, size: query.size, pages: paging::pages(total, query.size) }
    }
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    total: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    chain_id: Option<i64>,
    #[diesel(sql_type = Nullable<Bytea>)]
    address: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<BigInt>)]
    block_number: Option<i64>,
    #[diesel(sql_type = Nullable<Bytea>)]
    block_hash: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Integer>)]
    log_index: Option<i32>,
    #[diesel(sql_type = Nullable<Bytea>)]
    tx_hash: Option<Vec<u8>>,
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// `0x` + lowercase hex.
fn hex(bytes: &[u8]) -> String {
    const_hex::encode_prefixed(bytes)
}

/// Reads one page of `query.contract`'s children in `schema`, oldest first, counting the
/// statements in `queries`. A missing schema or table (an instance of an earlier layout,
/// or none yet) reads as an empty page. One statement: `total` agrees with the items.
pub(crate) async fn query_children_counted(
    conn: &mut AsyncPgConnection,
    schema: &SchemaName,
    query: &ChildQuery,
    queries: Option<&AtomicU64>,
    statement_timeout: Duration,
) -> Result<ChildPage> {
    query.validate()?;
    let chain_id = match query.chain_id.map(i64::try_from) {
        Some(Err(_)) => return Ok(ChildPage::new(query, Vec::new(), 0)),
        Some(Ok(c)) => Some(c),
        None => None,
    };
    let s = schema.quoted();
    let condition = if chain_id.is_some() { "contract = $1 AND chain_id = $4" } else { "contract = $1" };
    let sql = format!(
        "SELECT t.total, p.chain_id, p.address, p.block_number, p.block_hash, p.log_index, p.tx_hash
           FROM (SELECT count(*) AS total FROM {s}.children WHERE {condition}) t
           LEFT JOIN LATERAL (
                SELECT chain_id, address, block_number, block_hash, log_index, tx_hash
                  FROM {s}.children WHERE {condition}
                 ORDER BY chain_id, block_number, log_index, address LIMIT $2 OFFSET $3) p ON true
          ORDER BY p.chain_id, p.block_number, p.log_index, p.address"
    );
    let offset = paging::offset(query.page, query.size);
    let mut q = diesel::sql_query(sql)
        .into_boxed::<diesel::pg::Pg>()
        .bind::<Text, _>(query.contract.clone())
        .bind::<BigInt, _>(i64::try_from(query.size).unwrap_or(i64::MAX))
        .bind::<BigInt, _>(i64::try_from(offset).unwrap_or(i64::MAX));
    if let Some(c) = chain_id {
        q = q.bind::<BigInt, _>(c);
    }
    if let Some(n) = queries {
        n.fetch_add(1, Ordering::Relaxed);
    }
    let sent = Instant::now();
    let rows: Vec<Row> = match q.load(conn).await {
        Ok(rows) => rows,
        Err(e @ diesel::result::Error::DatabaseError(..)) => {
            let e = DbError::from(e).timed(sent.elapsed(), statement_timeout);
            if let Some(n) = queries {
                n.fetch_add(1, Ordering::Relaxed);
            }
            let found: Exists = diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS exists")
                .bind::<Text, _>(format!("{s}.children"))
                .get_result(conn)
                .await?;
            if found.exists {
                return Err(e);
            }
            return Ok(ChildPage::new(query, Vec::new(), 0));
        }
        Err(e) => return Err(e.into()),
    };
    let total = rows.as_slice().first().map_or(Ok(0), |r| stored_u64(r.total, "children", "count"))?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        let (Some(chain_id), Some(address), Some(number), Some(hash), Some(log_index), Some(tx)) =
            (r.chain_id, r.address, r.block_number, r.block_hash, r.log_index, r.tx_hash)
        else {
            continue;
        };
        items.push(ContractAddress {
            chain_id: stored_u64(chain_id, "children", "chain_id")?,
            contract: query.contract.clone(),
            address: hex(&address),
            block_number: Some(stored_u64(number, "children", "block_number")?),
            block_hash: Some(hex(&hash)),
            log_index: Some(stored_u64(log_index, "children", "log_index")?),
            tx_hash: Some(hex(&tx)),
        });
    }
    Ok(ChildPage::new(query, items, total))
}
