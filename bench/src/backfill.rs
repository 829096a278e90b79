//! `backfill`: the raw fetch rate, the raw write rate, their serial bound, and Tidemark's
//! full backfill of the same dataset, with the indexer's peak RSS and the bytes each event
//! takes in its table.
//!
//! The raw write rate is a binary `COPY` of the decoded rows into a copy of the table the
//! indexer writes, with the indexes it maintains *during its backfill*: both read from the
//! catalog while the release indexer backfills the same dataset in the same run
//! ([`crate::layout`]), so that the bound follows the indexer's storage layout.

use std::path::Path;
use std::time::{Duration, Instant};

use alloy::rpc::types::{Filter, Log};
use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use tidemark_db_client::PoolConfig;
use tidemark_db_client::test_utils::fixtures::{copy_events, create_instance};
use tidemark_db_client::writer::{Batch, EventRow, PgPool, Writer};
use tidemark_indexer::config::IndexerConfig;
use tidemark_indexer::pipeline::decode::Decoder;
use tidemark_indexer::pipeline::fetch::base_filter;
use tidemark_shared_types::{BlockRef, SchemaName};
use tokio_postgres::Client;

use crate::chain::{self, Dataset, Kind};
use crate::layout::{self, Layout, Sizes};
use crate::procs::{self, BenchDb};
use crate::report::{Rate, median, mib};

/// The instance schema of the Tidemark run.
pub(crate) const SCHEMA: &str = "tidemark_bench";

/// Dataset and indexer settings.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The dataset: `realistic` (ERC-20 and ERC-721 transfers and events with dynamic types
    /// from several contracts, blocks and transactions of varying size) or `burst` (one
    /// event of one contract, fixed counts per transaction and per block).
    #[arg(long, value_enum, default_value_t = Kind::Realistic)]
    dataset: Kind,
    /// Events in the dataset.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Seed of the `realistic` dataset's generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Events per transaction (`burst`).
    #[arg(long, default_value_t = 100)]
    events_per_tx: u64,
    /// Transactions per block (`burst`).
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
    /// Also measure the raw `COPY` into the indexer's table with its primary key and
    /// unique constraints only, then build each of its other indexes (`CREATE INDEX`, one
    /// at a time, each timed), against the `COPY` with all its indexes.
    #[arg(long)]
    index_study: bool,
    /// Run this `tidemark-indexer` binary instead of the one built beside the bench (e.g.
    /// an earlier commit's release build, to compare builds under the same harness).
    #[arg(long)]
    indexer_bin: Option<std::path::PathBuf>,
    /// Run the indexer only: its events/s, peak RSS and bytes per event, without the raw
    /// `COPY` and the writer's commits (for a build whose table layout is not this one's,
    /// e.g. 0100537 with `--indexer-bin`).
    #[arg(long)]
    indexer_only: bool,
    /// Declare the `realistic` dataset's tuple parameter as `tuple(address, uint128, bool,
    /// string)`, a form that the signature parser of earlier builds (0100537) reads; the
    /// same event.
    #[arg(long)]
    tuple_keyword: bool,
}

/// What one run measured.
struct RunResult {
    write: Rate,
    commits: Rate,
    full: Rate,
    peak: u64,
    study: Option<Study>,
}

/// The raw `COPY` with the primary key and unique constraints only, the builds of the
/// other indexes, and (when the indexer's layout after its backfill differs from the one
/// during it) the raw `COPY` with all of them.
struct Study {
    constraints_only: Rate,
    builds: Vec<(String, Duration)>,
    all: Option<Rate>,
}

impl Args {
    /// The dataset's name.
    pub(crate) fn name(&self) -> &'static str {
        self.dataset.name()
    }
}

/// Makes the dataset of `args` on the chain at `rpc_url` (an anvil that does not mine by
/// itself).
pub(crate) async fn generate(rpc_url: &str, args: &Args) -> anyhow::Result<Dataset> {
    match args.dataset {
        Kind::Realistic => {
            let mut data = chain::realistic(rpc_url, args.events, args.seed).await?;
            if args.tuple_keyword {
                data.contracts_toml = data.contracts_toml.replace(
                    "(address taker, uint128 price, bool filled, string note) terms",
                    "tuple(address, uint128, bool, string) terms",
                );
            }
            Ok(data)
        }
        Kind::Burst => {
            let per_block = args.events_per_tx * args.txs_per_block;
            let blocks = args.events.div_ceil(per_block).max(1);
            chain::burst(rpc_url, blocks, args.txs_per_block, args.events_per_tx).await
        }
    }
}

