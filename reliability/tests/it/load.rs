//! Scenario 9 — the API under load (issue 19, invariant 7): the real API binary over an
//! indexed database, for the run's duration, at once under
//! - slowloris connections sending a partial request a byte every 2 s (reconnecting when
//!   the server closes them),
//! - many concurrent worst-case accepted `/v1/events` requests (pages of 1,000 events
//!   filtered by a topic alone, a contract and event, a contract after an early cursor,
//!   a block range, an address, or no filter after an early cursor),
//! - normal traffic at a modest, fixed rate (`/v1/events?limit=10` and `/status`),
//! - probes of `/live` and `/health` every 50 ms, each on a new connection.
//!
//! It must hold: probe p99 < 100 ms, every probe 200; no 5xx other than 503 `overloaded`
//! or `request_timeout` with `Retry-After`; slowloris connections closed by the server
//! within the header-read timeout (plus slack); the API's RSS bounded; normal requests
//! succeeding at ≥ 50 % of their unloaded rate.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tidemark_reliability::summary;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::common::{Traffic, traffic};
use tidemark_testkit::{SOON, Stack};

/// The API's default header-read timeout (`--header-read-timeout-ms`).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past the header-read timeout a slowloris connection may stay open (the
/// server's timer, scheduling on two busy cores).
const HOLD_SLACK: Duration = Duration::from_secs(5);
/// The probes' p99 limit in the full run (run alone, as the load test asks).
const PROBE_P99: Duration = Duration::from_millis(100);
/// The probes' p99 limit in the reduced run, which shares the two cores with another
/// scenario of the suite (debug builds, an indexer under traffic): the same load halved,
/// and room for the machine's scheduling.
const PROBE_P99_REDUCED: Duration = Duration::from_millis(250);
/// The bound on the API's resident set.
const RSS_LIMIT_KIB: u64 = 512 * 1024;
/// Normal requests sent per second (open loop: one every 50 ms, whatever the answers).
const NORMAL_PER_SEC: u64 = 20;
/// The normal requests, sent alternately.
const NORMAL_PATHS: [&str; 2] = ["/v1/events?limit=10", "/status"];
/// How long a normal request may take to count as a success.
const NORMAL_DEADLINE: Duration = Duration::from_secs(2);

/// Raises the open-file soft limit to the hard limit (thousands of sockets); returns the
/// soft limit now in force.
fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass, which lives across the call.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0, "getrlimit");
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit only reads the struct we pass.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0, "setrlimit");
    }
    lim.rlim_cur
}

