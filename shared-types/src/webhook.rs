//! Provider webhook ingestion in the status snapshot (DESIGN §8 "Webhook ingestion"): per
//! chain, what the webhook endpoints received and what became of it, and how fast blocks
//! reached storage by each path. Never a secret: webhooks are private config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A chain's webhook counters and latencies, under `webhooks` in its chain snapshot.
///
/// Counters count since the indexer that wrote the snapshot started. `received`,
/// `duplicate` and `rejected` are this process's own endpoint (a standby's counts are in
/// its own `/status` and metrics); `parked`, `released`, `expired` and `dropped_final`
/// are the writer's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookStatus {
    /// Valid deliveries recorded.
    pub received: u64,
    /// Valid deliveries whose id was recorded before (answered 200, nothing new).
    pub duplicate: u64,
    /// Requests refused, by reason (`signature`, `malformed`, `too-large`, `unavailable`).
    pub rejected: BTreeMap<String, u64>,
    /// Deliveries for blocks at or below the finalized checkpoint: acknowledged, dropped.
    pub dropped_final: u64,
    /// Blocks parked in `pending_blocks` (ahead of the checkpoint).
    pub parked: u64,
    /// Parked blocks the follower confirmed over RPC and stored.
    pub released: u64,
    /// Parked blocks never confirmed (another branch, or a forged payload) and dropped
    /// after `pending_ttl_ms`.
    pub expired: u64,
    /// Head→stored latency of blocks announced by a webhook delivery before they were stored.
    pub webhook_latency: Option<Latency>,
    /// Head→stored latency of blocks found by polling alone.
    pub polling_latency: Option<Latency>,
}

/// Head→stored latency over the most recent blocks of one path: from the block's
/// timestamp to its commit (so whole-second block timestamps blur it by up to a second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    /// Blocks measured.
    pub blocks: u64,
    /// Median, milliseconds.
    pub p50_ms: u64,
    /// 99th percentile, milliseconds.
    pub p99_ms: u64,
}

impl Latency {
    /// The latency of `samples` (milliseconds, any order); `None` when there are none.
    pub fn of(samples: &[u64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let at = |q: f64| {
            let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i]
        };
        Some(Self { blocks: sorted.len() as u64, p50_ms: at(0.5), p99_ms: at(0.99) })
    }
}

#[cfg(test)]
mod tests {
    use super::Latency;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(Latency::of(&[]), None);
        assert_eq!(Latency::of(&[7]), Some(Latency { blocks: 1, p50_ms: 7, p99_ms: 7 }));
        let v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(Latency::of(&v), Some(Latency { blocks: 100, p50_ms: 50, p99_ms: 99 }));
    }
}
