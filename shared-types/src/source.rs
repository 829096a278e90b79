//! Backfills of sources added to an indexed chain (a compatible config change, see
//! [`crate::added_sources`]): each is persisted with its progress until done, and shown in
//! the status snapshot under its chain's `sources`.

use serde::{Deserialize, Serialize};

use crate::compat::AddedSource;

/// An added source being backfilled: the logs of `addresses` × `events` of `contract`
/// over `[fromBlock, toBlock]`, where `toBlock` is the chain's checkpoint when the source
/// was added (the follower indexes it beyond). Blocks below `nextBlock` are done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SourceBackfill {
    /// The source: chain, contract, addresses and events (its identity).
    #[serde(flatten)]
    pub source: AddedSource,
    /// First block (the contract's start block).
    pub from_block: u64,
    /// Last block: the chain's checkpoint when the source was added.
    pub to_block: u64,
    /// The next block to fetch (`> toBlock` once done).
    pub next_block: u64,
    /// For a source that discovers children first: whether that discovery is done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub discovered: bool,
}

impl SourceBackfill {
    /// True once every block of its range is stored.
    pub fn is_done(&self) -> bool {
        self.next_block > self.to_block
    }

    /// The share of its range done, 0 to 1.
    pub fn fraction_done(&self) -> f64 {
        let total = self.to_block.saturating_sub(self.from_block) + 1;
        let done = self.next_block.saturating_sub(self.from_block).min(total);
        done as f64 / total as f64
    }
}
