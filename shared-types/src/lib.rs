//! The Tidemark vocabulary: the public configuration and its compatibility rules, the
//! indexing-status model and its derivation, the realtime projection, event items and
//! cursors, epochs (per-batch processing stages), sinks' delivery state and webhook ingestion.
//!
//! This crate does no I/O. Everything here is plain data plus pure functions, shared by
//! the indexer (the single writer), the db-client (readers) and the API, so that every
//! part agrees on one JSON contract (`DESIGN.md` §2–§4).

pub mod bodies;
pub mod child;
pub mod compat;
pub mod config;
pub mod epoch;
pub mod event;
pub mod projection;
pub mod schema;
pub mod signature;
pub mod sink;
pub mod source;
pub mod status;
pub mod webhook;

pub use bodies::{ErrorBody, ErrorDetail, HealthBody, StatusBody};
pub use child::ContractAddress;
pub use compat::{AddedSource, FieldDiff, Incompatibility, added_sources, check_compatible};
pub use config::{FactorySpec, PublicChainConfig, PublicConfig, PublicContractConfig, VersionInfo};
pub use epoch::{EpochItem, EpochStage, EpochStageEntry, EpochSummary};
pub use event::{Cursor, EventItem, InvalidCursor, JournalEntry, JournalKind, RemovedItem};
pub use projection::RealtimeProjection;
pub use schema::{InvalidSchemaName, SchemaName};
pub use signature::{SignatureError, canonical_event};
pub use sink::{SinkRebroadcast, SinkState, SinkStatus};
pub use source::SourceBackfill;
pub use status::{
    BlockRef, ChainIndexingConfig, ChainProgress, ChainSnapshot, IndexBuild, IndexBuildState, IndexingStatus,
    OmnichainSnapshot, OmnichainStatus, Stalled, StatusError,
};
pub use webhook::{Latency, WebhookStatus};
