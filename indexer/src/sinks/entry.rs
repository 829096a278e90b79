//! What a sink sends for a journal entry: the `/v1/stream` data of a `log` or `removed`
//! entry with a `kind` field added (and `rebroadcast` in a rebroadcast run).

use serde::Serialize;
use serde_json::value::RawValue;
use tidemark_shared_types::{Cursor, JournalEntry};

/// A journal entry as the sinks read it: `args` unparsed.
pub(super) type RawEntry = JournalEntry<Box<RawValue>>;

use crate::config::SinkFilter;

#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    kind: &'static str,
    #[serde(flatten)]
    item: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    rebroadcast: Option<u64>,
}

/// One entry, serialized once.
#[derive(Debug, Clone)]
pub(super) struct Item {
    /// The entry's cursor.
    pub(super) cursor: Cursor,
    /// Chain, contract and event: a `removed` entry's are those of the log it removes.
    pub(super) chain_id: u64,
    /// The contract's config name.
    pub(super) contract: String,
    /// The event name.
    pub(super) event: String,
    /// The JSON sent.
    pub(super) json: Box<RawValue>,
}

/// Whether `entry` passes `filter`.
pub(super) fn passes(filter: &SinkFilter, entry: &RawEntry) -> bool {
    match entry {
        JournalEntry::Log(e) => filter.matches(e.chain_id, &e.contract, &e.event),
        JournalEntry::Removed(r) => filter.matches(r.chain_id, &r.contract, &r.event),
    }
}

/// Serializes `entry` for a sink; `rebroadcast`: the run id, in a rebroadcast.
pub(super) fn item(entry: &RawEntry, rebroadcast: Option<u64>) -> Result<Item, serde_json::Error> {
    let (json, chain_id, contract, event) = match entry {
        JournalEntry::Log(e) => (
            serde_json::value::to_raw_value(&Tagged { kind: "log", item: e, rebroadcast })?,
            e.chain_id,
            e.contract.clone(),
            e.event.clone(),
        ),
        JournalEntry::Removed(r) => (
            serde_json::value::to_raw_value(&Tagged { kind: "removed", item: r, rebroadcast })?,
            r.chain_id,
            r.contract.clone(),
            r.event.clone(),
        ),
    };
    Ok(Item { cursor: entry.cursor(), chain_id, contract, event, json })
}
