//! Periodic progress logs: blocks/s, events/s, percentage and ETA per chain.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Phase, Progress};

/// Interval between progress lines.
const EVERY: Duration = Duration::from_secs(10);

/// Logs progress until `shutdown`, with the rates the status snapshot publishes (over the
/// last minute).
pub async fn log_progress(progress: Progress, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        progress.sample();
        let now = Instant::now();
        for (id, s) in progress.states() {
            let Some(rates) = s.rates(now) else { continue };
            let (blocks_per_s, events_per_s) = (rates.blocks_per_second, rates.events_per_second);
            let latest = s.latest_indexed.as_ref().map(|b| b.number);
            match s.phase {
                Phase::Backfill => {
                    let (Some(start), Some(end), Some(latest)) =
                        (s.start.as_ref(), s.backfill_end.as_ref(), latest)
                    else {
                        continue;
                    };
                    let total = (end.number - start.number + 1) as f64;
                    let done = (latest.saturating_sub(start.number) + 1) as f64;
                    let percent = (100.0 * done / total).min(100.0);
                    let eta_s = rates.eta_seconds.unwrap_or(0);
                    tracing::info!(target: "tidemark::progress", chain_id = id, latest, end = end.number,
                        percent = format!("{percent:.1}"), blocks_per_s = format!("{blocks_per_s:.1}"),
                        events_per_s = format!("{events_per_s:.1}"), eta_s, "backfilling");
                }
                Phase::Following => {
                    tracing::info!(target: "tidemark::progress", chain_id = id, latest,
                        blocks_per_s = format!("{blocks_per_s:.2}"), events_per_s = format!("{events_per_s:.1}"), "following");
                }
                Phase::Queued | Phase::Completed => {}
            }
        }
    }
}
