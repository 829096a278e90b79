//! Growing a live deployment by a chain: with the API serving and traffic on the first
//! chain, the indexer restarts with a second chain added. Neither service exits 3; the
//! first chain's rows stay byte-identical (same cursors); the added chain is indexed from
//! its start block; the API stays healthy throughout (warnings allowed). Removing the
//! chain again exits 3 naming it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tidemark_testkit::{Anvil, ChainSpec, SOON, Stack, assert_matches_chain, demo_contracts};
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
