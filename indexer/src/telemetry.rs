//! The indexer's metrics: one Prometheus recorder per [`crate::run::run`], never a
//! process-wide one, so that several indexers in one process (tests) keep their own
//! counters, as the API's apps do.
//!
//! The `metrics` macros record into the recorder in scope: [`Metrics::scope`] puts this
//! one in scope around every poll of a future. Every task the indexer spawns is wrapped
//! this way (a task spawned without it records nowhere).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio_util::sync::CancellationToken;

/// One indexer's metrics registry.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How often the exporter's upkeep runs.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        Self { recorder: Arc::new(recorder), handle }
    }

    /// `fut`, recording its metrics here: this recorder is in scope during each of its
    /// polls (and so in everything it awaits, but not in tasks it spawns).
    pub fn scope<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> + use<F> {
        let recorder = self.recorder.clone();
        let mut fut = Box::pin(fut);
        std::future::poll_fn(move |cx| metrics::with_local_recorder(&*recorder, || fut.as_mut().poll(cx)))
    }

    /// Runs `f` with this recorder in scope (for a synchronous update of gauges).
    pub fn scope_sync<R>(&self, f: impl FnOnce() -> R) -> R {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their summaries. Rendering does this too; run every
    /// [`UPKEEP_EVERY`] by [`Metrics::upkeep_until`], so memory stays bounded whether or
    /// not anything scrapes `/metrics`.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Runs the upkeep every [`UPKEEP_EVERY`] until `shutdown`.
    pub async fn upkeep_until(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.run_upkeep(),
            }
        }
    }
}
