//! Provider webhook ingestion (DESIGN §8 "Webhook ingestion", after Commonwealth's move
//! from polling to Alchemy Notify): signed pushes make the follower faster, never wrong.
//!
//! - [`routes`]: `POST /v1/webhooks/{alchemy|standard}/{chainId}` on every indexer
//!   process (writer and standby): the signature is checked over the raw body, then the
//!   body is parsed ([`payload`]) and the delivery recorded in `webhook_deliveries`
//!   before the 2xx.
//! - [`intake`]: the writer's task. It learns of recorded deliveries at once (`NOTIFY`,
//!   or in-process), parks the announced blocks in `pending_blocks` and wakes the
//!   chain's follower, expires parked blocks never confirmed, and prunes old deliveries.
//! - The follower ([`crate::pipeline`]) confirms a parked block over RPC like any other
//!   (hash, parent hash, logs), stores it in block order, and releases it.

pub mod intake;
mod payload;
pub mod routes;
mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tidemark_db_client::writer::PgPool;
use tidemark_shared_types::SchemaName;
use tokio::sync::Notify;

use crate::config::{IndexerConfig, Provider};
use crate::progress::Progress;
use crate::telemetry::Metrics;

/// What a chain's follower learns from webhook deliveries.
#[derive(Debug, Default)]
pub struct ChainHints {
    /// Woken when a block of this chain was parked (or a reorg hinted).
    wake: Notify,
    /// The highest parked block number.
    ahead: AtomicU64,
}

impl ChainHints {
    /// The highest parked block number (0: none).
    pub fn ahead(&self) -> u64 {
        self.ahead.load(Ordering::Relaxed)
    }

    /// Completes at the next wake (one that came while no one waited is kept).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Block `number` was parked: raise the mark and wake the follower.
    pub(crate) fn parked(&self, number: u64) {
        self.ahead.fetch_max(number, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Sets the mark to the highest block still parked (0: none), after expiry.
    pub(crate) fn set_ahead(&self, number: u64) {
        self.ahead.store(number, Ordering::Relaxed);
    }
}

/// A chain's webhooks: keys, finality, the follower's hints.
struct ChainHooks {
    finality_depth: u64,
    keys: Vec<(Provider, Vec<u8>)>,
    hints: Arc<ChainHints>,
}

/// Webhook ingestion of one indexer process: shared by its HTTP server (every process)
/// and, while it is the writer, its intake and followers.
pub struct Hub {
    schema: SchemaName,
    pool: PgPool,
    chains: BTreeMap<u64, ChainHooks>,
    progress: Progress,
    metrics: Metrics,
    /// Wakes the intake when this process recorded a delivery.
    recorded: Notify,
    max_body_bytes: usize,
    pending_ttl: Duration,
    retention: Duration,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("Hub").field("chains", &self.chains.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl Hub {
    /// The hub of `config`, or `None` when no chain has webhooks.
    pub fn new(
        config: &IndexerConfig,
        pool: PgPool,
        progress: Progress,
        metrics: Metrics,
    ) -> Option<Arc<Self>> {
        let chains: BTreeMap<u64, ChainHooks> = config
            .chains
            .iter()
            .filter(|c| !c.webhooks.is_empty())
            .map(|c| {
                progress.enable_webhooks(c.chain_id);
                let keys = c.webhooks.iter().map(|w| (w.provider, w.key.clone())).collect();
                (c.chain_id, ChainHooks { finality_depth: c.finality_depth, keys, hints: Arc::default() })
            })
            .collect();
        if chains.is_empty() {
            return None;
        }
        Some(Arc::new(Self {
            schema: config.schema.clone(),
            pool,
            chains,
            progress,
            metrics,
            recorded: Notify::new(),
            max_body_bytes: config.webhook_max_body_bytes,
            pending_ttl: config.pending_ttl,
            retention: config.webhook_retention,
        }))
    }

    /// The follower's hints of `chain_id`, when it has webhooks.
    pub fn hints(&self, chain_id: u64) -> Option<Arc<ChainHints>> {
        self.chains.get(&chain_id).map(|c| c.hints.clone())
    }

    /// The keys of `provider` for `chain_id` (empty: no such webhook).
    fn keys(&self, chain_id: u64, provider: Provider) -> impl Iterator<Item = &[u8]> {
        self.chains
            .get(&chain_id)
            .into_iter()
            .flat_map(move |c| c.keys.iter().filter(move |(p, _)| *p == provider).map(|(_, k)| k.as_slice()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use hmac::{Hmac, Mac as _};
    use sha2::Sha256;

    /// Alchemy's signature of `body` with `key` (lowercase hex).
    pub(crate) fn alchemy_sign(key: &[u8], body: &[u8]) -> String {
        let mut m = <Hmac<Sha256>>::new_from_slice(key).expect("any key length");
        m.update(body);
        const_hex::encode(m.finalize().into_bytes())
    }
}
