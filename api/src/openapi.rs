//! The OpenAPI document served at `/openapi.json`.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::routes::{epochs, events, health, meta, status};

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
        epochs::epochs,
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
        epochs::EpochsBody,
        EpochItemSchema,
        EpochStageEntrySchema,
        EpochStageSchema,
        EpochSummarySchema,
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
    /// Decoded arguments keyed by parameter name (DESIGN §3): integers as decimal
    /// strings, bytes and addresses as 0x hex, tuples and arrays as arrays, an indexed
    /// dynamic value as `{"topicHash": "0x…"}`, a string that is not valid UTF-8 or holds
    /// NUL as `{"hex": "0x…"}`. `null` when the log does not fit its ABI (see
    /// `decodeError`).
    #[schema(value_type = Option<Object>)]
    pub args: serde_json::Value,
    /// Why the log could not be decoded against its event's ABI (then `args` is `null`;
    /// the raw log is kept). Absent when the log decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_error: Option<String>,
    /// True when the block is at least `finalityDepth` behind the chain's latest known block.
    pub finalized: bool,
}

/// A processing stage of an epoch (the shape of `tidemark_shared_types::EpochStage`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = EpochStage)]
pub enum EpochStageSchema {
    /// The block range was chosen.
    Planned,
    /// Its logs were fetched.
    Fetched,
    /// Its logs were decoded.
    Decoded,
    /// Its events and checkpoint were committed.
    Stored,
    /// Its last block is at least `finalityDepth` behind the head.
    Finalized,
    /// It was rolled back by a reorg.
    Reorged,
}

/// One entry of an epoch's stage history (the shape of
/// `tidemark_shared_types::EpochStageEntry`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EpochStageEntry)]
pub struct EpochStageEntrySchema {
    /// The stage reached.
    pub stage: EpochStageSchema,
    /// When, in unix seconds with millisecond precision.
    pub at: f64,
}

/// One epoch: a committed batch of one chain (the shape of
/// `tidemark_shared_types::EpochItem`, for the document).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EpochItem)]
pub struct EpochItemSchema {
    /// Chain id.
    pub chain_id: u64,
    /// Epoch id, increasing per chain.
    pub epoch_id: u64,
    /// First block (inclusive).
    pub from_block: u64,
    /// Last block (inclusive).
    pub to_block: u64,
    /// The current stage.
    pub stage: EpochStageSchema,
    /// The stage history, oldest first.
    pub stages: Vec<EpochStageEntrySchema>,
    /// The last failure, as `<stage>: <message>`, or null.
    #[schema(required = true)]
    pub error: Option<String>,
}

/// The epochs of one chain at a glance (the shape of
/// `tidemark_shared_types::EpochSummary`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EpochSummary)]
pub struct EpochSummarySchema {
    /// The chain's epoch with the highest id, or null.
    #[schema(required = true)]
    pub latest: Option<EpochItemSchema>,
    /// How many of its epochs are neither finalized nor reorged.
    pub not_finalized: u64,
}
