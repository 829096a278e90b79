//! Command line: `tidemark-indexer [--config FILE]`, `check-config`, `reset --yes`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
pub use tidemark_service_kit::LogFormat;

/// Indexes EVM contract events into PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "tidemark-indexer", version, about)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, env = "TIDEMARK_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "TIDEMARK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the indexer (the default).
    Run,
    /// Validate the configuration and print the public config as JSON.
    CheckConfig,
    /// Drop the instance schema and its metadata rows, for a deliberate reindex.
    Reset {
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}
