//! Checks on what a node answered, before any of it can reach a commit (invariant 9: an
//! RPC answer is evidence, not truth).
//!
//! A load-balanced provider mixes nodes at different heights and, now and then, a buggy
//! one. Every answer is checked for what can be checked without trusting it: logs inside
//! the requested range, each log once, one hash per block, the fields canonical logs carry,
//! and (for `blockHash` queries) the block asked for. An answer that fails is rejected as
//! a whole with a [`BadAnswer`] and asked again, on another endpoint when there are
//! several; nothing of it is kept.

use std::collections::HashSet;

use alloy::primitives::{Address, B256, Bloom, BloomInput};
use alloy::rpc::types::Log;

/// Why an answer was rejected. The label is the `kind` of
/// `tidemark_rpc_bad_answers_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadAnswer {
    /// A block the node does not have (yet): a `null` block, an unknown block hash, a head
    /// below what is already indexed. Normal for a lagging node; never a reorg.
    NotYet,
    /// A log outside the requested block range.
    OutOfRange,
    /// The same log (block hash, log index) twice.
    Duplicate,
    /// A log whose block hash differs from the block's header (or from the hash asked
    /// for), or two hashes for one block in one answer.
    HashMismatch,
    /// A log without a field that canonical logs carry, or marked `removed`.
    Malformed,
    /// An answer that leaves out what the chain's own data shows exists (logs missing from
    /// a block whose bloom and receipts show them, receipts missing for transactions).
    Incomplete,
    /// The endpoint serves another chain (chain id, or a block hash the index anchors on).
    WrongChain,
}

impl BadAnswer {
    /// Label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotYet => "not-yet",
            Self::OutOfRange => "out-of-range",
            Self::Duplicate => "duplicate",
            Self::HashMismatch => "hash-mismatch",
            Self::Malformed => "malformed",
            Self::Incomplete => "incomplete",
            Self::WrongChain => "wrong-chain",
        }
    }
}

impl std::fmt::Display for BadAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The logs a query asks for, to test block blooms and to keep only those logs: a union
/// of parts, each a set of addresses and of event topics (the chain's static contracts,
/// the children of its factory contracts).
#[derive(Debug, Clone, Default)]
pub struct Interest {
    parts: Vec<Part>,
}

/// One part of an [`Interest`]: logs of one of `addresses` with one of `topic0s`. Each
/// value's bloom bits are computed once (a block's bloom is tested against thousands of
/// factory children).
#[derive(Debug, Clone)]
struct Part {
    addresses: HashSet<Address>,
    address_blooms: Vec<Bloom>,
    topic0s: HashSet<B256>,
    topic_blooms: Vec<Bloom>,
}

fn bloom_of(value: &[u8]) -> Bloom {
    let mut b = Bloom::default();
    b.accrue(BloomInput::Raw(value));
    b
}

impl Interest {
    /// Logs emitted by one of `addresses` with one of `topic0s`.
    pub fn new(addresses: Vec<Address>, topic0s: Vec<B256>) -> Self {
        let mut out = Self::default();
        out.add(addresses, topic0s);
        out
    }

    /// Adds logs of one of `addresses` with one of `topic0s` (nothing when either is empty).
    pub fn add(&mut self, addresses: Vec<Address>, topic0s: Vec<B256>) {
        if addresses.is_empty() || topic0s.is_empty() {
            return;
        }
        self.parts.push(Part {
            address_blooms: addresses.iter().map(|a| bloom_of(a.as_slice())).collect(),
            addresses: addresses.into_iter().collect(),
            topic_blooms: topic0s.iter().map(|t| bloom_of(t.as_slice())).collect(),
            topic0s: topic0s.into_iter().collect(),
        });
    }

    /// The union of `self` and `other`.
    pub fn union(mut self, other: &Interest) -> Self {
        self.parts.extend(other.parts.iter().cloned());
        self
    }

    /// Whether a block with `bloom` may hold a matching log. Blooms have no false
    /// negatives: `false` proves the block has none.
    pub fn may_match(&self, bloom: &Bloom) -> bool {
        self.parts.iter().any(|p| {
            p.topic_blooms.iter().any(|t| bloom.contains(t))
                && p.address_blooms.iter().any(|a| bloom.contains(a))
        })
    }

    /// Whether `log` is one the query asks for.
    pub fn matches(&self, log: &Log) -> bool {
        let Some(topic0) = log.topics().first() else { return false };
        self.parts.iter().any(|p| p.addresses.contains(&log.address()) && p.topic0s.contains(topic0))
    }
}

/// A rejected answer: its kind and a message for the log.
pub type Rejection = (BadAnswer, String);

/// Checks the logs answered for the block range `[from, to]`.
pub fn check_range(logs: &[Log], from: u64, to: u64) -> Result<(), Rejection> {
    check_logs(logs, |n, _| {
        (from <= n && n <= to)
            .then_some(())
            .ok_or((BadAnswer::OutOfRange, format!("log of block {n} in an answer for blocks {from}..={to}")))
    })
}

