//! Command-line flags and environment variables (flags override the environment).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tidemark_db_client::DbClientConfig;

/// Tidemark API: serves an instance's status, config and events from PostgreSQL.
#[derive(Debug, Clone, Parser)]
#[command(name = "tidemark-api", version, about)]
pub struct Cli {
    /// PostgreSQL URL (never logged).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// The instance schema to serve, e.g. `tidemark_demo`.
    #[arg(long, env = "TIDEMARK_SCHEMA")]
    pub schema: String,

    /// Address to listen on.
    #[arg(long, env = "TIDEMARK_API_LISTEN", default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,

    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, env = "TIDEMARK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How often the stored public config is re-read, in milliseconds (an incompatible
    /// change stops the process with exit code 3).
    #[arg(long, env = "TIDEMARK_CONFIG_REFRESH_MS", default_value_t = 60_000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub config_refresh_ms: u64,

    /// `statement_timeout` of every query, in milliseconds.
    #[arg(long, env = "TIDEMARK_STATEMENT_TIMEOUT_MS", default_value_t = 5_000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub statement_timeout_ms: u64,

    /// Largest number of open database connections for requests (the default is twice
    /// this host's cores, 4 to 16; the caches' refreshes use one more).
    #[arg(long, env = "TIDEMARK_DB_POOL_SIZE",
        default_value_t = u64::try_from(tidemark_db_client::default_max_size()).unwrap_or(16),
        value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub db_pool_size: u64,
}

/// How logs are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Cli {
    /// The db-client settings these flags describe.
    pub fn db_client_config(&self) -> DbClientConfig {
        let mut config = DbClientConfig::new(self.database_url.clone(), self.schema.clone());
        config.config_refresh = Duration::from_millis(self.config_refresh_ms);
        config.pool.statement_timeout = Duration::from_millis(self.statement_timeout_ms);
        config.pool.max_size = usize::try_from(self.db_pool_size).unwrap_or(config.pool.max_size);
        config.pool.application_name = "tidemark-api".into();
        config
    }
}
