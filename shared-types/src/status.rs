//! The indexing-status model (DESIGN §4), after ENSNode's.
//!
//! Chain snapshots are tagged by `chainStatus`, the omnichain snapshot by `omnichainStatus`.
//! Deserialization validates every invariant, so an inconsistent snapshot never reaches a
//! reader: a snapshot is built either by [`IndexingStatus::derive`] (which computes the
//! omnichain fields) or by deserializing JSON that passes [`IndexingStatus::validate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sink::SinkStatus;
use crate::source::SourceBackfill;
use crate::webhook::WebhookStatus;

/// A block: number, unix timestamp and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRef {
    /// Block number.
    pub number: u64,
    /// Unix seconds.
    pub timestamp: u64,
    /// 0x-prefixed block hash.
    pub hash: String,
}

/// The block range a chain indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rangeType", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum ChainIndexingConfig {
    /// From `start_block` on, forever.
    LeftBounded {
        /// First block indexed.
        start_block: BlockRef,
    },
    /// From `start_block` to `end_block` inclusive.
    Bounded {
        /// First block indexed.
        start_block: BlockRef,
        /// Last block indexed.
        end_block: BlockRef,
    },
}

impl ChainIndexingConfig {
    /// The first block indexed.
    pub fn start_block(&self) -> &BlockRef {
        match self {
            Self::LeftBounded { start_block } | Self::Bounded { start_block, .. } => start_block,
        }
    }

    /// The last block, when bounded.
    pub fn end_block(&self) -> Option<&BlockRef> {
        match self {
            Self::LeftBounded { .. } => None,
            Self::Bounded { end_block, .. } => Some(end_block),
        }
    }
}

/// A chain whose pipeline made no progress for `2 × poll interval + 30 s` while the chain
/// head was ahead of it (an additive field of the chain's snapshot; absent otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stalled {
    /// Unix seconds of the chain's last progress (a commit, or being at the head).
    pub since: u64,
    /// The last error the pipeline saw, with every RPC URL and secret redacted.
    pub last_error: Option<String>,
}

/// The status of one chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "chainStatus", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum ChainSnapshot {
    /// Nothing committed yet.
    #[serde(rename = "chain-queued")]
    Queued {
        /// Range indexed.
        config: ChainIndexingConfig,
        /// Set while the chain is stalled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stalled: Option<Stalled>,
        /// Provider webhook ingestion, when the chain has webhooks configured.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        webhooks: Option<WebhookStatus>,
    },
    /// Catching up to `backfill_end_block`, fixed for the process.
    #[serde(rename = "chain-backfill")]
    Backfill {
        /// Range indexed.
        config: ChainIndexingConfig,
        /// Highest committed block.
        latest_indexed_block: BlockRef,
        /// min(endBlock, chain head at start).
        backfill_end_block: BlockRef,
        /// Set while the chain is stalled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stalled: Option<Stalled>,
        /// Provider webhook ingestion, when the chain has webhooks configured.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        webhooks: Option<WebhookStatus>,
        /// Rates over the last minute (absent in snapshots of older writers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        progress: Option<ChainProgress>,
        /// Sources added to the chain that are still backfilling (none: absent).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sources: Vec<SourceBackfill>,
    },
    /// Following the head.
    #[serde(rename = "chain-following")]
    Following {
        /// Range indexed.
        config: ChainIndexingConfig,
        /// Highest committed block.
        latest_indexed_block: BlockRef,
        /// Highest block seen at the head.
        latest_known_block: BlockRef,
        /// Set while the chain is stalled.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stalled: Option<Stalled>,
        /// Provider webhook ingestion, when the chain has webhooks configured.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        webhooks: Option<WebhookStatus>,
        /// Rates over the last minute (absent in snapshots of older writers).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        progress: Option<ChainProgress>,
        /// Sources added to the chain that are still backfilling (none: absent).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sources: Vec<SourceBackfill>,
    },
    /// A bounded range, fully indexed.
    #[serde(rename = "chain-completed")]
    Completed {
        /// Range indexed (bounded).
        config: ChainIndexingConfig,
        /// Equals the end block.
        latest_indexed_block: BlockRef,
    },
}

