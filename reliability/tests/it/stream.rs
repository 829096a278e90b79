//! Scenario 11 — the live stream (`GET /v1/stream`, DESIGN §8 "Streams") of the real API
//! over the real indexer, a real anvil under the real traffic generator, and a real
//! PostgreSQL:
//! - 11a: 200 clients of one API while the traffic generator runs and two reorgs happen;
//!   each one's replay (add on `log`, delete on `removed`) equals `/v1/events`, each saw
//!   every journal entry once, in cursor order; one of them reads nothing for 30 s (longer
//!   than the API's idle timeout here), then gets `lagged` and every entry;
//! - 11b: `kill -9` of the API mid-stream; a client resuming with `Last-Event-ID` on the
//!   restarted API gets exactly the entries after that cursor;
//! - 11c: PostgreSQL restarted under a running API: its clients get every entry committed
//!   after the restart, none twice;
//! - 11d: 200 streams at `after=0` at once over a large journal: all complete the
//!   catch-up, while `/health` answers 200 throughout.

use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tidemark_reliability::summary;
use tidemark_testkit::{
    Api, InstanceDb, JournalEntry, Process, SOON, SseEvent, SseReader, Stack, eventually, metric_sum,
};

use crate::common::{secs, traffic};

/// Finality depth of the indexers here (reorgs are shallower).
const FINALITY: u64 = 8;
/// How long the slow client of 11a reads nothing.
const SLOW_PAUSE: Duration = Duration::from_secs(30);
/// The API's idle timeout in 11a: shorter than [`SLOW_PAUSE`], so the slow client's
/// connection makes no progress for longer than it.
const IDLE_TIMEOUT_MS: &str = "10000";
/// The filters of 11a's clients besides none.
const FILTERS: [&str; 3] =
    ["&contract=Token", "&contract=Token&event=Transfer", "&contract=Registry&event=Burst"];
/// Large events sent at the start of 11a's pause, and their data's size.
const BIG_EVENTS: usize = 60;
const BIG_EVENT_BYTES: usize = 60_000;
/// Receive buffer of the slow client's socket: small, so that the API's writes to it stop
/// soon after it stops reading.
const SLOW_RECV_BUFFER: u32 = 4096;

/// The fields of a `log` or `removed` entry's data that identify it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item<'a> {
    #[serde(borrow)]
    cursor: &'a str,
    #[serde(default, borrow)]
    event_cursor: Option<&'a str>,
    chain_id: u64,
    block_number: u64,
    #[serde(borrow)]
    block_hash: &'a str,
    log_index: u64,
    #[serde(borrow)]
    transaction_hash: &'a str,
}

impl Item<'_> {
    /// The log it is (or removes), as one number.
    fn key(&self) -> u64 {
        let mut h = DefaultHasher::new();
        (self.chain_id, self.block_number, self.block_hash, self.log_index, self.transaction_hash)
            .hash(&mut h);
        h.finish()
    }
}

/// A `/v1/events` page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<'a> {
    #[serde(borrow)]
    items: Vec<Item<'a>>,
    next_cursor: Option<String>,
}

/// One `log` or `removed` entry as a client received it.
#[derive(Debug, Clone, Copy)]
struct Got {
    cursor: i64,
    /// For `removed`: the cursor of the log it removes.
    removes: Option<i64>,
    key: u64,
}

/// What one client received.
#[derive(Debug, Default)]
struct Seen {
    entries: Vec<Got>,
    /// `lagged` events: (`behind`, `resumeAfter`, entries received before it).
    lagged: Vec<(u64, i64, usize)>,
    /// Frames that were not what the API promises.
    problems: Vec<String>,
    /// The stream ended (closed by the server or failed).
    ended: bool,
}

impl Seen {
    fn last(&self) -> Option<i64> {
        self.entries.last().map(|g| g.cursor)
    }

