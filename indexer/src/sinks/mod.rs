//! Sinks (DESIGN §8 "Sinks"): the writer pushes the journal to webhooks and NATS
//! JetStream, each sink in its own task from its own cursor, and applies the requests of
//! `tidemark-indexer sink …`.
//!
//! Runs only in the writer (the lock holder), inside its term: every write of the sinks'
//! tables goes through the writer's fenced connection, so a deposed writer moves no
//! cursor and never runs a rebroadcast twice at once.

mod backoff;
pub mod cli;
mod entry;
mod nats;
mod redact;
mod runner;
mod stream;
mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tidemark_db_client::writer::{PgPool, Writer};
use tidemark_db_client::{DbClient, DbError};
use tidemark_shared_types::SchemaName;
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::SinkConfig;
use crate::progress::Progress;

/// How often the writer looks for `sink …` requests ("applied within a second").
const REQUEST_POLL: Duration = Duration::from_millis(250);

/// How often epochs are checked for `delivered`.
const EPOCH_POLL: Duration = Duration::from_secs(1);

/// Journal entries counted at most for a sink's lag.
pub(crate) fn lag_cap() -> u64 {
    1_000_000
}

/// What the sinks share.
pub struct SinkContext {
    /// Instance schema.
    pub schema: SchemaName,
    /// The writer (cursor writes).
    pub writer: Arc<Mutex<Writer>>,
    /// Journal reads.
    pub db: DbClient,
    /// Lag counts.
    pub pool: PgPool,
    /// Status snapshot.
    pub progress: Progress,
    /// Where the sinks' metrics are recorded (each sink task records in its scope).
    pub metrics: crate::telemetry::Metrics,
}

/// Runs every configured sink and the request applier until `token` is cancelled. Errors
/// when a write of the writer failed (the term restarts).
pub async fn run(sinks: Vec<SinkConfig>, ctx: SinkContext, token: CancellationToken) -> Result<(), DbError> {
    let names: Vec<String> = sinks.iter().map(|s| s.name.clone()).collect();
    let finalized_first = sinks.iter().any(|s| s.delivery == crate::config::Delivery::Finalized);
    let mut reloads: HashMap<String, watch::Sender<u64>> = HashMap::new();
    let mut tasks: JoinSet<Result<(), DbError>> = JoinSet::new();
    for config in sinks {
        let (tx, rx) = watch::channel(0u64);
        reloads.insert(config.name.clone(), tx);
        let task = runner::SinkTask::new(
            config,
            ctx.schema.clone(),
            ctx.writer.clone(),
            ctx.db.clone(),
            ctx.pool.clone(),
            ctx.progress.clone(),
            rx,
            token.child_token(),
        )
        .await?;
        tasks.spawn(ctx.metrics.scope(task.run()));
    }
    let mut tick = tokio::time::interval(REQUEST_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut epochs = tokio::time::interval(EPOCH_POLL);
    epochs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            Some(joined) = tasks.join_next() => {
                let result = joined.unwrap_or_else(|e| Err(DbError::Config(format!("sink task panicked: {e}"))));
                result?;
            }
            _ = epochs.tick() => {
                let n = ctx.writer.lock().await.deliver_epochs(&names, finalized_first).await?;
                if n > 0 {
                    tracing::debug!(target: "tidemark::sinks", epochs = n, "epochs delivered by every sink");
                }
            }
            _ = tick.tick() => {
                let applied = ctx.writer.lock().await.apply_sink_requests().await?;
                for (request, outcome) in applied {
                    tracing::info!(target: "tidemark::sinks", sink = %request.sink, action = request.action.as_str(), %outcome, "sink request applied");
                    if let Some(tx) = reloads.get(&request.sink) {
                        tx.send_modify(|g| *g += 1);
                    }
                }
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap_or_else(|e| Err(DbError::Config(format!("sink task panicked: {e}"))))?;
    }
    Ok(())
}
