//! Fetching logs over block ranges with an adaptive range size.
//!
//! The size shrinks on a provider's range error (to its suggested range when the message
//! gives one, else by half) and grows after each full-size success (doubling from
//! [`INITIAL_RANGE`] while ranges are sparse, then by a quarter), up to `max_block_range`. It also shrinks when a range returns more than
//! [`TARGET_EVENTS_PER_RANGE`] logs and does not grow past that density, so the memory a
//! backfill holds (`max_concurrency` + 2 ranges) stays bounded however dense the chain is.
//! One size is shared by every concurrent fetch of a chain.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy::rpc::types::{Filter, Log};
use futures::{StreamExt, TryStreamExt};

use crate::config::ChainConfig;
use crate::rpc::{BadAnswer, ChainRpc, Header, Interest, RpcError};

/// Logs per range the adaptive size aims below.
pub const TARGET_EVENTS_PER_RANGE: u64 = 10_000;

/// Blocks in the first ranges of a backfill.
pub const INITIAL_RANGE: u64 = 10;

/// The shared adaptive range size of one chain.
#[derive(Debug)]
pub struct RangeSize {
    current: AtomicU64,
    max: u64,
}

impl RangeSize {
    /// Starts at [`INITIAL_RANGE`] blocks (or `max` when smaller): the chain's density is
    /// unknown until the first ranges come back, and the first `max_concurrency` ranges are
    /// planned before any does.
    pub fn new(max: u64) -> Self {
        let max = max.max(1);
        Self { current: AtomicU64::new(max.min(INITIAL_RANGE)), max }
    }

    /// The size to use now.
    pub fn get(&self) -> u64 {
        self.current.load(Ordering::Relaxed).max(1)
    }

    fn shrink(&self, tried: u64, suggested: Option<(u64, u64)>) -> u64 {
        let proposed = suggested.map(|(a, b)| b - a + 1).filter(|s| *s < tried).unwrap_or(tried / 2).max(1);
        self.current.fetch_min(proposed, Ordering::Relaxed);
        metrics::gauge!("tidemark_block_range_size").set(proposed as f64);
        proposed
    }

    /// After a successful range of `tried` blocks that held `events` logs: shrink to the
    /// size that fits [`TARGET_EVENTS_PER_RANGE`] when it held more, grow when a quarter
    /// more would still fit.
    fn settle(&self, tried: u64, events: u64) {
        if events > TARGET_EVENTS_PER_RANGE && tried > 1 {
            let fit = (tried * TARGET_EVENTS_PER_RANGE / events).max(1);
            self.current.fetch_min(fit, Ordering::Relaxed);
            metrics::gauge!("tidemark_block_range_size").set(self.get() as f64);
        } else if events + events / 4 <= TARGET_EVENTS_PER_RANGE {
            self.grow(tried, events);
        }
    }

    /// Doubles while ranges hold under a quarter of the target, else grows by a quarter.
    fn grow(&self, tried: u64, events: u64) {
        if tried >= self.get() {
            let step = if events * 4 <= TARGET_EVENTS_PER_RANGE { tried } else { tried / 4 + 1 };
            let next = (tried + step).min(self.max);
            self.current.fetch_max(next, Ordering::Relaxed);
        }
    }
}

/// The chain's log filter without a block range.
pub fn base_filter(chain: &ChainConfig) -> Filter {
    Filter::new().address(chain.addresses()).event_signature(chain.topic0s())
}

/// The addresses and topics the chain's filter asks for.
pub fn interest(chain: &ChainConfig) -> Interest {
    Interest::new(chain.addresses(), chain.topic0s())
}

