//! `api`: throughput and p50/p99 latency of the API at fixed concurrency, against a bare
//! axum handler served by the same machine, with the events table pre-filled by SQL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tidemark_db_client::test_utils::fixtures::{create_instance, event_page_columns};
use tidemark_db_client::test_utils::metadata;
use tidemark_db_client::writer::PgPool;
use tidemark_db_client::{Limit, PoolConfig};
use tidemark_shared_types::config::{PublicChainConfig, PublicContractConfig};
use tidemark_shared_types::{
    BlockRef, ChainIndexingConfig, ChainSnapshot, IndexingStatus, PublicConfig, SchemaName, VersionInfo,
};

use crate::procs::{self, BenchDb};

/// Load settings.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Table sizes to measure at, ascending.
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    rows: Vec<u64>,
    /// Concurrent connections, one measurement per level: 1 shows the latency of one
    /// request on an idle machine, 32 the latency under a load that saturates two cores
    /// (queueing included).
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    concurrency: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

pub(crate) const SCHEMA: &str = "tidemark_bench";
/// The name of the unfiltered [`Target::RawPage`] measurement.
const RAW_PAGE: &str = "raw PostgreSQL page (first-page SQL, no API)";
/// The name of the filtered [`Target::RawPage`] measurement.
const RAW_FILTERED: &str = "raw PostgreSQL contract+event page (no API)";
/// Rows per block in the generated table, and per generation statement.
const PER_BLOCK: u64 = 100;
const CHUNK: u64 = 500_000;

/// Latency figures of one endpoint.
#[derive(Debug, Clone, Copy)]
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU time of the serving process per request, in µs (HTTP targets only).
    cpu_us: Option<f64>,
}

/// What one measurement loads.
#[derive(Clone)]
enum Target {
    /// GET of `url`, served by process `pid`.
    Http { url: String, pid: u32 },
    /// The API's first-page statement (or, `filtered`, its `contract=Registry&event=Tagged`
    /// statement, with the same bound values) run on PostgreSQL directly (prepared, binary
    /// rows received and discarded) over as many connections as the API's pool: the page
    /// rate PostgreSQL sustains on this machine, the bound of the matching events endpoint.
    RawPage { conns: Arc<Vec<(tokio_postgres::Client, tokio_postgres::Statement)>>, filtered: bool },
}

impl Target {
    /// Opens `connections` connections to `url` and prepares the first-page statement
    /// (`filtered`: the contract+event one).
    async fn raw_page(url: &str, connections: usize, filtered: bool) -> anyhow::Result<Self> {
        let columns = event_page_columns();
        let sql = if filtered {
            format!(
                "SELECT {columns} FROM {SCHEMA}.events WHERE cursor > $1 AND event_id = \
                 (SELECT min(id) FROM {SCHEMA}.event_types WHERE contract = $2 AND event = $3) \
                 ORDER BY cursor ASC LIMIT $4"
            )
        } else {
            format!(
                "SELECT {columns} FROM {SCHEMA}.events WHERE cursor > $1 ORDER BY cursor ASC LIMIT {}",
                Limit::DEFAULT.get() + 1
            )
        };
        let mut conns = Vec::new();
        for _ in 0..connections {
            let (client, connection) = tidemark_db_client::tls::PgConnector::new(url)?.connect().await?;
            tokio::spawn(connection);
            let statement = client.prepare(&sql).await?;
            conns.push((client, statement));
        }
        Ok(Self::RawPage { conns: Arc::new(conns), filtered })
    }

    /// One request; true when it succeeded.
    async fn request(&self, http: &reqwest::Client, worker: usize) -> bool {
        match self {
            Self::Http { url, .. } => match http.get(url).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            },
            Self::RawPage { conns, filtered } => {
                let (client, statement) = &conns[worker % conns.len()];
                let rows = if *filtered {
                    let limit = i64::from(Limit::DEFAULT.get()) + 1;
                    client.query(statement, &[&i64::MIN, &"Registry", &"Tagged", &limit]).await
                } else {
                    client.query(statement, &[&i64::MIN]).await
                };
                rows.is_ok_and(|rows| !rows.is_empty())
            }
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Self::Http { pid, .. } => Some(*pid),
            Self::RawPage { .. } => None,
        }
    }
}

