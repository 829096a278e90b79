//! `factory`: the backfill of a factory contract's children against the same logs indexed
//! with the children's addresses listed statically.
//!
//! One anvil holds the dataset: `PairFactory` (`deploy/demo`) creates `--children` pairs,
//! 40 per transaction, then every pair mints and swaps `--rounds` times (`trade`, 25 pairs
//! per transaction: `2 + 2 × rounds` events per pair), then 100 empty blocks put the
//! history below the bulk backfill's margin. Each mode backfills it into a fresh database
//! with the release indexer, from process start until the checkpoint reaches the last
//! block of the history; the stored event count is checked against the dataset's.
//!
//! Modes: `static` (`Pair` with all its addresses in the config: one `eth_getLogs` per range
//! for every address), `factory, address chunks` (`factory_topic_only_above` above the
//! child count: the children's addresses in requests of `max_filter_addresses`),
//! `factory, topic only` (`factory_topic_only_above = 0`: one request per range by the
//! children's topics, filtered by the child set) and `factory, default settings`. The
//! figure of each is its events/s, and each factory mode's ratio to `static`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tidemark_traffic::pairs::{FACTORY_ABI, PAIR_ABI, Pairs};

use crate::procs::{self, BenchDb};
use crate::report::{Rate, median};

/// `factory` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Pairs the factory creates.
    #[arg(long, default_value_t = 5000)]
    children: u64,
    /// Swaps per pair (each pair also mints once; each mint and swap emits two events).
    #[arg(long, default_value_t = 2)]
    rounds: u64,
    /// `max_block_range` of the chain in every mode.
    #[arg(long, default_value_t = 2000)]
    max_block_range: u64,
}

const SCHEMA: &str = "tidemark_bench_factory";
const CHAIN_ID: u64 = 31337;

/// A way to configure the same dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Static,
    Chunks,
    TopicOnly,
    Default,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Self::Static => "static: the children's addresses listed in the config",
            Self::Chunks => "factory, address chunks (max_filter_addresses = 1000)",
            Self::TopicOnly => "factory, topic only (filtered by the child set)",
            Self::Default => "factory, default settings",
        }
    }
}

