//! `tidemark-indexer` binary: parse arguments, run, map the outcome to an exit code.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tidemark_indexer::cli::{Cli, Command, init_logging};
use tidemark_indexer::config::{ConfigError, IndexerConfig};
use tidemark_indexer::{cancel_on_signal, exit, exit_code, reset, run};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // Before any HTTP client is built: reqwest has no TLS provider of its own here.
    tidemark_db_client::tls::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(main_async(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            let code = exit_code(&e);
            tracing::error!(exit_code = code, "{e:#}");
            ExitCode::from(code)
        }
    }
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
        Command::Run => {
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            tracing::info!(namespace = %config.namespace, schema = %config.schema, chains = ?config.public().chain_ids(), "starting tidemark-indexer");
            run::run(config, shutdown).await
        }
    }
}
