//! Event items and cursors as served by the API and read from the journal.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A position in an instance's journal. Cursors increase in commit order across all
/// chains of an instance. Serialized as a decimal string (values may exceed 2^53).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor(pub i64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A cursor string that is not a decimal integer in `0..=i64::MAX`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a cursor is a decimal integer between 0 and 9223372036854775807")]
pub struct InvalidCursor;

impl FromStr for Cursor {
    type Err = InvalidCursor;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only plain ASCII digits: no sign, no whitespace. The bound is the SQL bigint range.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidCursor);
        }
        s.parse::<i64>().map(Cursor).map_err(|_| InvalidCursor)
    }
}

impl Serialize for Cursor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The kind of a journal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalKind {
    /// A canonical log was added.
    Log,
    /// A log was removed by a reorg.
    Removed,
}

/// One indexed event as served by the API (camelCase JSON).
///
/// `A` is how the decoded arguments are held: a parsed [`Value`] by default, or the
/// stored JSON text as a `Box<serde_json::value::RawValue>` where it is only passed
/// through (the API serves it without parsing and re-encoding it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(bound = ""))]
#[serde(rename_all = "camelCase")]
pub struct EventItem<A = Value> {
    /// Journal position (a decimal string; it may exceed 2^53).
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub cursor: Cursor,
    /// Chain id.
    pub chain_id: u64,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: String,
    /// Block timestamp (unix seconds).
    pub block_timestamp: u64,
    /// Transaction hash.
    pub transaction_hash: String,
    /// Index of the transaction in the block.
    pub transaction_index: u64,
    /// Index of the log in the block.
    pub log_index: u64,
    /// Emitting contract address (lowercase).
    pub address: String,
    /// Contract name from the config.
    pub contract: String,
    /// Event name.
    pub event: String,
    /// Canonical full event signature.
    pub signature: String,
    /// Decoded arguments keyed by parameter name (DESIGN §3): integers as decimal
    /// strings, bytes and addresses as 0x hex, tuples and arrays as arrays, an indexed
    /// dynamic value as `{"topicHash": "0x…"}`, a string that is not valid UTF-8 or holds
    /// NUL as `{"hex": "0x…"}`. `null` when the log does not fit its ABI (see
    /// `decodeError`).
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<Object>))]
    pub args: A,
    /// Why the log could not be decoded against its event's ABI (then `args` is `null`;
    /// the raw log is kept). Absent when the log decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_error: Option<String>,
    /// True when the block is at least `finalityDepth` behind the chain's latest known block.
    pub finalized: bool,
}

/// A `removed` entry of the journal: a log that a reorg took back (DESIGN §8 "Streams").
/// `event_cursor` is the cursor of the `log` entry it removes: a consumer replaying the
/// journal deletes that one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RemovedItem {
    /// This entry's cursor.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub cursor: Cursor,
    /// The cursor of the removed log's entry.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub event_cursor: Cursor,
    /// Chain id.
    pub chain_id: u64,
    /// Block number of the removed log.
    pub block_number: u64,
    /// Block hash of the removed log.
    pub block_hash: String,
    /// Log index of the removed log.
    pub log_index: u64,
    /// Transaction hash of the removed log.
    pub transaction_hash: String,
    /// Emitting address.
    pub address: String,
    /// Contract name.
    pub contract: String,
    /// Event name.
    pub event: String,
    /// The removed log's topics (`topics[0]` the signature's): for filtering, not part
    /// of the served JSON.
    #[serde(skip)]
    pub topics: Vec<String>,
}

/// One entry of an instance's journal, in cursor order: a log added, or a log removed.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalEntry<A = Value> {
    /// A canonical log was added: the item `/v1/events` serves.
    Log(EventItem<A>),
    /// A log was removed by a reorg.
    Removed(RemovedItem),
}

impl<A> JournalEntry<A> {
    /// The entry's cursor.
    pub fn cursor(&self) -> Cursor {
        match self {
            Self::Log(e) => e.cursor,
            Self::Removed(r) => r.cursor,
        }
    }

    /// The entry's kind.
    pub fn kind(&self) -> JournalKind {
        match self {
            Self::Log(_) => JournalKind::Log,
            Self::Removed(_) => JournalKind::Removed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_is_a_decimal_string() {
        let c = Cursor(9_007_199_254_740_993);
        let json = serde_json::to_string(&c).expect("serializes");
        assert_eq!(json, "\"9007199254740993\"");
        assert_eq!(serde_json::from_str::<Cursor>(&json).expect("deserializes"), c);
        assert!("-1".parse::<Cursor>().is_err());
        assert!("18446744073709551615".parse::<Cursor>().is_err());
        assert!("abc".parse::<Cursor>().is_err());
        assert!("+5".parse::<Cursor>().is_err());
        assert!("".parse::<Cursor>().is_err());
    }
}