    fn record(&mut self, e: &SseEvent) {
        match e.event.as_str() {
            "log" | "removed" => {
                let item: Item<'_> = match serde_json::from_str(&e.data) {
                    Ok(i) => i,
                    Err(err) => return self.problems.push(format!("{} data: {err}", e.event)),
                };
                let Some(cursor) = e.id.as_deref().and_then(|id| id.parse::<i64>().ok()) else {
                    return self.problems.push(format!("{} without a cursor id: {:?}", e.event, e.id));
                };
                if item.cursor.parse() != Ok(cursor) {
                    self.problems.push(format!("id {cursor} but data cursor {}", item.cursor));
                }
                let removes = match (e.event.as_str(), item.event_cursor) {
                    ("removed", Some(c)) => Some(c.parse().unwrap_or(-1)),
                    ("removed", None) => {
                        self.problems.push(format!("removed {cursor} without eventCursor"));
                        Some(-1)
                    }
                    _ => None,
                };
                self.entries.push(Got { cursor, removes, key: item.key() });
            }
            "lagged" => {
                let v = e.json();
                let behind = v["behind"].as_u64().unwrap_or(0);
                let resume = v["resumeAfter"].as_str().and_then(|s| s.parse().ok()).unwrap_or(-1);
                if e.id.is_some() {
                    self.problems.push("lagged with an id".into());
                }
                self.lagged.push((behind, resume, self.entries.len()));
            }
            other => self.problems.push(format!("unexpected event {other}")),
        }
    }
}

type Shared = Arc<Mutex<Seen>>;

fn lock(s: &Shared) -> MutexGuard<'_, Seen> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records every event of `reader` into `seen` until the stream ends.
async fn follow(mut reader: SseReader, seen: Shared) {
    while let Some(e) = reader.next_event().await {
        lock(&seen).record(&e);
    }
    lock(&seen).ended = true;
}

/// Whether every client received an entry at `target` (or beyond).
fn all_reached(clients: &[Shared], target: i64) -> bool {
    clients.iter().all(|c| lock(c).last().is_some_and(|l| l >= target))
}

/// How many clients have not received `target` yet.
fn behind(clients: &[Shared], target: i64) -> usize {
    clients.iter().filter(|c| lock(c).last().is_none_or(|l| l < target)).count()
}

/// Cursors strictly increasing (so none twice), and every frame as promised.
fn check_order(seen: &Seen) -> Result<(), String> {
    if let Some(p) = seen.problems.first() {
        return Err(format!("{} bad frames, first: {p}", seen.problems.len()));
    }
    match seen.entries.windows(2).find(|w| w[1].cursor <= w[0].cursor) {
        Some(w) => Err(format!("cursor {} after {}", w[1].cursor, w[0].cursor)),
        None => Ok(()),
    }
}

/// Checks what a client that started after `start` received against the journal at the
/// end: cursors strictly increasing, every journal entry after `start` received, and
/// nothing else but logs that a later `removed` entry of the journal takes back.
fn check_entries(seen: &Seen, start: i64, journal: &[JournalEntry]) -> Result<(), String> {
    check_order(seen)?;
    if let Some(first) = seen.entries.first()
        && first.cursor <= start
    {
        return Err(format!("cursor {} at or before the start {start}", first.cursor));
    }
    let got: HashSet<i64> = seen.entries.iter().map(|g| g.cursor).collect();
    let want: Vec<&JournalEntry> = journal.iter().filter(|e| e.cursor > start).collect();
    let missing: Vec<i64> = want.iter().filter(|e| !got.contains(&e.cursor)).map(|e| e.cursor).collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} of {} entries missing, first {:?}",
            missing.len(),
            want.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    let stored: HashSet<i64> = journal.iter().map(|e| e.cursor).collect();
    let removed: HashSet<i64> =
        journal.iter().filter(|e| e.kind == "removed").map(|e| e.event_cursor).collect();
    let extra: Vec<i64> = seen
        .entries
        .iter()
        // A log the journal no longer has is fine when a removal of it is there.
        .filter(|g| !(stored.contains(&g.cursor) || g.removes.is_none() && removed.contains(&g.cursor)))
        .map(|g| g.cursor)
        .collect();
    if !extra.is_empty() {
        return Err(format!(
            "{} entries not in the journal, first {:?}",
            extra.len(),
            &extra[..extra.len().min(5)]
        ));
    }
    Ok(())
}

