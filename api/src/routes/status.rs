//! `GET /status`, `GET /config` and `GET /v1/realtime`: served from the db-client's
//! caches, never waiting for the database (so they answer even while it is down).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tidemark_db_client::DbClient;
use utoipa::{IntoParams, ToSchema};

use super::status_body::{BodyParts, StatusBody, StatusBodyCache};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::extract::{Query, QueryParams};
use crate::response::{cache_control, json_content};
use crate::state::AppState;

/// Default of `maxWorstCaseDistance`, in seconds.
pub const DEFAULT_MAX_WORST_CASE_DISTANCE: u64 = 60;

/// Routes of this group.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/config", get(config))
        .route("/v1/realtime", get(realtime))
}

/// The indexing status with the public config and the epoch summary of each chain; 200
/// while a compatible config and status are cached, even if the database is down right
/// now. Everything comes from the db-client's caches: no query per request, and the
/// serialized body is reused until one of its parts or the second changes
/// ([`StatusBodyCache`]).
#[utoipa::path(get, path = "/status", tag = "status", responses(
    (status = 200, description = "Status and config", body = StatusBody),
    (status = 503, description = "Nothing to serve yet", body = StatusBody)))]
pub async fn status(
    State(db): State<DbClient>,
    State(cache): State<StatusBodyCache>,
    State(clock): State<Clock>,
) -> Response {
    match db.status_parts() {
        Ok(parts) => {
            let parts = BodyParts {
                now: clock.now(Some(parts.database_now)),
                config: parts.config,
                status: parts.status,
                epochs: parts.epochs,
                warnings: parts.health.warnings,
            };
            match cache.body(parts) {
                Ok(body) => (cache_control("public, max-age=1"), json_content(), body).into_response(),
                Err(e) => ApiError::Internal(format!("serializing the status: {e}")).into_response(),
            }
        }
        Err(health) => {
            let body = StatusBody::error(health.reasons);
            (StatusCode::SERVICE_UNAVAILABLE, cache_control("no-store"), Json(body)).into_response()
        }
    }
}

/// The public config of the instance.
#[utoipa::path(get, path = "/config", tag = "status", responses(
    (status = 200, description = "The public config (DESIGN §2)", body = Object),
    (status = 503, description = "No config cached", body = crate::error::ErrorBody)))]
pub async fn config(State(db): State<DbClient>) -> Result<Response, ApiError> {
    match db.public_config() {
        Ok(config) => Ok((cache_control("public, max-age=5"), Json(config.as_ref())).into_response()),
        Err(reason) => Err(ApiError::Unavailable { reasons: vec![reason] }),
    }
}

/// `/v1/realtime` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct RealtimeParams {
    /// Largest acceptable `worstCaseDistance` in seconds (default 60).
    pub max_worst_case_distance: Option<u64>,
}

impl QueryParams for RealtimeParams {
    const FIELDS: &'static [&'static str] = &["maxWorstCaseDistance"];
}

/// `/v1/realtime` body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeBody {
    /// The threshold applied.
    pub max_worst_case_distance: u64,
    /// "Everything up to this time is indexed everywhere" (null when unknown).
    pub slowest_chain_indexing_cursor: Option<u64>,
    /// Now minus the cursor, in seconds (null when unknown).
    pub worst_case_distance: Option<u64>,
    /// Why the check failed (503 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// 200 when every chain is indexed to within `maxWorstCaseDistance` seconds of now;
/// 503 when behind or unknown.
#[utoipa::path(get, path = "/v1/realtime", tag = "status", params(RealtimeParams), responses(
    (status = 200, description = "Within the distance", body = RealtimeBody),
    (status = 400, description = "Bad parameter", body = crate::error::ErrorBody),
    (status = 503, description = "Behind or unknown", body = RealtimeBody)))]
pub async fn realtime(
    State(db): State<DbClient>,
    State(clock): State<Clock>,
    Query(params): Query<RealtimeParams>,
) -> Response {
    let max = params.max_worst_case_distance.unwrap_or(DEFAULT_MAX_WORST_CASE_DISTANCE);
    // The database's clock, as for staleness: a skewed host clock changes no verdict.
    let now = clock.now(db.database_now());
    let (code, body) = match db.realtime_projection(now) {
        Ok(p) => {
            let behind = p.worst_case_distance > max;
            let body = RealtimeBody {
                max_worst_case_distance: max,
                slowest_chain_indexing_cursor: Some(p.snapshot.slowest_chain_indexing_cursor),
                worst_case_distance: Some(p.worst_case_distance),
                error: behind.then(|| {
                    format!(
                        "indexing is {} s behind, more than maxWorstCaseDistance {max}",
                        p.worst_case_distance
                    )
                }),
            };
            (if behind { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }, body)
        }
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            RealtimeBody {
                max_worst_case_distance: max,
                slowest_chain_indexing_cursor: None,
                worst_case_distance: None,
                error: Some(format!("the indexing status is unknown: {reason}")),
            },
        ),
    };
    (code, cache_control("no-store"), Json(body)).into_response()
}
