//! Journal retention (DESIGN §8 "Streams"): the journal's `removed` entries older than
//! `journal_retention_ms` are pruned, and the retained floor raised, by the writer.
//!
//! Events are never pruned: a replay from cursor 0 is always complete. A reader resuming
//! after a cursor below the floor is refused (`cursor_expired`) instead of silently
//! missing a pruned removal.

use std::sync::Arc;
use std::time::Duration;

use tidemark_db_client::writer::Writer;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Pruning runs this often at most (and a quarter of the retention at least).
const MAX_PERIOD: Duration = Duration::from_secs(60);
const MIN_PERIOD: Duration = Duration::from_millis(100);

/// How often to prune for a retention of `retention`.
fn period(retention: Duration) -> Duration {
    (retention / 4).clamp(MIN_PERIOD, MAX_PERIOD)
}

/// Prunes at once and then periodically until `shutdown`. A failed prune is logged and
/// tried again at the next period: retention only bounds the table's size.
///
/// A removal that one of the configured `sinks` has not delivered yet is kept.
pub async fn prune_journal(
    writer: Arc<Mutex<Writer>>,
    retention: Duration,
    sinks: Vec<String>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(period(retention));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = async { writer.lock().await.prune_journal(retention, &sinks).await } => r,
        };
        match result {
            Ok((0, _)) => {}
            Ok((pruned, floor)) => {
                tracing::info!(target: "tidemark::retention", pruned, %floor, "old removed entries pruned from the journal")
            }
            Err(e) => {
                tracing::warn!(target: "tidemark::retention", error = %e, "journal pruning failed; retrying later")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_follows_the_retention_within_bounds() {
        assert_eq!(period(Duration::from_secs(7 * 24 * 3600)), MAX_PERIOD);
        assert_eq!(period(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(period(Duration::from_millis(1)), MIN_PERIOD);
    }
}
