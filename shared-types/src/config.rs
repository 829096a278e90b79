//! The public configuration: what an instance indexes, persisted in `tidemark.metadata`
//! and served by both services. It never holds secrets or RPC URLs.

use serde::{Deserialize, Serialize};

/// Version of the per-instance table layout that this build writes. Version 2 added
/// `events.decode_error` (and made `events.args` nullable), version 3 two indexes, version
/// 4 the compact `events` (hashes, addresses, topics and data as `bytea`, names once per
/// event type in `event_types`), version 5 the sinks' tables, version 6 the webhook
/// ingestion tables (`webhook_deliveries`, `pending_blocks`), version 7 the factory
/// contracts' `children`; an instance of an earlier
/// version is upgraded in place at start-up.
pub const SCHEMA_VERSION: u32 = 7;

/// The public configuration of an indexer instance (camelCase JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicConfig {
    /// What this instance indexes, e.g. `demo`.
    pub namespace: String,
    /// The PostgreSQL schema holding this instance's tables.
    pub instance_schema: String,
    /// Chains, sorted by `chain_id`.
    pub chains: Vec<PublicChainConfig>,
    /// Versions of the writer; free to change between compatible runs.
    pub version_info: VersionInfo,
}

/// One chain of the public configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicChainConfig {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Blocks behind the head that are considered final.
    pub finality_depth: u64,
    /// Contracts, sorted by name.
    pub contracts: Vec<PublicContractConfig>,
}

/// One contract of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicContractConfig {
    /// Name from the config file; stored with each event.
    pub name: String,
    /// Lowercase 0x addresses, sorted (empty for a factory contract: its addresses are
    /// discovered, and never part of the config).
    pub addresses: Vec<String>,
    /// Where a factory contract's addresses come from (absent for a contract with
    /// static addresses; configs written before factories have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factory: Option<FactorySpec>,
    /// First block indexed.
    pub start_block: u64,
    /// Last block indexed, when the range is bounded.
    pub end_block: Option<u64>,
    /// Canonical full event signatures, sorted.
    pub events: Vec<String>,
}

/// A factory contract's origin: the `event` of contract `contract` (same chain) whose
/// `address` parameter `parameter` names each new child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FactorySpec {
    /// The creating contract's name.
    pub contract: String,
    /// The creating event: its name, or its canonical signature when the config gave one.
    pub event: String,
    /// The `address` parameter of the event that holds the child's address.
    pub parameter: String,
}

/// Versions of the software that wrote the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// Tidemark release, e.g. `0.1.0`.
    pub tidemark: String,
    /// Version of the per-instance table layout.
    pub schema_version: u32,
}

impl VersionInfo {
    /// The versions of this build.
    pub fn current() -> Self {
        Self { tidemark: env!("CARGO_PKG_VERSION").to_owned(), schema_version: SCHEMA_VERSION }
    }
}

impl PublicConfig {
    /// Sorts chains, contracts, addresses and events and lowercases addresses, so that
    /// two configs describing the same thing compare equal.
    pub fn normalized(mut self) -> Self {
        self.chains.sort_by_key(|c| c.chain_id);
        for chain in &mut self.chains {
            chain.contracts.sort_by(|a, b| a.name.cmp(&b.name));
            for contract in &mut chain.contracts {
                for a in &mut contract.addresses {
                    *a = a.to_ascii_lowercase();
                }
                contract.addresses.sort();
                contract.addresses.dedup();
                contract.events.sort();
                contract.events.dedup();
            }
        }
        self
    }

    /// The chain ids, ascending.
    pub fn chain_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.chains.iter().map(|c| c.chain_id).collect();
        ids.sort_unstable();
        ids
    }

    /// The chain with `chain_id`, if configured.
    pub fn chain(&self, chain_id: u64) -> Option<&PublicChainConfig> {
        self.chains.iter().find(|c| c.chain_id == chain_id)
    }
}

impl PublicChainConfig {
    /// Lowest start block over the chain's contracts (0 when there are none).
    pub fn start_block(&self) -> u64 {
        self.contracts.iter().map(|c| c.start_block).min().unwrap_or(0)
    }

    /// The chain's end block: the highest `endBlock` when every contract is bounded,
    /// `None` when any contract is unbounded.
    pub fn end_block(&self) -> Option<u64> {
        let mut end = None::<u64>;
        for c in &self.contracts {
            let e = c.end_block?;
            end = Some(end.map_or(e, |x| x.max(e)));
        }
        end
    }
}
