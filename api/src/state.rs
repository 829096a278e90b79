//! Shared state of the handlers, split into sub-states with [`FromRef`].

use std::sync::Arc;

use axum::extract::FromRef;
use tidemark_db_client::DbClient;

use crate::clock::Clock;
use crate::hub::Hub;
use crate::routes::status_body::StatusBodyCache;
use crate::settings::HttpSettings;
use crate::telemetry::Metrics;

/// What every handler may use: the database client, the metrics registry, the
/// `/status` body cache and the HTTP limits.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The read side of the instance.
    pub db: DbClient,
    /// HTTP metrics, rendered by `/metrics`.
    pub metrics: Metrics,
    /// The last serialized `/status` body.
    pub status_body: StatusBodyCache,
    /// Limits, the response-size cap and CORS.
    pub http: Arc<HttpSettings>,
    /// "Now" of the time-dependent handlers.
    pub clock: Clock,
    /// The journal's tail shared by the `/v1/stream` clients.
    pub hub: Arc<Hub>,
}

impl AppState {
    /// State around `db` with a fresh metrics registry and the default limits.
    pub fn new(db: DbClient) -> Self {
        Self::with_http(db, HttpSettings::default())
    }

    /// State around `db` with a fresh metrics registry and the limits `http`.
    pub fn with_http(db: DbClient, http: HttpSettings) -> Self {
        let metrics = Metrics::new();
        let fanout = metrics.stream_fanout();
        let hub = Arc::new(Hub::new(db.clone(), http.stream_queue, http.stream_max_clients, fanout));
        Self {
            db,
            hub,
            metrics,
            status_body: StatusBodyCache::default(),
            http: Arc::new(http),
            clock: Clock::default(),
        }
    }

    /// The same state reading "now" from `clock`.
    #[must_use]
    pub fn with_clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
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

impl FromRef<AppState> for Arc<HttpSettings> {
    fn from_ref(state: &AppState) -> Self {
        state.http.clone()
    }
}

impl FromRef<AppState> for Clock {
    fn from_ref(state: &AppState) -> Self {
        state.clock.clone()
    }
}

impl FromRef<AppState> for Arc<Hub> {
    fn from_ref(state: &AppState) -> Self {
        state.hub.clone()
    }
}
