//! DESIGN §8 "Sinks": webhook and NATS JetStream delivery of the journal, at least once,
//! in cursor order, from a cursor kept in the database, across receiver faults, reorgs,
//! `kill -9` of the indexer and a NATS server restart; `sink replay`; `delivery =
//! "finalized"`. Real processes throughout: PostgreSQL, anvil, nats-server, the indexer
//! binary, and a receiver whose signature check is the Standard Webhooks reference
//! library's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;
use tidemark_testkit::{
    Indexer, IndexerConfigBuilder, NatsServer, SOON, Stack, WebhookFaults, WebhookReceiver, eventually,
};
use tokio_util::sync::CancellationToken;

use crate::common::{SCHEMA, api_events, serve_api, traffic};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const LONG: Duration = Duration::from_secs(100);

fn cursor_of(item: &Value) -> i64 {
    item["cursor"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("item without a cursor: {item}"))
}

/// Applies sink items in cursor order (deduplicated by cursor): add on `log`, delete on
/// `removed`. Returns the resulting events by cursor.
fn apply(items: &[Value]) -> BTreeMap<i64, Value> {
    let mut by_cursor: BTreeMap<i64, &Value> = BTreeMap::new();
    for item in items {
        by_cursor.insert(cursor_of(item), item);
    }
    let mut state = BTreeMap::new();
    for (cursor, item) in by_cursor {
        match item["kind"].as_str() {
            Some("log") => {
                state.insert(cursor, item.clone());
            }
            Some("removed") => {
                let of: i64 = item["eventCursor"].as_str().and_then(|c| c.parse().ok()).expect("eventCursor");
                state.remove(&of);
            }
            other => panic!("unknown kind {other:?} in {item}"),
        }
    }
    state
}

/// An item without the fields that change after delivery (`finalized`) or that only a
/// sink adds.
fn comparable(item: &Value) -> Value {
    let mut v = item.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["finalized", "kind", "rebroadcast"] {
            o.remove(k);
        }
    }
    v
}

fn webhook_sink(cfg: IndexerConfigBuilder, receiver: &WebhookReceiver, extra: &str) -> IndexerConfigBuilder {
    cfg.sink(&format!(
        "name = \"hooks\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n{extra}",
        receiver.url()
    ))
}

/// The sink's state in the indexer's `/status`.
async fn sink_status(indexer: &Indexer, name: &str) -> Option<Value> {
    let (code, body) = indexer.get_json("/status").await?;
    (code == 200).then(|| body["sinks"][name].clone()).filter(|s| !s.is_null())
}

