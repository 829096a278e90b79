//! Invariant 9 — an RPC answer is evidence, not truth: with a share of the answers coming
//! from a node that lags a few blocks behind, or from one that lies (logs out of range,
//! logs twice, wrong block hashes, `null` headers, empty answers), the stored events equal
//! the canonical chain exactly, no reorg is invented (no `removed` journal entry), the
//! indexer keeps running, and each rejected answer is counted and logged. A failover
//! endpoint on another chain is set aside, never taken as evidence.

use std::time::Duration;

use tidemark_testkit::{Anvil, Faults, Indexer, InstanceDb, RpcProxy, SOON, Stack, eventually};

use crate::common::{SCHEMA, traffic};

/// Traffic while the indexer follows: `rounds` rounds of a few blocks each, with pauses so
/// the follower works at the head, where lagging nodes answer short.
async fn traffic_at_the_head(stack: &Stack, rounds: u64) {
    for _ in 0..rounds {
        traffic(&stack.demo, 3, 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// No `removed` entry: no reorg was invented.
async fn assert_no_removals(db: &mut InstanceDb) {
    let journal = db.journal().await.expect("journal");
    let removed: Vec<_> = journal.iter().filter(|e| e.kind == "removed").collect();
    assert!(
        removed.is_empty(),
        "a reorg was invented: {} removed entries, first {:?}",
        removed.len(),
        removed.first()
    );
}

/// `tidemark_rpc_bad_answers_total` summed over endpoints for `kind`.
async fn bad_answers(indexer: &Indexer, kind: &str) -> u64 {
    let (_, text) = indexer.get_text("/metrics").await.expect("/metrics");
    tidemark_testkit::metric_sum(&text, "tidemark_rpc_bad_answers_total", &format!("kind=\"{kind}\"")) as u64
}

/// Indexes the stack's chain through a proxy with `faults` under traffic; checks the
/// result is exact and that `kind` answers were rejected, counted and logged.
async fn index_through(faults: Faults, kind: &str) {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 10, 3).await;
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    proxy.set_faults(faults);
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    cfg.chains[0].finality_depth = Some(2);
    cfg.chains[0].poll_interval_ms = Some(200);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    traffic_at_the_head(&stack, 12).await;
    // Faults are rolled per request, and a loaded machine follows in fewer, larger steps:
    // more traffic until the proxy has altered a few answers that mattered, so that the
    // count below has something to count.
    for _ in 0..60 {
        if proxy.injected().total() >= 3 {
            break;
        }
        traffic_at_the_head(&stack, 1).await;
    }
    assert!(
        proxy.injected().total() > 0,
        "the proxy altered no answer that held logs: {:?}",
        proxy.injected()
    );
    stack.wait_synced(&mut db, SOON).await;
    stack.assert_matches_chain(&mut db).await;
    assert_no_removals(&mut db).await;
    assert!(indexer.proc.is_running(), "the indexer keeps running");
    eventually(SOON, format!("rejected `{kind}` answers counted"), async || {
        (bad_answers(&indexer, kind).await > 0).then_some(())
    })
    .await;
    assert!(indexer.proc.stderr().contains("rpc answer rejected"), "a log line per endpoint and kind");
    eprintln!("{kind}: injected {:?}, rejected {}", proxy.injected(), bad_answers(&indexer, kind).await);
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_lagging_three_blocks_loses_no_event_and_invents_no_reorg() {
    index_through(Faults { lagging: Some((0.3, 3)), ..Faults::default() }, "not-yet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_outside_the_requested_range_are_rejected() {
    index_through(Faults { out_of_range: 0.3, ..Faults::default() }, "out-of-range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_logs_are_rejected() {
    index_through(Faults { duplicates: 0.3, ..Faults::default() }, "duplicate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_with_another_block_hash_are_rejected() {
    index_through(Faults { hash_mismatch: 0.3, ..Faults::default() }, "hash-mismatch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_headers_are_not_known_yet() {
    index_through(Faults { null_headers: 0.3, ..Faults::default() }, "not-yet").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_answers_are_confirmed_against_the_block_bloom() {
    index_through(Faults { empty_logs: 0.3, ..Faults::default() }, "incomplete").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_failover_node_of_another_chain_deletes_nothing() {
    failover_to_another_chain(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_node_of_a_fork_ahead_of_the_index_deletes_nothing() {
    failover_to_another_chain(true).await;
}

/// A is the chain, behind a proxy that fails; B is a new anvil (`ahead`: mined past A's
/// head, so its hashes at the indexed heights differ from A's).
async fn failover_to_another_chain(ahead: bool) {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 10, 3).await;
    // A: the real chain, behind a proxy that can fail. B: a new anvil (same chain id, its
    // own genesis) that mines a block a second.
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    let fresh = Anvil::spawn_with(&["--block-time", "1"]).await;
    if ahead {
        // The same genesis and chain id as A, but its own blocks, further than A's head.
        let mine = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "anvil_mine", "params": ["0x64"]});
        reqwest::Client::new().post(fresh.url()).json(&mine).send().await.expect("anvil_mine");
    }
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = None;
    cfg.chains[0].rpc_urls = Some(vec![proxy.url().to_owned(), fresh.url().to_owned()]);
    cfg.chains[0].finality_depth = Some(2);
    cfg.chains[0].poll_interval_ms = Some(200);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    let before = db.event_count().await.expect("count");

    proxy.set_down(true);
    traffic(&stack.demo, 5, 2).await;
    eventually(SOON, "/health names the failover endpoint as behind or on another chain", async || {
        let (_, body) = indexer.get_json("/health").await?;
        let warnings = body["warnings"].as_array()?;
        warnings
            .iter()
            .any(|w| {
                w.as_str().is_some_and(|w| {
                    w.starts_with("rpc-endpoint-wrong-chain:") || w.starts_with("rpc-endpoint-behind:")
                })
            })
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        db.event_count().await.expect("count"),
        before,
        "nothing indexed from another chain, nothing deleted"
    );
    assert_no_removals(&mut db).await;
    assert!(indexer.proc.is_running(), "the indexer waits");

    proxy.set_down(false);
    stack.wait_synced(&mut db, SOON).await;
    stack.assert_matches_chain(&mut db).await;
    assert_no_removals(&mut db).await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
