//! Scenario 12 — sinks (DESIGN §8 "Sinks"): webhook and NATS JetStream delivery of the
//! journal under faults, and a scheduled-style rebroadcast interrupted by kills.
//!
//! - 12a webhook: a receiver that answers 500 to 30 % of requests, hangs on 5 % and resets
//!   5 %, and is down entirely for a while (60 s in the full run), while traffic and two
//!   reorgs run and the indexer is kill -9'd three times. The receiver ends with every
//!   journal entry, its replay (cursor order, deduplicated by cursor) equals `/v1/events`,
//!   every request verifies with the Standard Webhooks reference crate, and a cursor only
//!   ever travels under one delivery id.
//! - 12b NATS: a JetStream consumer sees every entry exactly once, in cursor order, across
//!   kill -9s of the indexer and a nats-server restart.
//! - 12c rebroadcast: a run over every stored event (100,000 in the full run), interrupted
//!   by three kill -9s, completes; every event was rebroadcast with the run id; live
//!   entries committed during the run reach the receiver within 5 s.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::Value;
use tidemark_reliability::summary;
use tidemark_testkit::{
    Indexer, IndexerConfigBuilder, NatsServer, Outcome, SOON, Stack, WebhookFaults, WebhookReceiver,
    eventually, item_cursor,
};

use crate::common::traffic;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Applies sink items in cursor order (deduplicated by cursor): add on `log`, delete on
/// `removed`; without the fields that change after delivery (`finalized`) or that only a
/// sink adds.
fn apply(items: &[Value]) -> BTreeMap<i64, Value> {
    let by_cursor: BTreeMap<i64, &Value> = items.iter().map(|i| (item_cursor(i), i)).collect();
    let mut state = BTreeMap::new();
    for (cursor, item) in by_cursor {
        if item["kind"] == "removed" {
            let of: i64 = item["eventCursor"].as_str().and_then(|c| c.parse().ok()).expect("eventCursor");
            state.remove(&of);
        } else {
            state.insert(cursor, comparable(item));
        }
    }
    state
}

fn comparable(item: &Value) -> Value {
    let mut v = item.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["finalized", "kind", "rebroadcast"] {
            o.remove(k);
        }
    }
    v
}

/// Every `/v1/events` item of the API at `base`, by cursor.
async fn served(base: &str) -> BTreeMap<i64, Value> {
    let http = reqwest::Client::new();
    let (mut out, mut after) = (BTreeMap::new(), String::new());
    loop {
        let body: Value = http
            .get(format!("{base}/v1/events?limit=1000{after}"))
            .send()
            .await
            .expect("GET /v1/events")
            .json()
            .await
            .expect("JSON");
        for item in body["items"].as_array().expect("items") {
            out.insert(item_cursor(item), comparable(item));
        }
        match body["nextCursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => return out,
        }
    }
}

fn webhook_sink(cfg: IndexerConfigBuilder, receiver: &WebhookReceiver, extra: &str) -> IndexerConfigBuilder {
    cfg.sink(&receiver.sink_table("hooks", SECRET, extra))
}

