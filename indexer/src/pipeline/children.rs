//! Factory contracts' children (DESIGN §3 "Factory contracts"): discovered from the
//! creating logs of their factory, kept in memory per chain ([`ChildSet`]) and in the
//! instance's `children` table, written with the events of the block that created them.
//!
//! Invariants:
//! - A child's logs are indexed from the block that created it on, the whole block
//!   included (a child may emit events in its constructor, before its factory's log).
//! - The set holds exactly the children created up to the chain's checkpoint, plus those
//!   of the range being fetched: whatever was added above the checkpoint and not committed
//!   is dropped ([`ChildSet::truncate_above`]) before the next range is discovered, and a
//!   rollback drops the children of orphaned blocks from the table and from the set.
//! - A creating log that does not decode (a factory is still code anyone may have
//!   written) is skipped, counted in `tidemark_factory_bad_logs_total` and logged; it
//!   never stops the chain.

use std::collections::HashMap;

use alloy::dyn_abi::{DynSolType, DynSolValue};
use alloy::primitives::{Address, hex};
use alloy::rpc::types::{Filter, Log};

use crate::config::{ChainConfig, FactoryConfig, ParamLocation};
use crate::rpc::Interest;
use tidemark_db_client::writer::ChildRow;

/// One creation of a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creation {
    /// Index of the child's contract in the chain's contracts.
    pub contract: usize,
    /// The creating block.
    pub block: u64,
    /// The creating log's index.
    pub log_index: u64,
}

/// The known children of one chain, by address.
#[derive(Debug, Default)]
pub struct ChildSet {
    by_address: HashMap<Address, Vec<Creation>>,
    /// The highest creating block held (for a cheap [`ChildSet::truncate_above`]).
    highest: u64,
    len: usize,
}

impl ChildSet {
    /// The set of `rows` (the stored children of the chain), resolved against `chain`'s
    /// contracts; rows of contracts no longer configured are ignored.
    pub fn from_rows(chain: &ChainConfig, rows: &[ChildRow]) -> Self {
        let mut set = Self::default();
        for r in rows {
            let (Some(contract), Ok(address)) =
                (chain.contracts.iter().position(|c| c.name == r.contract), r.address.parse::<Address>())
            else {
                continue;
            };
            set.insert(address, Creation { contract, block: r.block_number, log_index: r.log_index });
        }
        set
    }

    /// Adds a creation; an address already a child of the same contract keeps its first.
    /// Returns whether it was new.
    pub fn insert(&mut self, address: Address, creation: Creation) -> bool {
        let entries = self.by_address.entry(address).or_default();
        if let Some(e) = entries.iter_mut().find(|e| e.contract == creation.contract) {
            if (creation.block, creation.log_index) < (e.block, e.log_index) {
                *e = creation;
                entries.sort_by_key(|e| (e.block, e.log_index, e.contract));
            }
            return false;
        }
        entries.push(creation);
        entries.sort_by_key(|e| (e.block, e.log_index, e.contract));
        self.highest = self.highest.max(creation.block);
        self.len += 1;
        true
    }

    /// Drops every creation above `block` (uncommitted or orphaned).
    pub fn truncate_above(&mut self, block: u64) {
        if self.highest <= block {
            return;
        }
        self.by_address.retain(|_, entries| {
            entries.retain(|e| e.block <= block);
            !entries.is_empty()
        });
        self.len = self.by_address.values().map(Vec::len).sum();
        self.highest = self.by_address.values().flatten().map(|e| e.block).max().unwrap_or(0);
    }

    /// The creations of `address`, oldest first.
    pub fn get(&self, address: &Address) -> &[Creation] {
        self.by_address.get(address).map_or(&[], Vec::as_slice)
    }

    /// How many (address, contract) children it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The addresses of children of `contracts` (indexes; every contract when `None`)
    /// created up to `block`, sorted.
    pub fn addresses_upto(&self, block: u64, contracts: Option<&[usize]>) -> Vec<Address> {
        let mut out: Vec<Address> = self
            .by_address
            .iter()
            .filter(|(_, entries)| {
                entries.iter().any(|e| e.block <= block && contracts.is_none_or(|c| c.contains(&e.contract)))
            })
            .map(|(a, _)| *a)
            .collect();
        out.sort_unstable();
        out
    }
}

