//! DESIGN §4 and invariant 4: the persisted status snapshot moves queued → backfill →
//! following, keeps its invariants, stays fresh while the indexer runs, completes bounded
//! ranges; SIGTERM ends the process cleanly with a final snapshot (§7 "Shutdown").

use std::time::{Duration, Instant};

use serde_json::Value;
use tidemark_testkit::{InstanceDb, MetadataRow, RpcProxy, SOON, Stack, eventually};

use crate::common::{SCHEMA, traffic};

async fn status(db: &mut InstanceDb) -> Option<MetadataRow> {
    db.metadata("indexing_status").await.ok().flatten()
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a number"))
}

/// Checks one snapshot against DESIGN §4; returns (chainStatus, omnichainStatus).
fn check_snapshot(s: &Value, chain_id: u64) -> (String, String) {
    let omni = &s["omnichainSnapshot"];
    let chain = &omni["chains"][chain_id.to_string()];
    let chain_status =
        chain["chainStatus"].as_str().unwrap_or_else(|| panic!("chainStatus in {s}")).to_owned();
    let omni_status =
        omni["omnichainStatus"].as_str().unwrap_or_else(|| panic!("omnichainStatus in {s}")).to_owned();
    assert_eq!(s["strategy"], "omnichain");
    assert_eq!(s["slowestChainIndexingCursor"], omni["omnichainIndexingCursor"], "{s}");
    let cursor = num(&omni["omnichainIndexingCursor"]);
    let start = num(&chain["config"]["startBlock"]["number"]);
    let latest = || num(&chain["latestIndexedBlock"]["number"]);
    match chain_status.as_str() {
        "chain-queued" => {
            assert_eq!(omni_status, "omnichain-unstarted");
            assert_eq!(cursor, num(&chain["config"]["startBlock"]["timestamp"]) - 1, "{s}");
        }
        "chain-backfill" => {
            assert_eq!(omni_status, "omnichain-backfill");
            let end = num(&chain["backfillEndBlock"]["number"]);
            assert!(start <= latest() && latest() <= end, "start ≤ latestIndexed ≤ backfillEnd: {s}");
            assert_eq!(cursor, num(&chain["latestIndexedBlock"]["timestamp"]), "{s}");
        }
        "chain-following" => {
            assert_eq!(omni_status, "omnichain-following");
            let known = num(&chain["latestKnownBlock"]["number"]);
            assert!(start <= latest() && latest() <= known, "start ≤ latestIndexed ≤ latestKnown: {s}");
            assert_eq!(cursor, num(&chain["latestIndexedBlock"]["timestamp"]), "{s}");
        }
        "chain-completed" => {
            assert_eq!(omni_status, "omnichain-completed");
            assert_eq!(chain["config"]["rangeType"], "bounded");
            assert_eq!(
                latest(),
                num(&chain["config"]["endBlock"]["number"]),
                "latestIndexed = endBlock: {s}"
            );
            assert_eq!(cursor, num(&chain["latestIndexedBlock"]["timestamp"]), "{s}");
        }
        other => panic!("unknown chainStatus {other}"),
    }
    (chain_status, omni_status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_moves_from_queued_through_backfill_to_following_and_stays_fresh() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 200, 2).await;
    // The first eth_getLogs hangs long enough for a queued snapshot; then every range is
    // slowed a little so that the one-block ranges backfill for several seconds.
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    proxy.delay("eth_getLogs", Duration::from_millis(1500));
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    cfg.chains[0].max_block_range = Some(1);
    cfg.chains[0].max_concurrency = Some(1);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;

    let mut seen: Vec<(String, String)> = Vec::new();
    let mut backfill_end: Option<Value> = None;
    let mut last_update: Option<f64> = None;
    let mut following_since: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    while following_since.is_none_or(|t| t.elapsed() < Duration::from_secs(3)) {
        assert!(Instant::now() < deadline, "no following status within 90 s; seen {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Some(row) = status(&mut db).await else { continue };
        // Invariant 4, on the database clock.
        assert!(row.age_secs <= 2.0, "status row is {:.2} s old", row.age_secs);
        if let Some(prev) = last_update
            && row.updated_at != prev
        {
            assert!(row.updated_at - prev <= 2.0, "updated_at advanced by {:.2} s", row.updated_at - prev);
        }
        last_update = Some(row.updated_at);
        let pair = check_snapshot(&row.value, 31337);
        if pair.0 == "chain-backfill" {
            let end = row.value["omnichainSnapshot"]["chains"]["31337"]["backfillEndBlock"].clone();
            let fixed = backfill_end.get_or_insert_with(|| end.clone());
            assert_eq!(*fixed, end, "backfillEndBlock is fixed for the process");
        }
        if pair.0 == "chain-queued" {
            proxy.delay("eth_getLogs", Duration::from_millis(15));
        }
        if pair.0 == "chain-following" && following_since.is_none() {
            following_since = Some(Instant::now());
        }
        if seen.last() != Some(&pair) {
            seen.push(pair);
        }
    }
    let statuses: Vec<&str> = seen.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(statuses, ["chain-queued", "chain-backfill", "chain-following"], "{seen:?}");
    stack.assert_matches_chain(&mut db).await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_range_completes_and_the_status_keeps_being_written() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 20, 3).await;
    let end = stack.demo.block_number().await.expect("head");
    traffic(&stack.demo, 10, 3).await;
    let mut cfg = stack.config();
    for c in &mut cfg.chains[0].contracts {
        c.end_block = Some(end);
    }
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    let row = eventually(SOON, "chain-completed", async || {
        let row = status(&mut db).await?;
        (row.value["omnichainSnapshot"]["chains"]["31337"]["chainStatus"] == "chain-completed").then_some(row)
    })
    .await;
    let (chain_status, omni_status) = check_snapshot(&row.value, 31337);
    assert_eq!((chain_status.as_str(), omni_status.as_str()), ("chain-completed", "omnichain-completed"));
    let chain = &row.value["omnichainSnapshot"]["chains"]["31337"];
    assert_eq!(num(&chain["latestIndexedBlock"]["number"]), end);
    assert_eq!(num(&chain["config"]["endBlock"]["number"]), end);

    let cp = db.checkpoint(31337).await.expect("query").expect("checkpoint");
    assert_eq!(cp.block_number as u64, end, "checkpoint at the end block");
    let stored = stack.assert_matches_chain(&mut db).await;
    assert!(stored.iter().all(|e| e.block_number as u64 <= end), "nothing beyond the end block");

    // Completed, the indexer stays up and keeps the snapshot fresh.
    eventually(SOON, "a newer snapshot after completion", async || {
        let newer = status(&mut db).await?;
        (newer.updated_at > row.updated_at).then_some(())
    })
    .await;
    assert!(indexer.proc.is_running());
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_backfill_exits_0_within_5_s_with_a_final_status() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 150, 2).await;
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    proxy.delay("eth_getLogs", Duration::from_millis(30));
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    cfg.chains[0].max_block_range = Some(1);
    cfg.chains[0].max_concurrency = Some(2);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    eventually(SOON, "backfill under way", async || {
        let cp = db.checkpoint(31337).await.ok()??;
        (cp.block_number >= 20).then_some(())
    })
    .await;

    let signalled_at = db.now().await.expect("database clock");
    let started = Instant::now();
    indexer.proc.sigterm();
    let code = indexer.proc.exit_code(Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert_eq!(code, 0, "clean exit");
    assert!(took < Duration::from_secs(5), "exited in {took:?}");
    assert!(indexer.proc.stderr().contains("shutdown signal received"));

    let row = status(&mut db).await.expect("a status row");
    assert!(row.updated_at >= signalled_at, "a status written after the signal");
    let cp = db.checkpoint(31337).await.expect("query").expect("checkpoint");
    let latest = num(&row.value["omnichainSnapshot"]["chains"]["31337"]["latestIndexedBlock"]["number"]);
    assert_eq!(latest, cp.block_number as u64, "the final status reports the last commit");
    stack.assert_matches_chain(&mut db).await;

    // The next run resumes and finishes.
    drop(proxy);
    let mut indexer = stack.spawn(&stack.config());
    stack.wait_synced(&mut db, SOON).await;
    stack.assert_matches_chain(&mut db).await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_range_beyond_the_head_follows_until_its_end_block() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 6, 3).await;
    let end = stack.demo.block_number().await.expect("head") + 8;
    let mut cfg = stack.config();
    for c in &mut cfg.chains[0].contracts {
        c.end_block = Some(end);
    }
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    let row = eventually(SOON, "a following snapshot", async || {
        let row = status(&mut db).await?;
        (row.value["omnichainSnapshot"]["chains"]["31337"]["chainStatus"] == "chain-following").then_some(row)
    })
    .await;
    check_snapshot(&row.value, 31337);

    traffic(&stack.demo, 14, 3).await;
    let row = eventually(SOON, "chain-completed", async || {
        let row = status(&mut db).await?;
        (row.value["omnichainSnapshot"]["chains"]["31337"]["chainStatus"] == "chain-completed").then_some(row)
    })
    .await;
    check_snapshot(&row.value, 31337);
    let chain = &row.value["omnichainSnapshot"]["chains"]["31337"];
    assert_eq!(num(&chain["latestIndexedBlock"]["number"]), end);
    let hash = tidemark_testkit::block_hash(stack.anvil.url(), end).await.expect("hash");
    assert_eq!(chain["config"]["endBlock"]["hash"].as_str(), hash.as_deref(), "the end block's ref");
    let stored = stack.assert_matches_chain(&mut db).await;
    assert!(stored.iter().all(|e| e.block_number as u64 <= end), "nothing beyond the end block");
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

