//! `tidemark-indexer`: indexes EVM contract events into PostgreSQL (DESIGN §2, §4, §7).
//!
//! The indexer is the single writer of its instance schema. It persists its public config
//! and a status snapshot every second to `tidemark.metadata`, which is all the API needs:
//! the API never contacts the indexer. RPC URLs and other secrets never leave this
//! process: not into the database, the logs, errors or any response.

pub mod cli;
pub mod config;
pub mod epochs;
pub mod http;
pub mod indexes;
pub mod liveness;
pub mod pipeline;
pub mod progress;
pub mod reset;
pub mod retention;
pub mod rpc;
pub mod run;
pub mod sinks;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod webhooks;

/// How the process ends (exit codes, DESIGN §2) and SIGINT/SIGTERM handling.
pub use tidemark_service_kit::{Exit, cancel_on_signal};

/// Maps an error to how the process ends: 2 for an invalid config, 3 for a persisted
/// config it is incompatible with, 1 otherwise.
pub fn exit_for(err: &anyhow::Error) -> Exit {
    if err.downcast_ref::<config::ConfigError>().is_some() {
        Exit::InvalidConfig
    } else if err.downcast_ref::<tidemark_shared_types::Incompatibility>().is_some() {
        Exit::Incompatible
    } else {
        Exit::Runtime
    }
}
