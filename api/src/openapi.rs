//! The OpenAPI document served at `/openapi.json`. The schemas of the served items
//! derive from `tidemark-shared-types` (its `utoipa` feature), the types the handlers
//! serialize, so the document cannot drift from the JSON.

use tidemark_shared_types::{
    ContractAddress, EpochItem, EpochStage, EpochStageEntry, EpochSummary, EventItem, IndexBuild,
    IndexBuildState, RemovedItem,
};
use utoipa::OpenApi;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;

use crate::routes::{contracts, epochs, events, health, meta, status, stream};
use crate::state::AppState;

/// The OpenAPI 3 document of the API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Tidemark API",
        description = "Indexed EVM events and indexing status, served from PostgreSQL."
    ),
    paths(
        health::live,
        health::health,
        status::status,
        status::config,
        status::realtime,
        events::events,
        stream::stream,
        epochs::epochs,
        contracts::addresses,
        meta::metrics,
        openapi_json,
    ),
    components(schemas(
        health::LiveBody,
        health::HealthBody,
        crate::routes::status_body::StatusBody,
        status::RealtimeBody,
        events::EventsBody,
        EventItem,
        RemovedItem,
        stream::LaggedData,
        epochs::EpochsBody,
        contracts::AddressesBody,
        ContractAddress,
        EpochItem,
        EpochStageEntry,
        EpochStage,
        EpochSummary,
        IndexBuild,
        IndexBuildState,
        crate::error::ErrorBody,
        crate::error::ErrorDetail,
    ))
)]
pub struct ApiDoc;

/// `/openapi.json`: public.
pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3 document", body = Object)))]
pub async fn openapi_json() -> Response {
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(ApiDoc::openapi())).into_response()
}
