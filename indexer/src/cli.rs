//! Command line: `tidemark-indexer [--config FILE]`, `check-config`, `reset --yes`, `sink …`.

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
    /// Inspect the sinks, or ask the running writer to change one.
    Sink {
        /// What to do.
        #[command(subcommand)]
        command: SinkCommand,
    },
}

/// `sink` subcommands: `list` reads; the others record a request the writer applies.
#[derive(Debug, Subcommand)]
pub enum SinkCommand {
    /// Name, kind, cursor, lag, state, last error and rebroadcast progress of every sink.
    List,
    /// Move a sink's cursor to N: it delivers again every entry after N.
    Replay {
        /// The sink.
        #[arg(long)]
        sink: String,
        /// The cursor to deliver after.
        #[arg(long)]
        from_cursor: u64,
    },
    /// Stop delivering until resumed.
    Pause {
        /// The sink.
        #[arg(long)]
        sink: String,
    },
    /// Deliver again after a pause.
    Resume {
        /// The sink.
        #[arg(long)]
        sink: String,
    },
    /// Start a rebroadcast run now.
    Rebroadcast {
        /// The sink.
        #[arg(long)]
        sink: String,
    },
    /// Delete a sink's rows (its cursor and rebroadcast job).
    Forget {
        /// The sink.
        #[arg(long)]
        sink: String,
    },
}
