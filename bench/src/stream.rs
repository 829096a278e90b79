//! `stream`: `GET /v1/stream` under live traffic and in catch-up.
//!
//! - **Live**: anvil (1 s blocks), the traffic generator (`tidemark-traffic`), the release
//!   indexer and the release API on one database; for each client count, a fresh API
//!   process and that many SSE clients started at the head, for `--seconds` after a
//!   warm-up. The bench holds its own `LISTEN tidemark_journal` connection on a thread of
//!   its own: the indexer's `NOTIFY` (`<schema>:<head cursor>`, sent in each commit's
//!   transaction) arrives there when the commit becomes visible, so the receipt time of
//!   the first notification whose cursor is at or above an entry's cursor stands for that
//!   entry's commit. Commit→client latency = the client's receipt of the entry − that
//!   notification's receipt (both `Instant`s of this process).
//! - **Raw reference**, in the same windows: the bench sends
//!   `SELECT pg_notify('tidemark_journal', 'tidemark-bench-ref:<n>')` every 50 ms on a
//!   second connection and times it from the send to its receipt on the `LISTEN`
//!   connection: what one plain notification costs on this machine under the same load.
//! - **Catch-up**: `--catch-up-events` events committed by the indexer's writer into an
//!   instance of their own; an API on it; clients at `after=0` reading to the head.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use tidemark_db_client::PoolConfig;
use tidemark_db_client::test_utils::fixtures::create_instance;
use tidemark_db_client::test_utils::metadata;
use tidemark_db_client::writer::{Batch, EventRow, PgPool, Writer};
use tidemark_shared_types::{BlockRef, SchemaName};

use crate::api::{SCHEMA as CATCH_UP_SCHEMA, public_config, wait_ok, write_status};
use crate::procs::{self, BenchDb, Proc};
use crate::report::mib;

/// Settings; the defaults are the issue's.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Live SSE clients, one measurement per count (a fresh API process each).
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    clients: Vec<usize>,
    /// Seconds measured per run and client count, after a 3 s warm-up.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Transactions per second sent by the traffic generator (its default mix: about 4.5
    /// events per transaction).
    #[arg(long, default_value_t = 10.0)]
    tx_per_second: f64,
    /// anvil's block time in seconds (the local stack's: 1); 0 mines each transaction at
    /// once.
    #[arg(long, default_value_t = 1)]
    block_time: u64,
    /// Events stored for the catch-up case (0 skips it).
    #[arg(long, default_value_t = 200_000)]
    catch_up_events: u64,
    /// Clients reading the catch-up at once from `after=0`, one measurement per count.
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    catch_up_clients: Vec<usize>,
    /// A short run (about two minutes): clients 1,100, 10 s, 20,000 catch-up events, one
    /// run; replaces those settings.
    #[arg(long)]
    quick: bool,
}

const LIVE_SCHEMA: &str = "tidemark_bench_live";
const CHANNEL: &str = "tidemark_journal";
const REF_PREFIX: &str = "tidemark-bench-ref:";
const WARM_UP: Duration = Duration::from_secs(3);
/// Events per block and per commit of the catch-up instance.
pub(crate) const PER_BLOCK: u64 = 100;
const PER_COMMIT: usize = 10_000;

/// What the bench's `LISTEN` connection received.
#[derive(Default)]
struct Heard {
    /// The indexer's notifications: head cursor → first receipt.
    commits: BTreeMap<u64, Instant>,
    /// The bench's own notifications: (sent, received).
    reference: Vec<(Instant, Instant)>,
}

/// One SSE client's record.
#[derive(Default)]
struct ClientLog {
    /// (cursor, receipt) of every `log` and `removed` entry.
    entries: Vec<(u64, Instant)>,
    lagged: u64,
    /// Entries whose cursor was not above the one before.
    out_of_order: u64,
    bytes: u64,
    error: Option<String>,
}

