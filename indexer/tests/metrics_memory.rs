//! The metrics exporter's upkeep in the indexer's HTTP server (`http::serve`). Each
//! histogram sample is kept in a lock-free bucket until an upkeep or a render of
//! `/metrics` drains it into the histogram's bounded summary; with nothing scraping
//! `/metrics`, only the upkeep every 5 s keeps the process's memory from growing with every
//! RPC request and commit.
//!
//! A test binary of its own: it counts the bytes the process holds through its global
//! allocator, which other tests running alongside would disturb. Time is paused and
//! advanced by tokio, so each 5 s period passes at once and exactly.

use std::sync::Arc;

use tidemark_db_client::test_utils::alloc::{Counting, live_bytes};
use tidemark_indexer::http::{self, HttpState, SharedSummaries};
use tidemark_indexer::progress::Progress;
use tidemark_indexer::telemetry::{Metrics, UPKEEP_EVERY};
use tidemark_shared_types::{PublicConfig, VersionInfo};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Samples recorded in each 5 s period: a busy indexer's RPC requests.
const PER_PERIOD: usize = 20_000;
/// Periods recorded after the warm-up one (250 s of paused time).
const PERIODS: usize = 50;
/// Growth allowed over the warm-up: the last period's samples (about 330 kB) and one
/// drained period not yet freed, with room to spare. Without the upkeep the growth is the
/// whole run's samples, about 16 MiB.
const LIMIT: isize = 4 << 20;

fn record(histogram: &metrics::Histogram, n: usize) {
    for i in 0..n {
        histogram.record(0.001 * (1 + i % 8) as f64);
    }
}

fn public_config() -> PublicConfig {
    PublicConfig {
        namespace: "test".into(),
        instance_schema: "tidemark_metrics_memory".into(),
        chains: Vec::new(),
        version_info: VersionInfo::current(),
    }
}

#[tokio::test(start_paused = true)]
async fn histograms_stay_bounded_while_nothing_scrapes_metrics() {
    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let state = HttpState {
        progress: Progress::new([]),
        config: public_config(),
        health: Arc::default(),
        epochs: SharedSummaries::default(),
        metrics: metrics.clone(),
        webhooks: None,
        pool: None,
    };
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(http::serve(listener, state, shutdown.clone()));
    // Registered with this run's recorder, as the indexer's tasks do (they run in its scope).
    let latency = metrics
        .scope(async { metrics::histogram!("tidemark_rpc_request_seconds", "method" => "eth_getLogs") })
        .await;

    // A warm-up period: what is built once (the clock's calibration, the summary) is in
    // the baseline.
    record(&latency, PER_PERIOD);
    tokio::time::sleep(UPKEEP_EVERY).await;
    let baseline = live_bytes();
    let mut peak = isize::MIN;
    for _ in 0..PERIODS {
        record(&latency, PER_PERIOD);
        peak = peak.max(live_bytes() - baseline);
        tokio::time::sleep(UPKEEP_EVERY).await;
    }
    let (measured, recorded) = (PERIODS * PER_PERIOD, (PERIODS + 1) * PER_PERIOD);
    eprintln!("{measured} samples over {} s without a scrape: peak growth {peak} bytes", PERIODS * 5);
    assert!(
        peak < LIMIT,
        "memory grew by {:.1} MiB over {measured} histogram samples in {} s without a scrape of /metrics \
         (limit {} MiB): the samples are not drained",
        peak as f64 / f64::from(1 << 20),
        PERIODS * 5,
        LIMIT >> 20
    );

    // Drained, not dropped: a scrape counts every sample.
    let text = metrics.render();
    let count = format!("tidemark_rpc_request_seconds_count{{method=\"eth_getLogs\"}} {recorded}\n");
    assert!(text.contains(&count), "expected {count:?} in /metrics:\n{text}");
    shutdown.cancel();
    server.await.expect("the HTTP server task");
}
