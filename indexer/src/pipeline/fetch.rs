//! Fetching logs over block ranges with an adaptive range size.
//!
//! The size shrinks on a provider's range error (to its suggested range when the message
//! gives one, else by half) and grows by a quarter after each full-size success, up to
//! `max_block_range`. One size is shared by every concurrent fetch of a chain.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy::rpc::types::{Filter, Log};
use futures::{StreamExt, TryStreamExt};

use crate::config::ChainConfig;
use crate::rpc::{ChainRpc, Header, RpcError};

/// The shared adaptive range size of one chain.
#[derive(Debug)]
pub struct RangeSize {
    current: AtomicU64,
    max: u64,
}

impl RangeSize {
    /// Starts at `max`.
    pub fn new(max: u64) -> Self {
        Self { current: AtomicU64::new(max.max(1)), max: max.max(1) }
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

    fn grow(&self, tried: u64) {
        if tried >= self.get() {
            let next = (tried + tried / 4 + 1).min(self.max);
            self.current.fetch_max(next, Ordering::Relaxed);
        }
    }
}

/// The chain's log filter without a block range.
pub fn base_filter(chain: &ChainConfig) -> Filter {
    Filter::new().address(chain.addresses()).event_signature(chain.topic0s())
}

/// All matching logs in `[from, to]`, split into as many requests as the provider needs.
pub async fn logs_in_range(
    rpc: &ChainRpc,
    filter: &Filter,
    from: u64,
    to: u64,
    size: &RangeSize,
) -> Result<Vec<Log>, RpcError> {
    let mut out = Vec::new();
    let mut a = from;
    while a <= to {
        let s = size.get();
        let b = to.min(a.saturating_add(s - 1));
        match rpc.logs(&filter.clone().from_block(a).to_block(b)).await {
            Ok(logs) => {
                out.extend(logs);
                size.grow(b - a + 1);
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

/// Headers of `[from, to]`, fetched `concurrency` at a time, ascending.
pub async fn headers(
    rpc: &ChainRpc,
    from: u64,
    to: u64,
    concurrency: usize,
) -> Result<Vec<Header>, RpcError> {
    futures::stream::iter(from..=to)
        .map(|n| rpc.require_header(n))
        .buffered(concurrency.max(1))
        .try_collect()
        .await
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
    let fetched: Vec<Header> = futures::stream::iter(need)
        .map(|n| rpc.require_header(n))
        .buffered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut out: HashMap<u64, u64> = known.iter().map(|(n, h)| (*n, h.block.timestamp)).collect();
    out.extend(fetched.into_iter().map(|h| (h.block.number, h.block.timestamp)));
    Ok(out)
}