/// Waits until the sink is caught up at the journal's head.
async fn caught_up(stack: &Stack, indexer: &Indexer, name: &str, timeout: Duration) {
    let mut db = stack.instance().await;
    indexer.wait_sink_caught_up(name, timeout, async || db.max_cursor().await.ok()?).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receives_every_entry_through_faults_reorgs_and_kills() {
    summary::run("12a webhook sink under faults", |rec| async move {
        let down = Duration::from_secs(rec.scale().pick(4, 60));
        let stack = Stack::shared("tidemark_rel_hooks").await;
        traffic(&stack.demo, 10, 3).await;
        let receiver = WebhookReceiver::start(SECRET).await;
        receiver.set_faults(WebhookFaults { error: 0.3, hang: 0.05, reset: 0.05, ..WebhookFaults::default() });
        let mut cfg = stack.config();
        cfg.chains[0].finality_depth = Some(6);
        cfg.chains[0].poll_interval_ms = Some(100);
        let cfg = webhook_sink(cfg, &receiver, "batch_size = 3\ntimeout_ms = 400");
        let mut indexer = stack.spawn(&cfg);
        let mut db = stack.instance().await;
        for round in 0..3 {
            rec.step(format!("round {}: traffic, a reorg, a kill -9", round + 1));
            traffic(&stack.demo, 4, 2).await;
            if round < 2 {
                // Indexed first, so that the reorg removes stored logs.
                stack.wait_synced(&mut db, SOON).await;
                stack.demo.reorg(2).await.expect("anvil_reorg");
                stack.demo.burst(2).await.expect("burst");
            }
            if round == 1 {
                rec.step(format!("receiver down for {} s", down.as_secs()));
                receiver.down();
                let until = Instant::now() + down;
                while Instant::now() < until {
                    traffic(&stack.demo, 1, 2).await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                receiver.up().await;
            }
            tokio::time::sleep(Duration::from_millis(700)).await;
            indexer.proc.kill9();
            indexer = stack.spawn(&cfg);
        }
        rec.step("faults off: the sink catches up");
        receiver.set_faults(WebhookFaults::default());
        stack.wait_synced(&mut db, SOON).await;
        // After a minute down, the backoff may be at its 64 s ceiling.
        caught_up(&stack, &indexer, "hooks", Duration::from_secs(rec.scale().pick(100, 400))).await;

        let received = receiver.received();
        let failed = received.iter().filter(|r| r.outcome != Outcome::Accepted).count();
        let verified = received.iter().all(|r| r.verified);
        let mut ids: HashMap<i64, HashSet<String>> = HashMap::new();
        for r in &received {
            let body: Value = serde_json::from_slice(&r.body).expect("JSON body");
            for item in body["items"].as_array().expect("items") {
                ids.entry(item_cursor(item)).or_default().insert(r.id.clone());
            }
        }
        let several_ids = ids.values().filter(|v| v.len() > 1).count();
        let items = receiver.accepted_items();
        let got: HashSet<i64> = items.iter().map(item_cursor).collect();
        let journal = db.journal().await.expect("journal");
        let missing = journal.iter().filter(|e| !got.contains(&e.cursor)).count();
        let removals = journal.iter().filter(|e| e.kind == "removed").count();
        let api = stack.spawn_api(&[]);
        api.wait_healthy(SOON).await;
        let equal = apply(&items) == served(&api.http).await;
        rec.require(
            "30 % 500s, 5 % hangs, 5 % resets, the receiver down, two reorgs, three kill -9",
            format!(
                "{} of {} journal entries missing; replay equals /v1/events: {equal}; every signature verifies: {verified}; cursors under several delivery ids: {several_ids}",
                missing,
                journal.len()
            ),
            missing == 0 && equal && verified && several_ids == 0 && failed > 0 && removals > 0,
            format!("{} requests ({failed} failed), {removals} removals, down {} s", received.len(), down.as_secs()),
        );
        assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_consumers_see_every_entry_once_in_order_across_kills_and_a_server_restart() {
    summary::run("12b NATS sink", |rec| async move {
        let stack = Stack::shared("tidemark_rel_nats").await;
        traffic(&stack.demo, rec.scale().pick(30, 300), 4).await;
        let mut nats = NatsServer::start().await;
        let mut cfg = stack.config();
        cfg.chains[0].poll_interval_ms = Some(100);
        let cfg = cfg.sink(&format!(
            "name = \"bus\"\nkind = \"nats\"\nurl = \"{}\"\nstream = \"TIDEMARK\"\nbatch_size = 20\ntimeout_ms = 1000",
            nats.url()
        ));
        rec.step("delivering; kill -9 of the indexer");
        let mut indexer = stack.spawn(&cfg);
        tokio::time::sleep(Duration::from_millis(800)).await;
        indexer.proc.kill9();
        traffic(&stack.demo, 5, 2).await;
        indexer = stack.spawn(&cfg);
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, SOON).await;
        rec.step("nats-server killed during a reorg and traffic, then restarted");
        tokio::time::sleep(Duration::from_millis(500)).await;
        nats.kill();
        stack.demo.reorg(2).await.expect("anvil_reorg");
        traffic(&stack.demo, 5, 2).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        nats.restart().await;
        stack.wait_synced(&mut db, SOON).await;
        caught_up(&stack, &indexer, "bus", Duration::from_secs(100)).await;

        rec.step("an ordered consumer reads the stream");
        let js = nats.jetstream().await;
        let stream = js.get_stream("TIDEMARK").await.expect("stream");
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
            .await
            .expect("ordered consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let (mut seen, mut bad_ids) = (Vec::new(), 0usize);
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), messages.next()).await {
            let item: Value = serde_json::from_slice(&m.payload).expect("JSON");
            let id = m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.to_string());
            if id != Some(format!("tidemark_rel_nats:{}", item_cursor(&item))) {
                bad_ids += 1;
            }
            seen.push(item_cursor(&item));
        }
        let journal = db.journal().await.expect("journal");
        let in_order = seen.windows(2).all(|w| w[0] < w[1]);
        let seen_set: HashSet<i64> = seen.iter().copied().collect();
        let missing = journal.iter().filter(|e| !seen_set.contains(&e.cursor)).count();
        let current: HashSet<i64> = journal.iter().map(|e| e.cursor).collect();
        let removed: HashSet<i64> = journal.iter().filter(|e| e.kind == "removed").map(|e| e.event_cursor).collect();
        let unexplained = seen.iter().filter(|c| !current.contains(c) && !removed.contains(c)).count();
        rec.require(
            "kill -9 of the indexer, a nats-server restart, a reorg",
            format!("{missing} journal entries missing; each once and in cursor order: {in_order}; unexplained: {unexplained}; bad message ids: {bad_ids}"),
            missing == 0 && in_order && unexplained == 0 && bad_ids == 0 && !removed.is_empty(),
            format!("{} messages, {} journal entries, {} removals", seen.len(), journal.len(), removed.len()),
        );
        assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebroadcast_survives_kills_and_live_entries_keep_flowing() {
    summary::run("12c sink rebroadcast", |rec| async move {
        let scale = rec.scale();
        let stack = Stack::shared("tidemark_rel_rebroadcast").await;
        // 200 events per block in the full run: 100,000 in 500 blocks.
        let (blocks, burst) = scale.pick((60, 8), (500, 200));
        rec.step(format!("{blocks} blocks of up to {burst} events"));
        for _ in 0..blocks {
            stack.demo.burst(burst).await.expect("burst");
        }
        let receiver = WebhookReceiver::start(SECRET).await;
        let mut cfg = stack.config();
        cfg.chains[0].poll_interval_ms = Some(100);
        let cfg = webhook_sink(cfg, &receiver, &format!("batch_size = {}", scale.pick(10, 500)));
        let mut indexer = stack.spawn(&cfg);
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, Duration::from_secs(300)).await;
        caught_up(&stack, &indexer, "hooks", Duration::from_secs(300)).await;
        let stored: HashSet<i64> = db.events().await.expect("events").iter().map(|e| e.cursor).collect();

        // Slow answers: the run takes long enough to be killed three times.
        receiver.set_faults(WebhookFaults { delay: Duration::from_millis(40), ..WebhookFaults::default() });
        let (code, out) = stack.run_command(&cfg, &["sink", "rebroadcast", "--sink", "hooks"]).await;
        assert_eq!(code, 0, "{}", out.logs());
        let rebroadcast = || {
            receiver
                .accepted_items()
                .iter()
                .filter(|i| i["rebroadcast"].as_u64() == Some(1))
                .map(item_cursor)
                .collect::<HashSet<i64>>()
        };
        let mut live_latency = Duration::ZERO;
        for kill in 0..3 {
            rec.step(format!("kill -9 {} of 3 during the run", kill + 1));
            eventually(Duration::from_secs(300), format!("the run progresses (kill {kill})"), async || {
                (rebroadcast().len() > (kill + 1) * stored.len() / 5).then_some(())
            })
            .await;
            if kill == 1 {
                let (before, seen) = (db.max_cursor().await.expect("cursor").unwrap_or(0), receiver.count());
                stack.demo.burst(1).await.expect("burst");
                let cursor = eventually(SOON, "the new event stored", async || {
                    db.max_cursor().await.ok()?.filter(|c| *c > before)
                })
                .await;
                let committed = Instant::now();
                // Only the requests since: parsing every body each poll would measure the
                // test, not the sink.
                eventually(SOON, "the live entry delivered", async || {
                    receiver
                        .received_since(seen)
                        .iter()
                        .filter(|r| r.outcome == Outcome::Accepted)
                        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
                        .any(|b| {
                            b["items"].as_array().is_some_and(|items| {
                                items.iter().any(|i| item_cursor(i) == cursor && i["rebroadcast"].is_null())
                            })
                        })
                        .then_some(())
                })
                .await;
                live_latency = committed.elapsed();
            }
            indexer.proc.kill9();
            indexer = stack.spawn(&cfg);
        }
        rec.step("the run finishes");
        eventually(Duration::from_secs(600), "the run finished", async || {
            let (_, out) = stack.run_command(&cfg, &["sink", "list"]).await;
            out.stdout().contains("run 1 done").then_some(())
        })
        .await;
        let rebroadcast = rebroadcast();
        let missing = stored.iter().filter(|c| !rebroadcast.contains(c)).count();
        rec.require(
            "a rebroadcast of every stored event, three kill -9 during it, live traffic",
            format!(
                "{missing} of {} events never rebroadcast; live entry delivered in {:.2} s during the run",
                stored.len(),
                live_latency.as_secs_f64()
            ),
            missing == 0
                && live_latency < Duration::from_secs(5)
                && receiver.received().iter().all(|r| r.verified),
            format!("{} requests", receiver.received().len()),
        );
        assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
    })
    .await;
}
