//! `GET /metrics` (Prometheus text) and `GET /openapi.json` (OpenAPI 3).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use utoipa::OpenApi;

use crate::openapi::ApiDoc;
use crate::state::AppState;

/// `/metrics`: for the operator's scraper, never offered to browsers (no CORS).
pub fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// `/openapi.json`: public.
pub fn openapi_router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi))
}

/// Prometheus metrics: requests and latency per matched route, database statements,
/// health.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics.render(&state.db).await;
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        text,
    )
        .into_response()
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3 document", body = Object)))]
pub async fn openapi() -> Response {
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(ApiDoc::openapi())).into_response()
}
