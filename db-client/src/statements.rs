//! [`Statements`]: the write statements of the instance's tables, one table module
//! adding the statements it owns as methods, run only on the writer's connection.

use tidemark_shared_types::SchemaName;

use crate::error::{DbError, Result};

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

/// `v` as a bigint: [`DbError::InvalidQuery`] naming `field` above `i64::MAX`, so that a
/// number beyond the column's range is refused, never stored clamped.
pub(crate) fn signed(v: u64, field: &'static str) -> Result<i64> {
    narrow(v, field)
}

/// `v` in a signed column of any width (`integer` for transaction and log indexes), as
/// [`signed`].
pub(crate) fn narrow<T: TryFrom<u64>>(v: u64, field: &'static str) -> Result<T> {
    T::try_from(v).map_err(|_| DbError::InvalidQuery {
        field,
        message: format!("{v} is beyond the range of its column"),
    })
}

#[cfg(test)]
mod tests {
    use super::{narrow, signed};

    #[test]
    fn numbers_beyond_the_column_are_refused_not_clamped() {
        assert_eq!(signed(i64::MAX as u64, "block_number").ok(), Some(i64::MAX));
        let e = signed(i64::MAX as u64 + 1, "block_number").expect_err("above bigint");
        assert!(e.is_invalid_input(), "{e}");
        assert!(e.to_string().contains("block_number"), "{e}");
        assert_eq!(narrow::<i32>(7, "log_index").ok(), Some(7));
        assert!(narrow::<i32>(u64::from(u32::MAX), "log_index").is_err_and(|e| e.is_invalid_input()));
    }
}
