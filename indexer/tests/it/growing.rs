//! Growing a live deployment by a chain: with the API serving and traffic on the first
//! chain, the indexer restarts with a second chain added. Neither service exits 3; the
//! first chain's rows stay byte-identical (same cursors); the added chain is indexed from
//! its start block; the API stays healthy throughout (warnings allowed). Removing the
//! chain again exits 3 naming it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tidemark_testkit::{
    Anvil, ChainSpec, IndexerConfigBuilder, SOON, Stack, assert_matches_chain, demo_contracts,
};
use tidemark_traffic::Demo;

use crate::common::traffic;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_added_to_a_running_deployment_is_indexed_without_touching_the_first() {
    let stack = Stack::shared("tidemark_growing").await;
    traffic(&stack.demo, 20, 4).await;
    let mut db = stack.instance().await;
    let first_cfg = stack.config();
    let mut indexer = stack.spawn(&first_cfg);
    let api = stack.spawn_api(&["--config-refresh-ms", "60000"]);
    stack.wait_synced(&mut db, SOON).await;
    api.wait_healthy(SOON).await;
    let before = stack.assert_matches_chain(&mut db).await;

    // The second chain, with history of its own.
    let anvil = Anvil::spawn_with(&["--chain-id", "31338"]).await;
    let demo = Demo::deploy(anvil.url()).await.expect("deploying on the second chain");
    traffic(&demo, 15, 3).await;
    let mut second = ChainSpec::new(31338, anvil.url());
    second.contracts = demo_contracts(&demo);

    // The API is watched every 100 ms from here on: it must never turn unhealthy.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, http) = (stop.clone(), api.http.clone());
        tokio::spawn(async move {
            let mut bad = Vec::new();
            let mut polls = 0u32;
            while !stop.load(Ordering::Relaxed) {
                match tidemark_testkit::get_json(&format!("{http}/health")).await {
                    Some((200, _)) => {}
                    other => bad.push(format!("{other:?}")),
                }
                polls += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (polls, bad)
        })
    };

    assert_eq!(indexer.stop(Duration::from_secs(10)).await, 0, "clean stop");
    let grown = first_cfg.clone().chain(second.clone());
    let mut indexer = stack.spawn(&grown);
    tidemark_testkit::wait_synced(&mut db, 31338, anvil.url(), SOON).await;
    // Traffic on both chains after the restart.
    traffic(&stack.demo, 5, 2).await;
    traffic(&demo, 5, 2).await;
    stack.wait_synced(&mut db, SOON).await;
    tidemark_testkit::wait_synced(&mut db, 31338, anvil.url(), SOON).await;
    // The API picks the added chain up (its config is read again when a status names a
    // chain it does not know).
    tidemark_testkit::eventually(SOON, "the API serving both chains", async || {
        let (code, body) = api.get("/status").await?;
        let chains = &body["realtimeProjection"]["snapshot"]["omnichainSnapshot"]["chains"];
        (code == 200 && chains.get("31337").is_some() && chains.get("31338").is_some()).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let (polls, bad) = watcher.await.expect("the health watcher");
    assert!(polls > 10, "the API was watched ({polls} polls)");
    assert!(bad.is_empty(), "the API turned unhealthy while the chain was added: {bad:?}");
    let mut api = api;
    assert!(api.proc.is_running(), "the API keeps running");

    // The first chain's rows are untouched: the same cursors for the same logs.
    let after = stack.assert_matches_chain(&mut db).await;
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the first chain's rows before the restart are unchanged"
    );
    let added = assert_matches_chain(&mut db, 31338, anvil.url(), &[demo.token, demo.registry]).await;
    assert!(!added.is_empty(), "the added chain's history is indexed");
    let first_max = before.iter().map(|e| e.cursor).max().unwrap_or(0);
    assert!(added.iter().all(|e| e.cursor > first_max), "the added chain's rows get new cursors");

    // Removing the chain again is incompatible: exit 3, naming it.
    assert_eq!(indexer.stop(Duration::from_secs(10)).await, 0, "clean stop");
    let mut shrunk = stack.spawn(&first_cfg);
    assert_eq!(shrunk.proc.exit_code(Duration::from_secs(30)).await, 3, "a removed chain exits 3");
    let logs = shrunk.proc.logs();
    assert!(logs.contains("chains[].chainId") && logs.contains("31338"), "{logs}");
}

/// A contract added to an indexed chain: its history is backfilled up to where the chain
/// was indexed (through an RPC proxy slowing `eth_getLogs`, killed with SIGKILL three
/// times on the way) while the chain keeps following beside it, the first contract's rows
/// stay as they were, and the API stays healthy with the `backfilling-sources` warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_added_to_an_indexed_chain_is_backfilled_across_kills() {
    let stack = Stack::shared("tidemark_growing_source").await;
    traffic(&stack.demo, 60, 4).await;
    let proxy = tidemark_testkit::RpcProxy::start(stack.anvil.url()).await;
    let spec = |contracts: Vec<tidemark_testkit::ContractSpec>| {
        let mut spec = stack.chain_spec().rpc_urls(vec![proxy.url().to_owned()]).max_block_range(2);
        spec.contracts = contracts;
        spec
    };
    let token_only: Vec<_> = stack.contracts().into_iter().filter(|c| c.name == "Token").collect();
    let first_cfg =
        IndexerConfigBuilder::new(stack.schema.clone(), stack.db_url.clone()).chain(spec(token_only));
    let mut db = stack.instance().await;
    let mut indexer = stack.spawn(&first_cfg);
    let api = stack.spawn_api(&["--config-refresh-ms", "1000"]);
    stack.wait_synced(&mut db, SOON).await;
    api.wait_healthy(SOON).await;
    let before: Vec<_> = db.events().await.expect("events");
    assert!(!before.is_empty() && before.iter().all(|e| e.contract == "Token"));
    assert_eq!(indexer.stop(Duration::from_secs(10)).await, 0);
    // At full scale (`TIDEMARK_RELIABILITY=full`), Registry gains 100,000 more events of
    // history before it is added.
    if std::env::var("TIDEMARK_RELIABILITY").is_ok_and(|v| v == "full") {
        for _ in 0..100 {
            stack.demo.burst(1_000).await.expect("a burst of 1,000 events");
        }
    }

    // Registry added; its history is read slowly, and the indexer is killed three times.
    proxy.delay("eth_getLogs", Duration::from_millis(300));
    let grown =
        IndexerConfigBuilder::new(stack.schema.clone(), stack.db_url.clone()).chain(spec(stack.contracts()));
    let mut warned = false;
    let cp0 = db.checkpoint(31337).await.expect("checkpoint").expect("indexed").block_number;
    for kill in 0..3 {
        let mut indexer = stack.spawn(&grown);
        // Until some of the source is stored, then SIGKILL.
        let stored_before =
            db.events().await.expect("events").iter().filter(|e| e.contract == "Registry").count();
        tidemark_testkit::eventually(SOON, "part of the added source stored", async || {
            let n = db.events().await.ok()?.iter().filter(|e| e.contract == "Registry").count();
            (n > stored_before).then_some(())
        })
        .await;
        // The API shows it (the indexer's snapshot carries the source's progress).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let h = api.health().await.expect("the API answers");
            assert_eq!(h.code, 200, "the API stays healthy during the backfill (kill {kill}): {h:?}");
            if h.warnings.iter().any(|w| w == "backfilling-sources") {
                warned = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if kill == 0 {
            // The chain keeps following while the source backfills beside it.
            stack.demo.burst(1).await.expect("a new block");
            tidemark_testkit::eventually(SOON, "the chain following beside the source", async || {
                let cp = db.checkpoint(31337).await.ok()??;
                let pending = indexer.get_json("/status").await.is_some_and(|(_, b)| {
                    !b["realtimeProjection"]["snapshot"]["omnichainSnapshot"]["chains"]["31337"]["sources"].is_null()
                });
                (cp.block_number > cp0 && pending).then_some(())
            })
            .await;
        }
        indexer.proc.kill9();
        let _ = indexer.proc.wait_timeout(Duration::from_secs(10)).await;
    }
    // The chain reorganizes under the source's range while no indexer runs: the next
    // start repairs it before the rest of the source is stored.
    stack.demo.reorg(3).await.expect("reorg");
    proxy.clear_delays();
    let resumed = std::time::Instant::now();
    let _indexer = stack.spawn(&grown);
    traffic(&stack.demo, 5, 2).await;
    stack.wait_synced(&mut db, SOON).await;
    tidemark_testkit::eventually(SOON, "the added source merged", async || {
        let (code, body) = api.get("/status").await?;
        let chain = &body["realtimeProjection"]["snapshot"]["omnichainSnapshot"]["chains"]["31337"];
        (code == 200 && chain["sources"].is_null()).then_some(())
    })
    .await;
    tidemark_testkit::eventually(SOON, "the warning gone", async || {
        api.health().await.is_some_and(|h| h.code == 200 && h.warnings.is_empty()).then_some(())
    })
    .await;
    assert!(warned, "`backfilling-sources` was shown while the source backfilled");
    println!("the added source merged {:.1} s after the last restart", resumed.elapsed().as_secs_f64());

    // Every log of both contracts, each once; Token's earlier rows unchanged.
    let all = stack.assert_matches_chain(&mut db).await;
    let token_then: Vec<_> =
        all.iter().filter(|e| e.contract == "Token").take(before.len()).cloned().collect();
    assert_eq!(token_then, before, "Token's rows keep their cursors");
    let first_new = before.iter().map(|e| e.cursor).max().unwrap_or(0);
    assert!(all.iter().filter(|e| e.contract == "Registry").all(|e| e.cursor > first_new));

    // The source's epochs carry its key and cover its range, 0 to the checkpoint when it
    // was added, without gap or overlap; the chain's own epochs carry none.
    let epochs = db.epochs().await.expect("epochs");
    let mut ranges: Vec<(i64, i64)> = epochs
        .iter()
        .filter(|e| e.is_finished() && e.source.as_deref().is_some_and(|s| s.starts_with("Registry:")))
        .map(|e| (e.from_block, e.to_block))
        .collect();
    ranges.sort_unstable();
    assert_eq!(ranges.first().map(|r| r.0), Some(0), "the source's epochs start at its start block");
    assert_eq!(ranges.last().map(|r| r.1), Some(cp0), "and end where the chain was when it was added");
    for w in ranges.windows(2) {
        assert_eq!(w[1].0, w[0].1 + 1, "no gap or overlap between {:?} and {:?}", w[0], w[1]);
    }
    assert!(epochs.iter().any(|e| e.source.is_none()), "the chain's own epochs have no source");
}