/// How children's logs are asked for: address lists of at most `max_addresses`, or, with
/// more than `topic_only_above` children, the children's topics alone, filtered here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildFetch {
    /// Addresses per `eth_getLogs` request.
    pub max_addresses: usize,
    /// Beyond this many children, one topic-only request per range.
    pub topic_only_above: usize,
}

/// The requests and interest that ask for the logs with `topics` of `addresses`.
pub fn child_query(
    addresses: &[Address],
    topics: &[alloy::primitives::B256],
    fetch: ChildFetch,
) -> (Vec<Filter>, Interest) {
    if addresses.is_empty() || topics.is_empty() {
        return (Vec::new(), Interest::default());
    }
    let interest = Interest::new(addresses.to_vec(), topics.to_vec());
    let filters = if addresses.len() > fetch.topic_only_above {
        vec![Filter::new().event_signature(topics.to_vec())]
    } else {
        addresses
            .chunks(fetch.max_addresses.max(1))
            .map(|chunk| Filter::new().address(chunk.to_vec()).event_signature(topics.to_vec()))
            .collect()
    };
    (filters, interest)
}

/// A child found in a creating log, with the row that stores it.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The child's address.
    pub address: Address,
    /// Its creation.
    pub creation: Creation,
    /// The row to store.
    pub row: ChildRow,
}

/// The children created by `logs` (a range's logs of the static addresses, in any order),
/// in block and log order. Only logs of a factory's own addresses, with its creating
/// event, inside its own block range, create children.
pub fn discover(chain: &ChainConfig, logs: &[Log]) -> Vec<Discovered> {
    let mut out = Vec::new();
    for (j, child) in chain.contracts.iter().enumerate() {
        let Some(f) = &child.factory else { continue };
        for log in logs {
            if log.topics().first() != Some(&f.event.topic0) || !f.addresses.contains(&log.address()) {
                continue;
            }
            let (Some(block), Some(log_index), Some(block_hash), Some(tx)) =
                (log.block_number, log.log_index, log.block_hash, log.transaction_hash)
            else {
                continue;
            };
            if block < f.start_block || f.end_block.is_some_and(|e| block > e) {
                continue;
            }
            let address = match child_address(f, log) {
                Ok(a) => a,
                Err(message) => {
                    metrics::counter!("tidemark_factory_bad_logs_total", "chain_id" => chain.chain_id.to_string(), "contract" => child.name.clone())
                        .increment(1);
                    tracing::warn!(target: "tidemark::factory", chain_id = chain.chain_id, contract = %child.name,
                        factory = %f.contract, block, log_index, error = %message, "creating log does not decode; no child");
                    continue;
                }
            };
            out.push(Discovered {
                address,
                creation: Creation { contract: j, block, log_index },
                row: ChildRow {
                    contract: child.name.clone(),
                    address: hex::encode_prefixed(address),
                    block_number: block,
                    block_hash: hex::encode_prefixed(block_hash),
                    log_index,
                    tx_hash: hex::encode_prefixed(tx),
                },
            });
        }
    }
    out.sort_by_key(|d| (d.creation.block, d.creation.log_index, d.creation.contract));
    out
}

/// The child's address in a creating log.
fn child_address(f: &FactoryConfig, log: &Log) -> Result<Address, String> {
    let expected = 1 + f.event.event.inputs.iter().filter(|p| p.indexed).count();
    let topics = log.topics();
    if topics.len() != expected {
        return Err(format!("{} topics; the event has {expected}", topics.len()));
    }
    let value = match f.location {
        ParamLocation::Topic(i) => {
            let topic = topics.get(i).ok_or("topic missing")?;
            DynSolType::Address.abi_decode(topic.as_slice()).map_err(|e| e.to_string())?
        }
        ParamLocation::Data(i) => match f.event.body.abi_decode_sequence(&log.data().data) {
            Ok(DynSolValue::Tuple(values)) => values.into_iter().nth(i).ok_or("data too short")?,
            Ok(other) => return Err(format!("data decoded as {other:?}")),
            Err(e) => return Err(e.to_string()),
        },
    };
    match value {
        DynSolValue::Address(a) => Ok(a),
        other => Err(format!("parameter {} decoded as {other:?}", f.parameter)),
    }
}
