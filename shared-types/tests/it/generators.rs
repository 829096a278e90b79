//! proptest generators: consistent chain snapshots (timestamps grow with block numbers) and
//! normalized public configs.

use std::collections::{BTreeMap, BTreeSet};

use proptest::collection::{btree_map, btree_set};
use proptest::prelude::*;
use proptest::sample::select;
use tidemark_shared_types::{
    BlockRef, ChainIndexingConfig, ChainSnapshot, PublicChainConfig, PublicConfig, PublicContractConfig,
    VersionInfo,
};

/// A well-mixed 64-bit value (splitmix64), to make hashes look random but stay stable.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 32-byte 0x hash, a function of the chain's seed and the block number.
pub(crate) fn block_hash(seed: u64, number: u64) -> String {
    let base = mix(seed ^ mix(number));
    format!("0x{:016x}{:016x}{:016x}{:016x}", mix(base), mix(base ^ 1), mix(base ^ 2), mix(base ^ 3))
}

/// The status a generated chain is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Queued,
    Backfill,
    Following,
    Completed,
}

pub(crate) const ALL_KINDS: [Kind; 4] = [Kind::Queued, Kind::Backfill, Kind::Following, Kind::Completed];

/// The blocks of one generated chain: `timestamp = t0 + (number − start) · block_time`.
#[derive(Debug, Clone, Copy)]
struct Chain {
    start: u64,
    t0: u64,
    block_time: u64,
    seed: u64,
}

impl Chain {
    fn block(&self, number: u64) -> BlockRef {
        BlockRef {
            number,
            timestamp: self.t0 + (number - self.start) * self.block_time,
            hash: block_hash(self.seed, number),
        }
    }
}

/// One chain snapshot of a kind from `kinds`, with consistent numbers: start ≤ latestIndexed
/// ≤ backfillEnd ≤ endBlock, start ≤ latestIndexed ≤ latestKnown (and ≤ endBlock when
/// bounded), latestIndexed = endBlock when completed.
pub(crate) fn arb_chain_of(kinds: Vec<Kind>) -> impl Strategy<Value = ChainSnapshot> {
    (
        select(kinds),
        any::<bool>(),
        any::<bool>(),
        0u64..50_000_000,
        // Start times close together, so that cursors often tie across chains.
        1_700_000_000u64..1_700_000_040,
        1u64..=15,
        [0u64..200_000, 0u64..200_000, 0u64..200_000, 0u64..200_000],
        any::<u64>(),
    )
        .prop_map(|(kind, bounded, flag, start, t0, block_time, mut offsets, seed)| {
            offsets.sort_unstable();
            let c = Chain { start, t0, block_time, seed };
            let at = |i: usize| c.block(start + offsets[i]);
            let range = |end: Option<BlockRef>| match end {
                Some(end_block) => ChainIndexingConfig::Bounded { start_block: c.block(start), end_block },
                None => ChainIndexingConfig::LeftBounded { start_block: c.block(start) },
            };
            match kind {
                Kind::Queued => ChainSnapshot::Queued {
                    stalled: None,
                    webhooks: None,
                    config: range(bounded.then(|| at(0))),
                },
                Kind::Backfill => ChainSnapshot::Backfill {
                    stalled: None,
                    webhooks: None,
                    progress: None,
                    sources: Vec::new(),
                    config: range(bounded.then(|| at(if flag { 2 } else { 3 }))),
                    latest_indexed_block: at(0),
                    backfill_end_block: at(1),
                },
                // Bounded: either the end is beyond the head (flag) or the head passed it.
                Kind::Following => ChainSnapshot::Following {
                    stalled: None,
                    webhooks: None,
                    progress: None,
                    sources: Vec::new(),
                    config: range(bounded.then(|| at(if flag { 3 } else { 1 }))),
                    latest_indexed_block: at(0),
                    latest_known_block: at(2),
                },
                Kind::Completed => {
                    ChainSnapshot::Completed { config: range(Some(at(1))), latest_indexed_block: at(1) }
                }
            }
        })
}

fn arb_chain_id() -> impl Strategy<Value = u64> {
    prop_oneof![1u64..=20, Just(31337), Just(8453), 21u64..=u64::MAX]
}

