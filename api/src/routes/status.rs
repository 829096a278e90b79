//! `GET /status`, `GET /config` and `GET /v1/realtime`: served from the db-client's
//! caches, never waiting for the database (so they answer even while it is down).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tidemark_db_client::{DbClient, EpochSummaries, Reason};
use tidemark_shared_types::{IndexingStatus, PublicConfig, RealtimeProjection};
use utoipa::{IntoParams, ToSchema};

use super::{cache_control, json_content};
use crate::error::ApiError;
use crate::extract::{Query, QueryParams};
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

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `/status` body: `{responseCode: "ok", realtimeProjection, config, warnings, epochs}` or
/// `{responseCode: "error", reasons}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusBody {
    /// `ok` or `error`.
    pub response_code: &'static str,
    /// The status snapshot projected to now (DESIGN §4).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub realtime_projection: Option<RealtimeProjection>,
    /// The public config (DESIGN §2).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<PublicConfig>,
    /// Warnings such as `status-stale` (on success).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub warnings: Option<Vec<Reason>>,
    /// Per chain id (decimal-string keys), the latest epoch and how many epochs are not
    /// finalized yet (on success; `{}` until the epoch summary is first read).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, crate::openapi::EpochSummarySchema>>)]
    pub epochs: Option<EpochSummaries>,
    /// Why there is nothing to serve (on error).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub reasons: Option<Vec<Reason>>,
}

/// The indexing status with the public config and the epoch summary of each chain; 200
/// while a compatible config and status are cached, even if the database is down right
/// now. Everything comes from the db-client's caches: no query per request, and the
/// serialized body is reused until one of its parts or the second changes
/// ([`StatusBodyCache`]).
#[utoipa::path(get, path = "/status", tag = "status", responses(
    (status = 200, description = "Status and config", body = StatusBody),
    (status = 503, description = "Nothing to serve yet", body = StatusBody)))]
pub async fn status(State(db): State<DbClient>, State(cache): State<StatusBodyCache>) -> Response {
    match db.status_parts().await {
        Ok(parts) => {
            let parts = BodyParts {
                now: parts.database_now,
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
            let body = StatusBody {
                response_code: "error",
                realtime_projection: None,
                config: None,
                warnings: None,
                epochs: None,
                reasons: Some(health.reasons),
            };
            (StatusCode::SERVICE_UNAVAILABLE, cache_control("no-store"), Json(body)).into_response()
        }
    }
}

/// What a successful `/status` body is made of. Two sets of parts with the same second,
/// the same cached values (by identity: the caches hand out a new `Arc` per value read)
/// and the same warnings serialize to the same body.
struct BodyParts {
    now: u64,
    config: Arc<PublicConfig>,
    status: Arc<IndexingStatus>,
    epochs: Option<Arc<EpochSummaries>>,
    warnings: Vec<Reason>,
}

impl BodyParts {
    fn same_as(&self, other: &Self) -> bool {
        self.now == other.now
            && Arc::ptr_eq(&self.config, &other.config)
            && Arc::ptr_eq(&self.status, &other.status)
            && match (&self.epochs, &other.epochs) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
            && self.warnings == other.warnings
    }

    fn serialize(&self) -> serde_json::Result<Bytes> {
        let body = StatusBody {
            response_code: "ok",
            realtime_projection: Some(RealtimeProjection::project(
                IndexingStatus::clone(&self.status),
                self.now,
            )),
            config: Some(PublicConfig::clone(&self.config)),
            warnings: Some(self.warnings.clone()),
            epochs: Some(self.epochs.as_deref().cloned().unwrap_or_default()),
            reasons: None,
        };
        serde_json::to_vec(&body).map(Bytes::from)
    }
}

/// The last successful `/status` body, serialized once and served to every request of
/// the same second while the cached config, status, epoch summary and warnings are the
/// same values. The parts are held (not just their addresses), so a match is never a
/// reused allocation.
#[derive(Clone, Default)]
pub struct StatusBodyCache {
    last: Arc<Mutex<Option<(BodyParts, Bytes)>>>,
}

impl std::fmt::Debug for StatusBodyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusBodyCache").finish_non_exhaustive()
    }
}

impl StatusBodyCache {
    /// The body for `parts`: the cached one when it was built from the same parts,
    /// otherwise a new one (then cached).
    fn body(&self, parts: BodyParts) -> serde_json::Result<Bytes> {
        if let Some((cached, body)) = self.last.lock().unwrap_or_else(PoisonError::into_inner).as_ref()
            && cached.same_as(&parts)
        {
            return Ok(body.clone());
        }
        // Serialized outside the lock: concurrent misses each build the same body.
        let body = parts.serialize()?;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((parts, body.clone()));
        Ok(body)
    }
}

/// The public config of the instance.
#[utoipa::path(get, path = "/config", tag = "status", responses(
    (status = 200, description = "The public config (DESIGN §2)", body = Object),
    (status = 503, description = "No config cached", body = crate::error::ErrorBody)))]
pub async fn config(State(db): State<DbClient>) -> Result<Response, ApiError> {
    match db.public_config().await {
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
pub async fn realtime(State(db): State<DbClient>, Query(params): Query<RealtimeParams>) -> Response {
    let max = params.max_worst_case_distance.unwrap_or(DEFAULT_MAX_WORST_CASE_DISTANCE);
    // The database's clock, as for staleness: a skewed host clock changes no verdict.
    let now = db.database_now().unwrap_or_else(unix_now);
    let (code, body) = match db.realtime_projection(now).await {
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
