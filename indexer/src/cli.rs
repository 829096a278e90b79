//! Command line: `tidemark-indexer [--config FILE]`, `check-config`, `reset --yes`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Targets capped at `info` whatever `RUST_LOG` says: their debug and trace output carries
/// the full RPC URL or its host, key included (alloy's `ReqwestTransport{url=…}`, reqwest's
/// and hyper's connection logs), and RPC URLs are private.
const URL_LOGGING_TARGETS: [&str; 5] =
    ["alloy_transport_http=info", "reqwest=info", "hyper=info", "hyper_util=info", "h2=info"];

/// Installs the tracing subscriber (`RUST_LOG` filters; default `info`).
pub fn init_logging(format: LogFormat) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for directive in URL_LOGGING_TARGETS {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        // Colours only on a terminal: log files and collectors get plain text.
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
