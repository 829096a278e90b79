//! `backfill`: the raw fetch rate, the raw write rate, their serial bound, and Tidemark's
//! full backfill of the same dataset, with the indexer's peak RSS.

use std::path::Path;
use std::time::{Duration, Instant};

use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{Filter, Log};
use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use tidemark_db_client::PoolConfig;
use tidemark_db_client::test_utils::fixtures::{copy_events, create_instance};
use tidemark_db_client::writer::{Batch, EventRow, PgPool, Writer};
use tidemark_indexer::config::IndexerConfig;
use tidemark_indexer::pipeline::decode::Decoder;
use tidemark_shared_types::{BlockRef, SchemaName};

use crate::chain::{self, Dataset};
use crate::procs::{self, BenchDb};
use crate::report::{Rate, median, mib};

/// Dataset and indexer settings.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Events in the dataset.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Events per transaction.
    #[arg(long, default_value_t = 100)]
    events_per_tx: u64,
    /// Transactions per block.
    #[arg(long, default_value_t = 10)]
    txs_per_block: u64,
    /// `max_block_range`, for the raw fetch and the indexer alike.
    #[arg(long, default_value_t = 25)]
    max_block_range: u64,
    /// `max_concurrency`, for the raw fetch and the indexer alike.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Extra `[[chains]]` config lines for the Tidemark run (e.g. to compare settings).
    #[arg(long)]
    indexer_extra: Option<String>,
    /// Record epochs (`record_epochs`); `--record-epochs false` measures their cost.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    record_epochs: bool,
}

pub(crate) async fn run(server: &str, runs: usize, args: Args) -> anyhow::Result<()> {
    let per_block = args.events_per_tx * args.txs_per_block;
    let blocks = args.events.div_ceil(per_block).max(1);
    let (_anvil, rpc_url) = procs::anvil(&["--no-mining", "--gas-limit", "1000000000"]).await?;
    let data = chain::generate(&rpc_url, blocks, args.txs_per_block, args.events_per_tx).await?;
    let indexer = procs::release_binary("tidemark-indexer")?;

    let mut fetch = Vec::new();
    let mut logs = Vec::new();
    for i in 0..runs {
        let started = Instant::now();
        logs = fetch_all(&rpc_url, &data, args.max_block_range, args.concurrency).await?;
        fetch.push(Rate::new(logs.len() as u64, blocks, started.elapsed()));
        eprintln!("raw fetch run {}: {}", i + 1, fetch[i]);
    }
    if logs.len() as u64 != data.events {
        bail!("eth_getLogs returned {} logs, expected {}", logs.len(), data.events);
    }
    let config_text = config_toml(&data, &rpc_url, "postgres://unused", "tidemark_bench", &args);
    let config = IndexerConfig::parse(&config_text, Path::new("."), &|_| None)?;
    let decoder = Decoder::new(&config.chains[0]);
    // Decoding is work the indexer does on top of fetching and writing (not in the bound):
    // timed here on one core, for reading the gap between Tidemark and the bound.
    let started = Instant::now();
    let rows: Vec<EventRow> = logs
        .iter()
        .filter_map(|l| decoder.decode(l, l.block_timestamp.unwrap_or(0)).ok().flatten())
        .collect();
    let decode = Rate::new(rows.len() as u64, blocks, started.elapsed());
    eprintln!("decode (one core): {decode}");
    drop(logs);

    let mut write = Vec::new();
    let mut commits = Vec::new();
    let mut full = Vec::new();
    let mut peaks = Vec::new();
    for i in 0..runs {
        let db = BenchDb::create(server, "backfill").await?;
        let started = Instant::now();
        copy_rows(&db.url, &rows).await?;
        write.push(Rate::new(rows.len() as u64, blocks, started.elapsed()));
        eprintln!("raw COPY run {}: {}", i + 1, write[i]);
        let started = Instant::now();
        writer_rows(&db.url, &rows).await?;
        commits.push(Rate::new(rows.len() as u64, blocks, started.elapsed()));
        eprintln!("writer commits run {}: {}", i + 1, commits[i]);

        let schema = "tidemark_bench";
        let text = config_toml(&data, &rpc_url, &db.url, schema, &args);
        let (elapsed, peak, samples) = tidemark_backfill(&indexer, &text, &db.url, schema, &data).await?;
        full.push(Rate::new(data.events, blocks, elapsed));
        peaks.push(peak);
        eprintln!("tidemark run {}: {} (peak RSS {}; RSS samples {})", i + 1, full[i], mib(peak), samples);
        db.drop_now().await?;
    }

    let fetch = median(fetch);
    let write = median(write);
    let commits = median(commits);
    let full = median(full);
    let bound = Rate::serial_bound(&fetch, &write);
    println!(
        "\n## backfill: {} events, {blocks} blocks, max_block_range {}, concurrency {}, record_epochs {}, median of {runs}",
        data.events, args.max_block_range, args.concurrency, args.record_epochs
    );
    println!("| measurement | events/s | blocks/s | seconds |");
    println!("|---|---:|---:|---:|");
    for (name, r) in [
        ("raw eth_getLogs", &fetch),
        ("raw PostgreSQL COPY", &write),
        ("serial bound 1/(1/fetch+1/write)", &bound),
        ("Tidemark backfill", &full),
        ("(for reference: ABI decoding on one core, not in the bound)", &decode),
        ("(for reference: the indexer's own commits of the same rows, no fetch)", &commits),
    ] {
        println!(
            "| {name} | {:.0} | {:.1} | {:.2} |",
            r.events_per_s(),
            r.blocks_per_s(),
            r.elapsed.as_secs_f64()
        );
    }
    println!("\nTidemark / serial bound: {:.0} %", 100.0 * full.events_per_s() / bound.events_per_s());
    peaks.sort_unstable();
    println!("indexer peak RSS (median): {}", mib(peaks[peaks.len() / 2]));
    Ok(())
}

