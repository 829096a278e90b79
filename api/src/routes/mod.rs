//! The routes, one module per group, merged into one router.

pub mod epochs;
pub mod events;
mod events_body;
pub mod health;
pub mod meta;
pub mod status;

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{self, HeaderName};

use crate::error::ApiError;
use crate::state::AppState;

/// The public read routes that run within the request budget (timeout and concurrency
/// limit, [`crate::budget`]): everything a browser may read except the probes.
pub fn public() -> Router<AppState> {
    Router::new()
        .merge(status::router())
        .merge(events::router())
        .merge(epochs::router())
        .merge(meta::openapi_router())
}

/// The probes, `/live` and `/health`: outside the request budget, so that they answer
/// while the other routes are saturated (they never wait for the database).
pub fn probes() -> Router<AppState> {
    health::router()
}

/// A `Cache-Control` header. Values are built with `HeaderValue::from_static`: a `&str`
/// value would be checked and copied into a new allocation on every response.
pub(crate) fn cache_control(value: &'static str) -> [(HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static(value))]
}

/// `Content-Type: application/json`, for bodies written without [`axum::Json`].
pub(crate) fn json_content() -> [(HeaderName, HeaderValue); 1] {
    [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))]
}

/// Unknown paths: a JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Known paths with another method: a JSON 405.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
