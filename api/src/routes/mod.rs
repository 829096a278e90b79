//! The routes, one module per group, merged into one router.

pub mod contracts;
pub mod dashboard;
pub mod epochs;
pub mod events;
mod events_body;
pub mod health;
pub mod meta;
pub mod status;
pub mod status_body;
pub mod stream;

pub use status_body::StatusBodyCache;

use axum::Router;

use crate::state::AppState;

/// The public read routes that run within the request budget (timeout and concurrency
/// limit, [`crate::budget`]): everything a browser may read except the probes.
pub fn public() -> Router<AppState> {
    Router::new()
        .merge(status::router())
        .merge(events::router())
        .merge(epochs::router())
        .merge(contracts::router())
        .merge(dashboard::router())
        .merge(crate::openapi::router())
}

/// The probes, `/live` and `/health`: outside the request budget, so that they answer
/// while the other routes are saturated (they never wait for the database).
pub fn probes() -> Router<AppState> {
    health::router()
}

/// `/v1/stream`: long-lived, so outside the request timeout and concurrency limit; it has
/// its own client limit (`stream_max_clients`) and counts against the connection cap.
pub fn streams() -> Router<AppState> {
    stream::router()
}
