//! `tidemark-indexer sink list|replay|pause|resume|rebroadcast|forget`. These commands
//! never write the writer's state: they record a request (`sink_requests`) that the
//! running writer applies within a second, and print when it was applied.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tidemark_db_client::PoolConfig;
use tidemark_db_client::writer::{
    PgPool, SinkAction, SinkRow, entries_after, request_sink_action, sink_request_outcome, sink_rows,
};
use tidemark_shared_types::Cursor;

use crate::config::{ConfigError, IndexerConfig};

/// How long a command waits for the writer to apply its request.
const WAIT: Duration = Duration::from_secs(10);

fn pool(config: &IndexerConfig) -> anyhow::Result<PgPool> {
    let mut pool_config = PoolConfig::new(config.database_url.clone());
    pool_config.application_name = "tidemark-indexer-sink".into();
    pool_config.max_size = 1;
    PgPool::new(pool_config).map_err(|e| ConfigError::new("database_url", e.to_string()).into())
}

/// The state `sink list` shows for a stored row.
fn state(row: &SinkRow, lag: u64) -> &'static str {
    if row.paused {
        "paused"
    } else if row.attempts > 0 {
        "retrying"
    } else if !row.job.finished {
        "rebroadcasting"
    } else if lag == 0 {
        "caught-up"
    } else {
        "delivering"
    }
}

/// Prints every sink's name, kind, cursor, lag, state, last error and rebroadcast.
pub async fn list(config: &IndexerConfig) -> anyhow::Result<()> {
    let pool = pool(config)?;
    let rows = sink_rows(&pool, &config.schema).await.context("reading the sinks")?;
    println!(
        "{:<24} {:<8} {:<9} {:>12} {:>9} {:<15} {:<22} LAST ERROR",
        "NAME", "KIND", "ACTIVE", "CURSOR", "LAG", "STATE", "REBROADCAST"
    );
    let configured = |name: &str| config.sinks.iter().any(|s| s.name == name);
    for row in &rows {
        let lag = entries_after(&pool, &config.schema, row.cursor, super::lag_cap())
            .await
            .context("counting the lag")?;
        let rebroadcast = match (&row.job, row.job.finished) {
            (j, false) => format!("run {} at {}", j.run, j.next_cursor),
            (j, true) if j.run > 0 => format!("run {} done", j.run),
            _ => "-".to_owned(),
        };
        println!(
            "{:<24} {:<8} {:<9} {:>12} {:>9} {:<15} {:<22} {}",
            row.name,
            row.kind,
            if configured(&row.name) { "yes" } else { "inactive" },
            row.cursor.to_string(),
            lag,
            state(row, lag),
            rebroadcast,
            row.last_error.as_deref().unwrap_or("-"),
        );
    }
    for s in config.sinks.iter().filter(|s| !rows.iter().any(|r| r.name == s.name)) {
        println!(
            "{:<24} {:<8} {:<9} {:>12} {:>9} {:<15} {:<22} -",
            s.name,
            s.kind(),
            "yes",
            "-",
            "-",
            "not started",
            "-"
        );
    }
    Ok(())
}

/// Records `action` for `sink` and waits (up to 10 s) for the writer to apply it.
pub async fn request(
    config: &IndexerConfig,
    sink: &str,
    action: SinkAction,
    from: Option<Cursor>,
) -> anyhow::Result<()> {
    let pool = pool(config)?;
    let rows = sink_rows(&pool, &config.schema).await.context("reading the sinks")?;
    if !rows.iter().any(|r| r.name == sink) {
        return Err(
            ConfigError::new_flag(&format!("no sink named {sink:?} in instance {}", config.schema)).into()
        );
    }
    let id = request_sink_action(&pool, &config.schema, sink, action, from)
        .await
        .context("recording the request")?;
    println!("request {id} recorded: {} {sink}", action.as_str());
    let started = Instant::now();
    while started.elapsed() < WAIT {
        if let Some(done) =
            sink_request_outcome(&pool, &config.schema, id).await.context("reading the request")?
        {
            println!("applied by the writer ({}): {}", format_time(done.applied_at), done.outcome);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "not applied yet: it waits for a writer (an indexer running on schema {}), which applies it when it starts",
        config.schema
    );
    Ok(())
}

fn format_time(unix: f64) -> String {
    format!("at unix time {unix:.3}")
}