fn config_toml(data: &Dataset, rpc: &str, db: &str, schema: &str, args: &Args) -> String {
    format!(
        r#"namespace = "bench"
schema = "{schema}"
database_url = "{db}"
record_epochs = {epochs}
[http]
listen = "127.0.0.1:{port}"
[[chains]]
chain_id = 31337
rpc_url = "{rpc}"
finality_depth = 0
poll_interval_ms = 100
max_block_range = {range}
max_concurrency = {conc}
{extra}
[[chains.contracts]]
name = "Registry"
addresses = ["{registry:#x}"]
start_block = {first}
events = ["event Burst(uint256 indexed seq, uint256 value)"]
"#,
        port = procs::free_port().unwrap_or(14999),
        range = args.max_block_range,
        conc = args.concurrency,
        extra = args.indexer_extra.as_deref().unwrap_or(""),
        epochs = args.record_epochs,
        registry = data.registry,
        first = data.first_block,
    )
}

/// `eth_getLogs` over the dataset with the indexer's ranges and concurrency.
async fn fetch_all(url: &str, data: &Dataset, range: u64, concurrency: usize) -> anyhow::Result<Vec<Log>> {
    tidemark_db_client::tls::install_crypto_provider();
    let provider: RootProvider = RootProvider::new_http(url.parse()?);
    let ranges: Vec<(u64, u64)> = (data.first_block..=data.last_block)
        .step_by(range as usize)
        .map(|a| (a, (a + range - 1).min(data.last_block)))
        .collect();
    let chunks: Vec<Vec<Log>> = futures::stream::iter(ranges)
        .map(|(a, b)| {
            let p = provider.clone();
            let f = Filter::new().address(data.registry).from_block(a).to_block(b);
            async move { p.get_logs(&f).await }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    Ok(chunks.into_iter().flatten().collect())
}

/// Binary `COPY` of the decoded rows into a fresh instance table (same layout and indexes).
async fn copy_rows(url: &str, rows: &[EventRow]) -> anyhow::Result<()> {
    let pool = PgPool::new(PoolConfig::new(url.to_owned()))?;
    let schema = SchemaName::new("bench_raw")?;
    create_instance(&pool, &schema).await?;
    let (client, conn) =
        tidemark_db_client::tls::PgConnector::new(url)?.connect().await.context("tokio-postgres")?;
    let task = tokio::spawn(conn);
    copy_events(&client, &schema, 31337, rows).await?;
    drop(client);
    let _ = task.await;
    Ok(())
}

/// The same rows committed through the indexer's writer (cursors, `COPY` and checkpoint
/// per batch of the indexer's largest range), without fetching or decoding: the indexer's
/// write path against the raw COPY.
async fn writer_rows(url: &str, rows: &[EventRow]) -> anyhow::Result<()> {
    let pool = PgPool::new(PoolConfig::new(url.to_owned()))?;
    let schema = SchemaName::new("bench_writer")?;
    create_instance(&pool, &schema).await?;
    let mut writer = Writer::try_acquire(&pool, &schema).await?.context("the writer lock is free")?;
    for chunk in rows.chunks(10_000) {
        let last = chunk.last().context("a chunk has rows")?;
        let checkpoint = BlockRef {
            number: last.block_number,
            timestamp: last.block_timestamp,
            hash: last.block_hash.clone(),
        };
        writer.commit(Batch::new(31337, chunk, &checkpoint)).await?;
    }
    Ok(())
}

/// Runs the release indexer until its checkpoint reaches the last block; returns the
/// elapsed time, the peak RSS and a summary of RSS samples over the run.
async fn tidemark_backfill(
    bin: &std::path::PathBuf,
    config: &str,
    db_url: &str,
    schema: &str,
    data: &Dataset,
) -> anyhow::Result<(Duration, u64, String)> {
    let dir = std::env::temp_dir().join(format!("tidemark-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("tidemark.toml");
    std::fs::write(&path, config)?;
    let path_s = path.to_string_lossy().to_string();
    let started = Instant::now();
    let proc = procs::spawn(
        "indexer",
        bin,
        &["--config", &path_s],
        &[("RUST_LOG", "warn".into())],
        &dir.join("indexer.log"),
    )?;
    let (client, conn) = tidemark_db_client::tls::PgConnector::new(db_url)?.connect().await?;
    let task = tokio::spawn(conn);
    let mut samples = Vec::new();
    let query = format!("SELECT block_number FROM {schema}.checkpoints WHERE chain_id = 31337");
    loop {
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the indexer did not finish within 30 minutes (see {})", dir.join("indexer.log").display());
        }
        if let Some(rss) = proc.rss() {
            samples.push(rss);
        }
        let done = match client.query_opt(&query, &[]).await {
            Ok(Some(row)) => row.get::<_, i64>(0) as u64 >= data.last_block,
            _ => false,
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let peak = proc.peak_rss().unwrap_or(0);
    proc.stop();
    drop(client);
    let _ = task.await;
    let q = |f: f64| samples.get(((samples.len() as f64 - 1.0) * f) as usize).map_or("-".into(), |v| mib(*v));
    let summary = format!("25%: {}, 50%: {}, 75%: {}, end: {}", q(0.25), q(0.5), q(0.75), q(1.0));
    Ok((elapsed, peak, summary))
}
