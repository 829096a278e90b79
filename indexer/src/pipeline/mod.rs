//! One chain's pipeline: resolve the range, backfill in bulk up to the finalized part of
//! the chain, then follow the head block by block with parent-hash checks, repairing
//! reorgs ([`reorg`]).
//!
//! Ownership: the pipeline owns its RPC client and progress entry; commits go through the
//! instance's single [`Writer`](crate::store::Writer), shared behind a mutex. It stops at
//! the next safe point when the shutdown token fires: fetches are dropped, a commit in
//! flight completes.

mod backfill;
mod chain;
pub mod children;
pub mod decode;
mod factory;
pub mod fetch;
mod follow;
pub mod reorg;
mod sources;
mod start;

pub use chain::{ChainPipeline, PipelineError};
pub use start::TIP_MARGIN;
