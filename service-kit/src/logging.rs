//! Logging: human-readable by default, one JSON object per line with `--log-format json`;
//! to standard error, filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log output format (`--log-format`, `TIDEMARK_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Targets capped at `info` whatever `RUST_LOG` says: their debug and trace output carries
/// full URLs or hosts, keys included (alloy's `ReqwestTransport{url=…}`, reqwest's and
/// hyper's connection logs, async-nats's server addresses), and RPC, database and sink
/// URLs are private.
pub const URL_LOGGING_TARGETS: [&str; 6] = [
    "alloy_transport_http=info",
    "reqwest=info",
    "hyper=info",
    "hyper_util=info",
    "h2=info",
    "async_nats=info",
];

/// The filter: `RUST_LOG` (default `info`) with [`URL_LOGGING_TARGETS`] capped.
pub fn filter() -> EnvFilter {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for directive in URL_LOGGING_TARGETS {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

/// Installs the global subscriber (once; later calls do nothing). Text is coloured only
/// when standard error is a terminal: log files and collectors get plain text.
pub fn init_logging(format: LogFormat) {
    let builder = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
