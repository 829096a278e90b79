//! `webhook`: head→stored latency of new blocks with `poll_interval_ms` polling alone
//! against the same polling plus provider webhook deliveries.
//!
//! Each mode has a fresh database, a fresh anvil (automine) with the demo contracts and a
//! release indexer (`poll_interval_ms = --poll-interval-ms`, default 2000). In the webhook
//! mode the chain also has a `[[chains.webhooks]]` entry, and the provider simulator
//! (`tidemark_traffic::webhook_sim`, no faults, one request at a time, polling the head
//! every `--sim-poll-ms`) runs in this process and pushes every new block to the
//! indexer's endpoint through a local relay of the bench, which stamps when each delivery
//! arrived and when the indexer answered it.
//!
//! Once the indexer has caught up (and after one warm-up block that is not counted), the
//! bench repeats `--blocks` times: wait a random delay (uniform in
//! `--min-delay-ms..=--max-delay-ms`, seeded: the same sequence in both modes, so the
//! blocks land at random phases of the poll), send one demo transaction (its own block,
//! with events), take t0 when the RPC returns its receipt (the mined block number), then
//! read the chain's checkpoint on a dedicated PostgreSQL connection every 5 ms until it
//! reaches that block: latency = that read − t0. A block not stored within 30 s fails the
//! bench.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use alloy::primitives::{B256, U256};
use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tidemark_traffic::webhook_sim::{self, SimOptions, SimSummary, WebhookFormat};
use tidemark_traffic::{Call, Demo, RECIPIENTS};
use tokio_util::sync::CancellationToken;

use crate::procs::{self, BenchDb};

/// `webhook` options.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Blocks measured per mode.
    #[arg(long, default_value_t = 60)]
    blocks: usize,
    /// The indexer's `poll_interval_ms` in both modes.
    #[arg(long, default_value_t = 2000)]
    poll_interval_ms: u64,
    /// How often the provider simulator polls the chain's head, in milliseconds.
    #[arg(long, default_value_t = 20)]
    sim_poll_ms: u64,
    /// Webhook format and endpoint.
    #[arg(long, value_enum, default_value_t = Provider::Standard)]
    provider: Provider,
    /// Shortest wait before a block, in milliseconds.
    #[arg(long, default_value_t = 500)]
    min_delay_ms: u64,
    /// Longest wait before a block, in milliseconds.
    #[arg(long, default_value_t = 2500)]
    max_delay_ms: u64,
    /// Seed of the waits (the same sequence in both modes).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The webhook provider played by the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Provider {
    /// Standard Webhooks, `POST /v1/webhooks/standard/{chainId}`.
    Standard,
    /// Alchemy Notify custom webhooks, `POST /v1/webhooks/alchemy/{chainId}`.
    Alchemy,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Alchemy => "alchemy",
        }
    }

    fn format(self) -> WebhookFormat {
        match self {
            Self::Standard => WebhookFormat::Standard,
            Self::Alchemy => WebhookFormat::Alchemy,
        }
    }

    fn secret(self) -> &'static str {
        match self {
            Self::Standard => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            Self::Alchemy => "bench-alchemy-signing-key",
        }
    }
}

const SCHEMA: &str = "tidemark_bench_webhook";
const CHAIN_ID: u64 = 31337;
/// How often the bench reads the checkpoint.
const CHECK_EVERY: Duration = Duration::from_millis(5);
/// A block not stored within this fails the bench.
const STORE_TIMEOUT: Duration = Duration::from_secs(30);
/// The initial backfill of the few setup blocks.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// Where one delivery spent its time (webhook mode), from t0.
#[derive(Debug, Clone, Copy)]
struct Hops {
    /// t0 → the delivery reached the relay (the simulator's head poll, its block fetch,
    /// signing, the POST).
    to_arrival_ms: f64,
    /// Arrival → the indexer's 2xx (the delivery recorded).
    answer_ms: f64,
    /// The 2xx → the bench read the checkpoint at the block (park, wake, the follower's
    /// RPC confirmation and commit, and up to one checkpoint read interval); negative when
    /// the commit was seen before the relay had the answer.
    to_stored_ms: f64,
}

/// One mode's measurements.
struct Mode {
    label: String,
    latencies_ms: Vec<f64>,
    /// Webhook mode: the split of each block whose delivery was accepted.
    hops: Vec<Hops>,
    /// Webhook mode: blocks seen stored before their delivery reached the indexer (or
    /// without an accepted delivery).
    stored_first: usize,
    /// The indexer's JSON-RPC requests during the measured blocks, and their mean time.
    rpc_requests: f64,
    rpc_mean_ms: f64,
    sim: Option<SimSummary>,
    /// The `webhooks` object of the indexer's `/status` at the end (webhook mode).
    webhook_status: Option<serde_json::Value>,
}

