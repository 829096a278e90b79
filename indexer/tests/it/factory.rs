//! Factory contracts (DESIGN §3 "Factory contracts"), with the UniswapV2-shaped
//! `PairFactory` and `Pair` of `deploy/demo`: children discovered from `PairCreated`
//! (the pair's address is a non-indexed parameter), some emitting events in their creation
//! transaction before the factory's log, traffic on all of them, kill -9s during the
//! backfill and reorgs while following, one of which orphans a creation. After each step
//! the stored events equal the chain's logs of the factory and of every live child, and
//! the `children` table holds exactly the live children.

use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::sol_types::SolEvent;
use rand::Rng;
use tidemark_testkit::{
    ContractSpec, IndexerConfigBuilder, InstanceDb, RpcProxy, SOON, Stack, assert_matches_chain,
    canonical_logs, eventually, get_json,
};
use tidemark_traffic::pairs::{FACTORY_ABI, PAIR_ABI, PairCreated, Pairs};

use crate::common::SCHEMA;

fn full_scale() -> bool {
    std::env::var("TIDEMARK_RELIABILITY").is_ok_and(|v| v.trim() == "full")
}

/// The stack's config with `Factory` (static: `PairCreated`, `PairListed`) and `Pair`
/// (children of `PairCreated`'s `pair`: `Mint`, `Swap`, `Sync`) instead of the demo
/// contracts.
fn factory_config(stack: &Stack, pairs: &Pairs) -> IndexerConfigBuilder {
    let factory_abi = stack.file("PairFactory.abi.json");
    std::fs::write(&factory_abi, FACTORY_ABI).expect("writing the factory ABI");
    let pair_abi = stack.file("Pair.abi.json");
    std::fs::write(&pair_abi, PAIR_ABI).expect("writing the pair ABI");
    let mut cfg = stack.config();
    cfg.chains[0].contracts = vec![
        ContractSpec::with_abi(
            "Factory",
            pairs.factory,
            factory_abi.display().to_string(),
            &["PairCreated", "PairListed"],
        ),
        ContractSpec::factory(
            "Pair",
            ("Factory", "PairCreated", "pair"),
            pair_abi.display().to_string(),
            &["Mint", "Swap", "Sync"],
        ),
    ];
    cfg
}

/// The pairs that the chain's `PairCreated` logs announce up to block `to`, in creation
/// order (read from the chain, independently of the indexer).
async fn canonical_pairs(rpc_url: &str, factory: Address, to: u64) -> Vec<Address> {
    let topic = format!("{:#x}", PairCreated::SIGNATURE_HASH);
    canonical_logs(rpc_url, &[factory], 0, to)
        .await
        .expect("factory logs")
        .into_iter()
        .filter(|l| l.topics.first() == Some(&topic))
        .map(|l| {
            let data = alloy::primitives::hex::decode(&l.data).expect("hex data");
            Address::from_slice(&data[12..32])
        })
        .collect()
}