pub(crate) async fn run(server: &str, runs: usize, args: Args) -> anyhow::Result<()> {
    let load_before = procs::load_average();
    let (_anvil, rpc_url) = procs::anvil(&["--no-mining", "--gas-limit", "1000000000"]).await?;
    let data = generate(&rpc_url, &args).await?;
    let blocks = data.blocks();
    let indexer = match &args.indexer_bin {
        Some(path) => path.clone(),
        None => procs::release_binary("tidemark-indexer")?,
    };
    let config_text = config_toml(&data, &rpc_url, "postgres://unused", SCHEMA, &args);
    let config = IndexerConfig::parse(&config_text, Path::new("."), &|_| None)?;
    let filter = base_filter(&config.chains[0]);

    let mut fetch = Vec::new();
    let mut logs = Vec::new();
    for i in 0..runs {
        let started = Instant::now();
        logs = fetch_all(&rpc_url, &filter, &data, args.max_block_range, args.concurrency).await?;
        fetch.push(Rate::new(logs.len() as u64, blocks, started.elapsed()));
        eprintln!("raw fetch run {}: {}", i + 1, fetch[i]);
    }
    if logs.len() as u64 != data.events {
        bail!("eth_getLogs returned {} logs, expected {}", logs.len(), data.events);
    }
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
    if rows.len() as u64 != data.events {
        bail!("{} of {} logs decoded into rows", rows.len(), data.events);
    }
    if let Some(r) = rows.iter().find(|r| r.decode_error.is_some()) {
        bail!("a {} log of {} does not decode: {:?}", r.event, r.contract, r.decode_error);
    }

    if args.indexer_only {
        return indexer_only(server, runs, &args, &indexer, &rpc_url, &data).await;
    }
    let mut results = Vec::new();
    let mut layouts = None;
    let mut sizes = None;
    for i in 0..runs {
        let db = BenchDb::create(server, "backfill").await?;
        let (admin, admin_task) = connect(&db.url).await?;

        checkpoint(&admin).await;
        let text = config_toml(&data, &rpc_url, &db.url, SCHEMA, &args);
        let (elapsed, peak, samples, during) = tidemark_backfill(&indexer, &text, &db.url, &data).await?;
        let full = Rate::new(data.events, blocks, elapsed);
        eprintln!("tidemark run {}: {} (peak RSS {}; RSS samples {})", i + 1, full, mib(peak), samples);
        let after = layout::capture(&admin, SCHEMA).await?.context("the indexer created no table")?;
        let during = match during {
            Some(l) => l,
            None => {
                eprintln!("the backfill ended before its layout was read; using the layout after it");
                after.clone()
            }
        };
        if sizes.is_none() {
            sizes = Some(layout::sizes(&admin, &after).await?);
        }

        // Empty copies of the indexer's table, made while it exists; then it goes, so that
        // its data is neither flushed nor vacuumed during the measurements.
        let bound_table = during.create_copy(&admin, "bench_raw").await?;
        let study_tables = if args.index_study {
            let constraints = after.constraints_only();
            let pk_table = constraints.create_copy(&admin, "bench_constraints").await?;
            let all_table =
                if after.missing_from(&during).is_empty() && during.missing_from(&after).is_empty() {
                    None
                } else {
                    Some(after.create_copy(&admin, "bench_all").await?)
                };
            Some((pk_table, after.missing_from(&constraints), all_table))
        } else {
            None
        };
        admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", layout::quote(SCHEMA))).await?;

        checkpoint(&admin).await;
        let started = Instant::now();
        copy_rows(&db.url, &bound_table, &rows).await?;
        let write = Rate::new(rows.len() as u64, blocks, started.elapsed());
        eprintln!("raw COPY run {} (the indexer's layout during its backfill): {write}", i + 1);
        admin.batch_execute(&format!("DROP TABLE {bound_table}")).await?;

        checkpoint(&admin).await;
        let started = Instant::now();
        writer_rows(&db.url, &rows).await?;
        let commits = Rate::new(rows.len() as u64, blocks, started.elapsed());
        eprintln!("writer commits run {}: {commits}", i + 1);

        let study = match study_tables {
            None => None,
            Some((pk_table, others, all_table)) => {
                checkpoint(&admin).await;
                let started = Instant::now();
                copy_rows(&db.url, &pk_table, &rows).await?;
                let constraints_only = Rate::new(rows.len() as u64, blocks, started.elapsed());
                eprintln!(
                    "raw COPY run {} (primary key and unique constraints only): {constraints_only}",
                    i + 1
                );
                let builds = layout::build_indexes(&admin, &pk_table, &others).await?;
                for (name, took) in &builds {
                    eprintln!("  CREATE INDEX {name}: {:.2} s", took.as_secs_f64());
                }
                admin.batch_execute(&format!("DROP TABLE {pk_table}")).await?;
                let all = match all_table {
                    None => None,
                    Some(table) => {
                        checkpoint(&admin).await;
                        let started = Instant::now();
                        copy_rows(&db.url, &table, &rows).await?;
                        let r = Rate::new(rows.len() as u64, blocks, started.elapsed());
                        eprintln!("raw COPY run {} (all indexes after the backfill): {r}", i + 1);
                        Some(r)
                    }
                };
                Some(Study { constraints_only, builds, all })
            }
        };
        results.push(RunResult { write, commits, full, peak, study });
        layouts = Some((during, after));
        drop(admin);
        let _ = admin_task.await;
        db.drop_now().await?;
    }
    let (during, after) = layouts.context("no run")?;
    report(&args, &data, runs, fetch, decode, &results, &during, &after, sizes.as_ref());
    if let Some(path) = &args.indexer_bin {
        println!("\nindexer: {}", path.display());
    }
    procs::print_machine_load(load_before.as_deref());
    Ok(())
}

