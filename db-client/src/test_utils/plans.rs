//! Query plans of the events filter shapes: the statement the db-client sends for a
//! shape, a data set on which a shape no index serves reads far more rows than it
//! returns, and a reader of `EXPLAIN (ANALYZE, FORMAT JSON)`. The CI plans test and the
//! bench's `plans` report share them, so both judge the statement the API runs.

use std::ops::Range;

use serde_json::Value;
use tidemark_shared_types::{Cursor, SchemaName};

use super::fixtures::word;
use crate::error::Result;
use crate::events::write::EventRow;
use crate::events::{EventQuery, Finality, unchecked_statement};
use crate::statements::Statements;

pub use crate::events::shape::{Filter, Missing, Shape};

pub use crate::prepared::Param;

impl Param {
    fn type_name(&self) -> &'static str {
        match self {
            Param::BigInt(_) => "bigint",
            Param::Text(_) => "text",
            Param::Bytes(_) => "bytea",
        }
    }

    fn literal(&self) -> String {
        match self {
            Param::BigInt(v) => v.to_string(),
            Param::Text(v) => format!("'{}'", v.replace('\'', "''")),
            Param::Bytes(v) => {
                format!("'\\x{}'::bytea", v.iter().map(|b| format!("{b:02x}")).collect::<String>())
            }
        }
    }
}

/// An events page's statement as the db-client sends it: the SQL text with `$n`
/// placeholders and the values bound to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL text.
    pub sql: String,
    /// The bound values, `$1` first.
    pub params: Vec<Param>,
}

impl Statement {
    /// The statement for `query` on `schema`, whether or not the rule admits its shape,
    /// with no status known (a block range reads its rows); `None` when the db-client
    /// would not run one (nothing can match).
    pub fn of(schema: &SchemaName, query: &EventQuery) -> Option<Self> {
        let (sql, params) = unchecked_statement(schema, query, &Finality::default())?.render();
        Some(Self { sql, params })
    }

    /// `PREPARE name (types) AS …`: the same text and parameter types as the driver's
    /// prepared statement, so PostgreSQL's plan cache treats it the same way.
    pub fn prepare(&self, name: &str) -> String {
        let types: Vec<&str> = self.params.iter().map(Param::type_name).collect();
        format!("PREPARE {name} ({}) AS {}", types.join(", "), self.sql)
    }

    /// `EXECUTE name (values)`.
    pub fn execute(&self, name: &str) -> String {
        let values: Vec<String> = self.params.iter().map(Param::literal).collect();
        format!("EXECUTE {name} ({})", values.join(", "))
    }
}

/// A data set of [`PlanData::rows`] events in which every filter's probe value matches
/// only rows inside a window in the middle of cursor order (its last
/// [`PlanData::PROBES`] rows for the rare filters), as when a chain or a contract is added
/// to an instance late: a plan that walks the primary key discards the rows before the
/// window (first page) or after it (the page after the last match), while a plan that an
/// index serves reads only rows of the window.
#[derive(Debug, Clone)]
pub struct PlanData {
    /// Rows in the table.
    pub rows: i64,
    /// The cursors of the window.
    pub window: Range<i64>,
}

/// Chain ids and names of the data set.
const MAIN_CHAIN: u64 = 1;
const LATE_CHAIN: u64 = 3;
const LATE_CONTRACT: &str = "Bridge";
const PROBE_EVENT: &str = "Probe";
/// Logs per block; ten per transaction.
const PER_BLOCK: i64 = 20;
/// Rows per `COPY`.
const COPY_CHUNK: i64 = 100_000;

impl PlanData {
    /// Rows of the window that match the rare probes (`event`, `txHash`, topics, the block
    /// range): its last ones.
    pub const PROBES: i64 = 20;

    /// Loads the data set into `schema`'s empty `events` with the writer's binary `COPY`
    /// (cursors 1..=rows; the window is the 5 % from the middle), then `ANALYZE`s it.
    pub async fn seed(client: &tokio_postgres::Client, schema: &SchemaName, rows: i64) -> Result<Self> {
        let window = rows / 2..rows / 2 + rows / 20;
        let statements = Statements::new(client, schema);
        let blocks_before = window.start / PER_BLOCK + 1;
        // In chunks, so that memory stays bounded at 10 M rows.
        let mut start = 1;
        while start <= rows {
            let end = (start + COPY_CHUNK).min(rows + 1);
            let end = if start < window.start {
                end.min(window.start)
            } else if start < window.end {
                end.min(window.end)
            } else {
                end
            };
            let (chain, chunk): (u64, Vec<EventRow>) = if start < window.start {
                (MAIN_CHAIN, (start..end).map(|c| Self::main_row(c, 0)).collect())
            } else if start < window.end {
                (LATE_CHAIN, (start..end).map(|c| Self::late_row(c, &window)).collect())
            } else {
                (MAIN_CHAIN, (start..end).map(|c| Self::main_row(c, blocks_before)).collect())
            };
            statements.register_and_copy_events(start, chain, &chunk).await?;
            start = end;
        }
        client.batch_execute(&format!("ANALYZE {}.events", schema.quoted())).await?;
        Ok(Self { rows, window })
    }

    fn main_row(cursor: i64, block_offset: i64) -> EventRow {
        let n = cursor.unsigned_abs();
        let (contract, address, event) = match n % 10 {
            0..=5 => (
                "Token",
                format!("0x{:040x}", 0x70 + n % 2),
                if n % 20 == 1 { "Approval" } else { "Transfer" },
            ),
            _ => ("Nft", format!("0x{:040x}", 0x80), "Transfer"),
        };
        Self::row(n, (cursor / PER_BLOCK + block_offset).unsigned_abs(), contract, &address, event, n % 1000)
    }

