//! `tidemark-indexer` binary: parse arguments, run, map the outcome to an exit code.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tidemark_indexer::cli::{Cli, Command, SinkCommand};
use tidemark_indexer::config::{ConfigError, IndexerConfig};
use tidemark_indexer::sinks::cli as sink_cli;
use tidemark_indexer::{cancel_on_signal, exit_for, reset, run};
use tidemark_service_kit::init_logging;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // Before any HTTP client is built: reqwest has no TLS provider of its own here.
    tidemark_db_client::tls::install_crypto_provider();
    tidemark_service_kit::block_on(None, main_async(cli), exit_for)
}

async fn main_async(cli: Cli) -> anyhow::Result<()> {
    let path = cli.config.ok_or_else(ConfigError::new_missing).context("no configuration file")?;
    let config = IndexerConfig::load(&path)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            println!("{}", serde_json::to_string_pretty(&config.public())?);
            Ok(())
        }
        Command::Reset { yes } => {
            if !yes {
                return Err(
                    ConfigError::new_flag("reset drops every indexed event: pass --yes to confirm").into()
                );
            }
            reset::reset(&config).await
        }
        Command::Sink { command } => {
            use tidemark_db_client::writer::SinkAction;
            use tidemark_shared_types::Cursor;
            match command {
                SinkCommand::List => sink_cli::list(&config).await,
                SinkCommand::Replay { sink, from_cursor } => {
                    let from = i64::try_from(from_cursor)
                        .map_err(|_| ConfigError::new_flag("--from-cursor is beyond the largest cursor"))?;
                    sink_cli::request(&config, &sink, SinkAction::Replay, Some(Cursor(from))).await
                }
                SinkCommand::Pause { sink } => {
                    sink_cli::request(&config, &sink, SinkAction::Pause, None).await
                }
                SinkCommand::Resume { sink } => {
                    sink_cli::request(&config, &sink, SinkAction::Resume, None).await
                }
                SinkCommand::Rebroadcast { sink } => {
                    sink_cli::request(&config, &sink, SinkAction::Rebroadcast, None).await
                }
                SinkCommand::Forget { sink } => {
                    sink_cli::request(&config, &sink, SinkAction::Forget, None).await
                }
            }
        }
        Command::Run => {
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            tracing::info!(namespace = %config.namespace, schema = %config.schema, chains = ?config.public().chain_ids(), "starting tidemark-indexer");
            run::run(config, shutdown).await
        }
    }
}