pub(crate) async fn run(server: &str, runs: usize, args: Args) -> anyhow::Result<()> {
    if args.children == 0 {
        bail!("--children must be positive");
    }
    tidemark_db_client::tls::install_crypto_provider();
    let load_before = procs::load_average();
    let indexer_bin = procs::release_binary("tidemark-indexer")?;
    let (_anvil, rpc) = procs::anvil(&["--gas-limit", "30000000"]).await?;
    let pairs = Pairs::deploy(&rpc).await.context("deploying the factory")?;
    let started = Instant::now();
    let children = pairs.create(args.children).await.context("creating pairs")?;
    pairs.trade_all(&children, args.rounds, 25).await.context("trading")?;
    let last = pairs.chain().block_number().await?;
    pairs.chain().mine(100).await?;
    let events = args.children * (1 + 2 + 2 * args.rounds);
    eprintln!(
        "dataset: {} children, {events} events over {last} blocks, generated in {:.0} s",
        children.len(),
        started.elapsed().as_secs_f64()
    );
    let dir = std::env::temp_dir().join(format!("tidemark-bench-factory-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("PairFactory.abi.json"), FACTORY_ABI)?;
    std::fs::write(dir.join("Pair.abi.json"), PAIR_ABI)?;

    let modes = [Mode::Static, Mode::Chunks, Mode::TopicOnly, Mode::Default];
    let mut results = Vec::new();
    for mode in modes {
        let mut rates = Vec::with_capacity(runs);
        for run in 0..runs {
            let rate =
                measure(server, &indexer_bin, &dir, &rpc, &pairs, &children, &args, mode, last, events)
                    .await
                    .with_context(|| format!("{} (run {run})", mode.label()))?;
            eprintln!("{}: run {run}: {rate}", mode.label());
            rates.push(rate);
        }
        results.push((mode, median(rates)));
    }

    println!(
        "\n## factory: backfill of {} children ({events} events, {last} blocks), median of {runs} runs\n",
        args.children
    );
    println!("| mode | events/s | blocks/s | vs static |\n|---|---:|---:|---:|");
    let base = results[0].1.events_per_s();
    for (mode, rate) in &results {
        println!(
            "| {} | {:.0} | {:.1} | {:.0} % |",
            mode.label(),
            rate.events_per_s(),
            rate.blocks_per_s(),
            100.0 * rate.events_per_s() / base
        );
    }
    let default = results.iter().find(|(m, _)| *m == Mode::Default).map_or(0.0, |(_, r)| r.events_per_s());
    let ratio = default / base;
    println!(
        "\ndefault factory settings / static = {:.0} % (target ≥ 80 %: {})",
        100.0 * ratio,
        if ratio >= 0.8 { "met" } else { "NOT met" }
    );
    procs::print_machine_load(load_before.as_deref());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// One backfill of the dataset in `mode` into a fresh database.
#[allow(clippy::too_many_arguments)]
async fn measure(
    server: &str,
    bin: &std::path::PathBuf,
    dir: &Path,
    rpc: &str,
    pairs: &Pairs,
    children: &[alloy::primitives::Address],
    args: &Args,
    mode: Mode,
    last: u64,
    events: u64,
) -> anyhow::Result<Rate> {
    let db = BenchDb::create(server, "factory").await?;
    let tag = format!("{mode:?}").to_lowercase();
    let config = write_config(dir, &tag, &db.url, rpc, pairs, children, args, mode)?;
    let log = dir.join(format!("{tag}.log"));
    let client = tidemark_db_client::tls::connect(&db.url).await.context("connecting to PostgreSQL")?;
    let started = Instant::now();
    let mut proc = procs::spawn(
        "tidemark-indexer",
        bin,
        &["--config", &config.display().to_string()],
        &[("RUST_LOG", "warn".into())],
        &log,
    )?;
    let sql = format!("SELECT block_number FROM {SCHEMA}.checkpoints WHERE chain_id = {CHAIN_ID}");
    loop {
        let at: Option<i64> =
            client.query_opt(&sql, &[]).await.ok().flatten().and_then(|r| r.try_get(0).ok());
        if at.is_some_and(|n| n >= last as i64) {
            break;
        }
        if let Some(status) = proc.exited() {
            bail!("the indexer exited ({status}); see {}", log.display());
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("no checkpoint at {last} after 30 minutes (at {at:?})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let stored: i64 = client
        .query_one(&format!("SELECT count(*) FROM {SCHEMA}.events WHERE block_number <= {last}"), &[])
        .await?
        .try_get(0)?;
    proc.stop();
    drop(client);
    db.drop_now().await?;
    if stored != events as i64 {
        bail!("stored {stored} events of {events}");
    }
    Ok(Rate::new(events, last, elapsed))
}

#[allow(clippy::too_many_arguments)]
fn write_config(
    dir: &Path,
    tag: &str,
    db_url: &str,
    rpc: &str,
    pairs: &Pairs,
    children: &[alloy::primitives::Address],
    args: &Args,
    mode: Mode,
) -> anyhow::Result<std::path::PathBuf> {
    let pair = match mode {
        Mode::Static => {
            let list: Vec<String> = children.iter().map(|a| format!("\"{a:#x}\"")).collect();
            format!("addresses = [{}]", list.join(", "))
        }
        _ => r#"factory = { contract = "Factory", event = "PairCreated", parameter = "pair" }"#.to_owned(),
    };
    let tuning = match mode {
        Mode::Chunks => format!("factory_topic_only_above = {}\n", children.len() + 1),
        Mode::TopicOnly => "factory_topic_only_above = 0\n".to_owned(),
        Mode::Static | Mode::Default => String::new(),
    };
    let config = dir.join(format!("{tag}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"namespace = "bench"
schema = "{SCHEMA}"
database_url = "{db_url}"
[http]
listen = "127.0.0.1:{port}"
[[chains]]
chain_id = {CHAIN_ID}
rpc_url = "{rpc}"
max_block_range = {range}
{tuning}
[[chains.contracts]]
name = "Factory"
addresses = ["{factory:#x}"]
abi = "PairFactory.abi.json"
events = ["PairCreated"]
[[chains.contracts]]
name = "Pair"
{pair}
abi = "Pair.abi.json"
events = ["Mint", "Swap", "Sync"]
"#,
            port = procs::free_port()?,
            range = args.max_block_range,
            factory = pairs.factory,
        ),
    )?;
    Ok(config)
}
