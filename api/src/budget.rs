//! The request budget of the limited routes: a per-request timeout and one concurrency
//! limit shared by all of them, with load shedding: a request beyond the limit is
//! answered at once with 503 `overloaded` and `Retry-After`, never queued.
//!
//! Routes outside the budget (`/live`, `/health`, and long-lived streams) are merged
//! into the router after it is applied, so they stay answerable while the limited
//! routes are saturated (see [`crate::app`]).

use std::sync::Arc;

use crate::state::AppState;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::HeaderValue;
use tokio::sync::Semaphore;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::load_shed::error::Overloaded;
use tower::timeout::TimeoutLayer;
use tower::timeout::error::Elapsed;
use tower::{BoxError, ServiceBuilder};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::error::ApiError;
use crate::settings::HttpSettings;

/// `router` with the budget applied to each of its routes. They all share
/// `semaphore`'s permits (`Router::layer` applies a layer to each route separately, so a
/// per-layer limit would be per route). Routes merged later are outside the budget.
pub fn apply(
    router: Router<AppState>,
    settings: &HttpSettings,
    semaphore: Arc<Semaphore>,
) -> Router<AppState> {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|e: BoxError| async move { rejection(&e) }))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(semaphore))
            .layer(TimeoutLayer::new(settings.request_timeout)),
    )
}

/// The error response of a request the budget refused.
fn rejection(e: &BoxError) -> ApiError {
    if e.is::<Overloaded>() {
        ApiError::Overloaded
    } else if e.is::<Elapsed>() {
        ApiError::RequestTimeout
    } else {
        ApiError::Internal(format!("request budget: {e}"))
    }
}

/// CORS for the public read routes: `GET`/`HEAD` from `origins` (`*`: any). `None` when
/// no origin is allowed (CORS off).
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    let base = CorsLayer::new()
        .allow_methods([axum::http::Method::GET, axum::http::Method::HEAD])
        .allow_headers(Any);
    if origins.iter().any(|o| o == "*") {
        return Some(base.allow_origin(Any));
    }
    let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    (!list.is_empty()).then(|| base.allow_origin(AllowOrigin::list(list)))
}