/// The health rule: no progress for `2 × poll_interval + 30 s` while the head moved
/// is `stalled: {since, lastError}` in the chain's snapshot and `chain-stalled:<id>` among
/// the indexer's `/health` warnings; progress clears both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_without_progress_while_the_head_moves_is_reported_stalled() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 5, 2).await;
    let proxy = tidemark_testkit::RpcProxy::start(stack.anvil.url()).await;
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    cfg.chains[0].poll_interval_ms = Some(100);
    cfg.chains[0].request_timeout_ms = Some(500);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    assert!(indexer.proc.is_running());

    // Logs stop answering (slower than the request timeout) while the head moves on.
    proxy.delay("eth_getLogs", Duration::from_secs(30));
    traffic(&stack.demo, 3, 2).await;
    let warned = |body: &Value| {
        body["warnings"].as_array().is_some_and(|w| w.iter().any(|w| w == "chain-stalled:31337"))
    };
    eventually(Duration::from_secs(90), "/health warns chain-stalled:31337", async || {
        let (_, body) = indexer.get_json("/health").await?;
        warned(&body).then_some(())
    })
    .await;
    let stalled = eventually(SOON, "the stored snapshot says stalled", async || {
        let row = db.metadata("indexing_status").await.ok()??;
        let stalled = row.value["omnichainSnapshot"]["chains"]["31337"]["stalled"].clone();
        stalled.is_object().then_some(stalled)
    })
    .await;
    assert!(stalled["since"].as_u64().is_some(), "{stalled}");
    let last_error = stalled["lastError"].as_str().expect("lastError");
    assert!(!last_error.contains(proxy.url().trim_start_matches("http://")), "redacted: {last_error}");

    proxy.clear_delays();
    stack.wait_synced(&mut db, SOON).await;
    eventually(SOON, "the warning is gone", async || {
        let (_, body) = indexer.get_json("/health").await?;
        (!warned(&body)).then_some(())
    })
    .await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