/// The indexer's runs alone (`--indexer-only`).
async fn indexer_only(
    server: &str,
    runs: usize,
    args: &Args,
    indexer: &Path,
    rpc_url: &str,
    data: &Dataset,
) -> anyhow::Result<()> {
    let (mut rates, mut peaks, mut bytes) = (Vec::new(), Vec::new(), None);
    for i in 0..runs {
        let db = BenchDb::create(server, "backfill").await?;
        let (admin, admin_task) = connect(&db.url).await?;
        checkpoint(&admin).await;
        let text = config_toml(data, rpc_url, &db.url, SCHEMA, args);
        let (elapsed, peak, samples, _) =
            tidemark_backfill(&indexer.to_path_buf(), &text, &db.url, data).await?;
        let rate = Rate::new(data.events, data.blocks(), elapsed);
        eprintln!("tidemark run {}: {rate} (peak RSS {}; RSS samples {samples})", i + 1, mib(peak));
        if bytes.is_none() {
            let sql = format!(
                "SELECT pg_relation_size('{SCHEMA}.events'), pg_indexes_size('{SCHEMA}.events'),
                        pg_total_relation_size('{SCHEMA}.events')"
            );
            let row = admin.query_one(&sql, &[]).await?;
            bytes = Some(
                [0, 1, 2].map(|i| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0) / data.events.max(1)),
            );
        }
        rates.push(rate);
        peaks.push(peak);
        drop(admin);
        let _ = admin_task.await;
        db.drop_now().await?;
    }
    let list = rates.iter().map(|r| format!("{:.0}", r.events_per_s())).collect::<Vec<_>>().join(", ");
    peaks.sort_unstable();
    let [heap, indexes, total] = bytes.unwrap_or_default();
    println!(
        "\n## backfill, indexer only: dataset {}, {} events, indexer {}",
        args.dataset.name(),
        data.events,
        indexer.display()
    );
    println!("\n| measurement | value |\n|---|---:|");
    println!(
        "| Tidemark backfill, events/s (median of {runs}; runs: {list}) | {:.0} |",
        median(rates).events_per_s()
    );
    println!("| indexer peak RSS (median) | {} |", mib(peaks.get(peaks.len() / 2).copied().unwrap_or(0)));
    println!("| bytes/event: heap (main fork), all indexes, total | {heap}, {indexes}, {total} |");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    data: &Dataset,
    runs: usize,
    fetch: Vec<Rate>,
    decode: Rate,
    results: &[RunResult],
    during: &Layout,
    after: &Layout,
    sizes: Option<&Sizes>,
) {
    let per_run = |f: &dyn Fn(&RunResult) -> Rate| -> Vec<Rate> { results.iter().map(f).collect() };
    let list = |rates: &[Rate]| {
        rates.iter().map(|r| format!("{:.0}", r.events_per_s())).collect::<Vec<_>>().join(", ")
    };
    let fetch_runs = fetch.clone();
    let fetch = median(fetch);
    let write = median(per_run(&|r| r.write));
    let commits = median(per_run(&|r| r.commits));
    let full = median(per_run(&|r| r.full));
    let bound = Rate::serial_bound(&fetch, &write);
    println!(
        "\n## backfill: dataset {}, {} events, {} blocks, max_block_range {}, concurrency {}, record_epochs {}, median of {runs}",
        args.dataset.name(),
        data.events,
        data.blocks(),
        args.max_block_range,
        args.concurrency,
        args.record_epochs
    );
    println!();
    for line in &data.description {
        println!("{line}");
    }
    println!(
        "\nThe indexer's table during its backfill (read from the catalog in the run): `{}`, {} indexes: {}",
        during.table,
        during.indexes.len(),
        during.index_names()
    );
    let (added, dropped) = (after.missing_from(during), during.missing_from(after));
    if added.is_empty() && dropped.is_empty() && after.table == during.table {
        println!("(the same after the backfill)");
    } else {
        println!(
            "After the backfill: `{}`, {} indexes: {}",
            after.table,
            after.indexes.len(),
            after.index_names()
        );
    }
    println!("\n| measurement | events/s | blocks/s | seconds |");
    println!("|---|---:|---:|---:|");
    for (name, r) in [
        ("raw eth_getLogs", &fetch),
        ("raw PostgreSQL COPY (the indexer's table and indexes during its backfill)", &write),
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
    println!(
        "\nserial bound = 1 / (1/{:.0} + 1/{:.0}) = {:.0} events/s",
        fetch.events_per_s(),
        write.events_per_s(),
        bound.events_per_s()
    );
    println!("Tidemark / serial bound: {:.0} %", 100.0 * full.events_per_s() / bound.events_per_s());
    // Each run's Tidemark against the bound of the same run's COPY (the fetch's median):
    // the machine's load moves both alike within a run.
    let ratios: Vec<String> = results
        .iter()
        .map(|r| {
            let bound = Rate::serial_bound(&fetch, &r.write);
            format!("{:.0} %", 100.0 * r.full.events_per_s() / bound.events_per_s())
        })
        .collect();
    println!("per run, against the bound of that run's COPY: {}", ratios.join(", "));
    let mut peaks: Vec<u64> = results.iter().map(|r| r.peak).collect();
    let peak_list = peaks.iter().map(|p| mib(*p)).collect::<Vec<_>>().join(", ");
    peaks.sort_unstable();
    println!("indexer peak RSS (median): {} (runs: {peak_list})", mib(peaks[peaks.len() / 2]));
    println!(
        "runs, events/s: Tidemark {}; raw eth_getLogs {}; raw COPY {}; writer commits {}",
        list(&per_run(&|r| r.full)),
        list(&fetch_runs),
        list(&per_run(&|r| r.write)),
        list(&per_run(&|r| r.commits))
    );

    if let Some(s) = sizes {
        println!("\n### bytes per event after the backfill (`{}`, {} rows, first run)", after.table, s.rows);
        println!("| relation | MiB | bytes/event |");
        println!("|---|---:|---:|");
        let line = |name: &str, bytes: u64| {
            println!("| {name} | {:.1} | {:.0} |", bytes as f64 / 1_048_576.0, bytes as f64 / s.rows as f64);
        };
        line("heap (main fork)", s.heap);
        line("TOAST, free space and visibility maps", s.toast_and_maps);
        for (name, bytes) in &s.indexes {
            line(&format!("index `{name}`"), *bytes);
        }
        line("all indexes (pg_indexes_size)", s.all_indexes);
        line("total (pg_total_relation_size)", s.total);
    }

    let studies: Vec<&Study> = results.iter().filter_map(|r| r.study.as_ref()).collect();
    if !studies.is_empty() {
        let constraints = median(studies.iter().map(|s| s.constraints_only).collect());
        let all = if studies.iter().all(|s| s.all.is_some()) {
            median(studies.iter().filter_map(|s| s.all).collect())
        } else {
            write
        };
        println!(
            "\n### raw COPY: all indexes vs primary key and unique constraints only (median of {})",
            studies.len()
        );
        println!("| measurement | events/s | seconds |");
        println!("|---|---:|---:|");
        println!(
            "| raw COPY, all {} indexes of the indexer's table | {:.0} | {:.2} |",
            after.indexes.len(),
            all.events_per_s(),
            all.elapsed.as_secs_f64()
        );
        println!(
            "| raw COPY, primary key and unique constraints only ({} indexes) | {:.0} | {:.2} |",
            after.constraints_only().indexes.len(),
            constraints.events_per_s(),
            constraints.elapsed.as_secs_f64()
        );
        let mut total_builds = 0.0;
        for (i, (name, _)) in studies[0].builds.iter().enumerate() {
            let mut took: Vec<f64> = studies.iter().map(|s| s.builds[i].1.as_secs_f64()).collect();
            let runs = took.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>().join(", ");
            took.sort_by(f64::total_cmp);
            let med = took[took.len() / 2];
            total_builds += med;
            println!("| then `CREATE INDEX {name}` (runs: {runs} s) | | {med:.2} |");
        }
        let together = constraints.elapsed.as_secs_f64() + total_builds;
        println!(
            "| constraints-only COPY + every index built after it | {:.0} | {together:.2} |",
            data.events as f64 / together
        );
        println!(
            "runs, events/s: constraints-only COPY {}",
            list(&studies.iter().map(|s| s.constraints_only).collect::<Vec<_>>())
        );
    }
}

pub(crate) fn config_toml(data: &Dataset, rpc: &str, db: &str, schema: &str, args: &Args) -> String {
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
{contracts}"#,
        port = procs::free_port().unwrap_or(14999),
        range = args.max_block_range,
        conc = args.concurrency,
        extra = args.indexer_extra.as_deref().unwrap_or(""),
        epochs = args.record_epochs,
        contracts = data.contracts_toml,
    )
}

