//! Invariant 3 across chains: one instance indexing two anvils (chain ids 31337 and
//! 31338) draws cursors in commit order — per chain in block order, and never below a
//! cursor a reader has already passed.

use std::time::Duration;

use tidemark_testkit::{
    Anvil, ChainSpec, IndexerConfigBuilder, JournalReplay, SOON, StoredEvent, TestDb, assert_matches_chain,
    demo_contracts, eventually, indexer_process, wait_synced,
};
use tidemark_traffic::Demo;

use crate::common::{SCHEMA, traffic};

struct Chain {
    anvil: Anvil,
    demo: Demo,
    id: u64,
}

impl Chain {
    async fn start(id: u64) -> Self {
        let anvil = Anvil::spawn_with(&["--chain-id", &id.to_string()]).await;
        let demo = Demo::deploy(anvil.url()).await.expect("deploying the demo contracts");
        assert_eq!(demo.chain_id().await.expect("eth_chainId"), id);
        Self { anvil, demo, id }
    }

    fn spec(&self) -> ChainSpec {
        let mut spec = ChainSpec::new(self.id, self.anvil.url());
        spec.contracts = demo_contracts(&self.demo);
        spec
    }
}

/// Per chain, cursor order is block order (then log order).
fn assert_cursor_order_follows_blocks(events: &[StoredEvent]) {
    let mut by_cursor = events.to_vec();
    by_cursor.sort_by_key(|e| e.cursor);
    for id in [31337, 31338] {
        let positions: Vec<(i64, i32)> =
            by_cursor.iter().filter(|e| e.chain_id == id).map(|e| (e.block_number, e.log_index)).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "chain {id}: cursors follow (block, log index)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chains_share_one_cursor_order() {
    let (db, a, b) = tokio::join!(TestDb::new(), Chain::start(31337), Chain::start(31338));
    tokio::join!(traffic(&a.demo, 30, 4), traffic(&b.demo, 30, 4));
    let dir = tidemark_testkit::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("Registry.abi.json"), tidemark_traffic::REGISTRY_ABI).expect("ABI");
    std::fs::write(dir.path().join("Token.abi.json"), tidemark_traffic::TOKEN_ABI).expect("ABI");
    let cfg = IndexerConfigBuilder::new(SCHEMA, db.url.clone()).chain(b.spec()).chain(a.spec());
    let path = cfg.write(dir.path().join("two-chains.toml"));
    let mut indexer = indexer_process(&path, &[]).log_dir(dir.path()).spawn();
    let mut inst = tidemark_testkit::InstanceDb::connect(&db.url, SCHEMA).await.expect("connect");
    let addrs = |c: &Chain| [c.demo.token, c.demo.registry];

    wait_synced(&mut inst, a.id, a.anvil.url(), SOON).await;
    wait_synced(&mut inst, b.id, b.anvil.url(), SOON).await;
    let phase1_a = assert_matches_chain(&mut inst, a.id, a.anvil.url(), &addrs(&a)).await;
    let phase1_b = assert_matches_chain(&mut inst, b.id, b.anvil.url(), &addrs(&b)).await;
    let max1 = inst.max_cursor().await.expect("max cursor").expect("some cursor");
    let mut consumer = JournalReplay::new();
    consumer.apply(&inst.journal().await.expect("journal")).expect("replay");

    // Phase 2: both chains move while a consumer keeps reading the journal.
    let reader = async {
        let mut reader_db = tidemark_testkit::InstanceDb::connect(&db.url, SCHEMA).await.expect("connect");
        let mut consumer = consumer.clone();
        for _ in 0..60 {
            let entries =
                reader_db.journal_after(consumer.last_cursor().unwrap_or(0)).await.expect("journal");
            consumer.apply(&entries).unwrap_or_else(|e| panic!("journal consumer: {e}"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        consumer
    };
    let ((), (), mut live) = tokio::join!(
        async {
            traffic(&a.demo, 25, 3).await;
        },
        async {
            traffic(&b.demo, 25, 3).await;
        },
        reader
    );
    wait_synced(&mut inst, a.id, a.anvil.url(), SOON).await;
    wait_synced(&mut inst, b.id, b.anvil.url(), SOON).await;
    let all_a = assert_matches_chain(&mut inst, a.id, a.anvil.url(), &addrs(&a)).await;
    let all_b = assert_matches_chain(&mut inst, b.id, b.anvil.url(), &addrs(&b)).await;

    // Phase-1 rows are untouched; every newer row has a higher cursor than any before.
    let all: Vec<StoredEvent> = all_a.iter().chain(&all_b).cloned().collect();
    for old in phase1_a.iter().chain(&phase1_b) {
        assert!(all.contains(old), "phase-1 event at cursor {} unchanged", old.cursor);
    }
    let new: Vec<&StoredEvent> =
        all.iter().filter(|e| !phase1_a.contains(e) && !phase1_b.contains(e)).collect();
    assert!(new.iter().any(|e| e.chain_id == 31337) && new.iter().any(|e| e.chain_id == 31338));
    assert!(new.iter().all(|e| e.cursor > max1), "every new row is above cursor {max1}");
    assert_cursor_order_follows_blocks(&all);

    // A reader that kept up during phase 2 missed nothing that landed below its position.
    let rest = inst.journal_after(live.last_cursor().unwrap_or(0)).await.expect("journal");
    live.apply(&rest).unwrap_or_else(|e| panic!("journal consumer: {e}"));
    live.matches(&all).unwrap_or_else(|e| panic!("live journal consumer: {e}"));

    eventually(SOON, "both chains following in the stored status", async || {
        let row = inst.metadata("indexing_status").await.ok()??;
        let snapshot = &row.value["omnichainSnapshot"];
        (snapshot["chains"]["31337"]["chainStatus"] == "chain-following"
            && snapshot["chains"]["31338"]["chainStatus"] == "chain-following"
            && snapshot["omnichainStatus"] == "omnichain-following")
            .then_some(())
    })
    .await;

    indexer.sigterm();
    assert_eq!(indexer.exit_code(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_chain_beside_a_following_one_is_omnichain_following() {
    let (db, a, b) = tokio::join!(TestDb::new(), Chain::start(31337), Chain::start(31338));
    tokio::join!(traffic(&a.demo, 8, 2), traffic(&b.demo, 8, 2));
    let end_b = b.demo.block_number().await.expect("head") - 3;
    let dir = tidemark_testkit::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("Registry.abi.json"), tidemark_traffic::REGISTRY_ABI).expect("ABI");
    let mut bounded = b.spec();
    for c in &mut bounded.contracts {
        c.end_block = Some(end_b);
    }
    let cfg = IndexerConfigBuilder::new(SCHEMA, db.url.clone()).chain(a.spec()).chain(bounded);
    let path = cfg.write(dir.path().join("mixed.toml"));
    let mut indexer = indexer_process(&path, &[]).log_dir(dir.path()).spawn();
    let mut inst = tidemark_testkit::InstanceDb::connect(&db.url, SCHEMA).await.expect("connect");
    wait_synced(&mut inst, a.id, a.anvil.url(), SOON).await;

    let row = eventually(SOON, "31337 following and 31338 completed", async || {
        let row = inst.metadata("indexing_status").await.ok()??;
        let chains = &row.value["omnichainSnapshot"]["chains"];
        (chains["31337"]["chainStatus"] == "chain-following"
            && chains["31338"]["chainStatus"] == "chain-completed")
            .then_some(row)
    })
    .await;
    let s = &row.value;
    let omni = &s["omnichainSnapshot"];
    assert_eq!(omni["omnichainStatus"], "omnichain-following", "{s}");
    // The cursor is the lowest latestIndexedBlock timestamp over started, not completed chains.
    assert_eq!(
        omni["omnichainIndexingCursor"], omni["chains"]["31337"]["latestIndexedBlock"]["timestamp"],
        "{s}"
    );
    assert_eq!(s["slowestChainIndexingCursor"], omni["omnichainIndexingCursor"], "{s}");
    assert_eq!(omni["chains"]["31338"]["latestIndexedBlock"]["number"], end_b, "{s}");
    assert_matches_chain(&mut inst, a.id, a.anvil.url(), &[a.demo.token, a.demo.registry]).await;
    assert_matches_chain(&mut inst, b.id, b.anvil.url(), &[b.demo.token, b.demo.registry]).await;

    indexer.sigterm();
    assert_eq!(indexer.exit_code(Duration::from_secs(5)).await, 0);
}