pub(crate) async fn run(server: &str, runs: usize, args: Args) -> anyhow::Result<()> {
    let db = BenchDb::create(server, "api").await?;
    let pool = PgPool::new(PoolConfig::new(db.url.clone()))?;
    let schema = SchemaName::new(SCHEMA)?;
    create_instance(&pool, &schema).await?;
    metadata::write_public_config(&mut *pool.get().await?, &public_config()).await?;

    let pool_size = api_pool_size()?;
    let api_bin = procs::release_binary("tidemark-api")?;
    let (bare_proc, bare) = spawn_bare()?;
    tidemark_db_client::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.iter().copied().max().unwrap_or(1))
        .build()?;
    wait_ok(&client, &bare).await?;
    let mut filled = 0;
    let mut results: BTreeMap<(usize, u64), Vec<(&'static str, Load)>> = BTreeMap::new();
    for &target in &args.rows {
        let started = Instant::now();
        while filled < target {
            let to = (filled + CHUNK).min(target);
            fill(&pool, filled + 1, to).await?;
            filled = to;
            eprintln!("events table: {filled} rows ({:.0} s)", started.elapsed().as_secs_f64());
        }
        let mut conn = pool.get().await?;
        exec(&mut conn, "SET statement_timeout = 0".into()).await?;
        exec(&mut conn, format!("VACUUM ANALYZE {SCHEMA}.events")).await?;
        // Flush the fill's dirty buffers now: otherwise the checkpointer writes them out
        // during the measurement, on the same two cores (spread over minutes after a
        // multi-GB fill), and the larger table is measured against a busier machine.
        if let Err(e) = exec(&mut conn, "CHECKPOINT".into()).await {
            eprintln!("CHECKPOINT failed ({e}); the measurement may overlap background writes");
        }
        drop(conn);
        write_status(&pool, filled / PER_BLOCK).await?;

        let port = procs::free_port()?;
        let dir = std::env::temp_dir();
        let api = procs::spawn(
            "api",
            &api_bin,
            &[],
            &[
                ("DATABASE_URL", db.url.clone()),
                ("TIDEMARK_SCHEMA", SCHEMA.into()),
                ("TIDEMARK_API_LISTEN", format!("127.0.0.1:{port}")),
                ("TIDEMARK_DB_POOL_SIZE", pool_size.to_string()),
                ("RUST_LOG", "warn".into()),
            ],
            &dir.join(format!("tidemark-bench-api-{}.log", std::process::id())),
        )?;
        let base = format!("http://127.0.0.1:{port}");
        wait_ok(&client, &format!("{base}/status")).await?;
        let deep = filled.saturating_sub(150);
        let http = |url: String, pid: u32| Target::Http { url, pid };
        let (bare_pid, api_pid) = (bare_proc.pid(), api.pid());
        for &concurrency in &args.concurrency {
            let raw = |filtered| Target::raw_page(&db.url, concurrency.min(pool_size), filtered);
            let endpoints: [(&'static str, Target); 7] = [
                ("bare axum handler", http(bare.clone(), bare_pid)),
                ("/status", http(format!("{base}/status"), api_pid)),
                (RAW_PAGE, raw(false).await?),
                (RAW_FILTERED, raw(true).await?),
                ("/v1/events first page", http(format!("{base}/v1/events?limit=100"), api_pid)),
                ("/v1/events deep page", http(format!("{base}/v1/events?after={deep}&limit=100"), api_pid)),
                (
                    "/v1/events contract+event (10 %)",
                    http(format!("{base}/v1/events?contract=Registry&event=Tagged&limit=100"), api_pid),
                ),
            ];
            // Rounds of every endpoint in turn, not each endpoint's runs back to back: a
            // drift in the machine's load then touches every endpoint alike, and the ratios
            // to the bare handler compare measurements taken side by side.
            let mut loads: Vec<Vec<Load>> = vec![Vec::new(); endpoints.len()];
            for _ in 0..runs {
                for ((_, target), l) in endpoints.iter().zip(&mut loads) {
                    l.push(load(&client, target, concurrency, Duration::from_secs(args.seconds)).await?);
                }
            }
            let mut row = Vec::new();
            for ((name, _), mut l) in endpoints.iter().zip(loads) {
                l.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
                let m = l[l.len() / 2];
                eprintln!(
                    "{filled} rows, concurrency {concurrency}, {name}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
                    m.rps, m.p50_ms, m.p99_ms
                );
                row.push((*name, m));
            }
            results.insert((concurrency, filled), row);
        }
        api.stop();
    }
    println!(
        "\n## api: {} s per run, median of {runs} (by p99); API pool and raw page: {pool_size} connections",
        args.seconds
    );
    for ((concurrency, rows), row) in &results {
        println!("\n### {rows} events, concurrency {concurrency}\n");
        println!("| endpoint | req/s | p50 ms | p99 ms | p99 / bare | server CPU µs/req |");
        println!("|---|---:|---:|---:|---:|---:|");
        let bare_p99 = row.first().map_or(1.0, |(_, l)| l.p99_ms);
        for (name, l) in row {
            println!(
                "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
                l.rps,
                l.p50_ms,
                l.p99_ms,
                l.p99_ms / bare_p99,
                l.cpu_us.map_or("–".into(), |c| format!("{c:.0}"))
            );
        }
        let rps = |n: &str| row.iter().find(|(name, _)| *name == n).map(|(_, l)| l.rps);
        if let (Some(raw), Some(api)) = (rps(RAW_PAGE), rps("/v1/events first page")) {
            println!("\n/v1/events first page: {:.0} % of the raw PostgreSQL page rate", 100.0 * api / raw);
        }
        if let (Some(raw), Some(api)) = (rps(RAW_FILTERED), rps("/v1/events contract+event (10 %)")) {
            println!(
                "/v1/events contract+event: {:.0} % of the raw PostgreSQL rate of that page",
                100.0 * api / raw
            );
        }
    }
    bare_proc.stop();
    db.drop_now().await?;
    Ok(())
}

pub(crate) fn public_config() -> PublicConfig {
    let contract = |name: &str, address: &str, events: &[&str]| PublicContractConfig {
        name: name.into(),
        addresses: vec![address.into()],
        factory: None,
        start_block: 0,
        end_block: None,
        events: events.iter().map(|e| (*e).to_owned()).collect(),
    };
    PublicConfig {
        namespace: "bench".into(),
        instance_schema: SCHEMA.into(),
        chains: vec![PublicChainConfig {
            chain_id: 31337,
            finality_depth: 12,
            contracts: vec![
                contract(
                    "Registry",
                    "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512",
                    &["event Tagged(bytes32 indexed key, string[] tags, bytes data)"],
                ),
                contract(
                    "Token",
                    "0x5fbdb2315678afecb367f032d93f642f64180aa3",
                    &["event Transfer(address indexed from, address indexed to, uint256 value)"],
                ),
            ],
        }],
        version_info: VersionInfo::current(),
    }
}

/// Rows `[from, to]`: 100 per block, one in ten a Registry `Tagged`, the rest Token `Transfer`.
async fn fill(pool: &PgPool, from: u64, to: u64) -> anyhow::Result<()> {
    let mut conn = pool.get().await?;
    exec(&mut conn, "SET statement_timeout = 0".into()).await?;
    exec(
        &mut conn,
        format!(
        "INSERT INTO {SCHEMA}.events (cursor, chain_id, block_number, block_hash, block_timestamp, tx_hash, tx_index,
                log_index, address, contract, event, signature, topics, data, args)
         SELECT g, 31337, g / {PER_BLOCK}, '0x' || lpad(to_hex(g / {PER_BLOCK}), 64, '0'), 1700000000 + g / {PER_BLOCK},
                '0x' || lpad(to_hex(g), 64, '0'), (g % {PER_BLOCK}) / 10, g % {PER_BLOCK},
                CASE WHEN g % 10 = 0 THEN '0xe7f1725e7734ce288f8367e1bb143e90bb3f0512' ELSE '0x5fbdb2315678afecb367f032d93f642f64180aa3' END,
                CASE WHEN g % 10 = 0 THEN 'Registry' ELSE 'Token' END,
                CASE WHEN g % 10 = 0 THEN 'Tagged' ELSE 'Transfer' END,
                CASE WHEN g % 10 = 0 THEN 'event Tagged(bytes32 indexed key, string[] tags, bytes data)'
                     ELSE 'event Transfer(address indexed from, address indexed to, uint256 value)' END,
                ARRAY['0x' || lpad(to_hex(g % 7), 64, '0'), '0x' || lpad(to_hex(g % 1000), 64, '0')],
                '0x' || lpad(to_hex(g), 64, '0'),
                jsonb_build_object('from', '0x' || lpad(to_hex(g % 1000), 40, '0'), 'value', (g * 7)::text)
           FROM generate_series({from}::bigint, {to}::bigint) g"
        ),
    )
    .await
    .context("filling the events table")?;
    exec(&mut conn, format!("SELECT setval('{SCHEMA}.cursor_seq', {to})")).await?;
    Ok(())
}

