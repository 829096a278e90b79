//! `upgrade`: the in-place upgrade of an instance written by a previous build.
//!
//! The previous build's indexer (`--previous-dir`, a directory with its release
//! `tidemark-indexer` and `tidemark-api`) backfills the dataset of `backfill`; its API
//! serves a sample of `/v1/events` pages. Then this build's indexer starts on the same
//! instance and upgrades it (timed from its start until the new layout is committed), and
//! this build's API serves the same pages, which must be identical, as must every cursor.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use tokio_postgres::Client;

use crate::backfill::{self, SCHEMA, connect};
use crate::procs::{self, BenchDb, Proc};
use crate::report::mib;

/// The dataset, and the previous build.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The dataset and the indexer's settings, as for `backfill` (`--events`, default
    /// 200,000; the acceptance run uses 1,000,000).
    #[command(flatten)]
    data: backfill::Args,
    /// A directory holding the previous build's release `tidemark-indexer` and
    /// `tidemark-api`.
    #[arg(long)]
    previous_dir: PathBuf,
    /// Pages of each sample query, spread over the cursor range.
    #[arg(long, default_value_t = 10)]
    pages: u64,
}

pub(crate) async fn run(server: &str, args: Args) -> anyhow::Result<()> {
    let (_anvil, rpc_url) = procs::anvil(&["--no-mining", "--gas-limit", "1000000000"]).await?;
    let data = backfill::generate(&rpc_url, &args.data).await?;
    let previous = |name: &str| {
        let path = args.previous_dir.join(name);
        ensure!(path.exists(), "{} is missing", path.display());
        Ok(path)
    };
    let (old_indexer, old_api) = (previous("tidemark-indexer")?, previous("tidemark-api")?);
    let (new_indexer, new_api) =
        (procs::release_binary("tidemark-indexer")?, procs::release_binary("tidemark-api")?);

    let db = BenchDb::create(server, "upgrade").await?;
    let (admin, admin_task) = connect(&db.url).await?;
    let config = backfill::config_toml(&data, &rpc_url, &db.url, SCHEMA, &args.data);
    let (took, _, _, _) = backfill::tidemark_backfill(&old_indexer, &config, &db.url, &data).await?;
    eprintln!("previous build: {} events indexed in {:.1} s", data.events, took.as_secs_f64());
    let before_size = table_bytes(&admin).await?;
    let before_cursors = cursors(&admin).await?;

    let queries = sample_queries(&admin, &before_cursors, args.pages).await?;
    let before = pages(&old_api, &db.url, &queries).await?;

    // This build's indexer on the same instance: the upgrade runs at its start.
    let dir = std::env::temp_dir().join(format!("tidemark-bench-upgrade-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("tidemark.toml");
    std::fs::write(&path, &config)?;
    let started = Instant::now();
    let indexer = procs::spawn(
        "indexer",
        &new_indexer,
        &["--config", &path.to_string_lossy()],
        &[("RUST_LOG", "info".into())],
        &dir.join("indexer.log"),
    )?;
    let upgraded = format!("SELECT to_regclass('{SCHEMA}.event_types') IS NOT NULL");
    loop {
        if admin.query_one(&upgraded, &[]).await?.get::<_, bool>(0) {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("no upgrade within 30 minutes (see {})", dir.join("indexer.log").display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let upgrade = started.elapsed();
    let peak = indexer.peak_rss().unwrap_or(0);
    // Until this build has written a status of its own that follows the head: pages carry
    // `finalized`, which the status decides.
    let fresh = format!(
        "SELECT value -> 'omnichainSnapshot' ->> 'omnichainStatus' = 'omnichain-following'
           FROM tidemark.metadata
          WHERE instance_schema = '{SCHEMA}' AND key = 'indexing_status' AND updated_at > now() - interval '0.5 s'"
    );
    let waiting = Instant::now();
    while admin.query_opt(&fresh, &[]).await?.is_none_or(|r| r.get::<_, Option<bool>>(0) != Some(true)) {
        ensure!(waiting.elapsed() < Duration::from_secs(60), "this build's indexer did not reach the head");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    indexer.stop();
    let after_size = table_bytes(&admin).await?;
    let after_cursors = cursors(&admin).await?;
    let after = pages(&new_api, &db.url, &queries).await?;

    let differing: Vec<&String> =
        queries.iter().zip(before.iter().zip(&after)).filter(|(_, (b, a))| b != a).map(|(q, _)| q).collect();
    let items: usize = before.iter().map(|p| p["items"].as_array().map_or(0, Vec::len)).sum();
    for (i, q) in queries.iter().enumerate().filter(|(_, q)| differing.contains(q)) {
        for (side, pages) in [("before", &before), ("after", &after)] {
            let path = dir.join(format!("page-{i}-{side}.json"));
            std::fs::write(&path, serde_json::to_string_pretty(&pages[i])?)?;
            eprintln!("{q} {side}: {}", path.display());
        }
    }
    println!(
        "\n## upgrade: {} events of dataset {}, written by {}",
        data.events,
        args.data.name(),
        old_indexer.display()
    );
    println!("\n| measurement | value |\n|---|---:|");
    println!(
        "| upgrade (this build's indexer started → layout 4 committed) | {:.1} s |",
        upgrade.as_secs_f64()
    );
    println!("| events/s rewritten | {:.0} |", data.events as f64 / upgrade.as_secs_f64());
    println!("| indexer peak RSS during the upgrade | {} |", mib(peak));
    println!(
        "| `events` (heap + indexes) before → after | {} → {} ({} → {} bytes/event) |",
        mib(before_size),
        mib(after_size),
        before_size / data.events.max(1),
        after_size / data.events.max(1)
    );
    println!(
        "| cursors (count, sum, max) before → after | {before_cursors:?} → {after_cursors:?} ({}) |",
        if before_cursors == after_cursors { "kept" } else { "CHANGED" }
    );
    println!(
        "| `/v1/events` pages compared | {} pages, {items} items, {} |",
        queries.len(),
        if differing.is_empty() { "all identical".to_owned() } else { format!("DIFFERING: {differing:?}") }
    );
    drop(admin);
    let _ = admin_task.await;
    db.drop_now().await?;
    ensure!(before_cursors == after_cursors, "the upgrade changed the cursors");
    ensure!(differing.is_empty(), "pages differ after the upgrade");
    Ok(())
}

/// `events` and `event_types` (layout 4), heap and indexes, in bytes.
async fn table_bytes(c: &Client) -> anyhow::Result<u64> {
    let sql = format!(
        "SELECT pg_total_relation_size('{SCHEMA}.events')
                + coalesce(pg_total_relation_size(to_regclass('{SCHEMA}.event_types')), 0)"
    );
    Ok(u64::try_from(c.query_one(&sql, &[]).await?.get::<_, i64>(0))?)
}

/// Count, sum and maximum of the stored events' cursors.
async fn cursors(c: &Client) -> anyhow::Result<(i64, String, i64)> {
    let sql = format!("SELECT count(*), sum(cursor)::text, max(cursor) FROM {SCHEMA}.events");
    let r = c.query_one(&sql, &[]).await?;
    Ok((r.get(0), r.get(1), r.get(2)))
}

/// The query strings of the sample: unfiltered, by contract, by contract and event, by
/// address and by a transfer's sender (`topic1`), each at `pages` cursors spread over the
/// range, 1,000 items a page.
async fn sample_queries(c: &Client, cursors: &(i64, String, i64), pages: u64) -> anyhow::Result<Vec<String>> {
    let row = c
        .query_one(
            &format!(
                "SELECT contract, '0x' || encode(address, 'hex'), '0x' || encode(topic1, 'hex')
                   FROM {SCHEMA}.events e JOIN {SCHEMA}.event_types t ON t.id = e.type_id
                  WHERE t.event = 'Transfer' AND topic1 IS NOT NULL LIMIT 1"
            ),
            &[],
        )
        .await
        // The previous layout: names and hex per row.
        .or(c
            .query_one(
                &format!("SELECT contract, address, topics[2] FROM {SCHEMA}.events WHERE event = 'Transfer' LIMIT 1"),
                &[],
            )
            .await)
        .context("a Transfer to filter by")?;
    let (contract, address, topic1): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    let filters = [
        String::new(),
        format!("contract={contract}&"),
        format!("contract={contract}&event=Transfer&"),
        format!("address={address}&"),
        format!("topic1={topic1}&"),
        "chainId=31337&".to_owned(),
    ];
    let max = cursors.2;
    let mut out = Vec::new();
    for f in &filters {
        for k in 0..pages {
            let after = i64::try_from(k)? * max / i64::try_from(pages)?;
            out.push(format!("{f}limit=1000&after={after}"));
        }
    }
    Ok(out)
}

/// Starts `api` on `db_url`, reads each of `queries` from `/v1/events`, stops it.
async fn pages(api: &PathBuf, db_url: &str, queries: &[String]) -> anyhow::Result<Vec<Value>> {
    let port = procs::free_port()?;
    let log = std::env::temp_dir().join(format!("tidemark-bench-upgrade-api-{port}.log"));
    let listen = format!("127.0.0.1:{port}");
    let proc: Proc = procs::spawn(
        "api",
        api,
        &["--schema", SCHEMA, "--listen", &listen],
        &[("DATABASE_URL", db_url.to_owned()), ("RUST_LOG", "warn".into())],
        &log,
    )?;
    let http = reqwest::Client::new();
    let base = format!("http://{listen}");
    let started = Instant::now();
    while http.get(format!("{base}/live")).send().await.is_err() {
        ensure!(started.elapsed() < Duration::from_secs(30), "the API did not start (see {})", log.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = Vec::new();
    for q in queries {
        let response = http.get(format!("{base}/v1/events?{q}")).send().await?;
        ensure!(response.status().is_success(), "{q}: {}", response.status());
        out.push(response.json::<Value>().await?);
    }
    proc.stop();
    Ok(out)
}