/// All matching logs in `[from, to]`, split into as many requests as the provider needs.
/// Every log of a block in `hashes` must carry that block's hash (else the answer is
/// rejected and asked again).
pub async fn logs_in_range(
    rpc: &ChainRpc,
    filter: &Filter,
    from: u64,
    to: u64,
    size: &RangeSize,
    hashes: &HashMap<u64, String>,
) -> Result<Vec<Log>, RpcError> {
    let mut out = Vec::new();
    let mut a = from;
    while a <= to {
        let s = size.get();
        let b = to.min(a.saturating_add(s - 1));
        match rpc.logs(filter, a, b, hashes).await {
            Ok(logs) => {
                size.settle(b - a + 1, weight(&logs));
                out.extend(logs);
                a = b + 1;
            }
            Err(RpcError::RangeTooLarge { suggested, message }) => {
                if b == a {
                    // One block is too much: nothing smaller to try.
                    return Err(RpcError::Fatal {
                        message: format!("block {a} alone is rejected: {message}"),
                    });
                }
                let next = size.shrink(b - a + 1, suggested);
                tracing::info!(target: "tidemark::fetch", chain_id = rpc.chain_id(), from = a, to = b, next_size = next, "provider rejected the range; shrinking");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The logs of `[from, to]` that `interest` asks for, from each of `filters` in turn
/// (several address chunks, or one topic-only request filtered here), deduplicated and in
/// block and log order.
pub async fn query_logs(
    rpc: &ChainRpc,
    filters: &[Filter],
    interest: &Interest,
    from: u64,
    to: u64,
    size: &RangeSize,
    hashes: &HashMap<u64, String>,
) -> Result<Vec<Log>, RpcError> {
    let mut out = Vec::new();
    for filter in filters {
        let mut logs = logs_in_range(rpc, filter, from, to, size, hashes).await?;
        logs.retain(|l| interest.matches(l));
        out.extend(logs);
    }
    dedup(&mut out);
    Ok(out)
}

/// Sorts `logs` by block and log index and drops repeats (two requests may both return
/// a log).
pub fn dedup(logs: &mut Vec<Log>) {
    logs.sort_by_key(|l| (l.block_number, l.log_index));
    logs.dedup_by(|a, b| a.block_hash == b.block_hash && a.log_index == b.log_index);
}

/// What a range's logs weigh against [`TARGET_EVENTS_PER_RANGE`]: one per log plus one
/// per KiB of data, so ranges of large logs shrink too (memory stays bounded by bytes).
fn weight(logs: &[Log]) -> u64 {
    logs.iter().map(|l| 1 + l.data().data.len() as u64 / 1024).sum()
}

/// Headers of `[from, to]`, fetched `concurrency` at a time, ascending.
pub async fn headers(
    rpc: &ChainRpc,
    from: u64,
    to: u64,
    concurrency: usize,
) -> Result<Vec<Header>, RpcError> {
    headers_of(rpc, from..=to, concurrency).await
}

/// Headers of `numbers`, fetched `concurrency` at a time, in the order given.
pub async fn headers_of(
    rpc: &ChainRpc,
    numbers: impl IntoIterator<Item = u64>,
    concurrency: usize,
) -> Result<Vec<Header>, RpcError> {
    futures::stream::iter(numbers).map(|n| rpc.header(n)).buffered(concurrency.max(1)).try_collect().await
}

/// Makes sure no block of `headers` lost its logs to a lagging or lying node: a block
/// whose bloom may hold a matching log but for which `logs` has none is asked for by
/// hash, and, when that answer is empty too, through its receipts (one per transaction),
/// so that only the chain's own data can say "no events here". Bloom false positives
/// cost one or two requests and are then accepted. Logs found this way are added to
/// `logs` (the range answer was incomplete: counted as such).
pub async fn complete(
    rpc: &ChainRpc,
    filters: &[Filter],
    interest: &Interest,
    headers: &[&Header],
    logs: &mut Vec<Log>,
    concurrency: usize,
) -> Result<(), RpcError> {
    let with_logs: std::collections::HashSet<u64> =
        logs.iter().filter(|l| interest.matches(l)).filter_map(|l| l.block_number).collect();
    let suspects: Vec<Header> = headers
        .iter()
        .filter(|h| !with_logs.contains(&h.block.number) && interest.may_match(&h.logs_bloom))
        .map(|h| (*h).clone())
        .collect();
    let found: Vec<Vec<Log>> = futures::stream::iter(suspects)
        .map(|h| confirm_block(rpc, filters, interest, h))
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    for block in found.into_iter().filter(|l| !l.is_empty()) {
        let n = block.first().and_then(|l| l.block_number).unwrap_or_default();
        rpc.note_unattributed(
            BadAnswer::Incomplete,
            &format!("logs of block {n} were missing from a range answer"),
        );
        logs.extend(block);
    }
    Ok(())
}

/// The matching logs of one block, by its hash and, when that answer is empty, from its
/// receipts.
async fn confirm_block(
    rpc: &ChainRpc,
    filters: &[Filter],
    interest: &Interest,
    h: Header,
) -> Result<Vec<Log>, RpcError> {
    let mut by_hash = Vec::new();
    for filter in filters {
        by_hash.extend(rpc.block_logs(filter, &h).await?.into_iter().filter(|l| interest.matches(l)));
    }
    if !by_hash.is_empty() {
        dedup(&mut by_hash);
        return Ok(by_hash);
    }
    Ok(rpc.receipt_logs(&h, interest).await?.unwrap_or_default())
}

/// Block timestamps for logs that lack `blockTimestamp`, by block number.
pub async fn missing_timestamps(
    rpc: &ChainRpc,
    logs: &[Log],
    known: &HashMap<u64, Header>,
    concurrency: usize,
) -> Result<HashMap<u64, u64>, RpcError> {
    let mut need: Vec<u64> = logs
        .iter()
        .filter(|l| l.block_timestamp.is_none())
        .filter_map(|l| l.block_number)
        .filter(|n| !known.contains_key(n))
        .collect();
    need.sort_unstable();
    need.dedup();
    let fetched: Vec<Header> =
        futures::stream::iter(need).map(|n| rpc.header(n)).buffered(concurrency.max(1)).try_collect().await?;
    let mut out: HashMap<u64, u64> = known.iter().map(|(n, h)| (*n, h.block.timestamp)).collect();
    out.extend(fetched.into_iter().map(|h| (h.block.number, h.block.timestamp)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_ranges_shrink_to_the_event_target_and_sparse_ones_grow_back() {
        let size = RangeSize::new(25);
        assert_eq!(size.get(), INITIAL_RANGE, "starts small");
        // Sparse: doubles.
        size.settle(10, 0);
        assert_eq!(size.get(), 20);
        // 1,000 logs per block: 20 blocks hold 20,000, 10 blocks fit the target.
        size.settle(20, 20_000);
        assert_eq!(size.get(), 10);
        // At the target it holds: a quarter more would not fit.
        size.settle(10, 10_000);
        assert_eq!(size.get(), 10);
        // Denser than a quarter of the target: grows by a quarter.
        size.settle(10, 3_000);
        assert_eq!(size.get(), 13);
        for _ in 0..10 {
            let s = size.get();
            size.settle(s, 0);
        }
        assert_eq!(size.get(), 25);
        // A single block denser than the target cannot shrink further.
        let one = RangeSize::new(1);
        one.settle(1, 50_000);
        assert_eq!(one.get(), 1);
    }
}