impl ChainSnapshot {
    /// The chain's range.
    pub fn config(&self) -> &ChainIndexingConfig {
        match self {
            Self::Queued { config, .. }
            | Self::Backfill { config, .. }
            | Self::Following { config, .. }
            | Self::Completed { config, .. } => config,
        }
    }

    /// Whether (and since when) the chain is stalled.
    pub fn stalled(&self) -> Option<&Stalled> {
        match self {
            Self::Queued { stalled, .. }
            | Self::Backfill { stalled, .. }
            | Self::Following { stalled, .. } => stalled.as_ref(),
            Self::Completed { .. } => None,
        }
    }

    /// Sources added to the chain that are still backfilling.
    pub fn sources(&self) -> &[SourceBackfill] {
        match self {
            Self::Backfill { sources, .. } | Self::Following { sources, .. } => sources,
            Self::Queued { .. } | Self::Completed { .. } => &[],
        }
    }

    /// The highest committed block, once started.
    pub fn latest_indexed_block(&self) -> Option<&BlockRef> {
        match self {
            Self::Queued { .. } => None,
            Self::Backfill { latest_indexed_block, .. }
            | Self::Following { latest_indexed_block, .. }
            | Self::Completed { latest_indexed_block, .. } => Some(latest_indexed_block),
        }
    }

    /// Checks the invariants of DESIGN §4 for this chain.
    pub fn validate(&self) -> Result<(), StatusError> {
        let start = self.config().start_block().number;
        if let Some(end) = self.config().end_block()
            && end.number < start
        {
            return Err(StatusError::new("config.endBlock is below config.startBlock"));
        }
        let check = |cond: bool, msg: &'static str| if cond { Ok(()) } else { Err(StatusError::new(msg)) };
        match self {
            Self::Queued { .. } => Ok(()),
            Self::Backfill { latest_indexed_block: l, backfill_end_block: e, .. } => {
                check(start <= l.number, "chain-backfill: latestIndexedBlock is below startBlock")?;
                check(l.number <= e.number, "chain-backfill: latestIndexedBlock is beyond backfillEndBlock")?;
                match self.config().end_block() {
                    Some(end) => {
                        check(e.number <= end.number, "chain-backfill: backfillEndBlock is beyond endBlock")
                    }
                    None => Ok(()),
                }
            }
            Self::Following { latest_indexed_block: l, latest_known_block: k, .. } => {
                check(start <= l.number, "chain-following: latestIndexedBlock is below startBlock")?;
                check(l.number <= k.number, "chain-following: latestIndexedBlock is beyond latestKnownBlock")
            }
            Self::Completed { config, latest_indexed_block: l } => match config.end_block() {
                Some(end) => {
                    check(l.number == end.number, "chain-completed: latestIndexedBlock differs from endBlock")
                }
                None => Err(StatusError::new("chain-completed requires a bounded range")),
            },
        }
    }
}

/// How fast a chain is being indexed, over the last minute of commits by the writing
/// process: the same figures as its progress log.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainProgress {
    /// Blocks committed per second.
    pub blocks_per_second: f64,
    /// Events committed per second.
    pub events_per_second: f64,
    /// Seconds until the backfill reaches `backfillEndBlock` at that rate (`None` when
    /// not backfilling or nothing was committed in the last minute).
    pub eta_seconds: Option<u64>,
}

/// The status of all chains together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OmnichainStatus {
    /// Every chain is queued.
    #[serde(rename = "omnichain-unstarted")]
    Unstarted,
    /// Some chain is backfilling and none follows.
    #[serde(rename = "omnichain-backfill")]
    Backfill,
    /// Some chain follows the head.
    #[serde(rename = "omnichain-following")]
    Following,
    /// Every chain is completed.
    #[serde(rename = "omnichain-completed")]
    Completed,
}

impl OmnichainStatus {
    /// Derives the omnichain status from the chain snapshots.
    pub fn derive<'a>(chains: impl IntoIterator<Item = &'a ChainSnapshot> + Clone) -> Self {
        let mut it = chains.clone().into_iter();
        if it.any(|c| matches!(c, ChainSnapshot::Following { .. })) {
            Self::Following
        } else if chains.clone().into_iter().all(|c| matches!(c, ChainSnapshot::Completed { .. })) {
            Self::Completed
        } else if chains.into_iter().all(|c| matches!(c, ChainSnapshot::Queued { .. })) {
            Self::Unstarted
        } else {
            Self::Backfill
        }
    }
}