/// The API's pool size in the bench: `TIDEMARK_DB_POOL_SIZE` when set (as the API would
/// read it), else the API's default. Passed to the API explicitly, and the raw page
/// reference opens as many connections.
fn api_pool_size() -> anyhow::Result<usize> {
    match std::env::var("TIDEMARK_DB_POOL_SIZE") {
        Ok(v) => v.parse().with_context(|| format!("TIDEMARK_DB_POOL_SIZE={v} is not a number")),
        Err(_) => Ok(tidemark_db_client::default_max_size()),
    }
}

async fn exec(conn: &mut diesel_async::AsyncPgConnection, sql: String) -> anyhow::Result<()> {
    diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), conn).await?;
    Ok(())
}

pub(crate) async fn write_status(pool: &PgPool, head: u64) -> anyhow::Result<()> {
    let block = |n: u64| BlockRef { number: n, timestamp: 1_700_000_000 + n, hash: format!("0x{n:064x}") };
    let chains = BTreeMap::from([(
        31337,
        ChainSnapshot::Following {
            stalled: None,
            webhooks: None,
            progress: None,
            sources: Vec::new(),
            config: ChainIndexingConfig::LeftBounded { start_block: block(0) },
            latest_indexed_block: block(head),
            latest_known_block: block(head),
        },
    )]);
    let status = IndexingStatus::derive(chains, tidemark_indexer::progress::unix_now())?;
    metadata::write_indexing_status(&mut *pool.get().await?, &SchemaName::new(SCHEMA)?, &status).await?;
    Ok(())
}

