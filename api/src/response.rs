//! Response pieces shared by the routes: cache and content-type headers, and the JSON
//! answers for unknown paths and methods.

use axum::http::HeaderValue;
use axum::http::header::{self, HeaderName};

use crate::error::ApiError;

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
