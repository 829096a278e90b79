//! `GET /live` (the process is up) and `GET /health` (the instance can be served).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Serialize;
use tidemark_db_client::{DbClient, Reason};
use utoipa::ToSchema;

use crate::response::cache_control;
use crate::state::AppState;

/// Routes of this group.
pub fn router() -> Router<AppState> {
    Router::new().route("/live", get(live)).route("/health", get(health))
}

/// `/live` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveBody {
    /// Always `ok`.
    pub status: &'static str,
}

/// `/health` body: `{status: "ok", warnings}` or `{status: "unhealthy", reasons, warnings}`
/// (reasons: `database-unreachable`, `uninitialized`, `no-status`, `incompatible`;
/// warnings: `status-stale`).
pub type HealthBody = tidemark_shared_types::HealthBody<Reason>;

/// The process is up: always 200.
#[utoipa::path(get, path = "/live", tag = "health",
    responses((status = 200, description = "The process is up", body = LiveBody)))]
pub async fn live() -> Response {
    (cache_control("no-store"), Json(LiveBody { status: "ok" })).into_response()
}

/// 200 when the database answered within 10 s and a compatible config and status are
/// cached; 503 with the reasons otherwise.
#[utoipa::path(get, path = "/health", tag = "health", responses(
    (status = 200, description = "Healthy", body = HealthBody),
    (status = 503, description = "Unhealthy, with reasons", body = HealthBody)))]
pub async fn health(State(db): State<DbClient>) -> Response {
    let h = db.health();
    let body = HealthBody::new(if h.healthy { Vec::new() } else { h.reasons }, h.warnings);
    let code = if body.is_healthy() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, cache_control("no-store"), Json(body)).into_response()
}
