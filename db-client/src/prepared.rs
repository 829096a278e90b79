//! [`PreparedSql`]: SQL text with bound values that the connection prepares once and
//! reuses.
//!
//! `diesel::sql_query` marks itself unsafe to cache, so PostgreSQL parses and plans it on
//! every call. A read served on every request (an events page) is better prepared once
//! per connection: diesel keys its statement cache by the SQL text and the bind types,
//! and PostgreSQL then reuses the plan. Only SQL text that takes a bounded number of
//! shapes belongs here (no value spliced into the text unless it comes from a fixed
//! list), or the cache would grow without bound.
//!
//! A statement is typed with its row's SQL types (`PreparedSql<(BigInt, Text, …)>`) and
//! loads into a `Queryable` row by position, with no lookup by column name per field.

use std::marker::PhantomData;

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Binary, Text};

/// One piece of a statement: SQL text or a bound value (rendered as `$n`).
#[derive(Debug, Clone)]
enum Part {
    Sql(String),
    BigInt(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// A statement built from SQL text and bound values, cached as a prepared statement by
/// the connection that runs it. `ST` is the SQL type of its rows: the tuple of the
/// selected columns' types, in order.
#[derive(Debug, Clone)]
pub(crate) struct PreparedSql<ST> {
    parts: Vec<Part>,
    row: PhantomData<fn() -> ST>,
}

impl<ST> PreparedSql<ST> {
    /// A statement starting with `sql`.
    pub(crate) fn new(sql: impl Into<String>) -> Self {
        Self { parts: vec![Part::Sql(sql.into())], row: PhantomData }
    }

    /// Appends SQL text.
    pub(crate) fn sql(&mut self, sql: &str) -> &mut Self {
        self.parts.push(Part::Sql(sql.to_owned()));
        self
    }

    /// Appends a bound `bigint`.
    pub(crate) fn bigint(&mut self, value: i64) -> &mut Self {
        self.parts.push(Part::BigInt(value));
        self
    }

    /// Appends a bound `text`.
    pub(crate) fn text(&mut self, value: String) -> &mut Self {
        self.parts.push(Part::Text(value));
        self
    }

    /// Appends a bound `bytea`.
    pub(crate) fn bytes(&mut self, value: Vec<u8>) -> &mut Self {
        self.parts.push(Part::Bytes(value));
        self
    }
}

/// A bound value of a rendered statement (test utilities: the plans test prepares the
/// same text itself).
#[cfg(feature = "test-utils")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// A `bigint`.
    BigInt(i64),
    /// A `text`.
    Text(String),
    /// A `bytea`.
    Bytes(Vec<u8>),
}

#[cfg(feature = "test-utils")]
impl<ST> PreparedSql<ST> {
    /// The SQL text with `$n` placeholders, as the connection prepares it, and the bound
    /// values in order.
    pub(crate) fn render(&self) -> (String, Vec<Param>) {
        let (mut sql, mut params) = (String::new(), Vec::new());
        for part in &self.parts {
            match part {
                Part::Sql(s) => sql.push_str(s),
                Part::BigInt(v) => params.push(Param::BigInt(*v)),
                Part::Text(v) => params.push(Param::Text(v.clone())),
                Part::Bytes(v) => params.push(Param::Bytes(v.clone())),
            }
            if !matches!(part, Part::Sql(_)) {
                sql.push_str(&format!("${}", params.len()));
            }
        }
        (sql, params)
    }
}

impl<ST> QueryFragment<Pg> for PreparedSql<ST> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        for part in &self.parts {
            match part {
                Part::Sql(sql) => out.push_sql(sql),
                Part::BigInt(v) => out.push_bind_param::<BigInt, _>(v)?,
                Part::Text(v) => out.push_bind_param::<Text, _>(v)?,
                Part::Bytes(v) => out.push_bind_param::<Binary, _>(v)?,
            }
        }
        Ok(())
    }
}

impl<ST> QueryId for PreparedSql<ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<ST: 'static> Query for PreparedSql<ST> {
    type SqlType = ST;
}
