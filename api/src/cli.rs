//! Command-line flags and environment variables (flags override the environment).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
pub use tidemark_service_kit::LogFormat;

use clap::{CommandFactory, FromArgMatches, Parser};
use tidemark_db_client::DbClientConfig;

use crate::settings::HttpSettings;

/// Tidemark API: serves an instance's status, config and events from PostgreSQL.
#[derive(Debug, Clone, Parser)]
#[command(name = "tidemark-api", version, about)]
pub struct Cli {
    /// PostgreSQL URL (never logged). Prefer `DATABASE_URL` or `--database-url-file`: a
    /// command line is visible to every user of the host.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, required_unless_present = "database_url_file")]
    pub database_url: Option<String>,

    /// A file holding the PostgreSQL URL (a trailing newline is ignored); instead of
    /// `--database-url`.
    #[arg(long, env = "DATABASE_URL_FILE", conflicts_with = "database_url")]
    pub database_url_file: Option<PathBuf>,

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

    /// How long a client may take to send a request's headers (from the connection's
    /// opening or the end of its previous response), in milliseconds.
    #[arg(long, env = "TIDEMARK_API_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,

    /// How long a connection may make no progress while none of its requests is being
    /// handled (e.g. a client that stops reading), in milliseconds.
    #[arg(long, env = "TIDEMARK_API_IDLE_TIMEOUT_MS", default_value_t = 30_000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: u64,

    /// How long a request may run before it is answered 503 `request_timeout`, in
    /// milliseconds (not `/live`, `/health`).
    #[arg(long, env = "TIDEMARK_API_REQUEST_TIMEOUT_MS", default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,

    /// Requests handled at once (not `/live`, `/health`); more are answered 503
    /// `overloaded` with `Retry-After` at once.
    #[arg(long, env = "TIDEMARK_API_MAX_CONCURRENT_REQUESTS", default_value_t = 256,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_concurrent_requests: u64,

    /// Open connections; beyond this, new ones wait in the kernel's backlog.
    #[arg(long, env = "TIDEMARK_API_MAX_CONNECTIONS", default_value_t = 4096,
        value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_connections: u64,

    /// Concurrent `/v1/stream` clients; beyond this, 503 `too_many_streams`.
    #[arg(long, env = "TIDEMARK_STREAM_MAX_CLIENTS", default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub stream_max_clients: u64,

    /// Journal entries a stream client may fall behind the live tail before it is sent
    /// `lagged` and catches up from the database.
    #[arg(long, env = "TIDEMARK_STREAM_QUEUE", default_value_t = 1024,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub stream_queue: u64,

    /// Largest `/v1/events` body in bytes: a page stops before the event that would
    /// exceed it (it always holds one event) and `nextCursor` continues from there.
    #[arg(long, env = "TIDEMARK_API_MAX_RESPONSE_BYTES", default_value_t = 8 << 20,
        value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_response_bytes: u64,

    /// Origins allowed to read the public routes from a browser, comma-separated (`*`:
    /// any; empty: CORS off). `/metrics` is never offered.
    #[arg(long, env = "TIDEMARK_API_CORS_ORIGINS", default_value = "*", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Whether `--database-url` was given on the command line (set by [`Cli::parse_args`]).
    #[arg(skip)]
    pub database_url_on_command_line: bool,
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The file named by `--database-url-file` cannot be read.
    #[error("cannot read the database URL file {path}: {source}")]
    UrlFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file named by `--database-url-file` holds no URL.
    #[error("the database URL file {0} is empty")]
    EmptyUrlFile(PathBuf),
}

impl Cli {
    /// Parses the process's arguments and environment, noting where the database URL
    /// came from.
    pub fn parse_args() -> Result<Self, clap::Error> {
        Self::parse_from_matches(Self::command().try_get_matches()?)
    }

    /// Parses `args` (the first is the program name) and the environment.
    pub fn parse_args_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::parse_from_matches(Self::command().try_get_matches_from(args)?)
    }

    fn parse_from_matches(matches: clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut cli = Self::from_arg_matches(&matches)?;
        cli.database_url_on_command_line =
            matches.value_source("database_url") == Some(clap::parser::ValueSource::CommandLine);
        Ok(cli)
    }

    /// The database URL: `--database-url`, else the content of `--database-url-file`
    /// without its trailing newline.
    pub fn database_url(&self) -> Result<String, CliError> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        let Some(path) = &self.database_url_file else { return Ok(String::new()) };
        let text = std::fs::read_to_string(path)
            .map_err(|source| CliError::UrlFile { path: path.clone(), source })?;
        let url = text.trim_end_matches(['\n', '\r']);
        if url.trim().is_empty() {
            return Err(CliError::EmptyUrlFile(path.clone()));
        }
        Ok(url.to_owned())
    }

    /// The HTTP limits, response cap and CORS these flags describe.
    pub fn http_settings(&self) -> HttpSettings {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        HttpSettings {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_concurrent_requests: size(self.max_concurrent_requests),
            max_connections: size(self.max_connections),
            max_response_bytes: size(self.max_response_bytes),
            stream_max_clients: size(self.stream_max_clients),
            stream_queue: size(self.stream_queue),
            cors_origins: self
                .cors_origins
                .iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    /// The db-client settings these flags describe, for the database URL `url`
    /// ([`Cli::database_url`]).
    pub fn db_client_config(&self, url: String) -> DbClientConfig {
        let mut config = DbClientConfig::new(url, self.schema.clone());
        config.config_refresh = Duration::from_millis(self.config_refresh_ms);
        config.pool.statement_timeout = Duration::from_millis(self.statement_timeout_ms);
        config.pool.max_size = usize::try_from(self.db_pool_size).unwrap_or(config.pool.max_size);
        config.pool.application_name = "tidemark-api".into();
        config
    }
}