/// Asserts that the stored events are exactly the chain's logs of the factory and of
/// every live child up to the checkpoint, and that `children` holds exactly those
/// children; returns how many children there are. Call with the indexer stopped or idle.
async fn assert_exact(db: &mut InstanceDb, stack: &Stack, pairs: &Pairs) -> usize {
    let cp = db.checkpoint(stack.chain_id).await.expect("checkpoint").expect("a checkpoint");
    let live = canonical_pairs(stack.anvil.url(), pairs.factory, cp.block_number as u64).await;
    let mut addresses = vec![pairs.factory];
    addresses.extend(&live);
    assert_matches_chain(db, stack.chain_id, stack.anvil.url(), &addresses).await;
    let stored: Vec<String> = db
        .children()
        .await
        .expect("children")
        .into_iter()
        .filter(|c| c.contract == "Pair")
        .map(|c| c.address)
        .collect();
    let expected: Vec<String> = live.iter().map(|a| format!("{a:#x}")).collect();
    assert_eq!(stored, expected, "the children table holds the live children, in creation order");
    live.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn factory_children_are_indexed_exactly_across_kills_and_reorgs() {
    let stack = Stack::shared(SCHEMA).await;
    let pairs = Pairs::deploy(stack.anvil.url()).await.expect("deploying the factory");
    let children = if full_scale() { 300 } else { 60 };

    // History: pairs in batches, four that trade in their creation transaction (events
    // before and after `PairCreated`), trades on all, then more pairs and trades.
    let mut live = pairs.create(children / 2 - 4).await.expect("createPairs");
    for salt in 0..4 {
        live.push(pairs.create_and_swap(salt).await.expect("createAndSwap"));
    }
    pairs.trade_all(&live, 2, 20).await.expect("trade");
    let later = pairs.create(children / 4).await.expect("createPairs");
    pairs.trade_all(&later, 1, 20).await.expect("trade");
    live.extend(later);
    pairs.chain().mine(80).await.expect("anvil_mine");
    let head = pairs.chain().block_number().await.expect("head");

    // Backfill in small ranges, slowed down, killed five times at random checkpoints.
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    // Slow enough that a kill lands a few ranges past its target on a loaded machine, and
    // the 80 empty blocks after the history still take a while.
    proxy.delay("eth_getLogs", Duration::from_millis(25));
    let mut cfg = factory_config(&stack, &pairs);
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    cfg.chains[0].max_block_range = Some(2);
    cfg.chains[0].max_concurrency = Some(3);
    let mut db = stack.instance().await;
    let mut rng = rand::rng();
    let kills = 5;
    let mut previous = 0i64;
    for k in 0..kills {
        let mut indexer = stack.spawn(&cfg);
        // Targets inside the history (before the 80 mined blocks).
        let remaining = head as i64 - 80 - previous;
        let target = previous + 1 + rng.random_range(0..(remaining / (kills - k + 1)).max(1));
        eventually(SOON, format!("checkpoint past {target} (kill {k})"), async || {
            let cp = db.checkpoint(stack.chain_id).await.ok()??;
            (cp.block_number >= target).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await;
        indexer.proc.kill9();
        db.wait_writer_sessions_gone(SOON).await;
        let n = assert_exact(&mut db, &stack, &pairs).await;
        let cp = db.checkpoint(stack.chain_id).await.expect("query").expect("checkpoint");
        eprintln!("kill {k}: checkpoint {} of {head}, {n} children", cp.block_number);
        assert!(cp.block_number < head as i64, "killed during the backfill");
        previous = cp.block_number;
    }

    cfg.chains[0].rpc_url = Some(stack.anvil.url().to_owned());
    let mut indexer = stack.spawn(&cfg);
    stack.wait_synced(&mut db, SOON).await;
    assert_eq!(assert_exact(&mut db, &stack, &pairs).await, live.len(), "every child of the history");

    // While following: the rest of the children, with traffic.
    let rest = pairs.create(children - children / 2 - children / 4 - 2).await.expect("createPairs");
    pairs.trade_all(&rest, 1, 20).await.expect("trade");
    live.extend(rest);
    pairs.trade_all(&live[..10], 1, 10).await.expect("trade");

    // Reorg 1: a creation and its trades orphaned (replaced by empty blocks).
    stack.wait_synced(&mut db, SOON).await;
    let doomed = pairs.create(2).await.expect("createPairs");
    pairs.trade(&doomed, 2).await.expect("trade");
    stack.wait_synced(&mut db, SOON).await;
    let stored = db.children().await.expect("children");
    assert!(
        doomed.iter().all(|d| stored.iter().any(|c| c.address == format!("{d:#x}"))),
        "the pairs to orphan were indexed first"
    );
    pairs.chain().reorg(2).await.expect("anvil_reorg");
    pairs.chain().mine(1).await.expect("anvil_mine");
    stack.wait_synced(&mut db, SOON).await;
    let n = assert_exact(&mut db, &stack, &pairs).await;
    assert_eq!(n, live.len(), "the orphaned pairs are gone");
    let events = db.events().await.expect("events");
    for d in &doomed {
        let a = format!("{d:#x}");
        assert!(!events.iter().any(|e| e.address == a), "the orphaned pair {a} has no events");
    }
    let removed = db.journal().await.expect("journal").into_iter().filter(|j| j.kind == "removed").count();
    assert!(removed >= 2 * 6 + 2, "the orphaned events and creations are journaled as removed ({removed})");

    // Reorg 2: the new branch creates other pairs, which are picked up.
    pairs.chain().reorg_with(1, &[(pairs.create_call(2), 0)]).await.expect("anvil_reorg with a creation");
    stack.wait_synced(&mut db, SOON).await;
    let head = pairs.chain().block_number().await.expect("head");
    let now_live = canonical_pairs(stack.anvil.url(), pairs.factory, head).await;
    let reborn: Vec<Address> = now_live.iter().filter(|a| !live.contains(a)).copied().collect();
    assert_eq!(reborn.len(), 2, "two pairs created on the new branch");
    pairs.trade(&reborn, 1).await.expect("trade");
    stack.wait_synced(&mut db, SOON).await;
    assert_eq!(assert_exact(&mut db, &stack, &pairs).await, live.len() + 2);

    // The API lists the children, and filters their events by contract and address.
    let api = stack.spawn_api(&[]);
    api.wait_healthy(SOON).await;
    let (status, body) =
        get_json(&format!("{}/v1/contracts/Pair/addresses?size=1000", api.http)).await.expect("addresses");
    assert_eq!(status, 200, "{body}");
    let listed: Vec<String> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["address"].as_str().unwrap_or("").to_owned())
        .collect();
    let expected: Vec<String> = now_live.iter().map(|a| format!("{a:#x}")).collect();
    assert_eq!(listed, expected, "children oldest first");
    assert_eq!(body["total"], expected.len());
    assert_eq!(body["pages"], 1);
    assert!(body["items"][0]["blockNumber"].as_u64().is_some() && body["items"][0]["txHash"].is_string());
    let (status, body) =
        get_json(&format!("{}/v1/contracts/Pair/addresses?size=7&page=2", api.http)).await.expect("page 2");
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().map(Vec::len), Some(7));
    assert_eq!(body["items"][0]["address"].as_str(), Some(expected[7].as_str()));
    let (status, body) =
        get_json(&format!("{}/v1/contracts/Factory/addresses", api.http)).await.expect("static");
    assert_eq!((status, body["total"].as_u64()), (200, Some(1)));
    let (status, body) = get_json(&format!("{}/v1/contracts/Nope/addresses", api.http)).await.expect("404");
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_contract")));
    let child = &expected[0];
    let (status, body) =
        get_json(&format!("{}/v1/events?contract=Pair&address={child}&limit=1000", api.http))
            .await
            .expect("events");
    assert_eq!(status, 200);
    let items = body["items"].as_array().expect("items");
    let on_chain = canonical_logs(stack.anvil.url(), &[now_live[0]], 0, head + 1).await.expect("logs");
    assert_eq!(items.len(), on_chain.len(), "every event of the child");
    assert!(items.iter().all(|i| i["address"] == child.as_str() && i["contract"] == "Pair"));
    assert_eq!(indexer.stop(Duration::from_secs(10)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_created_while_following_are_indexed_within_two_poll_intervals() {
    let stack = Stack::shared(SCHEMA).await;
    let pairs = Pairs::deploy(stack.anvil.url()).await.expect("deploying the factory");
    let first = pairs.create(3).await.expect("createPairs");
    pairs.trade(&first, 1).await.expect("trade");
    let mut cfg = factory_config(&stack, &pairs);
    let poll = Duration::from_millis(1000);
    cfg.chains[0].poll_interval_ms = Some(1000);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;

    for salt in 0..3 {
        let pair = pairs.create_and_swap(100 + salt).await.expect("createAndSwap");
        // From the receipt: the block is on the chain.
        let mined = Instant::now();
        let address = format!("{pair:#x}");
        // Mint, Sync, Swap, Sync: all in the creation transaction.
        eventually(SOON, format!("the events of {address}"), async || {
            let n = db.events().await.ok()?.iter().filter(|e| e.address == address).count();
            (n == 4).then_some(())
        })
        .await;
        let took = mined.elapsed();
        eprintln!("child {address}: events stored {} ms after its block was mined", took.as_millis());
        assert!(took <= 2 * poll, "indexed within two poll intervals ({} ms)", took.as_millis());
    }
    assert_exact(&mut db, &stack, &pairs).await;
    assert_eq!(indexer.stop(Duration::from_secs(10)).await, 0);
}

/// A factory contract added to a running deployment that indexed only its factory: its
/// children created so far are discovered, their history is backfilled (killed twice on
/// the way) while the chain follows, the factory's rows keep their cursors, and children
/// created after the restart are indexed like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_contract_added_to_a_running_deployment_is_backfilled() {
    let stack = Stack::shared(SCHEMA).await;
    let pairs = Pairs::deploy(stack.anvil.url()).await.expect("deploying the factory");
    let early = pairs.create(12).await.expect("createPairs");
    pairs.trade_all(&early, 3, 6).await.expect("trade");
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    let mut grown = factory_config(&stack, &pairs);
    grown.chains[0].rpc_url = Some(proxy.url().to_owned());
    grown.chains[0].max_block_range = Some(2);
    let mut first = grown.clone();
    first.chains[0].contracts.truncate(1);
    let mut db = stack.instance().await;
    let mut indexer = stack.spawn(&first);
    let api = stack.spawn_api(&["--config-refresh-ms", "1000"]);
    stack.wait_synced(&mut db, SOON).await;
    api.wait_healthy(SOON).await;
    let before = db.events().await.expect("events");
    assert!(!before.is_empty() && before.iter().all(|e| e.contract == "Factory"));
    assert_eq!(indexer.stop(Duration::from_secs(10)).await, 0);
    let later = pairs.create(4).await.expect("createPairs");
    pairs.trade(&later, 1).await.expect("trade");

    // Pair added; its history read slowly; killed twice while it backfills.
    proxy.delay("eth_getLogs", Duration::from_millis(100));
    for kill in 0..2 {
        let mut indexer = stack.spawn(&grown);
        let stored_before =
            db.events().await.expect("events").iter().filter(|e| e.contract == "Pair").count();
        eventually(SOON, format!("part of the added contract stored (kill {kill})"), async || {
            let n = db.events().await.ok()?.iter().filter(|e| e.contract == "Pair").count();
            (n > stored_before).then_some(())
        })
        .await;
        let h = api.health().await.expect("the API answers");
        assert_eq!(h.code, 200, "the API stays healthy: {h:?}");
        indexer.proc.kill9();
        let _ = indexer.proc.wait_timeout(Duration::from_secs(10)).await;
    }
    proxy.clear_delays();
    let mut indexer = stack.spawn(&grown);
    stack.wait_synced(&mut db, SOON).await;
    eventually(SOON, "the added contract merged", async || {
        let (code, body) = api.get("/status").await?;
        let chain = &body["realtimeProjection"]["snapshot"]["omnichainSnapshot"]["chains"]["31337"];
        (code == 200 && chain["sources"].is_null()).then_some(())
    })
    .await;
    // Children created after the restart, while following.
    let newest = pairs.create_and_swap(7).await.expect("createAndSwap");
    pairs.trade(&[newest], 1).await.expect("trade");
    stack.wait_synced(&mut db, SOON).await;
    let n = assert_exact(&mut db, &stack, &pairs).await;
    assert_eq!(n, early.len() + later.len() + 1);
    let all = db.events().await.expect("events");
    let factory_then: Vec<_> =
        all.iter().filter(|e| e.contract == "Factory").take(before.len()).cloned().collect();
    assert_eq!(factory_then, before, "the factory's rows keep their cursors");
    assert_eq!(indexer.stop(Duration::from_secs(10)).await, 0);
}