/// Figures of one live run.
#[derive(Debug, Clone, Copy)]
struct Live {
    clients: usize,
    entries_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    ref_p50_ms: f64,
    ref_p99_ms: f64,
    peak_rss: u64,
    cpu_us_per_entry: f64,
    /// The bench's own CPU time (clients, listener) per entry delivered.
    bench_cpu_us_per_entry: f64,
    commits: usize,
    events_per_s: f64,
    lagged: u64,
    out_of_order: u64,
    unmatched: u64,
    early: u64,
    /// Entries of the window some client received and another did not (by the end of
    /// the run).
    missing: u64,
}

/// Figures of one catch-up run.
#[derive(Debug, Clone, Copy)]
struct CatchUp {
    clients: usize,
    entries: u64,
    seconds: f64,
    slowest_client_s: f64,
    peak_rss: u64,
}

pub(crate) async fn run(server: &str, runs: usize, mut args: Args) -> anyhow::Result<()> {
    let mut runs = runs.max(1);
    if args.quick {
        args.clients = vec![1, 100];
        args.seconds = 10;
        args.catch_up_events = 20_000;
        args.catch_up_clients = vec![1, 10];
        runs = 1;
    }
    let most = args.clients.iter().chain(&args.catch_up_clients).copied().max().unwrap_or(1);
    raise_fd_limit(most as u64 * 2 + 256)?;
    let load_before = procs::load_average();
    tidemark_db_client::tls::install_crypto_provider();
    // `TIDEMARK_BENCH_API` runs another build of the API (e.g. to compare two commits).
    let api_bin = match std::env::var_os("TIDEMARK_BENCH_API") {
        Some(path) => PathBuf::from(path),
        None => procs::release_binary("tidemark-api")?,
    };
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let dir = std::env::temp_dir().join(format!("tidemark-bench-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let catch_up = if args.catch_up_events > 0 && !args.catch_up_clients.is_empty() {
        catch_up_case(server, runs, &args, &api_bin, &http, &dir).await?
    } else {
        Vec::new()
    };
    let (live, traffic) = live_case(server, runs, &args, &api_bin, &http, &dir).await?;

    println!(
        "\n## stream: live, {} s per run after a {} s warm-up, median of {runs} (by p99)\n",
        args.seconds,
        WARM_UP.as_secs()
    );
    println!("{traffic}\n");
    println!(
        "| clients | entries/s delivered | p50 ms | p99 ms | max ms | raw NOTIFY p50 ms | raw NOTIFY p99 ms | API peak RSS | API CPU µs/entry | bench CPU µs/entry | commits | lagged |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for l in &live {
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {} | {:.1} | {:.1} | {} | {} |",
            l.clients,
            l.entries_per_s,
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            l.ref_p50_ms,
            l.ref_p99_ms,
            mib(l.peak_rss),
            l.cpu_us_per_entry,
            l.bench_cpu_us_per_entry,
            l.commits,
            l.lagged
        );
    }
    let bad: u64 = live.iter().map(|l| l.out_of_order).sum();
    let unmatched: u64 = live.iter().map(|l| l.unmatched).sum();
    let early: u64 = live.iter().map(|l| l.early).sum();
    let missing: u64 = live.iter().map(|l| l.missing).sum();
    println!(
        "\nIn the median runs: entries out of cursor order: {bad}; entries a client missed that another received: {missing}; \
         entries without a commit notification: {unmatched}; entries received before the bench's LISTEN connection \
         heard their commit (counted as 0 ms): {early}"
    );
    if let Some(l) = live.iter().filter(|l| l.clients >= 1000).max_by_key(|l| l.clients) {
        println!(
            "targets at {} clients: p99 {:.1} ms (< 100 ms: {}), API peak RSS {} (< 512 MiB: {})",
            l.clients,
            l.p99_ms,
            if l.p99_ms < 100.0 { "met" } else { "NOT met" },
            mib(l.peak_rss),
            if l.peak_rss < 512 << 20 { "met" } else { "NOT met" }
        );
    }
    if !catch_up.is_empty() {
        println!(
            "\n## stream: catch-up from after=0 over {} stored events, median of {runs} (by time)\n",
            args.catch_up_events
        );
        println!(
            "| clients | entries per client | seconds (all done) | slowest client s | entries/s per client | entries/s total | API peak RSS |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for c in &catch_up {
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {} |",
                c.clients,
                c.entries,
                c.seconds,
                c.slowest_client_s,
                c.entries as f64 / c.slowest_client_s,
                (c.entries * c.clients as u64) as f64 / c.seconds,
                mib(c.peak_rss)
            );
        }
    }
    procs::print_machine_load(load_before.as_deref());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The live case: returns the median run per client count and a line describing the
