//! DESIGN §8 "Sinks": `sink replay` and `sink list`, `delivery = "finalized"`, and epochs
//! reaching `delivered`. Real processes: PostgreSQL, anvil, the indexer binary, and a
//! receiver whose signature check is the Standard Webhooks reference library's. Delivery
//! under faults, kills and a broker restart, and rebroadcasts, are the reliability
//! suite's scenario 12.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use tidemark_testkit::{
    Indexer, IndexerConfigBuilder, SOON, Stack, WebhookReceiver, eventually, item_cursor,
};

use crate::common::{SCHEMA, traffic};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn webhook_sink(cfg: IndexerConfigBuilder, receiver: &WebhookReceiver, extra: &str) -> IndexerConfigBuilder {
    cfg.sink(&receiver.sink_table("hooks", SECRET, extra))
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
    indexer.wait_sink_caught_up(name, timeout, async || db.max_cursor().await.ok()?).await;
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
    let cursors: Vec<i64> = first.iter().map(item_cursor).collect();
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
            .map(|i| item_cursor(&i))
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
    let orphaned: Vec<i64> = items.iter().map(item_cursor).filter(|c| !stored.contains(c)).collect();
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
        let got: HashSet<i64> = receiver.accepted_items().iter().map(item_cursor).collect();
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
            indexer.sink_status("hooks").await,
            db.max_cursor().await
        );
    }
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
