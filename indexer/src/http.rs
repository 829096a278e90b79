//! The indexer's own small HTTP server: `/health`, `/status`, `/config`, `/metrics`, and
//! the provider webhook endpoints (`/v1/webhooks/…`, [`crate::webhooks::routes`]).
//! It serves what this process knows in memory; the API service never calls it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tidemark_db_client::EpochSummaries;
use tidemark_shared_types::{ErrorBody, HealthBody, PublicConfig, RealtimeProjection, StatusBody};
use tokio_util::sync::CancellationToken;

use crate::liveness::Liveness;
use crate::progress::{Progress, unix_now};
use crate::rpc::Standing;
use crate::telemetry::Metrics;

/// State of the HTTP handlers.
#[derive(Clone)]
pub struct HttpState {
    /// Chain progress.
    pub progress: Progress,
    /// The public config of this process.
    pub config: PublicConfig,
    /// Liveness facts.
    pub health: Arc<Liveness>,
    /// Per-chain epoch summary, refreshed every second by the epoch recorder.
    pub epochs: SharedSummaries,
    /// This indexer's metrics, rendered by `/metrics`.
    pub metrics: Metrics,
    /// Provider webhook ingestion, when a chain has webhooks.
    pub webhooks: Option<Arc<crate::webhooks::Hub>>,
    /// The indexer's pool (epochs, sinks' state, webhook deliveries), for its usage gauges.
    pub pool: Option<tidemark_db_client::writer::PgPool>,
}

/// The latest epoch summaries, shared between the recorder and the HTTP server.
pub type SharedSummaries = Arc<std::sync::RwLock<EpochSummaries>>;

/// The router.
pub fn app(state: HttpState) -> Router {
    let webhooks = state.webhooks.clone().map(crate::webhooks::routes::router).unwrap_or_default();
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/config", get(config))
        .route("/metrics", get(metrics_text))
        .fallback(|| async {
            (StatusCode::NOT_FOUND, Json(ErrorBody::<String>::new("not_found", "no such endpoint")))
        })
        .with_state(state)
        .merge(webhooks)
}

/// Serves until `shutdown`.
///
/// Also runs the metrics exporter's upkeep every 5 s, so histograms stay bounded whether
/// or not anything scrapes `/metrics`.
pub async fn serve(listener: tokio::net::TcpListener, state: HttpState, shutdown: CancellationToken) {
    tokio::spawn(state.metrics.clone().upkeep_until(shutdown.clone()));
    let result = axum::serve(listener, app(state)).with_graceful_shutdown(shutdown.cancelled_owned()).await;
    if let Err(e) = result {
        tracing::error!(target: "tidemark::http", error = %e, "HTTP server failed");
    }
}

async fn health(State(s): State<HttpState>) -> Response {
    let mut reasons = Vec::new();
    if !s.health.db_reachable() {
        reasons.push("database-unreachable".to_owned());
    }
    let mut warnings = Vec::new();
    for (id, st) in s.progress.states() {
        if !st.rpc_healthy {
            reasons.push(format!("rpc-unreachable:{id}"));
        }
        if st.stalled().is_some() {
            warnings.push(format!("chain-stalled:{id}"));
        }
        // An endpoint set aside: another chain, or without the blocks the index has.
        for (label, standing) in &st.endpoints {
            if matches!(standing, Standing::WrongChain(_) | Standing::Behind(_)) {
                warnings.push(format!("rpc-endpoint-{}:{id}:{label}", standing.label()));
            }
        }
    }
    if s.progress.index_build().is_some_and(|b| b.is_pending()) {
        warnings.push("indexes-building".to_owned());
    }
    let mut body = HealthBody::new(reasons, warnings);
    body.role = Some(s.health.role());
    let code = if body.is_healthy() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn status(State(s): State<HttpState>) -> Response {
    match s.progress.snapshot(unix_now()) {
        Some(snapshot) => {
            let projection = RealtimeProjection::project(snapshot, unix_now());
            let epochs = s.epochs.read().map(|e| e.clone()).unwrap_or_default();
            let body: StatusBody = StatusBody::ok(projection, s.config, Vec::new(), epochs);
            (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CACHE_CONTROL, "no-store")],
            Json(StatusBody::error(vec!["no-status".to_owned()])),
        )
            .into_response(),
    }
}

async fn config(State(s): State<HttpState>) -> Response {
    ([(header::CACHE_CONTROL, "max-age=60")], Json(s.config)).into_response()
}

async fn metrics_text(State(s): State<HttpState>) -> Response {
    if let Some(pool) = &s.pool {
        let u = pool.usage();
        s.metrics.scope_sync(|| {
            tidemark_service_kit::record_pool_usage("indexer", u.max, u.open, u.idle, u.waiting)
        });
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response()
}