/// The bare handler: a small static JSON body from a plain axum router (no layers), on
/// a multi-threaded runtime like the API's.
pub(crate) async fn serve_bare(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let app = axum::Router::new().route(
        "/bare",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"responseCode": "ok", "bare": true})) }),
    );
    axum::serve(listener, app).await?;
    Ok(())
}

/// Starts this binary's `bare-server` on a free port, as a process of its own.
fn spawn_bare() -> anyhow::Result<(procs::Proc, String)> {
    let port = procs::free_port()?;
    let me = std::env::current_exe()?;
    let log = std::env::temp_dir().join(format!("tidemark-bench-bare-{}.log", std::process::id()));
    let proc = procs::spawn(
        "bare handler",
        &me,
        &["bare-server", "--listen", &format!("127.0.0.1:{port}")],
        &[],
        &log,
    )?;
    Ok((proc, format!("http://127.0.0.1:{port}/bare")))
}

pub(crate) async fn wait_ok(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if client.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} did not answer 200 within 20 s")
}

/// `concurrency` workers request `target` in a loop for `duration` after a 1 s warm-up.
async fn load(
    client: &reqwest::Client,
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    let stop = Arc::new(AtomicBool::new(false));
    let warm_until = Instant::now() + Duration::from_secs(1);
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let (client, target, stop) = (client.clone(), target.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = target.request(&client, worker).await;
                if t >= warm_until {
                    if ok {
                        lat.push(t.elapsed().as_micros() as u32);
                    } else {
                        errors += 1;
                    }
                }
            }
            (lat, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_before = target.pid().and_then(procs::cpu_seconds);
    tokio::time::sleep(duration).await;
    let cpu_after = target.pid().and_then(procs::cpu_seconds);
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, e) = w.await?;
        all.extend(lat);
        errors += e;
    }
    if errors > 0 {
        let what = match target {
            Target::Http { url, .. } => url.as_str(),
            Target::RawPage { filtered: false, .. } => RAW_PAGE,
            Target::RawPage { filtered: true, .. } => RAW_FILTERED,
        };
        bail!("{what}: {errors} failed requests");
    }
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 - 1.0) * p) as usize).map_or(0.0, |v| *v as f64 / 1000.0);
    let cpu_us = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) if !all.is_empty() => Some((a - b) * 1e6 / all.len() as f64),
        _ => None,
    };
    Ok(Load { rps: all.len() as f64 / duration.as_secs_f64(), p50_ms: pct(0.5), p99_ms: pct(0.99), cpu_us })
}