pub(crate) async fn run(server: &str, args: Args) -> anyhow::Result<()> {
    if args.blocks == 0 || args.min_delay_ms > args.max_delay_ms {
        bail!("--blocks must be positive and --min-delay-ms at most --max-delay-ms");
    }
    tidemark_db_client::tls::install_crypto_provider();
    let load_before = procs::load_average();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let delays: Vec<Duration> = (0..args.blocks)
        .map(|_| Duration::from_millis(rng.random_range(args.min_delay_ms..=args.max_delay_ms)))
        .collect();
    let indexer_bin = procs::release_binary("tidemark-indexer")?;
    let dir = std::env::temp_dir().join(format!("tidemark-bench-webhook-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let polling = measure(server, &args, &indexer_bin, &dir, &delays, false).await?;
    let webhook = measure(server, &args, &indexer_bin, &dir, &delays, true).await?;

    let (p, w) = (Stats::of(&polling.latencies_ms), Stats::of(&webhook.latencies_ms));
    println!(
        "\n## webhook: head→stored latency, `poll_interval_ms = {}`, {} blocks per mode\n",
        args.poll_interval_ms, args.blocks
    );
    println!(
        "Blocks sent at random waits of {}–{} ms (seed {}, the same in both modes); t0 = the receipt's \
         return, stored = the first checkpoint read (every {} ms) at or above the block.\n",
        args.min_delay_ms,
        args.max_delay_ms,
        args.seed,
        CHECK_EVERY.as_millis()
    );
    println!("| mode | blocks | p50 ms | p90 ms | p99 ms | max ms | min ms | mean ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (m, s) in [(&polling, &p), (&webhook, &w)] {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            m.label, s.n, s.p50, s.p90, s.p99, s.max, s.min, s.mean
        );
    }
    let ratio = w.p50 / p.p50;
    println!(
        "\nwebhook p50 / polling p50 = {ratio:.3} ({:.1} ms / {:.1} ms; target < 0.5: {})",
        w.p50,
        p.p50,
        if ratio < 0.5 { "met" } else { "NOT met" }
    );

    println!("\n### What bounds each path\n");
    println!(
        "- polling alone: a block waits for the follower's next poll, uniform in 0–{} ms ({} ms on average), \
         then one follow step (head, checkpoint hash, headers, logs, commit); the fastest block took {:.1} ms",
        args.poll_interval_ms,
        args.poll_interval_ms / 2,
        p.min
    );
    println!(
        "- webhook: the simulator polls the head every {} ms (0–{} ms, {:.0} ms on average), fetches the block \
         and its logs, signs and POSTs it; the indexer records it, parks it, wakes the follower, which confirms \
         it over RPC and commits",
        args.sim_poll_ms,
        args.sim_poll_ms,
        args.sim_poll_ms as f64 / 2.0
    );
    if !webhook.hops.is_empty() {
        let arrival = Stats::of(&webhook.hops.iter().map(|h| h.to_arrival_ms).collect::<Vec<_>>());
        let answer = Stats::of(&webhook.hops.iter().map(|h| h.answer_ms).collect::<Vec<_>>());
        let stored = Stats::of(&webhook.hops.iter().map(|h| h.to_stored_ms).collect::<Vec<_>>());
        println!(
            "\n| webhook mode, per block ({} blocks) | p50 ms | p90 ms | max ms |\n|---|---:|---:|---:|",
            webhook.hops.len()
        );
        for (name, s) in [
            ("t0 → delivery at the indexer (simulator's head poll, block fetch, POST)", &arrival),
            ("delivery → 2xx (recorded in `webhook_deliveries`)", &answer),
            (
                "2xx → checkpoint read at the block (park, wake, RPC confirmation, commit, ≤ 5 ms read)",
                &stored,
            ),
        ] {
            println!("| {name} | {:.1} | {:.1} | {:.1} |", s.p50, s.p90, s.max);
        }
    }
    if webhook.stored_first > 0 {
        println!(
            "\nblocks stored before their delivery reached the indexer, or without an accepted delivery (polling got there first): {}",
            webhook.stored_first
        );
    }
    println!();
    for m in [&polling, &webhook] {
        println!(
            "- {}: the indexer's JSON-RPC requests during the measured blocks: {:.1} per block, {:.2} ms each on average",
            m.label,
            m.rpc_requests / m.latencies_ms.len() as f64,
            m.rpc_mean_ms
        );
    }
    if let Some(s) = &webhook.sim {
        println!(
            "- simulator: {} blocks, {} requests sent, {} accepted, {} retries, {} given up",
            s.blocks, s.sent, s.accepted, s.retries, s.given_up
        );
    }
    if let Some(status) = &webhook.webhook_status {
        println!("- indexer `/status` webhooks: {status}");
    }
    procs::print_machine_load(load_before.as_deref());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// One mode: fresh database, anvil and indexer; the measured blocks.
async fn measure(
    server: &str,
    args: &Args,
    indexer_bin: &PathBuf,
    dir: &Path,
    delays: &[Duration],
    with_webhook: bool,
) -> anyhow::Result<Mode> {
    let tag = if with_webhook { "webhook_push" } else { "webhook_poll" };
    let label = if with_webhook {
        format!("polling + {} webhooks (simulator head poll {} ms)", args.provider.name(), args.sim_poll_ms)
    } else {
        "polling alone".to_owned()
    };
    eprintln!("{label}: starting");
    let db = BenchDb::create(server, tag).await?;
    let (anvil, rpc) = procs::anvil(&[]).await?;
    let demo = Demo::deploy(&rpc).await.context("deploying the demo contracts")?;
    let port = procs::free_port()?;
    let config = write_config(dir, tag, &db.url, &rpc, port, &demo, args, with_webhook)?;
    let log = dir.join(format!("{tag}-indexer.log"));
    let indexer = procs::spawn(
        "indexer",
        indexer_bin,
        &["--config", &config.to_string_lossy()],
        &[("RUST_LOG", "warn".into())],
        &log,
    )?;
    let checkpoints = Checkpoints::connect(&db.url).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build()?;
    let indexer_url = format!("http://127.0.0.1:{port}");

    let head = demo.block_number().await?;
    checkpoints
        .wait_for(head, SYNC_TIMEOUT)
        .await
        .with_context(|| format!("the indexer did not catch up to block {head} (see {})", log.display()))?;

    let shutdown = CancellationToken::new();
    let (relay, sim) = if with_webhook {
        let relay = Relay::start(&indexer_url, shutdown.clone()).await?;
        let endpoint = format!("{}/v1/webhooks/{}/{CHAIN_ID}", relay.url, args.provider.name());
        let mut opts = SimOptions::new(&rpc, endpoint, args.provider.format(), args.provider.secret());
        opts.from_block = Some(head + 1);
        opts.concurrency = 1;
        opts.poll = Duration::from_millis(args.sim_poll_ms);
        opts.seed = Some(args.seed);
        let task = tokio::spawn(webhook_sim::run(opts, shutdown.clone()));
        (Some(relay), Some(task))
    } else {
        (None, None)
    };

    // One warm-up block, not counted: every connection on the path is open.
    let warm = demo.send(call(&demo, 0)).await?;
    let warm_block = warm.block_number.context("receipt without a block number")?;
    checkpoints
        .wait_for(warm_block, STORE_TIMEOUT)
        .await
        .with_context(|| format!("the warm-up block was not stored (see {})", log.display()))?;

    let rpc_before = rpc_metrics(&http, &indexer_url).await?;
    let mut latencies_ms = Vec::with_capacity(delays.len());
    let mut stored_at = Vec::with_capacity(delays.len());
    for (i, delay) in delays.iter().enumerate() {
        tokio::time::sleep(*delay).await;
        let receipt = demo.send(call(&demo, i as u64 + 1)).await?;
        let t0 = Instant::now();
        let block = receipt.block_number.context("receipt without a block number")?;
        let stored = checkpoints.wait_for(block, STORE_TIMEOUT).await.with_context(|| {
            format!("{label}: block {block} (#{}) was not stored (see {})", i + 1, log.display())
        })?;
        let ms = stored.duration_since(t0).as_secs_f64() * 1e3;
        latencies_ms.push(ms);
        stored_at.push((block, t0, stored));
        if (i + 1) % 10 == 0 {
            eprintln!("{label}: {} of {} blocks, last {ms:.1} ms", i + 1, delays.len());
        }
    }
    let rpc_after = rpc_metrics(&http, &indexer_url).await?;

    let (mut hops, mut stored_first) = (Vec::new(), 0);
    if let Some(relay) = &relay {
        let seen = relay.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for (block, t0, stored) in &stored_at {
            match seen.get(block).filter(|d| (200..300).contains(&d.status)) {
                Some(d) => {
                    if d.arrived > *stored {
                        stored_first += 1;
                    }
                    hops.push(Hops {
                        to_arrival_ms: signed_ms(*t0, d.arrived),
                        answer_ms: signed_ms(d.arrived, d.answered),
                        to_stored_ms: signed_ms(d.answered, *stored),
                    });
                }
                None => stored_first += 1,
            }
        }
    }
    let webhook_status = if with_webhook { webhooks_status(&http, &indexer_url).await } else { None };
    shutdown.cancel();
    let sim = match sim {
        Some(task) => Some(task.await?.context("the webhook simulator failed")?),
        None => None,
    };
    indexer.stop();
    drop(anvil);
    drop(checkpoints);
    db.drop_now().await?;
    let requests = rpc_after.0 - rpc_before.0;
    let rpc_mean_ms = if requests > 0.0 { (rpc_after.1 - rpc_before.1) / requests * 1e3 } else { 0.0 };
    let s = Stats::of(&latencies_ms);
    eprintln!("{label}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", s.p50, s.p99, s.max);
    Ok(Mode {
        label,
        latencies_ms,
        hops,
        stored_first,
        rpc_requests: requests,
        rpc_mean_ms,
        sim,
        webhook_status,
    })
}

/// The transaction of block `i`: a mix of the demo events, one transaction per block.
fn call(demo: &Demo, i: u64) -> Call {
    let who = RECIPIENTS[(i % RECIPIENTS.len() as u64) as usize];
    match i % 4 {
        0 => demo.burst_call(5),
        1 => demo.batch_transfer_call(&RECIPIENTS[..3], U256::from(7)),
        2 => demo.tag_call(B256::with_last_byte(i as u8), &["a", "b"], b"bench"),
        _ => demo.update_call(i, who, u128::from(i), true, "bench"),
    }
}

#[allow(clippy::too_many_arguments)]
fn write_config(
    dir: &Path,
    tag: &str,
    db_url: &str,
    rpc: &str,
    port: u16,
    demo: &Demo,
    args: &Args,
    with_webhook: bool,
) -> anyhow::Result<PathBuf> {
    std::fs::write(dir.join("Token.abi.json"), include_str!("../../deploy/demo/out/Token.abi.json"))?;
    std::fs::write(dir.join("Registry.abi.json"), include_str!("../../deploy/demo/out/Registry.abi.json"))?;
    let webhook = if with_webhook {
        format!(
            "[[chains.webhooks]]\nprovider = \"{}\"\nsecret = \"{}\"\n",
            args.provider.name(),
            args.provider.secret()
        )
    } else {
        String::new()
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
poll_interval_ms = {poll}
[[chains.contracts]]
name = "Token"
addresses = ["{token:#x}"]
abi = "Token.abi.json"
events = ["Transfer", "Approval"]
[[chains.contracts]]
name = "Registry"
addresses = ["{registry:#x}"]
abi = "Registry.abi.json"
events = ["Registered", "Tagged", "Updated", "Burst"]
{webhook}"#,
            poll = args.poll_interval_ms,
            token = demo.token,
            registry = demo.registry,
        ),
    )?;
    Ok(config)
}

/// A dedicated connection reading the chain's checkpoint.
struct Checkpoints {
    client: tokio_postgres::Client,
    sql: String,
}

impl Checkpoints {
    async fn connect(db_url: &str) -> anyhow::Result<Self> {
        let client = tidemark_db_client::tls::connect(db_url).await.context("connecting to PostgreSQL")?;
        let sql = format!("SELECT block_number FROM {SCHEMA}.checkpoints WHERE chain_id = {CHAIN_ID}");
        Ok(Self { client, sql })
    }

    /// The checkpoint, `None` before the instance or the chain's row exists.
    async fn read(&self) -> Option<i64> {
        let rows = self.client.simple_query(&self.sql).await.ok()?;
        rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
    }

    /// Reads the checkpoint every [`CHECK_EVERY`] until it is at or above `block`;
    /// returns when the read that saw it returned.
    async fn wait_for(&self, block: u64, timeout: Duration) -> anyhow::Result<Instant> {
        let started = Instant::now();
        loop {
            let at = self.read().await;
            let now = Instant::now();
            if at.is_some_and(|n| n >= block as i64) {
                return Ok(now);
            }
            if started.elapsed() > timeout {
                bail!("checkpoint at {at:?} after {} s, waiting for block {block}", timeout.as_secs());
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }
}

/// What the relay saw of one block's first delivery.
#[derive(Debug, Clone, Copy)]
struct Seen {
    arrived: Instant,
    answered: Instant,
    status: u16,
}

/// A local HTTP relay between the simulator and the indexer: forwards each request as it
/// is (path, signature headers, body) and stamps its arrival and the indexer's answer.
struct Relay {
    url: String,
    seen: Arc<Mutex<BTreeMap<u64, Seen>>>,
}

#[derive(Clone)]
struct RelayState {
    target: String,
    client: reqwest::Client,
    seen: Arc<Mutex<BTreeMap<u64, Seen>>>,
}

impl Relay {
    async fn start(target: &str, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let seen: Arc<Mutex<BTreeMap<u64, Seen>>> = Arc::default();
        let state =
            RelayState { target: target.to_owned(), client: reqwest::Client::new(), seen: seen.clone() };
        let router = axum::Router::new().fallback(relay).with_state(state);
        tokio::spawn(async move {
            let served =
                axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await;
            if let Err(e) = served {
                eprintln!("the webhook relay stopped: {e}");
            }
        });
        Ok(Self { url, seen })
    }
}

async fn relay(
    axum::extract::State(state): axum::extract::State<RelayState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let arrived = Instant::now();
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut headers = parts.headers.clone();
    headers.remove(axum::http::header::HOST);
    headers.remove(axum::http::header::CONTENT_LENGTH);
    let sent = state
        .client
        .post(format!("{}{}", state.target, parts.uri.path()))
        .headers(headers)
        .body(body.clone())
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => return (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = response.status();
    let answer = response.bytes().await.unwrap_or_default();
    let answered = Instant::now();
    if let Some(block) = delivered_block(&body) {
        let mut seen = state.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let first = seen.get(&block).is_none_or(|s| !(200..300).contains(&s.status));
        if first {
            seen.insert(block, Seen { arrived, answered, status: status.as_u16() });
        }
    }
    (status, answer).into_response()
}

/// The block number a delivery announces (Standard: `block.number`, a quantity;
/// Alchemy: `event.data.block.number`).
fn delivered_block(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let n = v.pointer("/block/number").or_else(|| v.pointer("/event/data/block/number"))?;
    match n {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        },
        _ => None,
    }
}

/// `tidemark_rpc_request_seconds` of the indexer's `/metrics`: (count, sum in seconds)
/// over every method.
async fn rpc_metrics(http: &reqwest::Client, indexer: &str) -> anyhow::Result<(f64, f64)> {
    let text = http.get(format!("{indexer}/metrics")).send().await?.error_for_status()?.text().await?;
    let (mut count, mut sum) = (0.0, 0.0);
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        let metric = name.split('{').next().unwrap_or_default();
        let Ok(value) = value.parse::<f64>() else { continue };
        match metric {
            "tidemark_rpc_request_seconds_count" => count += value,
            "tidemark_rpc_request_seconds_sum" => sum += value,
            _ => {}
        }
    }
    Ok((count, sum))
}

/// The `webhooks` object of the chain in the indexer's `/status`, without the latencies
/// (whole-second block timestamps make them coarse).
async fn webhooks_status(http: &reqwest::Client, indexer: &str) -> Option<serde_json::Value> {
    let status: serde_json::Value =
        http.get(format!("{indexer}/status")).send().await.ok()?.json().await.ok()?;
    let mut found = find_key(&status, "webhooks")?.clone();
    if let Some(o) = found.as_object_mut() {
        o.remove("webhookLatency");
        o.remove("pollingLatency");
    }
    Some(found)
}

fn find_key<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    match v {
        serde_json::Value::Object(o) => {
            o.get(key).filter(|w| w.is_object()).or_else(|| o.values().find_map(|x| find_key(x, key)))
        }
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

/// `to − from` in milliseconds, negative when `to` came first.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(from.duration_since(to).as_secs_f64() * 1e3),
    }
}

/// Percentiles (nearest rank) of a set of latencies.
struct Stats {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    min: f64,
    mean: f64,
}

impl Stats {
    fn of(values: &[f64]) -> Self {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| -> f64 {
            if v.is_empty() {
                return f64::NAN;
            }
            let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            v[i]
        };
        Self {
            n: v.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: v.last().copied().unwrap_or(f64::NAN),
            min: v.first().copied().unwrap_or(f64::NAN),
            mean: v.iter().sum::<f64>() / v.len().max(1) as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Stats::of(&v);
        assert_eq!((s.p50, s.p90, s.p99, s.max, s.min), (50.0, 90.0, 99.0, 100.0, 1.0));
        let s = Stats::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.p50, s.p99), (2.0, 3.0));
    }

    #[test]
    fn block_numbers_of_both_formats() {
        assert_eq!(delivered_block(br#"{"block":{"number":"0x1f"},"logs":[]}"#), Some(31));
        assert_eq!(delivered_block(br#"{"event":{"data":{"block":{"number":31}}}}"#), Some(31));
        assert_eq!(delivered_block(b"{}"), None);
    }
}
