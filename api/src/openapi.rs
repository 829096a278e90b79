//! The OpenAPI document served at `/openapi.json`.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::routes::{events, health, meta, status};

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
        meta::metrics,
        meta::openapi,
    ),
    components(schemas(
        health::LiveBody,
        health::HealthBody,
        status::StatusBody,
        status::RealtimeBody,
        events::EventsBody,
        EventItemSchema,
        crate::error::ErrorBody,
        crate::error::ErrorDetail,
    ))
)]
pub struct ApiDoc;

/// One indexed event (the shape of `tidemark_shared_types::EventItem`, for the document).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EventItem)]
pub struct EventItemSchema {
    /// Journal position (a decimal string; it may exceed 2^53).
    pub cursor: String,
    /// Chain id.
    pub chain_id: u64,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: String,
    /// Block timestamp (unix seconds).
    pub block_timestamp: u64,
    /// Transaction hash.
    pub transaction_hash: String,
    /// Index of the transaction in the block.
    pub transaction_index: u64,
    /// Index of the log in the block.
    pub log_index: u64,
    /// Emitting contract (lowercase).
    pub address: String,
    /// Contract name from the config.
    pub contract: String,
    /// Event name.
    pub event: String,
    /// Canonical full event signature.
    pub signature: String,
    /// Decoded arguments keyed by parameter name.
    #[schema(value_type = Object)]
    pub args: serde_json::Value,
    /// True when the block is at least `finalityDepth` behind the chain's latest known block.
    pub finalized: bool,
}
