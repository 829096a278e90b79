//! [`ApiError`]: every failure as a JSON body `{"error": {"code", "message", ...}}`.
//!
//! Bad input is a 4xx naming the parameter; an unavailable database or instance is a
//! 503 with its reasons; anything else is a 500 whose cause is logged, never sent.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tidemark_db_client::{DbError, Reason};
use utoipa::ToSchema;

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

/// The JSON error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code: `invalid_parameter`, `not_found`, `method_not_allowed`,
    /// `unavailable`, `database_unavailable`, `query_timeout`, `internal_error`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// The offending parameter, for `invalid_parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Health reason codes, for `unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub reasons: Option<Vec<Reason>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, field, reasons) = match self {
            Self::InvalidParameter { field, message } => {
                (StatusCode::BAD_REQUEST, "invalid_parameter", message, Some(field), None)
            }
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", "no such endpoint".to_owned(), None, None),
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
            Self::Database(DbError::StatementTimeout { limit, source }) => {
                tracing::warn!(target: "tidemark_api", limit_ms = limit.as_millis(), error = %source,
                    "query cancelled by the statement timeout");
                let message = format!(
                    "the query did not finish within {} ms; narrow its filters or try again later",
                    limit.as_millis()
                );
                (StatusCode::SERVICE_UNAVAILABLE, "query_timeout", message, None, None)
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
            Self::Internal(cause) => {
                tracing::error!(target: "tidemark_api", %cause, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error".to_owned(), None, None)
            }
        };
        let body = ErrorBody { error: ErrorDetail { code, message, field, reasons } };
        (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
    }
}
