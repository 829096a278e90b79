//! Shared state of the handlers, split into sub-states with [`FromRef`].

use axum::extract::FromRef;
use tidemark_db_client::DbClient;

use crate::routes::status::StatusBodyCache;
use crate::telemetry::Metrics;

/// What every handler may use: the database client, the metrics registry and the
/// `/status` body cache.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The read side of the instance.
    pub db: DbClient,
    /// HTTP metrics, rendered by `/metrics`.
    pub metrics: Metrics,
    /// The last serialized `/status` body.
    pub status_body: StatusBodyCache,
}

impl AppState {
    /// State around `db` with a fresh metrics registry.
    pub fn new(db: DbClient) -> Self {
        Self { db, metrics: Metrics::new(), status_body: StatusBodyCache::default() }
    }
}

impl FromRef<AppState> for DbClient {
    fn from_ref(state: &AppState) -> Self {
        state.db.clone()
    }
}

impl FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

impl FromRef<AppState> for StatusBodyCache {
    fn from_ref(state: &AppState) -> Self {
        state.status_body.clone()
    }
}