/// The client's replay: `log` adds, `removed` deletes by `eventCursor`; cursor → log.
fn replay(seen: &Seen) -> Result<BTreeMap<i64, u64>, String> {
    let mut state = BTreeMap::new();
    for g in &seen.entries {
        match g.removes {
            None => {
                if state.insert(g.cursor, g.key).is_some() {
                    return Err(format!("log {} added twice", g.cursor));
                }
            }
            Some(c) => {
                state.remove(&c);
            }
        }
    }
    Ok(state)
}

/// Every event `/v1/events` serves with `filter` (`&name=value...`), paged through:
/// cursor → log.
async fn served(http: &reqwest::Client, api: &Api, filter: &str) -> BTreeMap<i64, u64> {
    let mut all = BTreeMap::new();
    let mut after = String::from("0");
    loop {
        let url = format!("{}/v1/events?limit=1000&after={after}{filter}", api.http);
        let resp = http.get(&url).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(resp.status(), 200, "{url}");
        let text = resp.text().await.expect("/v1/events body");
        let page: Page<'_> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}"));
        for item in &page.items {
            all.insert(item.cursor.parse().expect("cursor"), item.key());
        }
        match page.next_cursor {
            Some(c) => after = c,
            None => return all,
        }
    }
}

/// The journal's last cursor.
fn head(journal: &[JournalEntry]) -> i64 {
    journal.last().map_or(0, |e| e.cursor)
}

/// A fresh connection to the instance once the database answers again.
async fn reconnect(stack: &Stack) -> InstanceDb {
    eventually(SOON, "the database answering", async || {
        InstanceDb::connect(&stack.db_url, &stack.schema).await.ok()
    })
    .await
}

/// The newest journal cursor.
async fn journal_head(db: &mut InstanceDb) -> i64 {
    head(&db.journal().await.expect("journal"))
}

/// Waits until the indexer has stored the chain's current head block.
async fn wait_indexed_to_head(stack: &Stack, db: &mut InstanceDb) {
    let head = stack.demo.block_number().await.expect("eth_blockNumber");
    eventually(SOON, format!("block {head} indexed"), async || {
        db.checkpoint(stack.chain_id).await.ok()?.filter(|cp| cp.block_number as u64 >= head).map(|_| ())
    })
    .await;
}

/// `tidemark-traffic` at `tx_per_second`, seeded.
fn start_traffic(stack: &Stack, tx_per_second: &str, seed: u64) -> Process {
    let seed = seed.to_string();
    stack.spawn_traffic(&["--tx-per-second", tx_per_second, "--burst-size", "8", "--seed", &seed])
}

/// SIGTERM to the traffic generator; asserts it exits 0.
async fn stop_traffic(mut traffic: Process) {
    traffic.sigterm();
    let code = traffic.exit_code(SOON).await;
    assert_eq!(code, 0, "tidemark-traffic exited {code}:\n{}", traffic.logs());
}

/// An indexer following closely (finality [`FINALITY`], 20 ms polls), synced with the chain.
async fn follow_indexer(stack: &Stack) -> tidemark_testkit::Indexer {
    let mut cfg = stack.config();
    cfg.chains[0].finality_depth = Some(FINALITY);
    cfg.chains[0].poll_interval_ms = Some(20);
    let indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    indexer
}

/// The API with `env` added to its environment, healthy.
async fn api_with(stack: &Stack, env: &[(&str, &str)]) -> Api {
    let mut all = vec![("DATABASE_URL", stack.db_url.as_str())];
    all.extend_from_slice(env);
    let api = stack.spawn_api_env(&stack.schema, &all, &[]);
    api.wait_healthy(SOON).await;
    api
}

