//! Epochs (DESIGN §8): every committed batch is an epoch of its chain. Finished epochs
//! (`stored`, `finalized`) cover the indexed range exactly once, from the start block to
//! the checkpoint; each history moves forward in time; a crash leaves no epoch stuck in an
//! intermediate stage after the restart; a reorg marks the epochs it rolls back `reorged`
//! and their range is covered again by epochs with new ids.

use std::time::Duration;

use tidemark_testkit::{EpochRow, InstanceDb, RpcProxy, SOON, Stack, eventually};

use crate::common::{SCHEMA, traffic};

const FINALITY: u64 = 6;
const INTERMEDIATE: [&str; 3] = ["planned", "fetched", "decoded"];

/// Asserts that the finished epochs of `chain_id` cover `[start, checkpoint]` exactly
/// once, in id order, and that every history's timestamps never decrease. Returns the
/// finished epochs.
fn assert_covered(epochs: &[EpochRow], chain_id: u64, start: i64, checkpoint: i64) -> Vec<EpochRow> {
    let mine: Vec<&EpochRow> = epochs.iter().filter(|e| e.chain_id as u64 == chain_id).collect();
    assert!(mine.windows(2).all(|w| w[0].epoch_id < w[1].epoch_id), "epoch ids increase");
    for e in &mine {
        let times = e.stage_times();
        assert!(!times.is_empty(), "epoch {} has a history", e.epoch_id);
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "epoch {} history goes forward: {}",
            e.epoch_id,
            e.stages
        );
        assert_eq!(
            e.stage_names().last().map(String::as_str),
            Some(e.stage.as_str()),
            "stage is the last entry"
        );
        assert!(e.from_block <= e.to_block, "epoch {} range {}..{}", e.epoch_id, e.from_block, e.to_block);
    }
    let finished: Vec<EpochRow> = mine.iter().filter(|e| e.is_finished()).map(|e| (*e).clone()).collect();
    let ranges: Vec<(i64, i64, i64)> =
        finished.iter().map(|e| (e.epoch_id, e.from_block, e.to_block)).collect();
    assert_eq!(
        finished.first().map(|e| e.from_block),
        Some(start),
        "covered from the start block: {ranges:?}"
    );
    for w in finished.windows(2) {
        assert_eq!(
            w[1].from_block,
            w[0].to_block + 1,
            "epochs {} and {} are adjacent (no gap, no overlap): {ranges:?}",
            w[0].epoch_id,
            w[1].epoch_id
        );
    }
    assert_eq!(
        finished.last().map(|e| e.to_block),
        Some(checkpoint),
        "covered up to the checkpoint: {ranges:?}"
    );
    finished
}

