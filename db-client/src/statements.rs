//! [`Statements`]: the write statements of the instance's tables, one table module
//! adding the statements it owns as methods, run only on the writer's connection.

use tidemark_shared_types::SchemaName;

/// The write statements of the instance's tables on one of the writer's connections or
/// transactions (`C`): each table's module adds the statements it owns, as methods. Only
/// [`Writer`](crate::writer::Writer) makes one (and test fixtures, through `test_utils`), so only its
/// lock-holding connection runs them.
pub(crate) struct Statements<'a, C> {
    /// The writer's connection, or a transaction on it.
    pub(crate) c: &'a C,
    /// The instance schema.
    pub(crate) schema: &'a SchemaName,
    /// Its quoted identifier, for the SQL text.
    pub(crate) s: String,
}

impl<'a, C> Statements<'a, C> {
    pub(crate) fn new(c: &'a C, schema: &'a SchemaName) -> Self {
        Self { c, schema, s: schema.quoted() }
    }
}

/// `v` as a bigint (numbers beyond its range are stored as its maximum).
pub(crate) fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