/// "Everything up to this time is indexed everywhere": the lowest `latestIndexedBlock`
/// timestamp over started, not completed chains; the highest when all are completed; the
/// lowest start timestamp − 1 when none has started.
pub fn omnichain_indexing_cursor<'a>(chains: impl IntoIterator<Item = &'a ChainSnapshot> + Clone) -> u64 {
    let active = chains
        .clone()
        .into_iter()
        .filter(|c| !matches!(c, ChainSnapshot::Queued { .. } | ChainSnapshot::Completed { .. }))
        .filter_map(|c| c.latest_indexed_block().map(|b| b.timestamp))
        .min();
    if let Some(t) = active {
        return t;
    }
    let all: Vec<&ChainSnapshot> = chains.into_iter().collect();
    if !all.is_empty() && all.iter().all(|c| matches!(c, ChainSnapshot::Completed { .. })) {
        return all.iter().filter_map(|c| c.latest_indexed_block().map(|b| b.timestamp)).max().unwrap_or(0);
    }
    // Some chains are queued and the others completed, or none started: the earliest
    // start over the queued chains bounds what is known to be indexed everywhere.
    all.iter()
        .filter(|c| matches!(c, ChainSnapshot::Queued { .. }))
        .map(|c| c.config().start_block().timestamp)
        .min()
        .unwrap_or(0)
        .saturating_sub(1)
}

/// The omnichain part of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OmnichainSnapshot {
    /// Derived from the chains.
    pub omnichain_status: OmnichainStatus,
    /// Derived from the chains; see [`omnichain_indexing_cursor`].
    pub omnichain_indexing_cursor: u64,
    /// Chain snapshots keyed by chain id (decimal-string keys in JSON).
    pub chains: BTreeMap<u64, ChainSnapshot>,
}

/// Where the build of the `events` indexes a new instance deferred until its first
/// backfill finished stands (docs/database.md, "Deferred indexes"): an additive field of
/// the snapshot, absent when no build is pending (the instance was never deferred, or
/// its indexes were built before the indexer that wrote the snapshot started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct IndexBuild {
    /// `deferred` (waiting for every chain to finish its backfill), `building` or `done`.
    pub state: IndexBuildState,
    /// Indexes that exist and are valid.
    pub built: u32,
    /// Indexes deferred in all.
    pub total: u32,
    /// The index being built (while `building`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
}

impl IndexBuild {
    /// True until every deferred index is built (`deferred` or `building`).
    pub fn is_pending(&self) -> bool {
        self.state != IndexBuildState::Done
    }
}

/// The state of an [`IndexBuild`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum IndexBuildState {
    /// Waiting for every chain to finish its backfill.
    Deferred,
    /// Building, one index at a time.
    Building,
    /// Every index is built.
    Done,
}

/// The persisted status snapshot (`indexing_status` metadata key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawIndexingStatus")]
pub struct IndexingStatus {
    /// Always `omnichain`.
    pub strategy: Strategy,
    /// Equals `omnichainSnapshot.omnichainIndexingCursor`.
    pub slowest_chain_indexing_cursor: u64,
    /// When the snapshot was taken (unix seconds).
    pub snapshot_time: u64,
    /// The omnichain snapshot.
    pub omnichain_snapshot: OmnichainSnapshot,
    /// The deferred index build, while one is pending (and `done` once the indexer that
    /// writes the snapshot finished it); absent otherwise, and in snapshots of earlier
    /// builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_build: Option<IndexBuild>,
    /// Each configured sink's delivery state, by name; absent when none is configured, and
    /// in snapshots of earlier builds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sinks: BTreeMap<String, SinkStatus>,
}

