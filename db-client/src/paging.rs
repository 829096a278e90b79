//! Offset pages (`{items, total, page, size, pages}`), shared by the epoch and the
//! children reads: their bounds, offset and page count.

use crate::error::{DbError, Result};

/// Checks `page` (at least 1) and `size` (1 to `max`); errors name the field.
pub(crate) fn validate(page: u64, size: u64, max: u64) -> Result<()> {
    if page == 0 {
        return Err(DbError::InvalidQuery { field: "page", message: "page must be at least 1".into() });
    }
    if !(1..=max).contains(&size) {
        return Err(DbError::InvalidQuery {
            field: "size",
            message: format!("size must be between 1 and {max}"),
        });
    }
    Ok(())
}

/// How many rows come before page `page` of `size`: `(page - 1) * size`, saturating.
pub(crate) fn offset(page: u64, size: u64) -> u64 {
    page.saturating_sub(1).saturating_mul(size)
}

/// `ceil(total / size)`; 0 when `total` or `size` is 0.
pub(crate) fn pages(total: u64, size: u64) -> u64 {
    if size == 0 { 0 } else { total.div_ceil(size) }
}