/// traffic.
async fn live_case(
    server: &str,
    runs: usize,
    args: &Args,
    api_bin: &PathBuf,
    http: &reqwest::Client,
    dir: &Path,
) -> anyhow::Result<(Vec<Live>, String)> {
    let db = BenchDb::create(server, "stream").await?;
    let block_time = args.block_time.to_string();
    let anvil_args: Vec<&str> = if args.block_time > 0 { vec!["--block-time", &block_time] } else { vec![] };
    let (anvil, rpc) = procs::anvil(&anvil_args).await?;
    let traffic_bin = procs::release_binary("tidemark-traffic")?;
    let deployed = std::process::Command::new(&traffic_bin)
        .args(["--rpc-url", &rpc, "deploy"])
        .output()
        .context("deploying the demo contracts")?;
    if !deployed.status.success() {
        bail!("tidemark-traffic deploy failed: {}", String::from_utf8_lossy(&deployed.stderr));
    }
    let addresses: serde_json::Value = serde_json::from_slice(&deployed.stdout).context("deploy output")?;
    let (token, registry) = (
        addresses["token"].as_str().context("token address")?.to_owned(),
        addresses["registry"].as_str().context("registry address")?.to_owned(),
    );
    std::fs::write(dir.join("Token.abi.json"), include_str!("../../deploy/demo/out/Token.abi.json"))?;
    std::fs::write(dir.join("Registry.abi.json"), include_str!("../../deploy/demo/out/Registry.abi.json"))?;
    let config = dir.join("tidemark.toml");
    std::fs::write(
        &config,
        format!(
            r#"namespace = "bench"
schema = "{LIVE_SCHEMA}"
database_url = "{db}"
[http]
listen = "127.0.0.1:{port}"
[[chains]]
chain_id = 31337
rpc_url = "{rpc}"
finality_depth = 2
poll_interval_ms = 100
[[chains.contracts]]
name = "Token"
addresses = ["{token}"]
abi = "Token.abi.json"
events = ["Transfer", "Approval"]
[[chains.contracts]]
name = "Registry"
addresses = ["{registry}"]
abi = "Registry.abi.json"
events = ["Registered", "Tagged", "Updated", "Burst"]
"#,
            db = db.url,
            port = procs::free_port()?,
        ),
    )?;
    let indexer = procs::spawn(
        "indexer",
        &procs::release_binary("tidemark-indexer")?,
        &["--config", &config.to_string_lossy()],
        &[("RUST_LOG", "warn".into())],
        &dir.join("indexer.log"),
    )?;
    let traffic = procs::spawn(
        "traffic",
        &traffic_bin,
        &[
            "--rpc-url",
            &rpc,
            "run",
            "--token",
            &token,
            "--registry",
            &registry,
            "--tx-per-second",
            &args.tx_per_second.to_string(),
            "--seed",
            "1",
        ],
        &[("RUST_LOG", "warn".into())],
        &dir.join("traffic.log"),
    )?;

    let heard = Arc::new(Mutex::new(Heard::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let listener = spawn_listener(&db.url, heard.clone(), stop.clone())?;
    // The instance exists and the indexer commits: a first notification for its schema.
    let started = Instant::now();
    while heard.lock().map_or(true, |h| h.commits.is_empty()) {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("no commit of the indexer within 120 s (see {})", dir.join("indexer.log").display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut results: BTreeMap<usize, Vec<Live>> = BTreeMap::new();
    for run in 0..runs {
        for &clients in &args.clients {
            let l = live_run(&db.url, api_bin, http, dir, clients, args.seconds, &heard).await?;
            eprintln!(
                "live run {}, {clients} clients: {:.0} entries/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
                 raw NOTIFY p50 {:.2} ms, p99 {:.2} ms; API peak RSS {}; CPU µs/entry: API {:.1}, bench {:.1}; {} commits, {:.0} events/s indexed; lagged {}, missed {}",
                run + 1,
                l.entries_per_s,
                l.p50_ms,
                l.p99_ms,
                l.max_ms,
                l.ref_p50_ms,
                l.ref_p99_ms,
                mib(l.peak_rss),
                l.cpu_us_per_entry,
                l.bench_cpu_us_per_entry,
                l.commits,
                l.events_per_s,
                l.lagged,
                l.missing
            );
            results.entry(clients).or_default().push(l);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = listener.join();
    traffic.stop();
    indexer.stop();
    drop(anvil);
    db.drop_now().await?;
    let all: Vec<Live> = results.values().flatten().copied().collect();
    let commits: usize = all.iter().map(|l| l.commits).sum();
    let events_per_s = all.iter().map(|l| l.events_per_s).sum::<f64>() / all.len().max(1) as f64;
    let per_s = commits as f64 / (all.len().max(1) as f64 * args.seconds as f64);
    let traffic = format!(
        "Traffic: `tidemark-traffic` at {} tx/s (default mix), anvil block time {} s, indexer `poll_interval_ms = 100`: \
         {events_per_s:.1} events/s indexed, {per_s:.2} commits/s on average over the windows",
        args.tx_per_second, args.block_time
    );
    let medians = results
        .into_values()
        .map(|mut v| {
            v.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
            v[v.len() / 2]
        })
        .collect();
    Ok((medians, traffic))
}

/// Starts an API on `db_url` (`schema`), waits until it answers.
async fn start_api(
    db_url: &str,
    schema: &str,
    api_bin: &PathBuf,
    http: &reqwest::Client,
    dir: &Path,
) -> anyhow::Result<(Proc, String)> {
    let port = procs::free_port()?;
    let api = procs::spawn(
        "api",
        api_bin,
        &[],
        &[
            ("DATABASE_URL", db_url.to_owned()),
            ("TIDEMARK_SCHEMA", schema.to_owned()),
            ("TIDEMARK_API_LISTEN", format!("127.0.0.1:{port}")),
            ("RUST_LOG", "warn".into()),
        ],
        &dir.join(format!("api-{schema}.log")),
    )?;
    let base = format!("http://127.0.0.1:{port}");
    wait_ok(http, &format!("{base}/health")).await?;
    Ok((api, base))
}

/// One live measurement: a fresh API, `clients` SSE clients from the head, `seconds`
/// measured after the warm-up.
async fn live_run(
    db_url: &str,
    api_bin: &PathBuf,
    http: &reqwest::Client,
    dir: &Path,
    clients: usize,
    seconds: u64,
    heard: &Arc<Mutex<Heard>>,
) -> anyhow::Result<Live> {
    let (api, base) = start_api(db_url, LIVE_SCHEMA, api_bin, http, dir).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (base, stop, connected) = (base.clone(), stop.clone(), connected.clone());
        tasks.push(tokio::spawn(async move {
            read_stream(base, "/v1/stream".into(), stop, connected, None).await
        }));
    }
    let started = Instant::now();
    while connected.load(Ordering::Relaxed) < clients as u64 {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{} of {clients} clients connected within 60 s", connected.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(WARM_UP).await;
    let me = std::process::id();
    let (cpu_before, own_before) = (procs::cpu_seconds(api.pid()), procs::cpu_seconds(me));
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let t1 = Instant::now();
    let (cpu_after, own_after) = (procs::cpu_seconds(api.pid()), procs::cpu_seconds(me));
    let peak_rss = api.peak_rss().unwrap_or(0);
    // Entries committed just before t1 still arrive: let them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::with_capacity(clients);
    for t in tasks {
        logs.push(t.await?);
    }
    api.stop();
    if let Some(e) = logs.iter().find_map(|l| l.error.clone()) {
        bail!("a stream client failed: {e}");
    }

    let (commits, reference, first_cursor) = {
        let h = heard.lock().map_err(|_| anyhow::anyhow!("listener poisoned"))?;
        // The head before the window: entries above it were committed in the window.
        let before = h.commits.iter().rev().find(|(_, at)| **at < t0).map_or(0, |(c, _)| *c);
        let commits: BTreeMap<u64, Instant> =
            h.commits.range(before + 1..).filter(|(_, at)| **at <= t1).map(|(c, a)| (*c, *a)).collect();
        let reference: Vec<f64> = h
            .reference
            .iter()
            .filter(|(sent, _)| *sent >= t0 && *sent <= t1)
            .map(|(sent, got)| got.duration_since(*sent).as_secs_f64() * 1000.0)
            .collect();
        (commits, reference, before + 1)
    };
    let last_cursor = commits.keys().next_back().copied().unwrap_or(0);
    let (mut lat, mut unmatched, mut early, mut lagged, mut out_of_order) = (Vec::new(), 0u64, 0u64, 0, 0);
    let mut delivered = 0u64;
    // Every entry of the window that some client received: each client should have all.
    let mut union = std::collections::BTreeSet::new();
    let mut matched = 0u64;
    for log in &logs {
        lagged += log.lagged;
        out_of_order += log.out_of_order;
        for &(cursor, at) in &log.entries {
            if at >= t0 && at <= t1 {
                delivered += 1;
            }
            if cursor < first_cursor || cursor > last_cursor {
                continue;
            }
            union.insert(cursor);
            matched += 1;
            match commits.range(cursor..).next() {
                Some((_, heard_at)) => {
                    if at < *heard_at {
                        early += 1;
                        lat.push(0.0);
                    } else {
                        lat.push(at.duration_since(*heard_at).as_secs_f64() * 1000.0);
                    }
                }
                None => unmatched += 1,
            }
        }
    }
    let missing = (union.len() as u64 * clients as u64).saturating_sub(matched);
    let window = t1.duration_since(t0).as_secs_f64();
    let (p50_ms, p99_ms, max_ms) = percentiles(&mut lat);
    let mut reference = reference;
    let (ref_p50_ms, ref_p99_ms, _) = percentiles(&mut reference);
    let cpu = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) => a - b,
        _ => 0.0,
    };
    let own = match (own_before, own_after) {
        (Some(b), Some(a)) => a - b,
        _ => 0.0,
    };
    Ok(Live {
        clients,
        entries_per_s: delivered as f64 / window,
        p50_ms,
        p99_ms,
        max_ms,
        ref_p50_ms,
        ref_p99_ms,
        peak_rss,
        cpu_us_per_entry: if delivered > 0 { cpu * 1e6 / delivered as f64 } else { 0.0 },
        bench_cpu_us_per_entry: if delivered > 0 { own * 1e6 / delivered as f64 } else { 0.0 },
        commits: commits.len(),
        events_per_s: union.len() as f64 / window,
        missing,
        lagged,
        out_of_order,
        unmatched,
        early,
    })
}

/// p50, p99 and max of `v` (sorted in place); zeros when empty.
fn percentiles(v: &mut [f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

/// Reads one SSE stream until `stop` (or, with `until`, until the entry of that cursor):
/// records each entry's cursor and receipt time (one `Instant` per read from the socket).
///
/// A plain HTTP/1.1 request on a `TcpStream` of its own, read with one task and one
/// buffer, so that a thousand of them cost the bench little: only the `id:` and `event:`
/// lines are looked at (the chunked encoding's size lines pass as lines of no interest;
/// hyper writes each SSE frame as one chunk).
async fn read_stream(
    base: String,
    path: String,
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicU64>,
    until: Option<u64>,
) -> ClientLog {
    let mut log = ClientLog::default();
    let result = read_stream_into(&base, &path, &stop, &connected, until, &mut log).await;
    if let Err(e) = result {
        log.error = Some(format!("{base}{path}: {e:#}"));
    }
    log
}

async fn read_stream_into(
    base: &str,
    path: &str,
    stop: &AtomicBool,
    connected: &AtomicU64,
    until: Option<u64>,
    log: &mut ClientLog,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.strip_prefix("http://").unwrap_or(base);
    let mut counted = false;
    let mut count = || {
        if !std::mem::replace(&mut counted, true) {
            connected.fetch_add(1, Ordering::Relaxed);
        }
    };
    let sock = tokio::net::TcpStream::connect(host).await;
    let mut sock = match sock {
        Ok(s) => s,
        Err(e) => {
            count();
            return Err(e.into());
        }
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
    sock.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut head: Option<Vec<u8>> = Some(Vec::new());
    let mut line: Vec<u8> = Vec::with_capacity(64);
    let (mut id, mut event): (Option<u64>, Vec<u8>) = (None, Vec::new());
    let mut last = 0u64;
    let tick = Duration::from_millis(200);
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let n = match tokio::time::timeout(tick, sock.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(0)) => break Err(anyhow::anyhow!("the stream ended")),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => break Err(e.into()),
        };
        let at = Instant::now();
        log.bytes += n as u64;
        let mut body = &buf[..n];
        let rest;
        if let Some(h) = head.as_mut() {
            h.extend_from_slice(body);
            let Some(end) = h.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            if !h.starts_with(b"HTTP/1.1 200") {
                let status = String::from_utf8_lossy(&h[..h.len().min(40)]).into_owned();
                count();
                break Err(anyhow::anyhow!("answer {status:?}"));
            }
            count();
            rest = h.split_off(end + 4);
            head = None;
            body = &rest;
        }
        for &b in body {
            if b != b'\n' {
                // Only the short fields are kept; `data:` lines are skipped.
                if b != b'\r' && line.len() < 64 {
                    line.push(b);
                }
                continue;
            }
            if line.is_empty() {
                // End of an event (or a chunk's trailing CRLF, with no fields).
                if let Some(cursor) = id.take() {
                    if event == b"log" || event == b"removed" {
                        if cursor <= last {
                            log.out_of_order += 1;
                        }
                        last = cursor;
                        log.entries.push((cursor, at));
                        if until.is_some_and(|u| cursor >= u) {
                            return Ok(());
                        }
                    }
                } else if event == b"lagged" {
                    log.lagged += 1;
                }
                event.clear();
            } else if let Some(v) = line.strip_prefix(b"id: ") {
                id = std::str::from_utf8(v).ok().and_then(|s| s.trim().parse().ok());
            } else if let Some(v) = line.strip_prefix(b"event: ") {
                event.clear();
                event.extend_from_slice(v);
            }
            line.clear();
        }
    };
    count();
    result
}

/// The bench's `LISTEN tidemark_journal` connection and its reference `NOTIFY`s (every
/// 50 ms on a second connection), on a thread and runtime of their own so that the
/// clients' tasks do not delay the receipts.
fn spawn_listener(
    db_url: &str,
    heard: Arc<Mutex<Heard>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let url = db_url.to_owned();
    let prefix = format!("{LIVE_SCHEMA}:");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let handle = std::thread::Builder::new().name("bench-listen".into()).spawn(move || {
        runtime.block_on(async move {
            let connector = match tidemark_db_client::tls::PgConnector::new(&url) {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            let (listen, mut connection) = match connector.connect().await {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            let sent: Arc<Mutex<BTreeMap<u64, Instant>>> = Arc::default();
            let (sent2, heard2) = (sent.clone(), heard.clone());
            let messages = tokio::spawn(async move {
                let mut messages =
                    std::pin::pin!(futures::stream::poll_fn(move |cx| connection.poll_message(cx)));
                while let Some(Ok(m)) = messages.next().await {
                    let at = Instant::now();
                    if let tokio_postgres::AsyncMessage::Notification(n) = m {
                        let payload = n.payload();
                        if let Some(c) =
                            payload.strip_prefix(prefix.as_str()).and_then(|c| c.parse::<u64>().ok())
                        {
                            if let Ok(mut h) = heard2.lock() {
                                h.commits.entry(c).or_insert(at);
                            }
                        } else if let Some(n) =
                            payload.strip_prefix(REF_PREFIX).and_then(|n| n.parse::<u64>().ok())
                        {
                            let sent_at = sent2.lock().ok().and_then(|mut s| s.remove(&n));
                            if let (Some(sent_at), Ok(mut h)) = (sent_at, heard2.lock()) {
                                h.reference.push((sent_at, at));
                            }
                        }
                    }
                }
            });
            if let Err(e) = listen.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                let _ = ready_tx.send(Err(e.into()));
                return;
            }
            let notify = match connector.connect_spawned().await {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let mut n = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                if let Ok(mut s) = sent.lock() {
                    s.insert(n, Instant::now());
                }
                let sql = format!("SELECT pg_notify('{CHANNEL}', '{REF_PREFIX}{n}')");
                if let Err(e) = notify.batch_execute(&sql).await {
                    eprintln!("reference NOTIFY failed: {e}");
                }
            }
            drop(listen);
            messages.abort();
        });
    })?;
    ready_rx.recv().context("the listener thread ended")??;
    Ok(handle)
}

/// The catch-up case: `--catch-up-events` events committed by the writer; per client
/// count, clients at `after=0` reading to the head.
async fn catch_up_case(
    server: &str,
    runs: usize,
    args: &Args,
    api_bin: &PathBuf,
    http: &reqwest::Client,
    dir: &Path,
) -> anyhow::Result<Vec<CatchUp>> {
    let db = BenchDb::create(server, "stream_catchup").await?;
    let pool = PgPool::new(PoolConfig::new(db.url.clone()))?;
    let schema = SchemaName::new(CATCH_UP_SCHEMA)?;
    create_instance(&pool, &schema).await?;
    metadata::write_public_config(&mut *pool.get().await?, &public_config()).await?;
    let started = Instant::now();
    let head = seed(&pool, &schema, args.catch_up_events).await?;
    eprintln!(
        "catch-up instance: {} events committed by the writer in {:.1} s (head cursor {head})",
        args.catch_up_events,
        started.elapsed().as_secs_f64()
    );
    write_status(&pool, args.catch_up_events / PER_BLOCK).await?;
    drop(pool);

    let mut results: BTreeMap<usize, Vec<CatchUp>> = BTreeMap::new();
    for run in 0..runs {
        for &clients in &args.catch_up_clients {
            let (api, base) = start_api(&db.url, CATCH_UP_SCHEMA, api_bin, http, dir).await?;
            let stop = Arc::new(AtomicBool::new(false));
            let connected = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let tasks: Vec<_> = (0..clients)
                .map(|_| {
                    let (base, stop, connected) = (base.clone(), stop.clone(), connected.clone());
                    tokio::spawn(async move {
                        let log =
                            read_stream(base, "/v1/stream?after=0".into(), stop, connected, Some(head)).await;
                        (log, started.elapsed())
                    })
                })
                .collect();
            let mut slowest = Duration::ZERO;
            for t in tasks {
                let (log, took) = t.await?;
                if let Some(e) = log.error {
                    bail!("a catch-up client failed: {e}");
                }
                if log.entries.len() as u64 != args.catch_up_events || log.out_of_order > 0 {
                    bail!(
                        "a catch-up client got {} entries ({} out of order), expected {}",
                        log.entries.len(),
                        log.out_of_order,
                        args.catch_up_events
                    );
                }
                slowest = slowest.max(took);
            }
            let seconds = started.elapsed().as_secs_f64();
            let peak_rss = api.peak_rss().unwrap_or(0);
            api.stop();
            let c = CatchUp {
                clients,
                entries: args.catch_up_events,
                seconds,
                slowest_client_s: slowest.as_secs_f64(),
                peak_rss,
            };
            eprintln!(
                "catch-up run {}, {clients} clients × {} entries: {:.2} s, {:.0} entries/s total; API peak RSS {}",
                run + 1,
                c.entries,
                seconds,
                (c.entries * clients as u64) as f64 / seconds,
                mib(peak_rss)
            );
            results.entry(clients).or_default().push(c);
        }
    }
    db.drop_now().await?;
    Ok(results
        .into_values()
        .map(|mut v| {
            v.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
            v[v.len() / 2]
        })
        .collect())
}

/// Commits `events` Token `Transfer`s (100 per block) through the indexer's writer, in
/// batches of 10,000; returns the head cursor.
pub(crate) async fn seed(pool: &PgPool, schema: &SchemaName, events: u64) -> anyhow::Result<u64> {
    let mut writer = Writer::try_acquire(pool, schema).await?.context("the writer lock is free")?;
    let word = |n: u64| format!("0x{n:064x}");
    let rows: Vec<EventRow> = (0..events)
        .map(|i| {
            let block = 1 + i / PER_BLOCK;
            let (from, to) = (i % 997, (i * 7 + 3) % 1009);
            EventRow {
                block_number: block,
                block_hash: word(block),
                block_timestamp: 1_700_000_000 + block,
                tx_hash: word((1 << 40) | (i / 3)),
                tx_index: (i % PER_BLOCK) / 3,
                log_index: i % PER_BLOCK,
                address: "0x5fbdb2315678afecb367f032d93f642f64180aa3".into(),
                contract: "Token".into(),
                event: "Transfer".into(),
                signature: "event Transfer(address indexed from, address indexed to, uint256 value)".into(),
                topics: vec![
                    "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef".into(),
                    word(from),
                    word(to),
                ],
                data: word(i * 1_000_000_007),
                args: Some(serde_json::json!({
                    "from": format!("0x{from:040x}"),
                    "to": format!("0x{to:040x}"),
                    "value": (i * 1_000_000_007).to_string(),
                })),
                decode_error: None,
            }
        })
        .collect();
    for chunk in rows.chunks(PER_COMMIT) {
        let last = chunk.last().context("a chunk has rows")?;
        let checkpoint = BlockRef {
            number: last.block_number,
            timestamp: last.block_timestamp,
            hash: last.block_hash.clone(),
        };
        writer.commit(Batch::new(31337, chunk, &checkpoint)).await?;
    }
    let mut conn = pool.get().await?;
    let head: i64 = diesel_async::RunQueryDsl::get_result::<Head>(
        diesel::sql_query(format!("SELECT max(cursor) AS head FROM {}.events", schema.as_str())),
        &mut conn,
    )
    .await?
    .head
    .context("no events")?;
    Ok(head as u64)
}

#[derive(diesel::QueryableByName)]
struct Head {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    head: Option<i64>,
}

/// Raises the soft limit of open files to at least `want` (up to the hard limit).
fn raise_fd_limit(want: u64) -> anyhow::Result<()> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit failed");
    }
    if lim.rlim_cur >= want {
        return Ok(());
    }
    lim.rlim_cur = want.min(lim.rlim_max);
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        bail!("setrlimit failed");
    }
    if lim.rlim_cur < want {
        eprintln!("open files limited to {} (hard limit); {want} wanted", lim.rlim_cur);
    }
    Ok(())
}
