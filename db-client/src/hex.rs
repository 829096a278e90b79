//! `0x` hex text, as readers and the journal see hashes, addresses, topics and data, and
//! the bytes that layout 4 stores for them in `bytea` columns.

#[cfg(feature = "writer")]
use crate::error::{DbError, Result};

/// The bytes of a filter's `0x` hex value (digits in either case); `None` when it is not
/// one, which no stored value equals.
pub(crate) fn filter_bytes(value: &str) -> Option<Vec<u8>> {
    let digits = value.strip_prefix("0x").or_else(|| value.strip_prefix("0X"))?;
    const_hex::decode(digits).ok()
}

/// The bytes of a `0x` hex value to store; [`DbError::InvalidQuery`] naming `field` when it
/// is not one (a stored value is never a guess).
#[cfg(feature = "writer")]
pub(crate) fn stored_bytes(value: &str, field: &'static str) -> Result<Vec<u8>> {
    filter_bytes(value)
        .ok_or_else(|| DbError::InvalidQuery { field, message: format!("{value:?} is not 0x-prefixed hex") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_values_round_trip_and_anything_else_matches_nothing() {
        assert_eq!(filter_bytes("0xABcd"), Some(vec![0xab, 0xcd]));
        assert_eq!(filter_bytes("0X00"), Some(vec![0]));
        assert_eq!(filter_bytes("0x"), Some(vec![]));
        for bad in ["abcd", "0xabc", "0xzz", "", "x0ab", "0x ab"] {
            assert_eq!(filter_bytes(bad), None, "{bad:?}");
        }
    }

    #[cfg(feature = "writer")]
    #[test]
    fn a_value_to_store_must_be_hex() {
        assert!(stored_bytes("0x12", "data").is_ok());
        let e = stored_bytes("12", "tx_hash").expect_err("no prefix");
        assert!(e.to_string().contains("tx_hash"), "{e}");
    }
}