/// A `tokio-postgres` connection to `url` and the task driving it.
pub(crate) async fn connect(url: &str) -> anyhow::Result<(Client, tokio::task::JoinHandle<()>)> {
    let (client, conn) =
        tidemark_db_client::tls::PgConnector::new(url)?.connect().await.context("tokio-postgres")?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok((client, task))
}

/// `CHECKPOINT` before a timed step, so that no step flushes the dirty pages of the one
/// before it (best effort: it needs a superuser or `pg_checkpoint`).
async fn checkpoint(client: &Client) {
    if let Err(e) = client.batch_execute("CHECKPOINT").await {
        eprintln!("CHECKPOINT failed ({e}); steps may flush each other's writes");
    }
}

/// `eth_getLogs` over the dataset with the indexer's filter, ranges and concurrency.
async fn fetch_all(
    url: &str,
    filter: &Filter,
    data: &Dataset,
    range: u64,
    concurrency: usize,
) -> anyhow::Result<Vec<Log>> {
    use alloy::providers::Provider;
    let provider = chain::provider(url)?;
    let ranges: Vec<(u64, u64)> = (data.first_block..=data.last_block)
        .step_by(range as usize)
        .map(|a| (a, (a + range - 1).min(data.last_block)))
        .collect();
    let chunks: Vec<Vec<Log>> = futures::stream::iter(ranges)
        .map(|(a, b)| {
            let p = provider.clone();
            let f = filter.clone().from_block(a).to_block(b);
            async move { p.get_logs(&f).await }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    Ok(chunks.into_iter().flatten().collect())
}

/// Binary `COPY` of the decoded rows into `table`, a copy of the indexer's `events` in
/// another schema (`"schema"."events"`), with the writer's own `COPY` (columns and row
/// encoding), in one statement.
async fn copy_rows(url: &str, table: &str, rows: &[EventRow]) -> anyhow::Result<()> {
    let Some(schema) = table.strip_suffix(".\"events\"").map(|s| s.trim_matches('"')) else {
        bail!("{table} is not an events table of its own schema");
    };
    let schema = SchemaName::new(schema)?;
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
/// elapsed time, the peak RSS, a summary of RSS samples over the run, and the layout of
/// its table read once mid-backfill (after its first commit, before its last).
pub(crate) async fn tidemark_backfill(
    bin: &std::path::PathBuf,
    config: &str,
    db_url: &str,
    data: &Dataset,
) -> anyhow::Result<(Duration, u64, String, Option<Layout>)> {
    let dir = std::env::temp_dir().join(format!("tidemark-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("tidemark.toml");
    std::fs::write(&path, config)?;
    let path_s = path.to_string_lossy().to_string();
    let started = Instant::now();
    let mut proc = procs::spawn(
        "indexer",
        bin,
        &["--config", &path_s],
        // `TIDEMARK_BENCH_INDEXER_LOG` sets the indexer's log filter (e.g. `info` for a
        // timeline of a run); warnings only by default.
        &[("RUST_LOG", std::env::var("TIDEMARK_BENCH_INDEXER_LOG").unwrap_or_else(|_| "warn".into()))],
        &dir.join("indexer.log"),
    )?;
    let (client, task) = connect(db_url).await?;
    let mut samples = Vec::new();
    let mut during = None;
    let query = format!("SELECT block_number FROM {SCHEMA}.checkpoints WHERE chain_id = 31337");
    loop {
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the indexer did not finish within 30 minutes (see {})", dir.join("indexer.log").display());
        }
        if let Some(status) = proc.exited() {
            bail!("the indexer exited ({status}): {}", std::fs::read_to_string(dir.join("indexer.log"))?);
        }
        if let Some(rss) = proc.rss() {
            samples.push(rss);
        }
        let at = match client.query_opt(&query, &[]).await {
            Ok(Some(row)) => Some(row.get::<_, i64>(0) as u64),
            _ => None,
        };
        if at.is_some_and(|n| n >= data.last_block) {
            break;
        }
        if during.is_none() && at.is_some_and(|n| n >= data.first_block) {
            during = layout::capture(&client, SCHEMA).await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Done includes the secondary indexes a new instance builds after its backfill: the
    // snapshot's `indexBuild` is `done` (or absent: nothing was deferred).
    let backfilled = started.elapsed();
    let build = "SELECT value -> 'indexBuild' ->> 'state' FROM tidemark.metadata
                  WHERE instance_schema = $1 AND key = 'indexing_status'";
    loop {
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("the indexes were not built within 30 minutes (see {})", dir.join("indexer.log").display());
        }
        if let Some(rss) = proc.rss() {
            samples.push(rss);
        }
        let state =
            client.query_opt(build, &[&SCHEMA]).await.ok().flatten().map(|r| r.get::<_, Option<String>>(0));
        if matches!(state, Some(None)) || matches!(state, Some(Some(ref s)) if s == "done") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "tidemark: backfill {:.1} s, then the deferred indexes {:.1} s",
        backfilled.as_secs_f64(),
        (elapsed - backfilled).as_secs_f64()
    );
    let peak = proc.peak_rss().unwrap_or(0);
    proc.stop();
    drop(client);
    let _ = task.await;
    let q = |f: f64| samples.get(((samples.len() as f64 - 1.0) * f) as usize).map_or("-".into(), |v| mib(*v));
    let summary = format!("25%: {}, 50%: {}, 75%: {}, end: {}", q(0.25), q(0.5), q(0.75), q(1.0));
    Ok((elapsed, peak, summary, during))
}
