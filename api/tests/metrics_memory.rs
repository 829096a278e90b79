//! The metrics exporter's upkeep in the API's server (`tidemark_api::run`). Each
//! histogram sample (a request's latency) is kept in a lock-free bucket until an upkeep
//! or a render of `/metrics` drains it into the histogram's fixed buckets; with nothing
//! scraping `/metrics`, only the upkeep every 5 s keeps the process's memory from growing
//! with every request served.
//!
//! A test binary of its own: it counts the bytes the process holds through its global
//! allocator, which other tests running alongside would disturb. Time is paused and
//! advanced by tokio, so each 5 s period passes at once and exactly.

use std::time::Duration;

use axum::http::Method;
use tidemark_api::AppState;
use tidemark_db_client::test_utils::alloc::{Counting, live_bytes};
use tidemark_db_client::{DbClient, DbClientConfig};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The interval of the exporter's upkeep in `tidemark_api::run`.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// Requests recorded in each 5 s period: a busy API.
const PER_PERIOD: usize = 20_000;
/// Periods recorded after the warm-up one (250 s of paused time).
const PERIODS: usize = 50;
/// Growth allowed over the warm-up: the last period's samples (about 330 kB) and one
/// drained period not yet freed, with room to spare. Without the upkeep the growth is the
/// whole run's samples, about 16 MiB.
const LIMIT: isize = 4 << 20;

/// What the request-metrics middleware records for each of `n` requests.
fn serve_requests(state: &AppState, n: usize) {
    for i in 0..n {
        let elapsed = Duration::from_micros(500 * (1 + i as u64 % 8));
        state.metrics.record_request(&Method::GET, "/v1/events", 200, elapsed);
    }
}

#[tokio::test(start_paused = true)]
async fn request_histograms_stay_bounded_while_nothing_scrapes_metrics() {
    // The database is never asked: its client's background refresh is stopped at once.
    let db = DbClient::new(DbClientConfig::new(
        "postgres://tidemark@127.0.0.1:1/unused",
        "tidemark_metrics_memory",
    ))
    .expect("client");
    db.shutdown();
    let state = AppState::new(db);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(tidemark_api::run(listener, state.clone(), shutdown.clone()));

    // A warm-up period: what is built once (the route's handles, the buckets) is in the
    // baseline.
    serve_requests(&state, PER_PERIOD);
    tokio::time::sleep(UPKEEP_EVERY).await;
    let baseline = live_bytes();
    let mut peak = isize::MIN;
    for _ in 0..PERIODS {
        serve_requests(&state, PER_PERIOD);
        peak = peak.max(live_bytes() - baseline);
        tokio::time::sleep(UPKEEP_EVERY).await;
    }
    let (measured, recorded) = (PERIODS * PER_PERIOD, (PERIODS + 1) * PER_PERIOD);
    eprintln!("{measured} requests over {} s without a scrape: peak growth {peak} bytes", PERIODS * 5);
    assert!(
        peak < LIMIT,
        "memory grew by {:.1} MiB over {measured} requests in {} s without a scrape of /metrics \
         (limit {} MiB): the latency samples are not drained",
        peak as f64 / f64::from(1 << 20),
        PERIODS * 5,
        LIMIT >> 20
    );

    // Drained, not dropped: a scrape counts every request.
    let text = state.metrics.render(&state.db, &state.hub).await;
    let count =
        format!("http_request_duration_seconds_count{{method=\"GET\",route=\"/v1/events\"}} {recorded}\n");
    assert!(text.contains(&count), "expected {count:?} in /metrics:\n{text}");
    shutdown.cancel();
    server.await.expect("the server task").expect("the server");
}
