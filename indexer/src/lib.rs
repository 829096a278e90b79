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
pub mod pipeline;
pub mod progress;
pub mod reorg;
pub mod reset;
pub mod rpc;
pub mod run;
pub mod status;
pub mod store;

/// Process exit codes (DESIGN §2).
pub mod exit {
    /// Clean shutdown.
    pub const OK: u8 = 0;
    /// Runtime failure.
    pub const FAILURE: u8 = 1;
    /// Invalid configuration or arguments.
    pub const INVALID_CONFIG: u8 = 2;
    /// Incompatible with the persisted config.
    pub const INCOMPATIBLE: u8 = 3;
}

/// Maps an error to its exit code.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<config::ConfigError>().is_some() {
        exit::INVALID_CONFIG
    } else if err.downcast_ref::<tidemark_shared_types::Incompatibility>().is_some() {
        exit::INCOMPATIBLE
    } else {
        exit::FAILURE
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: tokio_util::sync::CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
        _ = token.cancelled() => return,
    }
    tracing::info!(target: "tidemark::run", "shutdown signal received");
    token.cancel();
}
