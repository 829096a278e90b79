//! The JSON bodies both services serve the same way: `/health`, `/status` and errors.
//! The API serves them with the db-client's typed health reasons, the indexer's own
//! HTTP server with plain strings; both serialize to the same JSON (`R` serializes as a
//! reason code such as `database-unreachable` or `rpc-unreachable:1`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::PublicConfig;
use crate::epoch::EpochSummary;
use crate::event::Cursor;
use crate::projection::RealtimeProjection;
use crate::sink::SinkStatus;
use crate::status::IndexBuild;

/// `/health`: `{status: "ok", warnings}` or `{status: "unhealthy", reasons, warnings}`;
/// the indexer adds its `role`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(bound = ""))]
pub struct HealthBody<R = String> {
    /// `ok` or `unhealthy`.
    pub status: &'static str,
    /// The process's role for the instance (`starting`, `standby`, `writer`; the
    /// indexer only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Why it is unhealthy (absent when healthy).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<Vec<String>>))]
    pub reasons: Option<Vec<R>>,
    /// Conditions that do not make it unhealthy, such as `status-stale`.
    #[cfg_attr(feature = "utoipa", schema(value_type = Vec<String>))]
    pub warnings: Vec<R>,
}

impl<R> HealthBody<R> {
    /// Healthy when `reasons` is empty, unhealthy with them otherwise.
    pub fn new(reasons: Vec<R>, warnings: Vec<R>) -> Self {
        if reasons.is_empty() {
            Self { status: "ok", role: None, reasons: None, warnings }
        } else {
            Self { status: "unhealthy", role: None, reasons: Some(reasons), warnings }
        }
    }

    /// Whether it reports healthy.
    pub fn is_healthy(&self) -> bool {
        self.reasons.is_none()
    }
}

/// `/status`: `{responseCode: "ok", realtimeProjection, config, warnings, epochs}` or
/// `{responseCode: "error", reasons}`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(bound = ""))]
#[serde(rename_all = "camelCase")]
pub struct StatusBody<R = String> {
    /// `ok` or `error`.
    pub response_code: &'static str,
    /// The status snapshot projected to now (DESIGN §4).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<Object>))]
    pub realtime_projection: Option<RealtimeProjection>,
    /// The public config (DESIGN §2).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<Object>))]
    pub config: Option<PublicConfig>,
    /// Warnings such as `status-stale` (on success).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<Vec<String>>))]
    pub warnings: Option<Vec<R>>,
    /// Per chain id (decimal-string keys), the latest epoch and how many epochs are not
    /// finalized yet (on success; `{}` until the epoch summary is first read).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<std::collections::HashMap<String, EpochSummary>>))]
    pub epochs: Option<BTreeMap<u64, EpochSummary>>,
    /// The deferred build of the `events` indexes (on success, while the snapshot carries
    /// one: `deferred`, `building`, then `done`; absent when no build is pending). Taken
    /// out of the projected snapshot, so it appears once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_build: Option<IndexBuild>,
    /// Each configured sink's delivery state (on success, when the snapshot has sinks).
    /// Taken out of the projected snapshot, so it appears once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sinks: Option<BTreeMap<String, SinkStatus>>,
    /// Why there is nothing to serve (on error).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<Vec<String>>))]
    pub reasons: Option<Vec<R>>,
}

impl<R> StatusBody<R> {
    /// A successful body; the snapshot's index build becomes the top-level `indexBuild`.
    pub fn ok(
        mut realtime_projection: RealtimeProjection,
        config: PublicConfig,
        warnings: Vec<R>,
        epochs: BTreeMap<u64, EpochSummary>,
    ) -> Self {
        let index_build = realtime_projection.snapshot.index_build.take();
        let sinks = std::mem::take(&mut realtime_projection.snapshot.sinks);
        let sinks = (!sinks.is_empty()).then_some(sinks);
        Self {
            response_code: "ok",
            realtime_projection: Some(realtime_projection),
            config: Some(config),
            warnings: Some(warnings),
            epochs: Some(epochs),
            index_build,
            sinks,
            reasons: None,
        }
    }

    /// An error body: nothing to serve, and why.
    pub fn error(reasons: Vec<R>) -> Self {
        Self {
            response_code: "error",
            realtime_projection: None,
            config: None,
            warnings: None,
            epochs: None,
            index_build: None,
            sinks: None,
            reasons: Some(reasons),
        }
    }
}

/// An error: `{"error": {"code", "message", "field"?, "reasons"?}}`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(bound = ""))]
pub struct ErrorBody<R = String> {
    /// The error.
    #[cfg_attr(feature = "utoipa", schema(value_type = ErrorDetail<String>))]
    pub error: ErrorDetail<R>,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema), schema(bound = ""))]
pub struct ErrorDetail<R = String> {
    /// Machine-readable code: `invalid_parameter`, `not_found`, `method_not_allowed`,
    /// `unavailable`, `database_unavailable`, `query_timeout`, `overloaded`,
    /// `request_timeout`, `too_many_streams`, `cursor_expired`, `internal_error`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// The offending parameter, for `invalid_parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Health reason codes, for `unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<Vec<String>>))]
    pub reasons: Option<Vec<R>>,
    /// The journal's retained floor, for `cursor_expired`: resume from 0 or from a
    /// cursor at or above it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>))]
    pub floor: Option<Cursor>,
}

impl<R> ErrorBody<R> {
    /// An error with a code and a message only.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { error: ErrorDetail { code, message: message.into(), field: None, reasons: None, floor: None } }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bodies_serialize_as_served() {
        let h: HealthBody = HealthBody::new(vec![], vec!["status-stale".into()]);
        assert_eq!(
            serde_json::to_value(&h).ok(),
            Some(json!({"status": "ok", "warnings": ["status-stale"]}))
        );
        let mut h: HealthBody = HealthBody::new(vec!["database-unreachable".into()], vec![]);
        h.role = Some("writer");
        assert!(!h.is_healthy());
        assert_eq!(
            serde_json::to_value(&h).ok(),
            Some(
                json!({"status": "unhealthy", "role": "writer", "reasons": ["database-unreachable"], "warnings": []})
            )
        );
        let s: StatusBody = StatusBody::error(vec!["no-status".into()]);
        assert_eq!(
            serde_json::to_value(&s).ok(),
            Some(json!({"responseCode": "error", "reasons": ["no-status"]}))
        );
        let e: ErrorBody = ErrorBody::new("not_found", "no such endpoint");
        assert_eq!(
            serde_json::to_value(&e).ok(),
            Some(json!({"error": {"code": "not_found", "message": "no such endpoint"}}))
        );
    }
}