/// The status strategy; only `omnichain` exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// One cursor over all chains.
    Omnichain,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndexingStatus {
    strategy: Strategy,
    slowest_chain_indexing_cursor: u64,
    snapshot_time: u64,
    omnichain_snapshot: OmnichainSnapshot,
    #[serde(default)]
    index_build: Option<IndexBuild>,
    #[serde(default)]
    sinks: BTreeMap<String, SinkStatus>,
}

impl TryFrom<RawIndexingStatus> for IndexingStatus {
    type Error = StatusError;
    fn try_from(raw: RawIndexingStatus) -> Result<Self, StatusError> {
        let status = Self {
            strategy: raw.strategy,
            slowest_chain_indexing_cursor: raw.slowest_chain_indexing_cursor,
            snapshot_time: raw.snapshot_time,
            omnichain_snapshot: raw.omnichain_snapshot,
            index_build: raw.index_build,
            sinks: raw.sinks,
        };
        status.validate()?;
        Ok(status)
    }
}

impl IndexingStatus {
    /// Builds a snapshot from chain snapshots, deriving the omnichain fields.
    pub fn derive(chains: BTreeMap<u64, ChainSnapshot>, snapshot_time: u64) -> Result<Self, StatusError> {
        for c in chains.values() {
            c.validate()?;
        }
        if chains.is_empty() {
            return Err(StatusError::new("a snapshot needs at least one chain"));
        }
        let cursor = omnichain_indexing_cursor(chains.values());
        let status = Self {
            strategy: Strategy::Omnichain,
            slowest_chain_indexing_cursor: cursor,
            snapshot_time,
            omnichain_snapshot: OmnichainSnapshot {
                omnichain_status: OmnichainStatus::derive(chains.values()),
                omnichain_indexing_cursor: cursor,
                chains,
            },
            index_build: None,
            sinks: BTreeMap::new(),
        };
        Ok(status)
    }

    /// Checks every invariant: each chain's, the derived omnichain status and cursor, and
    /// `slowestChainIndexingCursor == omnichainIndexingCursor`.
    pub fn validate(&self) -> Result<(), StatusError> {
        let snap = &self.omnichain_snapshot;
        if snap.chains.is_empty() {
            return Err(StatusError::new("a snapshot needs at least one chain"));
        }
        for c in snap.chains.values() {
            c.validate()?;
        }
        if snap.omnichain_status != OmnichainStatus::derive(snap.chains.values()) {
            return Err(StatusError::new("omnichainStatus does not match the chain statuses"));
        }
        if snap.omnichain_indexing_cursor != omnichain_indexing_cursor(snap.chains.values()) {
            return Err(StatusError::new("omnichainIndexingCursor does not match the chains"));
        }
        if self.slowest_chain_indexing_cursor != snap.omnichain_indexing_cursor {
            return Err(StatusError::new("slowestChainIndexingCursor differs from omnichainIndexingCursor"));
        }
        Ok(())
    }

    /// The chain ids in the snapshot, ascending.
    pub fn chain_ids(&self) -> Vec<u64> {
        self.omnichain_snapshot.chains.keys().copied().collect()
    }

    /// True when every chain of the snapshot is a chain of `config`: the snapshot may be
    /// served with that config. A config may have gained chains (a compatible change,
    /// [`crate::check_compatible`]) that the writing indexer does not report yet.
    pub fn fits(&self, config: &crate::config::PublicConfig) -> bool {
        self.omnichain_snapshot.chains.keys().all(|id| config.chains.iter().any(|c| c.chain_id == *id))
    }

    /// True when the snapshot describes exactly the chains of `config`: the same as
    /// `self.chain_ids() == config.chain_ids()`, without allocating (readers check it
    /// on every cached read).
    pub fn has_chains_of(&self, config: &crate::config::PublicConfig) -> bool {
        let chains = &self.omnichain_snapshot.chains;
        chains.len() == config.chains.len()
            && config.chains.iter().all(|c| chains.contains_key(&c.chain_id))
            && chains.keys().all(|id| config.chains.iter().any(|c| c.chain_id == *id))
    }
}

/// A broken status invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid indexing status: {message}")]
pub struct StatusError {
    /// Which invariant broke.
    pub message: &'static str,
}

impl StatusError {
    fn new(message: &'static str) -> Self {
        Self { message }
    }
}