/// The stage names of an epoch's history, in order.
fn history(e: &tidemark_testkit::EpochRow) -> Vec<String> {
    e.stages
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["stage"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Waits until every epoch that reached `then` (`stored` or `finalized`) has `delivered`
/// after it in its history.
async fn epochs_delivered(stack: &Stack, then: &str) {
    let mut db = stack.instance().await;
    eventually(SOON, "every stored epoch delivered", async || {
        let epochs = db.epochs().await.ok()?;
        // The epochs that reached `then` (a stored epoch may be finalized since).
        let stored: Vec<_> = epochs
            .iter()
            .filter(|e| e.stage == then || (then == "stored" && e.stage == "finalized"))
            .collect();
        let done = !stored.is_empty()
            && stored.iter().all(|e| {
                let h = history(e);
                let at = |name: &str| h.iter().position(|s| s == name);
                matches!((at(then), at("delivered")), (Some(a), Some(d)) if a < d)
            });
        done.then_some(())
    })
    .await;
}

/// Waits until the sink is caught up at the journal's head.
async fn caught_up(stack: &Stack, indexer: &Indexer, name: &str, timeout: Duration) {
    let mut db = stack.instance().await;
    eventually(timeout, format!("sink {name} caught up"), async || {
        let head = db.journal().await.ok()?.last().map(|e| e.cursor)?;
        let s = sink_status(indexer, name).await?;
        let cursor: i64 = s["cursor"].as_str()?.parse().ok()?;
        (s["state"] == "caught-up" && cursor >= head).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receives_every_entry_through_faults_reorgs_and_kills() {
    let stack = Stack::shared(SCHEMA).await;
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
        traffic(&stack.demo, 4, 2).await;
        if round < 2 {
            // Indexed first, so that the reorg removes stored logs.
            stack.wait_synced(&mut db, SOON).await;
            stack.demo.reorg(2).await.expect("anvil_reorg");
            stack.demo.burst(2).await.expect("burst");
        }
        if round == 1 {
            // Down entirely for a while: connections are refused.
            receiver.down();
            tokio::time::sleep(Duration::from_secs(4)).await;
            receiver.up().await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        indexer.proc.kill9();
        indexer = stack.spawn(&cfg);
    }
    receiver.set_faults(WebhookFaults::default());
    stack.wait_synced(&mut db, SOON).await;
    caught_up(&stack, &indexer, "hooks", LONG).await;

    let received = receiver.received();
    assert!(received.iter().all(|r| r.verified), "every request verifies with the reference library");
    let failed = received.iter().filter(|r| r.outcome != tidemark_testkit::Outcome::Accepted).count();
    assert!(failed > 0, "the faults were exercised ({} requests)", received.len());
    // A cursor only ever travels under one delivery id: duplicates are retries.
    let mut ids: HashMap<i64, HashSet<String>> = HashMap::new();
    for r in &received {
        let body: Value = serde_json::from_slice(&r.body).expect("JSON body");
        assert_eq!(body["deliveryId"].as_str(), Some(r.id.as_str()), "webhook-id is the delivery id");
        assert_eq!(body["sink"], "hooks");
        for item in body["items"].as_array().expect("items") {
            ids.entry(cursor_of(item)).or_default().insert(r.id.clone());
        }
    }
    let retried_elsewhere: Vec<_> = ids.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(retried_elsewhere.is_empty(), "cursors sent under several delivery ids: {retried_elsewhere:?}");

    // Every journal entry arrived; applying them gives the served events.
    let items = receiver.accepted_items();
    let got: HashSet<i64> = items.iter().map(cursor_of).collect();
    let journal = db.journal().await.expect("journal");
    let missing: Vec<i64> = journal.iter().map(|e| e.cursor).filter(|c| !got.contains(c)).collect();
    assert!(missing.is_empty(), "journal entries never delivered: {missing:?}");
    assert!(journal.iter().any(|e| e.kind == "removed"), "the reorgs produced removals");
    let state = apply(&items);
    let stop = CancellationToken::new();
    let base = serve_api(&stack.db_url, &stop).await;
    let served = api_events(&base, "", 1000).await;
    let served: BTreeMap<i64, Value> = served.iter().map(|i| (cursor_of(i), comparable(i))).collect();
    let state: BTreeMap<i64, Value> = state.iter().map(|(c, i)| (*c, comparable(i))).collect();
    assert_eq!(state, served, "the receiver's replay equals /v1/events");
    stop.cancel();
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_consumers_see_every_entry_once_in_order_across_kills_and_a_server_restart() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 30, 4).await;
    let mut nats = NatsServer::start().await;
    let mut cfg = stack.config();
    cfg.chains[0].poll_interval_ms = Some(100);
    let cfg = cfg.sink(&format!("name = \"bus\"\nkind = \"nats\"\nurl = \"{}\"\nstream = \"TIDEMARK\"\nbatch_size = 20\ntimeout_ms = 1000", nats.url()));
    let mut indexer = stack.spawn(&cfg);
    tokio::time::sleep(Duration::from_millis(800)).await;
    indexer.proc.kill9();
    traffic(&stack.demo, 5, 2).await;
    indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.kill();
    stack.demo.reorg(2).await.expect("anvil_reorg");
    traffic(&stack.demo, 5, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.restart().await;
    stack.wait_synced(&mut db, SOON).await;
    caught_up(&stack, &indexer, "bus", LONG).await;

    let js = nats.jetstream().await;
    let stream = js.get_stream("TIDEMARK").await.expect("stream");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("ordered consumer");
    let journal = db.journal().await.expect("journal");
    let mut messages = consumer.messages().await.expect("messages");
    let mut seen = Vec::new();
    // Until the stream has nothing more for a while.
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(3), messages.next()).await {
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.to_string())
            .expect("Nats-Msg-Id");
        let item: Value = serde_json::from_slice(&m.payload).expect("JSON");
        assert_eq!(id, format!("{SCHEMA}:{}", cursor_of(&item)), "message id");
        let chain = item["chainId"].as_u64().expect("chainId");
        assert_eq!(
            m.subject.as_str(),
            format!(
                "tidemark.{SCHEMA}.{chain}.{}.{}",
                item["contract"].as_str().expect("contract"),
                item["event"].as_str().expect("event")
            )
        );
        seen.push(cursor_of(&item));
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "each entry once, in cursor order: {seen:?}");
    let current: Vec<i64> = journal.iter().map(|e| e.cursor).collect();
    let seen_set: HashSet<i64> = seen.iter().copied().collect();
    let missing: Vec<i64> = current.iter().copied().filter(|c| !seen_set.contains(c)).collect();
    assert!(missing.is_empty(), "journal entries never published: {missing:?}");
    // The rest are logs a reorg removed afterwards (their removal is in the journal).
    let removed: HashSet<i64> =
        journal.iter().filter(|e| e.kind == "removed").map(|e| e.event_cursor).collect();
    let unexplained: Vec<i64> =
        seen.iter().copied().filter(|c| !current.contains(c) && !removed.contains(c)).collect();
    assert!(
        unexplained.is_empty(),
        "published entries that are neither in the journal nor removed: {unexplained:?}"
    );
    assert!(!removed.is_empty(), "the reorg removed published logs");
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_redelivers_exactly_the_entries_after_the_cursor() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 12, 3).await;
    let receiver = WebhookReceiver::start(SECRET).await;
    let cfg = webhook_sink(stack.config(), &receiver, "filter = { contracts = [\"Token\"] }");
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    caught_up(&stack, &indexer, "hooks", SOON).await;
    // Every epoch reaches `delivered`, after `stored`.
    epochs_delivered(&stack, "stored").await;
    let first = receiver.accepted_items();
    assert!(first.iter().all(|i| i["contract"] == "Token"), "the filter holds");
    let cursors: Vec<i64> = first.iter().map(cursor_of).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "in cursor order, once each without faults");
    let from = cursors[cursors.len() / 2];
    let before = receiver.received().len();

    let (code, out) = stack
        .run_command(&cfg, &["sink", "replay", "--sink", "hooks", "--from-cursor", &from.to_string()])
        .await;
    assert_eq!(code, 0, "{}", out.logs());
    assert!(out.stdout().contains("applied by the writer"), "{}", out.stdout());
    eventually(SOON, "the replay delivered", async || {
        let again: Vec<i64> = receiver.received()[before..]
            .iter()
            .flat_map(|r| {
                let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
                body["items"].as_array().cloned().unwrap_or_default()
            })
            .map(|i| cursor_of(&i))
            .collect();
        let expected: Vec<i64> = cursors.iter().copied().filter(|c| *c > from).collect();
        (again == expected).then_some(())
    })
    .await;
    let (code, out) = stack.run_command(&cfg, &["sink", "list"]).await;
    assert_eq!(code, 0, "{}", out.logs());
    assert!(out.stdout().contains("hooks") && out.stdout().contains("caught-up"), "{}", out.stdout());
    assert!(!out.stdout().contains(&receiver.url()), "sink list never shows the URL");
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalized_sink_gets_only_final_logs_and_never_a_removal() {
    const DEPTH: u64 = 4;
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 6, 2).await;
    let receiver = WebhookReceiver::start(SECRET).await;
    let mut cfg = stack.config();
    cfg.chains[0].finality_depth = Some(DEPTH);
    cfg.chains[0].poll_interval_ms = Some(100);
    let cfg = webhook_sink(cfg, &receiver, "delivery = \"finalized\"");
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    for _ in 0..3 {
        traffic(&stack.demo, 3, 2).await;
        stack.wait_synced(&mut db, SOON).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stack.demo.reorg(DEPTH - 1).await.expect("anvil_reorg");
        stack.demo.burst(1).await.expect("burst");
    }
    stack.wait_synced(&mut db, SOON).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let items = receiver.accepted_items();
    assert!(!items.is_empty(), "final logs were delivered");
    assert!(items.iter().all(|i| i["kind"] == "log"), "never a removal");
    let stored: HashSet<i64> = db.events().await.expect("events").iter().map(|e| e.cursor).collect();
    let orphaned: Vec<i64> = items.iter().map(cursor_of).filter(|c| !stored.contains(c)).collect();
    if !orphaned.is_empty() {
        let journal = db.journal().await.expect("journal");
        let brief: Vec<String> =
            journal.iter().map(|e| format!("{}:{}:{}", e.cursor, e.kind, e.block_number)).collect();
        let got: Vec<String> =
            items.iter().map(|i| format!("{}:{}", i["cursor"], i["blockNumber"])).collect();
        panic!("delivered logs that a reorg removed: {orphaned:?}\njournal {brief:?}\ndelivered {got:?}");
    }
    let head = stack.demo.block_number().await.expect("head");
    assert!(
        items.iter().all(|i| i["blockNumber"].as_u64().expect("blockNumber") + DEPTH <= head),
        "only logs at least {DEPTH} blocks deep"
    );
    // Blocks on top make the rest final: it arrives.
    stack.demo.mine(DEPTH + 1).await.expect("mine");
    stack.wait_synced(&mut db, SOON).await;
    eventually(SOON, "every stored event delivered", async || {
        let got: HashSet<i64> = receiver.accepted_items().iter().map(cursor_of).collect();
        (got == stored).then_some(())
    })
    .await;
    // With a finalized sink, `delivered` follows `finalized`, never `stored` alone.
    let epochs = db.epochs().await.expect("epochs");
    for e in epochs.iter().filter(|e| history(e).contains(&"delivered".to_owned())) {
        assert_eq!(e.stage, "finalized", "only finalized epochs are delivered: {:?}", history(e));
    }
    if tokio::time::timeout(Duration::from_secs(40), epochs_delivered(&stack, "finalized")).await.is_err() {
        let epochs = db.epochs().await.expect("epochs");
        let brief: Vec<String> = epochs
            .iter()
            .map(|e| format!("{}:{}-{} {} {:?}", e.epoch_id, e.from_block, e.to_block, e.stage, history(e)))
            .collect();
        panic!(
            "epochs not delivered: {brief:#?}\nsink: {:?}\njournal head {:?}",
            sink_status(&indexer, "hooks").await,
            db.max_cursor().await
        );
    }
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebroadcast_survives_kills_and_live_entries_keep_flowing() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 60, 8).await;
    let receiver = WebhookReceiver::start(SECRET).await;
    let mut cfg = stack.config();
    cfg.chains[0].poll_interval_ms = Some(100);
    let cfg = webhook_sink(cfg, &receiver, "batch_size = 10");
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    caught_up(&stack, &indexer, "hooks", SOON).await;
    let stored: HashSet<i64> = db.events().await.expect("events").iter().map(|e| e.cursor).collect();

    // Slow answers: the run takes long enough to be killed three times.
    receiver.set_faults(WebhookFaults { delay: Duration::from_millis(40), ..WebhookFaults::default() });
    let (code, out) = stack.run_command(&cfg, &["sink", "rebroadcast", "--sink", "hooks"]).await;
    assert_eq!(code, 0, "{}", out.logs());
    assert!(out.stdout().contains("rebroadcast run 1 started"), "{}", out.stdout());
    let rebroadcast = |run: u64| {
        receiver
            .accepted_items()
            .iter()
            .filter(|i| i["rebroadcast"].as_u64() == Some(run))
            .map(cursor_of)
            .collect::<HashSet<i64>>()
    };
    for kill in 0..3 {
        eventually(SOON, format!("the run progresses (kill {kill})"), async || {
            (rebroadcast(1).len() > (kill + 1) * stored.len() / 5).then_some(())
        })
        .await;
        // A live entry committed during the run reaches the receiver within 5 s.
        if kill == 1 {
            stack.demo.burst(1).await.expect("burst");
            let before = db.max_cursor().await.expect("cursor").unwrap_or(0);
            let cursor = eventually(SOON, "the new event stored", async || {
                db.max_cursor().await.ok()?.filter(|c| *c > before)
            })
            .await;
            let committed = std::time::Instant::now();
            eventually(SOON, "the live entry delivered", async || {
                receiver
                    .accepted_items()
                    .iter()
                    .any(|i| cursor_of(i) == cursor && i["rebroadcast"].is_null())
                    .then_some(())
            })
            .await;
            assert!(
                committed.elapsed() < Duration::from_secs(5),
                "live entry took {:?} during the run",
                committed.elapsed()
            );
        }
        indexer.proc.kill9();
        indexer = stack.spawn(&cfg);
    }
    eventually(LONG, "the run finished", async || {
        let (_, out) = stack.run_command(&cfg, &["sink", "list"]).await;
        out.stdout().contains("run 1 done").then_some(())
    })
    .await;
    let missing: Vec<i64> = stored.iter().copied().filter(|c| !rebroadcast(1).contains(c)).collect();
    assert!(missing.is_empty(), "events never rebroadcast: {missing:?}");
    let ids: HashSet<String> =
        receiver.received().iter().filter(|r| r.id.starts_with("rb1:")).map(|r| r.id.clone()).collect();
    assert!(!ids.is_empty() && receiver.received().iter().all(|r| r.verified));
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
