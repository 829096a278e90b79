//! The writer's side of webhook ingestion: one task per writer term.
//!
//! It processes recorded deliveries as soon as it learns of them (a `NOTIFY` from any
//! process, or this process's own endpoint; every second at the latest), parks each
//! announced block that is not final or stored yet and wakes its chain's follower.
//! Every few seconds it expires parked blocks older than `pending_ttl_ms` and prunes
//! processed deliveries older than `webhook_retention_ms` whose block is final.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tidemark_db_client::DbError;
use tidemark_db_client::writer::{DeliveryOutcome, listen_deliveries};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::Hub;
use crate::store::Writer;

/// Deliveries processed per statement.
const BATCH: i64 = 500;
/// Expiry runs this often.
const EXPIRE_EVERY: Duration = Duration::from_secs(5);
/// Pruning runs this often.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Runs until `token` is cancelled. Its database errors are retried after a backoff,
/// never ending the writer term: deliveries are hints, and polling goes on without them
/// (a dead writer connection ends the term through the lock watcher).
pub async fn run(hub: Arc<Hub>, writer: Arc<Mutex<Writer>>, token: CancellationToken) -> Result<(), DbError> {
    let listener = tokio::spawn(hub.metrics.scope(listen(hub.clone(), token.clone())));
    let mut delay = Duration::from_millis(500);
    loop {
        match intake_loop(&hub, &writer, &token).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(target: "tidemark::webhooks", error = %e, retry_in_ms = delay.as_millis() as u64,
                    "processing webhook deliveries failed; retrying (polling goes on)");
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
    listener.abort();
    Ok(())
}

/// Keeps a `LISTEN` connection, waking the intake at each delivery recorded by any
/// process (and once listening, to catch up on what came while it was not).
async fn listen(hub: Arc<Hub>, token: CancellationToken) {
    let mut delay = Duration::from_millis(500);
    loop {
        let result = tokio::select! {
            _ = token.cancelled() => return,
            r = listen_deliveries(&hub.pool, &hub.schema, || hub.recorded.notify_one()) => r,
        };
        if let Err(e) = result {
            tracing::debug!(target: "tidemark::webhooks", error = %e, "delivery listener failed; polling until it is back");
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

async fn intake_loop(hub: &Hub, writer: &Mutex<Writer>, token: &CancellationToken) -> Result<(), DbError> {
    // Parked blocks of an earlier term (or before a failure): the followers look for them.
    set_marks(hub, writer, true).await?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut expired_at, mut pruned_at) = (Instant::now(), Instant::now());
    loop {
        tokio::select! {
            _ = token.cancelled() => return Ok(()),
            _ = hub.recorded.notified() => {}
            _ = tick.tick() => {}
        }
        process(hub, writer).await?;
        if expired_at.elapsed() >= EXPIRE_EVERY {
            expire(hub, writer).await?;
            expired_at = Instant::now();
        }
        if pruned_at.elapsed() >= PRUNE_EVERY {
            let pruned = writer.lock().await.prune_deliveries(hub.retention, &finalized(hub)).await?;
            if pruned > 0 {
                tracing::debug!(target: "tidemark::webhooks", deliveries = pruned, "old webhook deliveries pruned");
            }
            pruned_at = Instant::now();
        }
    }
}

/// Sets each chain's mark to its highest parked block (`wake`: and wakes the followers
/// of chains with parked blocks).
async fn set_marks(hub: &Hub, writer: &Mutex<Writer>, wake: bool) -> Result<(), DbError> {
    let highest = writer.lock().await.highest_pending().await?;
    for id in hub.chains.keys() {
        let Some(h) = hub.hints(*id) else { continue };
        match highest.iter().find(|(c, _)| c == id) {
            Some((_, n)) if wake => h.parked(*n),
            Some((_, n)) => h.set_ahead(*n),
            None => h.set_ahead(0),
        }
    }
    Ok(())
}

/// The finalized block number of each chain with webhooks, as far as this process knows.
fn finalized(hub: &Hub) -> Vec<(u64, u64)> {
    let states = hub.progress.states();
    hub.chains
        .iter()
        .map(|(id, c)| {
            let indexed = states.get(id).and_then(|s| s.latest_indexed.as_ref()).map_or(0, |b| b.number);
            (*id, indexed.saturating_sub(c.finality_depth))
        })
        .collect()
}

async fn process(hub: &Hub, writer: &Mutex<Writer>) -> Result<(), DbError> {
    loop {
        let done = writer.lock().await.process_deliveries(BATCH, &finalized(hub)).await?;
        for (d, outcome) in &done {
            let label = match outcome {
                DeliveryOutcome::Parked => "parked",
                DeliveryOutcome::Stored => "stored",
                DeliveryOutcome::Final => "final",
                DeliveryOutcome::Superseded => "superseded",
            };
            metrics::counter!("tidemark_webhook_deliveries_processed_total",
                "chain_id" => d.chain_id.to_string(), "outcome" => label)
            .increment(1);
            match outcome {
                DeliveryOutcome::Parked => {
                    hub.progress.webhooks(d.chain_id, |w| w.parked += 1);
                    if let Some(h) = hub.hints(d.chain_id) {
                        h.parked(d.block_number);
                    }
                }
                DeliveryOutcome::Final => hub.progress.webhooks(d.chain_id, |w| w.dropped_final += 1),
                DeliveryOutcome::Stored | DeliveryOutcome::Superseded => {}
            }
            tracing::debug!(target: "tidemark::webhooks", chain_id = d.chain_id, block = d.block_number,
                delivery = %d.delivery_id, outcome = label, "delivery processed");
        }
        if done.len() < BATCH as usize {
            return Ok(());
        }
    }
}

async fn expire(hub: &Hub, writer: &Mutex<Writer>) -> Result<(), DbError> {
    let expired = writer.lock().await.expire_pending(hub.pending_ttl).await?;
    if expired.is_empty() {
        return Ok(());
    }
    for (chain_id, n) in expired {
        hub.progress.webhooks(chain_id, |w| w.expired += n);
        metrics::counter!("tidemark_pending_blocks_expired_total", "chain_id" => chain_id.to_string())
            .increment(n);
        tracing::info!(target: "tidemark::webhooks", chain_id, blocks = n,
            "parked blocks expired: announced by a webhook, never confirmed by the chain");
    }
    // The marks follow what is still parked, so a follower stops looking for what expired.
    set_marks(hub, writer, false).await
}
