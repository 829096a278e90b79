//! The status loop: turns the chains' [`Progress`] into the persisted snapshot every
//! second (DESIGN §4).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::liveness::Liveness;
use crate::progress::{Progress, unix_now};
use crate::store::Writer;

/// Upserts the snapshot every second until `shutdown`, then once more.
///
/// Invariant (§9.4): while this runs, the status row is at most ~1 s old (plus the time
/// a commit holds the writer); a failed tick is logged and the next one tries again.
/// Invariant (§3, fencing): the snapshot is written through the writer's lock-holding
/// connection, so a process that lost the lock writes no status.
pub async fn status_loop(
    writer: Arc<tokio::sync::Mutex<Writer>>,
    progress: Progress,
    shutdown: CancellationToken,
    health: Arc<Liveness>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // A step of the index build is shown at once (its last one is "done").
            _ = progress.index_build_changed() => {}
            _ = shutdown.cancelled() => break,
        }
        write_once(&writer, &progress, &health).await;
    }
    write_once(&writer, &progress, &health).await;
}

/// Writes one snapshot through the writer; errors are logged.
pub async fn write_once(writer: &tokio::sync::Mutex<Writer>, progress: &Progress, health: &Liveness) {
    let Some(snapshot) = progress.snapshot(unix_now()) else { return };
    let result = writer.lock().await.write_status(&snapshot).await;
    match result {
        Ok(()) => {
            health.db_ok();
            metrics::gauge!("tidemark_status_written_timestamp_seconds").set(unix_now() as f64);
        }
        Err(e) => {
            tracing::warn!(target: "tidemark::status", error = %e, "status write failed; retrying next tick")
        }
    }
}