/// `VmRSS` of `pid` in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The `p` quantile (0..=1) of `samples`, zero when there are none.
fn quantile(samples: &[Duration], p: f64) -> Duration {
    let mut v = samples.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Milliseconds with one decimal.
fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// What the answers to one kind of request were.
#[derive(Debug, Default, Clone)]
struct Tally {
    /// 200s.
    ok: u64,
    /// 503 `overloaded` or `request_timeout` with `Retry-After` (the documented shedding).
    shed: u64,
    /// Any other 5xx (a failure), with the first few described.
    bad_5xx: u64,
    /// Other statuses (4xx: a mistake of the test's requests).
    other: u64,
    /// No answer within the client's deadline, or the connection failed.
    failed: u64,
    /// Latencies of the 200s.
    latencies: Vec<Duration>,
    /// The first few unexpected answers.
    examples: Vec<String>,
}

impl Tally {
    /// Adds one answer: status, whether `Retry-After` was set, and the body.
    fn add(&mut self, status: u16, retry_after: bool, body: &[u8], took: Duration) {
        let code = || {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        match status {
            200 => {
                self.ok += 1;
                self.latencies.push(took);
            }
            503 if retry_after && matches!(code().as_str(), "overloaded" | "request_timeout") => {
                self.shed += 1;
            }
            500..=599 => {
                self.bad_5xx += 1;
                self.example(format!("{status} {} (Retry-After: {retry_after})", code()));
            }
            _ => {
                self.other += 1;
                self.example(format!("{status} {}", code()));
            }
        }
    }

    fn fail(&mut self, why: String) {
        self.failed += 1;
        self.example(why);
    }

    fn example(&mut self, what: String) {
        if self.examples.len() < 3 {
            self.examples.push(what);
        }
    }

    fn merge(&mut self, other: Self) {
        self.ok += other.ok;
        self.shed += other.shed;
        self.bad_5xx += other.bad_5xx;
        self.other += other.other;
        self.failed += other.failed;
        self.latencies.extend(other.latencies);
        for e in other.examples {
            self.example(e);
        }
    }

    /// `200 n, 503 shed n, other 5xx n, other n, failed n`.
    fn counts(&self) -> String {
        format!(
            "200 {}, 503 shed {}, other 5xx {}, other {}, failed {}",
            self.ok, self.shed, self.bad_5xx, self.other, self.failed
        )
    }

    /// p50/p99 of the 200s' latencies in ms.
    fn percentiles(&self) -> String {
        format!(
            "p50 {} ms, p99 {} ms",
            ms(quantile(&self.latencies, 0.5)),
            ms(quantile(&self.latencies, 0.99))
        )
    }
}

/// `GET url` with `client` and a deadline, added to `tally`.
async fn get_into(client: &reqwest::Client, url: &str, deadline: Duration, tally: &Mutex<Tally>) {
    let started = Instant::now();
    let answer = async {
        let r = client.get(url).timeout(deadline).send().await?;
        let status = r.status().as_u16();
        let retry_after = r.headers().contains_key("retry-after");
        let body = r.bytes().await?;
        Ok::<_, reqwest::Error>((status, retry_after, body))
    }
    .await;
    let took = started.elapsed();
    let mut t = tally.lock().expect("tally lock");
    match answer {
        Ok((status, retry_after, body)) => t.add(status, retry_after, &body, took),
        Err(e) => t.fail(format!("{url}: {e}")),
    }
}

/// A client for the given purpose; `fresh`: a new connection per request.
fn client(fresh: bool) -> reqwest::Client {
    tidemark_db_client::tls::install_crypto_provider();
    let b = reqwest::Client::builder();
    let b = if fresh { b.pool_max_idle_per_host(0) } else { b };
    b.build().expect("building an HTTP client")
}

/// What the slowloris connections saw.
#[derive(Default)]
struct Slowloris {
    /// Connections opened.
    opened: AtomicU64,
    /// Connections the server closed (or answered) while the client was still sending.
    closed: AtomicU64,
    /// Connections that could not be opened.
    refused: AtomicU64,
    /// Longest time a connection stayed open, in milliseconds (including those still
    /// open at the end).
    longest_ms: AtomicU64,
    /// Open right now.
    open: AtomicU64,
    /// Most open at once.
    most_open: AtomicU64,
}

/// One slowloris client: opens a connection, sends a partial request a byte every
/// `pace`, and opens a new one when the server closes it; until `stop`.
async fn slowloris(addr: SocketAddr, pace: Duration, stop: Arc<AtomicBool>, stats: Arc<Slowloris>) {
    const HEAD: &[u8] = b"GET /v1/events?limit=1 HTTP/1.1\r\nHost: tidemark\r\nX-Slow: ";
    let jitter = rand::rng().random_range(0..pace.as_millis() as u64);
    tokio::time::sleep(Duration::from_millis(jitter)).await;
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
        else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let opened = Instant::now();
        stats.opened.fetch_add(1, Ordering::Relaxed);
        let open = stats.open.fetch_add(1, Ordering::Relaxed) + 1;
        stats.most_open.fetch_max(open, Ordering::Relaxed);
        let mut sent = 0usize;
        let mut buf = [0u8; 512];
        let closed = loop {
            if stop.load(Ordering::Relaxed) {
                break false;
            }
            let byte = HEAD.get(sent).copied().unwrap_or(b'a');
            if stream.write_all(&[byte]).await.is_err() {
                break true;
            }
            sent += 1;
            tokio::select! {
                // Anything from the server (an EOF, a reset, or an error answer) ends it.
                _ = stream.read(&mut buf) => break true,
                () = tokio::time::sleep(pace) => {}
            }
        };
        let held = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        stats.longest_ms.fetch_max(held, Ordering::Relaxed);
        stats.open.fetch_sub(1, Ordering::Relaxed);
        if closed {
            stats.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One worst-case client: sends the expensive accepted `shapes` in turn, one at a time.
async fn worst_case(
    client: reqwest::Client,
    base: String,
    shapes: Arc<Vec<String>>,
    first: usize,
    stop: Arc<AtomicBool>,
) -> Tally {
    let tally = Mutex::new(Tally::default());
    let mut i = first;
    while !stop.load(Ordering::Relaxed) {
        let url = format!("{base}/v1/events?{}", shapes[i % shapes.len()]);
        get_into(&client, &url, Duration::from_secs(20), &tally).await;
        i += 1;
    }
    tally.into_inner().expect("tally lock")
}

/// Runs `fut` on a thread and runtime of its own, so that the load this test generates
/// (thousands of tasks on the test's runtime) does not delay it: the probes' latencies
/// are the API's, not the test's scheduling.
async fn apart<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the probes")
            .block_on(fut)
    })
    .await
    .expect("the probe thread")
}

/// What was seen while observing the API for a while.
struct Observed {
    live: Tally,
    health: Tally,
    normal: Tally,
    /// The normal requests by path: `/v1/events?limit=10`, `/status`.
    by_path: [Tally; 2],
    /// Successful normal requests per second.
    normal_rate: f64,
    /// Peak `VmRSS`, KiB (`None` when it could not be read).
    peak_rss_kib: Option<u64>,
}

/// Probes `/live` and `/health` every 50 ms (each on a new connection), sends normal
/// requests at [`NORMAL_PER_SEC`] (alternately `/v1/events?limit=10` and `/status`) and
/// samples the API's RSS, for `length`. The probes run on threads of their own
/// ([`apart`]).
async fn observe(base: &str, pid: u32, length: Duration) -> Observed {
    let end = Instant::now() + length;
    let probe = |path: &'static str| {
        let url = format!("{base}{path}");
        async move {
            let (client, tally) = (client(true), Mutex::new(Tally::default()));
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < end {
                tick.tick().await;
                get_into(&client, &url, Duration::from_secs(2), &tally).await;
            }
            tally.into_inner().expect("tally lock")
        }
    };
    let normal = async {
        let client = client(false);
        let tallies = Arc::new([Mutex::new(Tally::default()), Mutex::new(Tally::default())]);
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / NORMAL_PER_SEC));
        let mut sent = JoinSet::new();
        let mut n = 0usize;
        while Instant::now() < end {
            tick.tick().await;
            let path = NORMAL_PATHS[n % 2];
            let (client, url, tallies) = (client.clone(), format!("{base}{path}"), tallies.clone());
            sent.spawn(async move { get_into(&client, &url, NORMAL_DEADLINE, &tallies[n % 2]).await });
            n += 1;
        }
        sent.join_all().await;
        Arc::try_unwrap(tallies)
            .expect("all normal requests done")
            .map(|t| t.into_inner().expect("tally lock"))
    };
    let rss = async {
        let mut peak = None;
        while Instant::now() < end {
            peak = peak.max(rss_kib(pid));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        peak
    };
    let (live, health, by_path, peak_rss_kib) =
        tokio::join!(apart(probe("/live")), apart(probe("/health")), normal, rss);
    let mut normal = by_path[0].clone();
    normal.merge(by_path[1].clone());
    let normal_rate = normal.ok as f64 / length.as_secs_f64();
    Observed { live, health, normal, by_path, normal_rate, peak_rss_kib }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_under_load_keeps_its_probes_fast_and_sheds_only_as_documented() {
    summary::run("9 API under load", |rec| async move {
        let scale = rec.scale();
        let length = Duration::from_secs(scale.pick(15, 60));
        let slow_conns: usize = scale.pick(250, 2_000);
        let in_flight: usize = scale.pick(32, 200);
        let probe_p99 = scale.pick(PROBE_P99_REDUCED, PROBE_P99);
        let unloaded = Duration::from_secs(scale.pick(4, 10));
        let nofile = raise_open_file_limit();

        rec.step("indexer, API and events");
        let stack = Stack::shared("tidemark_rel_load").await;
        traffic(&stack.demo, 60, 40).await;
        for _ in 0..5 {
            stack.demo.burst(300).await.expect("a burst of 300 events");
        }
        let _indexer = stack.spawn(&stack.config());
        let api = stack.spawn_api(&[]);
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, SOON).await;
        api.wait_healthy(SOON).await;
        let events = db.events().await.expect("events");
        let stored = events.len();
        let early = events.get(events.len() / 20).map_or_else(|| "0".into(), |e| e.cursor.to_string());
        let topic = events.iter().find_map(|e| e.topics.get(1).cloned()).expect("an event with topic1");
        let registry = format!("{:#x}", stack.demo.registry);
        let shapes = Arc::new(vec![
            format!("topic1={topic}&limit=1000"),
            "contract=Registry&event=Burst&limit=1000".to_owned(),
            format!("contract=Token&after={early}&limit=1000"),
            format!("chainId={}&fromBlock=0&toBlock=100000000&limit=1000", stack.chain_id),
            format!("address={registry}&limit=1000"),
            format!("after={early}&limit=1000"),
        ]);
        let pid = api.proc.pid();

        rec.step(format!("unloaded for {} s", unloaded.as_secs()));
        let quiet = observe(&api.http, pid, unloaded).await;
        rec.record(
            format!("unloaded for {} s: probes every 50 ms, {NORMAL_PER_SEC} normal requests/s", unloaded.as_secs()),
            format!(
                "normal {:.1}/s ({}); /live {}; /health {}",
                quiet.normal_rate,
                quiet.normal.counts(),
                quiet.live.counts(),
                quiet.health.counts()
            ),
            quiet.normal.ok > 0 && quiet.normal.bad_5xx == 0,
            format!(
                "{stored} events; normal {}; /live {}; /health {}; RSS {} MiB",
                quiet.normal.percentiles(),
                quiet.live.percentiles(),
                quiet.health.percentiles(),
                quiet.peak_rss_kib.unwrap_or(0) / 1024
            ),
        );

        rec.step(format!(
            "{} s under load: {slow_conns} slowloris, {in_flight} worst-case in flight",
            length.as_secs()
        ));
        let writes = Traffic::start(&stack.demo, 8, 200..400);
        let stop = Arc::new(AtomicBool::new(false));
        let addr: SocketAddr = api.http.trim_start_matches("http://").parse().expect("API address");
        let slow = Arc::new(Slowloris::default());
        let mut slow_tasks = JoinSet::new();
        for _ in 0..slow_conns {
            slow_tasks.spawn(slowloris(addr, Duration::from_secs(2), stop.clone(), slow.clone()));
        }
        let heavy_client = client(false);
        let mut heavy = JoinSet::new();
        for i in 0..in_flight {
            heavy.spawn(worst_case(heavy_client.clone(), api.http.clone(), shapes.clone(), i, stop.clone()));
        }
        let started = Instant::now();
        let loaded = observe(&api.http, pid, length).await;
        stop.store(true, Ordering::Relaxed);
        let mut worst = Tally::default();
        for t in heavy.join_all().await {
            worst.merge(t);
        }
        slow_tasks.join_all().await;
        let load_secs = started.elapsed();
        let sent = writes.stop().await;

        let probes_p99 = [&loaded.live, &loaded.health].map(|t| quantile(&t.latencies, 0.99));
        let probes_ok = [&loaded.live, &loaded.health]
            .iter()
            .all(|t| t.shed + t.bad_5xx + t.other + t.failed == 0 && t.ok > 0);
        rec.record(
            format!("/live and /health every 50 ms, each on a new connection, under load (p99 < {} ms)", probe_p99.as_millis()),
            format!(
                "/live {}; /health {}{}",
                loaded.live.counts(),
                loaded.health.counts(),
                [&loaded.live, &loaded.health]
                    .iter()
                    .flat_map(|t| t.examples.iter())
                    .map(|e| format!("; {e}"))
                    .collect::<String>()
            ),
            probes_ok && probes_p99.iter().all(|p| *p < probe_p99),
            format!("/live {}; /health {}", loaded.live.percentiles(), loaded.health.percentiles()),
        );
        let all_5xx_ok = [&worst, &loaded.normal].iter().all(|t| t.bad_5xx == 0 && t.other == 0);
        rec.record(
            format!("{in_flight} worst-case accepted /v1/events requests in flight ({} shapes, 1,000 per page)", shapes.len()),
            format!(
                "{}; no 5xx but 503 overloaded/request_timeout with Retry-After: {all_5xx_ok}{}",
                worst.counts(),
                worst.examples.iter().map(|e| format!("; {e}")).collect::<String>()
            ),
            all_5xx_ok && worst.ok > 0,
            format!(
                "{:.1} pages/s; {}",
                worst.ok as f64 / load_secs.as_secs_f64(),
                worst.percentiles()
            ),
        );
        let longest = Duration::from_millis(slow.longest_ms.load(Ordering::Relaxed));
        let closed = slow.closed.load(Ordering::Relaxed);
        rec.record(
            format!("{slow_conns} slowloris connections, a byte every 2 s, reopened when closed"),
            format!(
                "opened {}, closed by the server {closed}, refused {}; longest open {:.1} s (header-read timeout {} s)",
                slow.opened.load(Ordering::Relaxed),
                slow.refused.load(Ordering::Relaxed),
                longest.as_secs_f64(),
                HEADER_READ_TIMEOUT.as_secs()
            ),
            closed > 0 && longest <= HEADER_READ_TIMEOUT + HOLD_SLACK,
            format!(
                "most open at once {}; test open-file limit {nofile}",
                slow.most_open.load(Ordering::Relaxed)
            ),
        );
        let ratio = if quiet.normal_rate > 0.0 { loaded.normal_rate / quiet.normal_rate } else { 0.0 };
        rec.record(
            format!(
                "normal requests ({NORMAL_PER_SEC}/s, /v1/events?limit=10 and /status, 200 within {} s) under load",
                NORMAL_DEADLINE.as_secs()
            ),
            format!(
                "{:.1}/s loaded vs {:.1}/s unloaded ({:.0} %); {}",
                loaded.normal_rate,
                quiet.normal_rate,
                ratio * 100.0,
                loaded.normal.counts()
            ),
            ratio >= 0.5,
            format!(
                "loaded: /v1/events {}, /status {}; unloaded: /v1/events {}, /status {}",
                loaded.by_path[0].percentiles(),
                loaded.by_path[1].percentiles(),
                quiet.by_path[0].percentiles(),
                quiet.by_path[1].percentiles()
            ),
        );
        let peak = loaded.peak_rss_kib.max(quiet.peak_rss_kib);
        rec.record(
            format!("API resident set (VmRSS every 200 ms) below {} MiB", RSS_LIMIT_KIB / 1024),
            format!("peak {} MiB", peak.map_or_else(|| "unknown".into(), |k| format!("{:.1}", k as f64 / 1024.0))),
            peak.is_some_and(|k| k < RSS_LIMIT_KIB),
            format!("unloaded {} MiB", quiet.peak_rss_kib.unwrap_or(0) / 1024),
        );
        let health = api.health().await;
        rec.require(
            "after the load",
            format!("API /health {:?}; {sent} events sent by the traffic meanwhile", health.as_ref().map(|h| h.code)),
            health.is_some_and(|h| h.code == 200),
            "",
        );
    })
    .await;
}
