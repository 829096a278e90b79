//! DESIGN §7 "Backfill" against an imperfect provider: ranges rejected as too wide shrink
//! to the provider's suggestion, and an outage is reported by `/health`, waited out, and
//! leaves no gap.

use std::time::Duration;

use tidemark_testkit::{RpcProxy, SOON, Stack, eventually};

use crate::common::{SCHEMA, traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_rejected_as_too_wide_shrink_to_the_suggested_range() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 60, 3).await;
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    proxy.limit_logs_range(Some(7));
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    cfg.chains[0].max_block_range = Some(2000);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    stack.assert_matches_chain(&mut db).await;
    assert!(proxy.rejected_ranges() > 0, "the provider rejected wide ranges");
    assert!(indexer.proc.is_running());
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_outage_is_reported_waited_out_and_leaves_no_gap() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 10, 3).await;
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;

    proxy.set_down(true);
    traffic(&stack.demo, 10, 3).await;
    eventually(SOON, "/health reports the chain's RPC as unreachable", async || {
        let (code, body) = indexer.get_json("/health").await?;
        let reasons = body["reasons"].as_array()?;
        (code == 503 && reasons.iter().any(|r| r == "rpc-unreachable:31337")).then_some(())
    })
    .await;
    // The status keeps being written during the outage (invariant 4).
    let before =
        eventually(SOON, "a status row", async || db.metadata("indexing_status").await.ok().flatten()).await;
    eventually(SOON, "a newer status during the outage", async || {
        let row = db.metadata("indexing_status").await.ok()??;
        (row.updated_at > before.updated_at && row.age_secs <= 2.0).then_some(())
    })
    .await;

    proxy.set_down(false);
    stack.wait_synced(&mut db, SOON).await;
    stack.assert_matches_chain(&mut db).await;
    eventually(SOON, "/health healthy again", async || {
        let (code, _) = indexer.get_json("/health").await?;
        (code == 200).then_some(())
    })
    .await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