/// Clients of `api` at `after=0`, one per filter (`&name=value...`, or empty), each
/// recorded by a task of its own.
async fn connect_clients(
    http: &reqwest::Client,
    api: &Api,
    filters: &[&str],
) -> (Vec<Shared>, Vec<tokio::task::JoinHandle<()>>) {
    let n = filters.len();
    let readers = futures::future::join_all(filters.iter().map(|f| async move {
        SseReader::connect(http, &format!("{}/v1/stream?after=0{f}", api.http), None).await
    }))
    .await;
    let mut clients = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for r in readers {
        let reader = r.unwrap_or_else(|(status, body)| panic!("/v1/stream: {status} {body}"));
        let seen = Shared::default();
        tasks.push(tokio::spawn(follow(reader, seen.clone())));
        clients.push(seen);
    }
    (clients, tasks)
}

/// Summarizes the clients' failures (`None`: all passed).
fn failures(results: &[Result<(), String>]) -> Option<String> {
    let bad: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("client {i}: {e}")))
        .collect();
    (!bad.is_empty()).then(|| format!("{} clients failed; {}", bad.len(), bad[..bad.len().min(3)].join("; ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_clients_under_traffic_and_reorgs_replay_to_the_served_events() {
    summary::run("11a stream: 200 clients, traffic, reorgs", |rec| async move {
        let scale = rec.scale();
        let seed = tidemark_reliability::seed();
        let rate = scale.pick("8", "30");
        // 199 clients: one in ten follows everything, the others one of three filters.
        let filters: Vec<&str> = (0..199).map(|i| if i % 10 == 0 { "" } else { FILTERS[i % 3] }).collect();

        rec.step("indexing a first stretch of chain");
        let stack = Stack::shared("tidemark_rel_stream_fanout").await;
        traffic(&stack.demo, 10, 4).await;
        let _indexer = follow_indexer(&stack).await;
        let api =
            api_with(&stack, &[("TIDEMARK_STREAM_QUEUE", "64"), ("TIDEMARK_API_IDLE_TIMEOUT_MS", IDLE_TIMEOUT_MS)])
                .await;
        let mut db = stack.instance().await;

        rec.step("connecting 200 clients at after=0");
        // The slow client first, alone: it reads the whole catch-up, and once its last
        // (empty) catch-up page is read it follows the live tail. Then it stops reading.
        let initial = journal_head(&mut db).await;
        let mut slow = SseReader::connect_raw(&api.http, "/v1/stream?after=0", None, SLOW_RECV_BUFFER)
            .await
            .unwrap_or_else(|e| panic!("the slow client: {e}"));
        let slow_seen = Shared::default();
        while lock(&slow_seen).last().is_none_or(|l| l < initial) {
            let e = slow.next().await;
            lock(&slow_seen).record(&e);
        }
        eventually(SOON, "the slow client following the live tail", async || {
            let (_, text) = tidemark_testkit::get_text(&format!("{}/metrics", api.http)).await?;
            (metric_sum(&text, "tidemark_stream_catch_up_queries_total", "") >= 2.0).then_some(())
        })
        .await;
        let paused = Instant::now();
        let slow_task = tokio::spawn({
            let seen = slow_seen.clone();
            async move {
                tokio::time::sleep(SLOW_PAUSE).await;
                follow(slow, seen).await;
            }
        });
        let http = reqwest::Client::new();
        let (clients, tasks) = connect_clients(&http, &api, &filters).await;

        rec.step("traffic generator, large events and two reorgs");
        // More bytes than the API's socket buffers hold for a client that reads nothing
        // (a few MB on loopback): its writes to the slow client stop early in the pause.
        // Sent before the generator starts: both send from the same account.
        for i in 0..BIG_EVENTS {
            let key = alloy::primitives::B256::left_padding_from(&(i as u64).to_be_bytes());
            stack.demo.tag(key, &["big"], &vec![0x5a; BIG_EVENT_BYTES]).await.expect("a large Tagged event");
        }
        let generator = start_traffic(&stack, rate, seed);
        let mut depths = Vec::new();
        for (i, at) in [Duration::from_secs(8), Duration::from_secs(15)].into_iter().enumerate() {
            tokio::time::sleep(at.saturating_sub(paused.elapsed())).await;
            // The blocks it replaces are indexed first, so the clients see their removal.
            wait_indexed_to_head(&stack, &mut db).await;
            let depth = 2 + i as u64;
            stack.demo.reorg(depth).await.expect("anvil_reorg");
            depths.push(depth);
        }
        tokio::time::sleep(Duration::from_secs(22).saturating_sub(paused.elapsed())).await;
        stop_traffic(generator).await;
        stack.wait_synced(&mut db, SOON).await;
        let journal = db.journal().await.expect("journal");
        let removals = journal.iter().filter(|e| e.kind == "removed").count();

        rec.step("waiting for every client to catch up");
        let caught = Instant::now();
        // A filtered client's last entry may be older than the journal's head: it is done
        // when it holds what /v1/events serves with its filter and the slow client is done.
        let mut want: BTreeMap<&str, BTreeMap<i64, u64>> = BTreeMap::new();
        for f in FILTERS.iter().chain(std::iter::once(&"")) {
            want.insert(f, served(&http, &api, f).await);
        }
        // Cheap first (the newest event it must hold has arrived), then the replay; a
        // client once settled stays so.
        let settled = |c: &Shared, f: &str| {
            let seen = lock(c);
            let newest = want[f].keys().next_back().copied().unwrap_or(0);
            seen.ended || (seen.last().is_some_and(|l| l >= newest) && replay(&seen).is_ok_and(|r| r == want[f]))
        };
        let all: Vec<(&Shared, &str)> =
            clients.iter().zip(filters.iter().copied()).chain(std::iter::once((&slow_seen, ""))).collect();
        let mut done = vec![false; all.len()];
        // Until every client is done or the deadline passes; the checks below say which
        // clients are not and why.
        let deadline = Instant::now() + Duration::from_secs(60) + SLOW_PAUSE;
        while Instant::now() < deadline {
            for (i, (c, f)) in all.iter().enumerate() {
                done[i] = done[i] || settled(c, f);
            }
            if done.iter().all(|d| *d) {
                break;
            }
            tokio::time::sleep(tidemark_testkit::POLL).await;
        }
        let waited = caught.elapsed();
        let check = |c: &Shared, f: &str| -> Result<(), String> {
            let seen = lock(c);
            if seen.ended {
                return Err(format!("the stream ended after {} entries", seen.entries.len()));
            }
            if f.is_empty() {
                check_entries(&seen, 0, &journal)?;
            } else {
                check_order(&seen)?;
            }
            let state = replay(&seen)?;
            if state != want[f] {
                let first = state.iter().zip(want[f].iter()).find(|(a, b)| a != b).map(|(a, b)| (*a.0, *b.0));
                return Err(format!(
                    "replay holds {} events (last cursor received {:?}), /v1/events{f} serves {}; first difference (replay, served) {first:?}",
                    state.len(),
                    seen.last(),
                    want[f].len()
                ));
            }
            Ok(())
        };
        let results: Vec<Result<(), String>> = clients.iter().zip(&filters).map(|(c, f)| check(c, f)).collect();
        let slow_result = check(&slow_seen, "");
        let lagged_clients = clients.iter().filter(|c| !lock(c).lagged.is_empty()).count();
        rec.record(
            format!(
                "{} clients at after=0 (unfiltered or {}; API queue 64) while tidemark-traffic sends {rate} tx/s, {BIG_EVENTS} events of {} KB and 2 reorgs (depths {depths:?})",
                clients.len() + 1,
                FILTERS.join(", "),
                BIG_EVENT_BYTES / 1000
            ),
            failures(&results).unwrap_or_else(|| {
                "every client: cursors strictly increasing, replay = /v1/events with its filter; unfiltered ones: every journal entry once".into()
            }),
            results.iter().all(Result::is_ok) && removals > 0,
            format!(
                "seed {seed}; {} journal entries ({removals} removed), {} events served; caught up {} s after the traffic stopped; {lagged_clients} others lagged",
                journal.len(),
                want[""].len(),
                secs(waited)
            ),
        );

        let seen = lock(&slow_seen);
        let first_lag = seen.lagged.first().copied();
        let lag_ok = first_lag.is_some_and(|(n, resume, before)| {
            n > 0 && before > 0 && resume == seen.entries[before - 1].cursor
        });
        rec.record(
            format!(
                "one client reads nothing for {} s (socket receive buffer {SLOW_RECV_BUFFER} B, API idle timeout {IDLE_TIMEOUT_MS} ms), then resumes",
                SLOW_PAUSE.as_secs()
            ),
            match (first_lag, &slow_result) {
                (Some((n, resume, before)), Ok(())) => format!(
                    "lagged (behind {n}, resumeAfter {resume}, after {before} entries), then every entry: replay = /v1/events"
                ),
                (Some(_), Err(e)) => format!("lagged, then: {e}"),
                (None, r) => format!("no lagged event; {} entries; {r:?}", seen.entries.len()),
            },
            lag_ok && slow_result.is_ok(),
            format!("{} entries, {} lagged events", seen.entries.len(), seen.lagged.len()),
        );
        drop(seen);
        for t in tasks {
            t.abort();
        }
        slow_task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_by_last_event_id_after_the_api_is_killed() {
    summary::run("11b stream: API kill -9", |rec| async move {
        let seed = tidemark_reliability::seed();
        let rate = rec.scale().pick("8", "30");
        rec.step("indexing a first stretch of chain");
        let stack = Stack::shared("tidemark_rel_stream_kill").await;
        traffic(&stack.demo, 10, 4).await;
        let _indexer = follow_indexer(&stack).await;
        let mut api = api_with(&stack, &[]).await;
        let mut db = stack.instance().await;
        let initial = journal_head(&mut db).await;

        rec.step("streaming under traffic, then kill -9 of the API");
        let generator = start_traffic(&stack, rate, seed);
        let http = reqwest::Client::new();
        let url = format!("{}/v1/stream?after=0", api.http);
        let mut before = SseReader::connect(&http, &url, None).await.unwrap_or_else(|e| panic!("{e:?}"));
        let mut first = Seen::default();
        while first.last().is_none_or(|l| l <= initial + 30) {
            first.record(&before.next_within(SOON).await);
        }
        api.proc.kill9();
        // The stream breaks; what arrived complete up to then is what the client has.
        while let Some(e) = tokio::time::timeout(SOON, before.next_event()).await.expect("the stream ends") {
            first.record(&e);
        }
        let last = first.last().expect("entries before the kill");
        let down = Instant::now();
        // Entries are committed while the API is down.
        let committed_meanwhile = eventually(SOON, "commits while the API is down", async || {
            let h = journal_head(&mut db).await;
            (h > last + 20).then_some(h)
        })
        .await;
        let api2 = api_with(&stack, &[]).await;
        let restarted = down.elapsed();

        rec.step("resuming with Last-Event-ID on the restarted API");
        let mut after = SseReader::connect(&http, &format!("{}/v1/stream", api2.http), Some(&last.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let mut second = Seen::default();
        second.record(&after.next_within(SOON).await);
        // Some live entries too, then the end of the traffic.
        let live_from = journal_head(&mut db).await;
        while second.last().is_none_or(|l| l <= live_from) {
            second.record(&after.next_within(SOON).await);
        }
        stop_traffic(generator).await;
        stack.wait_synced(&mut db, SOON).await;
        let journal = db.journal().await.expect("journal");
        let target = head(&journal);
        while second.last().is_none_or(|l| l < target) {
            second.record(&after.next_within(SOON).await);
        }
        let want: Vec<i64> = journal.iter().filter(|e| e.cursor > last).map(|e| e.cursor).collect();
        let got: Vec<i64> = second.entries.iter().map(|g| g.cursor).collect();
        let before_ok = check_entries(&first, 0, &journal.iter().filter(|e| e.cursor <= last).cloned().collect::<Vec<_>>());
        rec.record(
            "kill -9 of the API mid-stream under tidemark-traffic; a new API; the client reconnects with Last-Event-ID",
            if got == want && second.problems.is_empty() && before_ok.is_ok() {
                format!("exactly the {} entries after cursor {last}: none missing, none repeated", want.len())
            } else {
                format!(
                    "got {} entries, want {} (first got {:?}, first want {:?}); problems {:?}; before the kill: {before_ok:?}",
                    got.len(),
                    want.len(),
                    got.first(),
                    want.first(),
                    second.problems.first()
                )
            },
            got == want && second.problems.is_empty() && before_ok.is_ok(),
            format!(
                "{} entries before the kill, {} committed while the API was down (head {committed_meanwhile}), API back in {} s",
                first.entries.len(),
                committed_meanwhile - last,
                secs(restarted)
            ),
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_running_api_get_every_entry_after_a_database_restart() {
    summary::run("11c stream: PostgreSQL restart", |rec| async move {
        let seed = tidemark_reliability::seed();
        let scale = rec.scale();
        let (n, rate) = (scale.pick(20, 100), scale.pick("8", "30"));
        rec.step("indexing a first stretch of chain");
        let mut stack = Stack::private("tidemark_rel_stream_pg").await;
        traffic(&stack.demo, 10, 4).await;
        let _indexer = follow_indexer(&stack).await;
        let mut api = api_with(&stack, &[]).await;
        let mut db = stack.instance().await;
        let initial = journal_head(&mut db).await;

        rec.step("streaming under traffic");
        let http = reqwest::Client::new();
        let (clients, tasks) = connect_clients(&http, &api, &vec![""; n]).await;
        let generator = start_traffic(&stack, rate, seed);
        eventually(SOON, "live entries at every client", async || all_reached(&clients, initial + 20)).await;

        rec.step("restarting PostgreSQL");
        drop(db);
        let before = {
            let mut db = stack.instance().await;
            journal_head(&mut db).await
        };
        stack.pg().stop().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        stack.pg().restart().await;
        let up = Instant::now();
        let mut db = reconnect(&stack).await;
        let resumed = eventually(Duration::from_secs(60), "a commit after the restart", async || {
            let h = journal_head(&mut db).await;
            (h > before + 20).then_some(h)
        })
        .await;
        let commit_after = up.elapsed();
        stop_traffic(generator).await;
        stack.wait_synced(&mut db, SOON).await;
        let journal = db.journal().await.expect("journal");
        let target = head(&journal);
        let caught = Instant::now();
        eventually(SOON, format!("every client at cursor {target}"), async || {
            all_reached(&clients, target) || clients.iter().any(|c| lock(c).ended)
        })
        .await;
        let results: Vec<Result<(), String>> = clients
            .iter()
            .map(|c| {
                let seen = lock(c);
                if seen.ended {
                    return Err(format!("the stream ended after {} entries", seen.entries.len()));
                }
                check_entries(&seen, 0, &journal)
            })
            .collect();
        let after_restart = journal.iter().filter(|e| e.cursor > before).count();
        let running = api.proc.is_running();
        rec.record(
            format!("PostgreSQL stopped (fast) and started under tidemark-traffic; {n} clients of the running API"),
            failures(&results).unwrap_or_else(|| {
                format!("every client got all {after_restart} entries committed after the restart, in order, none twice")
            }),
            results.iter().all(Result::is_ok) && running,
            format!(
                "first commit after restart within {} s (head {resumed}); clients caught up {} s after the traffic stopped; API still running: {}; {} behind",
                secs(commit_after),
                secs(caught.elapsed()),
                running,
                behind(&clients, target)
            ),
        );
        for t in tasks {
            t.abort();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_catch_up_at_once_while_health_stays_200() {
    summary::run("11d stream: catch-up storm", |rec| async move {
        let scale = rec.scale();
        let (n, events) = (200usize, scale.pick(2_500u64, 20_000));
        rec.step(format!("indexing {events} events"));
        let stack = Stack::shared("tidemark_rel_stream_catchup").await;
        let mut sent = 0;
        while sent < events {
            let burst = (events - sent).min(500);
            stack.demo.burst(burst).await.expect("burst");
            sent += burst;
        }
        let indexer = stack.spawn(&stack.config());
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, SOON).await;
        let api = api_with(&stack, &[]).await;
        let journal = db.journal().await.expect("journal");
        let target = head(&journal);

        rec.step(format!("{n} streams at after=0 at once, /health polled meanwhile"));
        let stop = Arc::new(AtomicBool::new(false));
        let probe = tokio::spawn({
            let (stop, base) = (stop.clone(), api.http.clone());
            async move {
                let mut codes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let code =
                        tidemark_testkit::get_json(&format!("{base}/health")).await.map_or(0, |(c, _)| c);
                    codes.push((code, started.elapsed()));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                codes
            }
        });
        let http = reqwest::Client::new();
        let url = format!("{}/v1/stream?after=0", api.http);
        let started = Instant::now();
        let streams = futures::future::join_all((0..n).map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let mut reader = SseReader::connect(&http, &url, None).await.map_err(|e| format!("{e:?}"))?;
                let (mut count, mut last) = (0usize, 0i64);
                while last < target {
                    let e = tokio::time::timeout(SOON, reader.next_event())
                        .await
                        .map_err(|_| format!("nothing for {SOON:?} after {count} entries"))?
                        .ok_or_else(|| format!("the stream ended after {count} entries"))?;
                    let cursor = e.cursor();
                    if cursor <= last {
                        return Err(format!("cursor {cursor} after {last}"));
                    }
                    (count, last) = (count + 1, cursor);
                }
                Ok((count, started.elapsed()))
            })
        }))
        .await;
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let codes = probe.await.expect("the /health probe");
        let results: Vec<Result<(usize, Duration), String>> =
            streams.into_iter().map(|r| r.map_err(|e| e.to_string()).and_then(|r| r)).collect();
        let complete = results.iter().filter(|r| r.as_ref().is_ok_and(|(c, _)| *c == journal.len())).count();
        let slowest =
            results.iter().filter_map(|r| r.as_ref().ok().map(|(_, t)| *t)).max().unwrap_or_default();
        let first_err = results.iter().find_map(|r| r.as_ref().err().cloned());
        rec.record(
            format!("{n} streams at after=0 at once over {} journal entries", journal.len()),
            match &first_err {
                None => format!("{complete} of {n} received every entry once, in order"),
                Some(e) => format!("{complete} of {n} complete; first failure: {e}"),
            },
            complete == n,
            format!("all done in {} s, slowest {} s", secs(took), secs(slowest)),
        );
        let not_200 = codes.iter().filter(|(c, _)| *c != 200).count();
        let slowest_probe = codes.iter().map(|(_, t)| *t).max().unwrap_or_default();
        rec.record(
            "/health polled every 100 ms during the catch-up",
            format!("{} answers, {not_200} not 200", codes.len()),
            not_200 == 0 && !codes.is_empty(),
            format!("slowest {} ms", slowest_probe.as_millis()),
        );
        drop(indexer);
    })
    .await;
}