/// Checks the logs answered for the block `number` with hash `hash`.
pub fn check_block(logs: &[Log], number: u64, hash: &B256) -> Result<(), Rejection> {
    check_logs(logs, |n, h| {
        if n != number {
            return Err((BadAnswer::OutOfRange, format!("log of block {n} in an answer for block {number}")));
        }
        if h != hash {
            return Err((
                BadAnswer::HashMismatch,
                format!("log of block {n} carries hash {h:#x}, asked for {hash:#x}"),
            ));
        }
        Ok(())
    })
}

/// Checks that every log of a block in `hashes` carries that block's hash.
pub fn check_hashes(logs: &[Log], hashes: &std::collections::HashMap<u64, String>) -> Result<(), Rejection> {
    if hashes.is_empty() {
        return Ok(());
    }
    for log in logs {
        let (Some(n), Some(h)) = (log.block_number, log.block_hash) else { continue };
        if let Some(expected) = hashes.get(&n)
            && format!("{h:#x}") != *expected
        {
            return Err((
                BadAnswer::HashMismatch,
                format!("log of block {n} carries hash {h:#x}, the header {expected}"),
            ));
        }
    }
    Ok(())
}

fn check_logs(logs: &[Log], place: impl Fn(u64, &B256) -> Result<(), Rejection>) -> Result<(), Rejection> {
    let mut seen = HashSet::with_capacity(logs.len());
    let mut hash_of: std::collections::HashMap<u64, B256> = std::collections::HashMap::new();
    for log in logs {
        let (Some(n), Some(h), Some(i)) = (log.block_number, log.block_hash, log.log_index) else {
            return Err((BadAnswer::Malformed, "log without block number, block hash or log index".into()));
        };
        if log.transaction_hash.is_none() || log.removed {
            return Err((BadAnswer::Malformed, format!("log {i} of block {n} is pending or removed")));
        }
        place(n, &h)?;
        if *hash_of.entry(n).or_insert(h) != h {
            return Err((BadAnswer::HashMismatch, format!("two hashes for block {n} in one answer")));
        }
        if !seen.insert((h, i)) {
            return Err((BadAnswer::Duplicate, format!("log {i} of block {n} appears twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{LogData, b256};

    use super::*;

    const H1: B256 = b256!("1111111111111111111111111111111111111111111111111111111111111111");
    const H2: B256 = b256!("2222222222222222222222222222222222222222222222222222222222222222");

    fn log(n: u64, h: B256, i: u64) -> Log {
        Log {
            inner: alloy::primitives::Log { address: Address::repeat_byte(1), data: LogData::default() },
            block_hash: Some(h),
            block_number: Some(n),
            block_timestamp: None,
            transaction_hash: Some(B256::repeat_byte(9)),
            transaction_index: Some(0),
            log_index: Some(i),
            removed: false,
        }
    }

    #[test]
    fn a_clean_range_answer_passes() {
        assert_eq!(check_range(&[log(5, H1, 0), log(5, H1, 1), log(7, H2, 0)], 5, 7), Ok(()));
        assert_eq!(check_range(&[], 5, 7), Ok(()));
    }

    #[test]
    fn each_lie_is_named() {
        let kind = |r: Result<(), Rejection>| r.err().map(|(k, _)| k);
        assert_eq!(kind(check_range(&[log(8, H1, 0)], 5, 7)), Some(BadAnswer::OutOfRange));
        assert_eq!(kind(check_range(&[log(4, H1, 0)], 5, 7)), Some(BadAnswer::OutOfRange));
        assert_eq!(kind(check_range(&[log(5, H1, 0), log(5, H1, 0)], 5, 7)), Some(BadAnswer::Duplicate));
        assert_eq!(kind(check_range(&[log(5, H1, 0), log(5, H2, 1)], 5, 7)), Some(BadAnswer::HashMismatch));
        let mut pending = log(5, H1, 0);
        pending.block_hash = None;
        assert_eq!(kind(check_range(&[pending], 5, 7)), Some(BadAnswer::Malformed));
        let mut removed = log(5, H1, 0);
        removed.removed = true;
        assert_eq!(kind(check_range(&[removed], 5, 7)), Some(BadAnswer::Malformed));
        assert_eq!(kind(check_block(&[log(5, H2, 0)], 5, &H1)), Some(BadAnswer::HashMismatch));
        assert_eq!(kind(check_block(&[log(6, H1, 0)], 5, &H1)), Some(BadAnswer::OutOfRange));
        assert_eq!(check_block(&[log(5, H1, 0)], 5, &H1), Ok(()));
    }

    #[test]
    fn the_bloom_proves_absence_and_admits_presence() {
        let address = Address::repeat_byte(7);
        let topic = B256::repeat_byte(3);
        let interest = Interest::new(vec![address], vec![topic]);
        let mut bloom = Bloom::default();
        assert!(!interest.may_match(&bloom));
        bloom.accrue(BloomInput::Raw(address.as_slice()));
        assert!(!interest.may_match(&bloom), "the address alone is not a match");
        bloom.accrue(BloomInput::Raw(topic.as_slice()));
        assert!(interest.may_match(&bloom));
    }
}
