//! [`ApiError`]: every failure as a JSON body `{"error": {"code", "message", ...}}`.
//!
//! Bad input is a 4xx naming the parameter; an unavailable database or instance is a
//! 503 with its reasons; anything else is a 500 whose cause is logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tidemark_db_client::{DbError, Reason};

use crate::settings::RETRY_AFTER_SECS;

/// An error response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter is missing, malformed, out of range or unknown (400).
    #[error("{message}")]
    InvalidParameter {
        /// The parameter, e.g. `limit`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No route has this path (404).
    #[error("no such endpoint")]
    NotFound,
    /// `/v1/contracts/{name}/…` names no configured contract (404).
    #[error("no contract named {0:?}")]
    UnknownContract(String),
    /// The route exists but not for this method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The instance cannot be served now (503), with the health reasons.
    #[error("the instance is unavailable")]
    Unavailable {
        /// Why, as health reason codes.
        reasons: Vec<Reason>,
    },
    /// A database call failed (503 when unreachable or when the statement timeout
    /// cancelled the query, 400 naming the field for a query out of range, 500 otherwise).
    #[error(transparent)]
    Database(#[from] DbError),
    /// The limited routes are handling as many requests as they may (503 with
    /// `Retry-After`): shed at once, never queued.
    #[error("the server is overloaded")]
    Overloaded,
    /// As many `/v1/stream` clients as allowed are connected (503 with `Retry-After`).
    #[error("too many streams")]
    TooManyStreams,
    /// The request ran past the request timeout (503 with `Retry-After`).
    #[error("the request timed out")]
    RequestTimeout,
    /// A failure of the API itself (500); the cause is logged, not sent.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidParameter { field: field.into(), message: message.into() }
    }
}

/// The JSON error body (shared with the indexer's HTTP server), reasons typed.
pub type ErrorBody = tidemark_shared_types::ErrorBody<Reason>;
/// What went wrong.
pub type ErrorDetail = tidemark_shared_types::ErrorDetail<Reason>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, field, reasons) = match self {
            Self::InvalidParameter { field, message } => {
                (StatusCode::BAD_REQUEST, "invalid_parameter", message, Some(field), None)
            }
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", "no such endpoint".to_owned(), None, None),
            Self::UnknownContract(name) => {
                let message = format!("no contract named {name:?} in the instance's config");
                (StatusCode::NOT_FOUND, "unknown_contract", message, None, None)
            }
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed".to_owned(),
                None,
                None,
            ),
            Self::Unavailable { reasons } => {
                let list: Vec<String> = reasons.iter().map(|r| r.code().into_owned()).collect();
                let message = format!("the instance cannot be served now: {}", list.join(", "));
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", message, None, Some(reasons))
            }
            Self::Database(DbError::InvalidQuery { field, message }) => {
                (StatusCode::BAD_REQUEST, "invalid_parameter", message, Some(field.to_owned()), None)
            }
            Self::Database(DbError::CursorExpired { floor }) => {
                let message = format!(
                    "removed entries after this cursor were pruned (retention); resume from 0 or from {floor}"
                );
                let error = ErrorDetail {
                    code: "cursor_expired",
                    message,
                    field: None,
                    reasons: None,
                    floor: Some(floor),
                };
                return (StatusCode::GONE, [(header::CACHE_CONTROL, "no-store")], Json(ErrorBody { error }))
                    .into_response();
            }
            Self::Database(DbError::StatementTimeout { limit, source }) => {
                tracing::warn!(target: "tidemark_api", limit_ms = limit.as_millis(), error = %source,
                    "query cancelled by the statement timeout");
                let message = format!(
                    "the query did not finish within {} ms; narrow its filters or try again later",
                    limit.as_millis()
                );
                (StatusCode::SERVICE_UNAVAILABLE, "query_timeout", message, None, None)
            }
            Self::Database(e) if e.is_busy() => {
                // Every connection busy for the checkout timeout: shed like the budget does.
                let message = "too many queries in progress; retry after the Retry-After delay".to_owned();
                return busy("overloaded", message);
            }
            Self::Database(e) if e.is_unavailable() => {
                tracing::warn!(target: "tidemark_api", error = %e, "database unavailable");
                let message = "the database is unavailable; try again later".to_owned();
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", message, None, None)
            }
            Self::Database(e) => {
                tracing::error!(target: "tidemark_api", error = %e, "database query failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error".to_owned(), None, None)
            }
            Self::Overloaded => {
                let message = "too many requests in progress; retry after the Retry-After delay".to_owned();
                return busy("overloaded", message);
            }
            Self::TooManyStreams => {
                let message =
                    "as many streams as allowed are open; retry after the Retry-After delay".to_owned();
                return busy("too_many_streams", message);
            }
            Self::RequestTimeout => {
                let message =
                    "the request did not finish in time; narrow its filters or try again later".to_owned();
                return busy("request_timeout", message);
            }
            Self::Internal(cause) => {
                tracing::error!(target: "tidemark_api", %cause, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error".to_owned(), None, None)
            }
        };
        let body = ErrorBody { error: ErrorDetail { code, message, field, reasons, floor: None } };
        (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
    }
}

/// A 503 with `code` and `message`, telling the client when to retry.
fn busy(code: &'static str, message: String) -> Response {
    let error = ErrorDetail { code, message, field: None, reasons: None, floor: None };
    let retry = HeaderValue::from(RETRY_AFTER_SECS);
    let headers =
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store")), (header::RETRY_AFTER, retry)];
    (StatusCode::SERVICE_UNAVAILABLE, headers, Json(ErrorBody { error })).into_response()
}
