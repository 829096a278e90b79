//! DESIGN §7 "Restart" and invariants 1–2: `kill -9` at random moments of a backfill
//! loses nothing and duplicates nothing; after every kill the stored events are exactly
//! the chain's logs up to the checkpoint (data and checkpoint commit together).

use std::time::Duration;

use rand::Rng;
use tidemark_testkit::{RpcProxy, SOON, Stack, eventually};

use crate::common::{SCHEMA, traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_of_a_backfill_loses_and_duplicates_nothing() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 240, 3).await;
    stack.demo.mine(60).await.expect("anvil_mine");
    let head = stack.demo.block_number().await.expect("head");
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    proxy.delay("eth_getLogs", Duration::from_millis(5));
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    cfg.chains[0].max_block_range = Some(2);
    cfg.chains[0].max_concurrency = Some(2);
    let mut db = stack.instance().await;
    let mut rng = rand::rng();

    let kills = 6;
    let mut previous = 0i64;
    for k in 0..kills {
        let mut indexer = stack.spawn(&cfg);
        // A random height of the remaining backfill, then a random few milliseconds more.
        let remaining = head as i64 - 30 - previous;
        let target = previous + 1 + rng.random_range(0..(remaining / (kills - k + 1)).max(1));
        eventually(SOON, format!("checkpoint past {target} (kill {k})"), async || {
            let cp = db.checkpoint(31337).await.ok()??;
            (cp.block_number >= target).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await;
        indexer.proc.kill9();

        // Whatever the moment, the data is exactly the chain's up to the checkpoint (a
        // commit the dead process sent may still land: the check reads one snapshot).
        let stored = stack.assert_matches_chain(&mut db).await;
        let cp = db.checkpoint(31337).await.expect("query").expect("checkpoint");
        assert!(cp.block_number >= previous, "the checkpoint never goes back");
        assert!(cp.block_number < head as i64, "killed during the backfill (checkpoint {})", cp.block_number);
        assert!(stored.iter().all(|e| e.block_number <= cp.block_number), "no event above the checkpoint");
        eprintln!("kill {k}: checkpoint {} of {head}, {} events", cp.block_number, stored.len());
        previous = cp.block_number;
    }

    let mut indexer = stack.spawn(&cfg);
    stack.wait_synced(&mut db, SOON).await;
    let stored = stack.assert_matches_chain(&mut db).await;
    let mut cursors: Vec<i64> = stored.iter().map(|e| e.cursor).collect();
    cursors.sort_unstable();
    cursors.dedup();
    assert_eq!(cursors.len(), stored.len(), "distinct cursors");
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