/// Waits until the chain is synced and every epoch is settled: none in an intermediate
/// stage, and the stored ones all within `FINALITY` of the checkpoint (the others
/// finalized). Returns the epochs and the checkpoint.
async fn settled(stack: &Stack, db: &mut InstanceDb) -> (Vec<EpochRow>, i64) {
    stack.wait_synced(db, SOON).await;
    eventually(SOON, "epochs settled", async || {
        let cp = db.checkpoint(stack.chain_id).await.ok()??.block_number;
        let epochs = db.epochs().await.ok()?;
        let pending = epochs.iter().any(|e| INTERMEDIATE.contains(&e.stage.as_str()));
        let unfinalized = epochs.iter().any(|e| e.stage == "stored" && e.to_block + FINALITY as i64 <= cp);
        (!pending && !unfinalized).then_some((epochs, cp))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_cover_thousands_of_blocks_exactly_once_and_finalize() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 60, 4).await;
    stack.demo.mine(3_000).await.expect("anvil_mine");
    traffic(&stack.demo, 12, 2).await;
    let mut cfg = stack.config();
    cfg.chains[0].finality_depth = Some(FINALITY);
    cfg.chains[0].max_block_range = Some(100);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    let (epochs, cp) = settled(&stack, &mut db).await;
    assert!(cp >= 3_000, "a few thousand blocks indexed (checkpoint {cp})");
    let finished = assert_covered(&epochs, stack.chain_id, 0, cp);
    assert!(finished.len() >= 30, "{} epochs for {cp} blocks of at most 100", finished.len());
    for e in &finished {
        let names = e.stage_names();
        assert!(names.len() >= 4, "epoch {} history {names:?}", e.epoch_id);
        assert_eq!(&names[..4], ["planned", "fetched", "decoded", "stored"], "epoch {} history", e.epoch_id);
        assert!(e.error.is_none(), "epoch {} failed: {:?}", e.epoch_id, e.error);
    }
    assert!(finished.iter().any(|e| e.stage == "finalized"), "the finalized part of the chain is finalized");

    // Following: each new batch is a new epoch, adjacent to the last one.
    let before = finished.last().map_or(0, |e| e.epoch_id);
    traffic(&stack.demo, 8, 2).await;
    let (epochs, cp2) = settled(&stack, &mut db).await;
    assert!(cp2 >= cp + 8);
    let finished = assert_covered(&epochs, stack.chain_id, 0, cp2);
    assert!(finished.iter().any(|e| e.epoch_id > before), "following adds epochs");
    assert!(
        finished.iter().filter(|e| e.to_block + FINALITY as i64 > cp2).all(|e| e.stage == "stored"),
        "epochs within the finality depth of the head stay stored"
    );
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_backfill_leaves_no_epoch_stuck() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 120, 3).await;
    stack.demo.mine(300).await.expect("anvil_mine");
    let head = stack.demo.block_number().await.expect("head") as i64;
    // Slow ranges, so that kills land in the middle of the backfill with batches in flight.
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    proxy.delay("eth_getLogs", Duration::from_millis(20));
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    cfg.chains[0].finality_depth = Some(FINALITY);
    cfg.chains[0].max_block_range = Some(3);
    cfg.chains[0].max_concurrency = Some(3);
    let mut db = stack.instance().await;

    let mut previous = 0;
    for (k, target) in [60i64, 150, 260].into_iter().enumerate() {
        let mut indexer = stack.spawn(&cfg);
        eventually(SOON, format!("checkpoint past {target}"), async || {
            let cp = db.checkpoint(stack.chain_id).await.ok()??.block_number;
            (cp >= target).then_some(())
        })
        .await;
        // Batches in flight: intermediate stages recorded, not yet stored.
        tokio::time::sleep(Duration::from_millis(300)).await;
        indexer.proc.kill9();
        // A commit the dead process had sent may still land; let it, then read.
        db.wait_writer_sessions_gone(SOON).await;
        let cp = db.checkpoint(stack.chain_id).await.expect("query").expect("checkpoint").block_number;
        assert!(cp < head, "killed during the backfill (checkpoint {cp} of {head})");
        assert!(cp >= previous);
        previous = cp;
        let epochs = db.epochs().await.expect("epochs");
        let pending = epochs.iter().filter(|e| INTERMEDIATE.contains(&e.stage.as_str())).count();
        eprintln!("kill {k}: checkpoint {cp}, {} epochs, {pending} in an intermediate stage", epochs.len());
        // Whatever the moment, the finished epochs cover exactly what was committed.
        assert_covered(&epochs, stack.chain_id, 0, cp);
    }

    let mut indexer = stack.spawn(&cfg);
    let (epochs, cp) = settled(&stack, &mut db).await;
    assert_eq!(cp, head, "caught up");
    stack.assert_matches_chain(&mut db).await;
    let finished = assert_covered(&epochs, stack.chain_id, 0, cp);
    assert_eq!(finished.len(), epochs.len(), "every epoch finished (none stuck, none failed)");
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_marks_the_orphaned_epochs_and_covers_their_range_again() {
    let stack = Stack::shared(SCHEMA).await;
    let demo = &stack.demo;
    traffic(demo, 20, 3).await;
    let mut cfg = stack.config();
    cfg.chains[0].finality_depth = Some(FINALITY);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    // Three more blocks, indexed one batch after another.
    for i in 0..3 {
        demo.burst(2 + i).await.expect("burst");
        stack.wait_synced(&mut db, SOON).await;
    }
    let (before, cp) = settled(&stack, &mut db).await;
    let depth = 3i64;
    let ancestor = cp - depth;
    let doomed: Vec<EpochRow> =
        before.iter().filter(|e| e.is_finished() && e.to_block > ancestor).cloned().collect();
    assert!(!doomed.is_empty(), "epochs above the common ancestor {ancestor}");
    let last_id = before.iter().map(|e| e.epoch_id).max().unwrap_or(0);

    demo.reorg(depth as u64).await.expect("anvil_reorg");
    demo.burst(3).await.expect("burst on the new branch");
    let (after, cp2) = settled(&stack, &mut db).await;
    stack.assert_matches_chain(&mut db).await;
    for d in &doomed {
        let now = after.iter().find(|e| e.epoch_id == d.epoch_id).expect("a reorged epoch is kept");
        assert_eq!(
            now.stage, "reorged",
            "epoch {} ({}..{}) marked reorged",
            d.epoch_id, d.from_block, d.to_block
        );
        let names = now.stage_names();
        assert_eq!(&names[..names.len() - 1], d.stage_names().as_slice(), "its history is kept");
    }
    let finished = assert_covered(&after, stack.chain_id, 0, cp2);
    let first_reorged = doomed.iter().map(|e| e.from_block).min().unwrap_or(0);
    let replacements: Vec<&EpochRow> = finished.iter().filter(|e| e.to_block >= first_reorged).collect();
    assert!(!replacements.is_empty());
    assert!(
        replacements.iter().all(|e| e.epoch_id > last_id),
        "the range is covered again by epochs with new ids: {:?}",
        replacements.iter().map(|e| (e.epoch_id, e.from_block, e.to_block)).collect::<Vec<_>>()
    );
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
