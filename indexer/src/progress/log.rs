//! Periodic progress logs: blocks/s, events/s, percentage and ETA per chain.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Phase, Progress};

/// Interval between progress lines.
const EVERY: Duration = Duration::from_secs(10);

/// Logs progress until `shutdown`.
pub async fn log_progress(progress: Progress, shutdown: CancellationToken) {
    let mut last: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut last_at = Instant::now();
    let mut tick = tokio::time::interval(EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let secs = last_at.elapsed().as_secs_f64().max(0.001);
        last_at = Instant::now();
        for (id, s) in progress.states() {
            let (b0, e0) = last
                .insert(id, (s.blocks_indexed, s.events_indexed))
                .unwrap_or((s.blocks_indexed, s.events_indexed));
            let blocks_per_s = (s.blocks_indexed - b0) as f64 / secs;
            let events_per_s = (s.events_indexed - e0) as f64 / secs;
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
                    let eta_s = if blocks_per_s > 0.0 {
                        ((end.number.saturating_sub(latest)) as f64 / blocks_per_s).round() as u64
                    } else {
                        0
                    };
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
