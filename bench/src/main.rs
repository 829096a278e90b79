//! `tidemark-bench`: measures Tidemark against the physical limits of the machine it runs
//! on, in one run, as ratios.
//!
//! - `backfill`: the raw `eth_getLogs` rate and the raw PostgreSQL `COPY` rate of one
//!   dataset (`--dataset realistic`, the default, or `burst`), their serial bound, and
//!   Tidemark's full backfill of the same dataset;
//! - `api`: throughput and latency of `/status` and `/v1/events` against a bare axum
//!   handler on the same machine, at 1 M and 10 M stored events;
//! - `plans`: the query plan and cost of every accepted `/v1/events` filter shape on a
//!   large instance (`--rows`, default 10 M);
//! - `stream`: `/v1/stream`'s commit→client latency at 1, 100 and 1,000 clients under the
//!   traffic generator, against one plain `LISTEN` connection, and its catch-up rate;
//! - `sinks`: the NATS sink's entries/s against the raw JetStream publish-with-ack rate, and
//!   the webhook sink's at batch 500;
//! - `factory`: the backfill of a factory contract's 5,000 children against the same logs
//!   with the children's addresses listed statically;
//! - `webhook`: head→stored latency of new blocks with polling alone against polling plus
//!   provider webhook deliveries (the simulator in process).
//!
//! Each figure is the median of `--runs` runs (default 3), except `webhook`'s, which are
//! percentiles over its `--blocks` samples per mode.

mod api;
mod backfill;
mod chain;
mod factory;
mod layout;
mod plans;
mod procs;
mod report;
mod sinks;
mod stream;
mod upgrade;
mod webhook;

use clap::{Parser, Subcommand};

/// Benchmarks against the physical limits of this machine.
#[derive(Debug, Parser)]
#[command(name = "tidemark-bench", version, about)]
struct Cli {
    /// PostgreSQL server (databases are created and dropped on it).
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    database_url: String,
    /// Runs per measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Backfill throughput: raw fetch, raw write, Tidemark.
    Backfill(backfill::Args),
    /// API latency and throughput against a bare handler.
    Api(api::Args),
    /// Query plans of every accepted events filter shape at `--rows` events.
    Plans(plans::Args),
    /// `/v1/stream`: commit→client latency under live traffic at 1 to 1,000 clients, and
    /// catch-up from `after=0`.
    Stream(stream::Args),
    /// Sinks: the NATS sink against the raw JetStream publish-with-ack rate, and the
    /// webhook sink at batch 500.
    Sinks(sinks::Args),
    /// The in-place upgrade of an instance written by a previous build: its duration, and
    /// the same cursors and pages before and after.
    Upgrade(upgrade::Args),
    /// Head→stored latency p50/p99 of new blocks: `poll_interval_ms` polling alone against
    /// the same plus provider webhook deliveries.
    Webhook(webhook::Args),
    /// Factory contracts: the backfill of 5,000 children against the same logs with the
    /// children's addresses listed statically.
    Factory(factory::Args),
    /// Serves the bare handler of `api` (started by `api` as a process of its own, so
    /// that it is measured like the API: another process on the same cores).
    #[command(hide = true)]
    BareServer {
        /// Address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Backfill(args) => backfill::run(&cli.database_url, cli.runs, args).await,
            Command::Api(args) => api::run(&cli.database_url, cli.runs, args).await,
            Command::Plans(args) => plans::run(&cli.database_url, args).await,
            Command::Stream(args) => stream::run(&cli.database_url, cli.runs, args).await,
            Command::Upgrade(args) => upgrade::run(&cli.database_url, args).await,
            Command::Sinks(args) => sinks::run(&cli.database_url, cli.runs, args).await,
            Command::Webhook(args) => webhook::run(&cli.database_url, args).await,
            Command::Factory(args) => factory::run(&cli.database_url, cli.runs, args).await,
            Command::BareServer { listen } => api::serve_bare(listen).await,
        }
    })
}