    fn late_row(cursor: i64, window: &Range<i64>) -> EventRow {
        let n = cursor.unsigned_abs();
        let probe = cursor >= window.end - Self::PROBES;
        let event = if probe { PROBE_EVENT } else { "Sent" };
        let block = ((cursor - window.start) / PER_BLOCK).unsigned_abs();
        let mut row = Self::row(n, block, LATE_CONTRACT, &Self::late_address(), event, n % 1000);
        if probe {
            row.tx_hash = Self::probe_word(0);
            row.topics = (0..4).map(Self::probe_word).collect();
        }
        row
    }

    fn row(n: u64, block: u64, contract: &str, address: &str, event: &str, actor: u64) -> EventRow {
        EventRow {
            block_number: block,
            block_hash: word(block),
            block_timestamp: 1_700_000_000 + block,
            tx_hash: word(n / 10),
            tx_index: (n % PER_BLOCK.unsigned_abs()) / 10,
            log_index: n % PER_BLOCK.unsigned_abs(),
            address: address.to_owned(),
            contract: contract.to_owned(),
            event: event.to_owned(),
            signature: format!("event {event}(address indexed a, address indexed b, uint256 indexed c)"),
            topics: vec![word(0xe0), word(actor), word(actor + 1), word(n % 7)],
            data: "0x".into(),
            args: Some(serde_json::json!({"a": word(actor)})),
            decode_error: None,
        }
    }

    fn late_address() -> String {
        format!("0x{:040x}", 0xb0)
    }

    /// A word no row outside the probes holds.
    fn probe_word(k: u64) -> String {
        format!("0x{:064x}", 0xfeed_0000 + k)
    }

    /// The cursor of the last row that matches every probe.
    pub fn last_match(&self) -> Cursor {
        Cursor(self.window.end - 1)
    }

    /// The query of `shape` with every filter set to its probe value: `chainId`,
    /// `contract` and `address` match the whole window, the others its last
    /// [`PlanData::PROBES`] rows. It matches at least those rows.
    pub fn query(&self, shape: Shape, after: Option<Cursor>) -> EventQuery {
        let probe_block = ((self.window.end - Self::PROBES - self.window.start) / PER_BLOCK).unsigned_abs();
        let last_block = ((self.window.end - 1 - self.window.start) / PER_BLOCK).unsigned_abs();
        let mut q = EventQuery { after, ..EventQuery::default() };
        for f in shape.filters() {
            match f {
                Filter::ChainId => q.chain_id = Some(LATE_CHAIN),
                Filter::Contract => q.contract = Some(LATE_CONTRACT.into()),
                Filter::Event => q.event = Some(PROBE_EVENT.into()),
                Filter::Address => q.address = Some(Self::late_address()),
                Filter::TxHash => q.tx_hash = Some(Self::probe_word(0)),
                Filter::Topic1 => q.topic1 = Some(Self::probe_word(1)),
                Filter::Topic2 => q.topic2 = Some(Self::probe_word(2)),
                Filter::Topic3 => q.topic3 = Some(Self::probe_word(3)),
                Filter::FromBlock => q.from_block = Some(probe_block),
                Filter::ToBlock => q.to_block = Some(last_block),
            }
        }
        q
    }
}

/// What an executed plan (`EXPLAIN (ANALYZE, FORMAT JSON)`) cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanCost {
    /// The nodes from the top, e.g. `Limit → Sort → Index Scan (events_tx)`.
    pub nodes: String,
    /// Rows the plan read and discarded: removed by a filter or an index recheck, over
    /// all loops.
    pub filtered: u64,
    /// Rows the top node returned.
    pub rows: u64,
    /// A sequential scan is part of the plan.
    pub seq_scan: bool,
}

impl PlanCost {
    /// Reads the output of `EXPLAIN (ANALYZE, FORMAT JSON)`.
    pub fn of(explain: &Value) -> Self {
        let top = &explain[0]["Plan"];
        let mut cost = PlanCost { rows: count(top, "Actual Rows"), ..Self::default() };
        let mut names = Vec::new();
        cost.walk(top, &mut names);
        cost.nodes = names.join(" → ");
        cost
    }

    fn walk(&mut self, node: &Value, names: &mut Vec<String>) {
        let kind = node["Node Type"].as_str().unwrap_or("?");
        let relation = node["Relation Name"].as_str();
        names.push(match (node["Index Name"].as_str(), relation) {
            (Some(index), _) => format!("{kind} ({index})"),
            (None, Some(table)) => format!("{kind} ({table})"),
            (None, None) => kind.to_owned(),
        });
        // The lookups of a filter's names in `event_types` (a few rows, read whole) are
        // not what the bound is about: the rows of `events` are.
        if relation == Some("event_types") {
            for child in node["Plans"].as_array().into_iter().flatten() {
                self.walk(child, names);
            }
            return;
        }
        self.seq_scan |= kind == "Seq Scan";
        let loops = count(node, "Actual Loops").max(1);
        self.filtered +=
            (count(node, "Rows Removed by Filter") + count(node, "Rows Removed by Index Recheck")) * loops;
        for child in node["Plans"].as_array().into_iter().flatten() {
            self.walk(child, names);
        }
    }
}

fn count(node: &Value, key: &str) -> u64 {
    node[key].as_f64().map_or(0, |v| v.max(0.0).round() as u64)
}