/// 1..5 chains, each in a status from `kinds`.
pub(crate) fn arb_chains_of(kinds: &[Kind]) -> impl Strategy<Value = BTreeMap<u64, ChainSnapshot>> {
    btree_map(arb_chain_id(), arb_chain_of(kinds.to_vec()), 1..5)
}

/// 1..5 chains in any status.
pub(crate) fn arb_chains() -> impl Strategy<Value = BTreeMap<u64, ChainSnapshot>> {
    arb_chains_of(&ALL_KINDS)
}

/// Every block a chain snapshot mentions.
pub(crate) fn block_refs(chain: &ChainSnapshot) -> Vec<&BlockRef> {
    let config = chain.config();
    let mut refs = vec![config.start_block()];
    refs.extend(config.end_block());
    match chain {
        ChainSnapshot::Queued { .. } => {}
        ChainSnapshot::Backfill { latest_indexed_block, backfill_end_block, .. } => {
            refs.extend([latest_indexed_block, backfill_end_block]);
        }
        ChainSnapshot::Following { latest_indexed_block, latest_known_block, .. } => {
            refs.extend([latest_indexed_block, latest_known_block]);
        }
        ChainSnapshot::Completed { latest_indexed_block, .. } => refs.push(latest_indexed_block),
    }
    refs
}

/// Chains from `chains` with a snapshot time no earlier than any of their blocks.
pub(crate) fn with_snapshot_time(
    chains: impl Strategy<Value = BTreeMap<u64, ChainSnapshot>>,
) -> impl Strategy<Value = (BTreeMap<u64, ChainSnapshot>, u64)> {
    (chains, 0u64..10_000).prop_map(|(chains, delay)| {
        let newest =
            chains.values().flat_map(block_refs).map(|b| b.timestamp).max().expect("at least one chain");
        (chains, newest + delay)
    })
}

fn arb_address() -> impl Strategy<Value = String> {
    any::<[u8; 20]>().prop_map(|bytes| {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}")
    })
}

fn arb_event() -> impl Strategy<Value = String> {
    (
        "[A-Z][A-Za-z]{0,10}",
        select(vec![
            "",
            "uint256 value",
            "address indexed from, address indexed to, uint256 value",
            "address indexed owner, address indexed spender, uint256 value",
            "bytes32 indexed id, string name, uint8[] flags",
            "(uint256,address) pair, bool ok",
        ]),
    )
        .prop_map(|(name, params)| format!("event {name}({params})"))
}

fn arb_contract(name: String) -> impl Strategy<Value = PublicContractConfig> {
    (
        btree_set(arb_address(), 1..4),
        0u64..100_000_000,
        proptest::option::of(0u64..1_000_000),
        btree_set(arb_event(), 1..4),
    )
        .prop_map(move |(addresses, start_block, length, events)| PublicContractConfig {
            name: name.clone(),
            addresses: addresses.into_iter().collect(),
            factory: None,
            start_block,
            end_block: length.map(|l| start_block + l),
            events: events.into_iter().collect(),
        })
}

fn arb_contracts() -> impl Strategy<Value = Vec<PublicContractConfig>> {
    btree_set("[A-Z][A-Za-z0-9]{0,8}", 1..4)
        .prop_flat_map(|names: BTreeSet<String>| names.into_iter().map(arb_contract).collect::<Vec<_>>())
}

pub(crate) fn arb_version_info() -> impl Strategy<Value = VersionInfo> {
    ("[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}(-rc\\.[0-9])?", any::<u32>())
        .prop_map(|(tidemark, schema_version)| VersionInfo { tidemark, schema_version })
}

/// A normalized public config: chains sorted by id, contracts by name, addresses lowercase
/// and sorted, events sorted, no duplicates.
pub(crate) fn arb_config() -> impl Strategy<Value = PublicConfig> {
    (
        "[a-z][a-z0-9_]{0,15}",
        "tidemark_[a-z0-9_]{1,20}",
        btree_map(arb_chain_id(), (0u64..1_000, arb_contracts()), 1..4),
        arb_version_info(),
    )
        .prop_map(|(namespace, instance_schema, chains, version_info)| PublicConfig {
            namespace,
            instance_schema,
            chains: chains
                .into_iter()
                .map(|(chain_id, (finality_depth, contracts))| PublicChainConfig {
                    chain_id,
                    finality_depth,
                    contracts,
                })
                .collect(),
            version_info,
        })
}
