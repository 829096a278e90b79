//! DESIGN §7 "Follow" and invariants 1 and 3: reorgs of every depth from 1 to
//! `finality_depth − 1` while following, with events on both branches, end with exactly
//! the canonical chain's events, `removed` journal entries for every orphaned event, a
//! canonical checkpoint, and a journal that a consumer can follow across them.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::SCHEMA;
use alloy::primitives::{B256, U256};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tidemark_testkit::{InstanceDb, JournalReplay, SOON, Stack, canonical_logs, eventually};
use tidemark_traffic::RECIPIENTS;

const FINALITY: u64 = 6;

/// Applies the new journal entries to `consumer` (strictly) and checks that its state is
/// the stored events; returns the entries applied.
async fn follow_journal(
    consumer: &mut JournalReplay,
    db: &mut InstanceDb,
) -> Vec<tidemark_testkit::JournalEntry> {
    let entries = db.journal_after(consumer.last_cursor().unwrap_or(i64::MIN)).await.expect("journal");
    consumer.apply(&entries).unwrap_or_else(|e| panic!("journal consumer: {e}"));
    let events = db.events().await.expect("events");
    consumer.matches(&events).unwrap_or_else(|e| panic!("journal consumer: {e}"));
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorgs_shallower_than_the_finality_depth_are_repaired() {
    let stack = Stack::shared(SCHEMA).await;
    let demo = &stack.demo;
    crate::common::traffic(demo, 12, 3).await;
    let mut cfg = stack.config();
    cfg.chains[0].finality_depth = Some(FINALITY);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    let mut consumer = JournalReplay::new();
    follow_journal(&mut consumer, &mut db).await;

    let addresses = [demo.token, demo.registry];
    let mut orphaned_total = 0;
    for depth in 1..FINALITY {
        let snapshot = if depth % 3 == 0 { Some(demo.snapshot().await.expect("evm_snapshot")) } else { None };
        // `depth` blocks with events, indexed, then orphaned.
        for i in 0..depth {
            demo.burst(2 + i).await.expect("burst");
        }
        stack.wait_synced(&mut db, SOON).await;
        follow_journal(&mut consumer, &mut db).await;
        let head = demo.block_number().await.expect("head");
        let orphans =
            canonical_logs(stack.anvil.url(), &addresses, head - depth + 1, head).await.expect("logs");
        assert!(!orphans.is_empty(), "the blocks to orphan carry events");

        match snapshot {
            // Back to before the blocks, then a longer branch.
            Some(id) => {
                demo.revert(id).await.expect("evm_revert");
                for i in 0..=depth {
                    demo.register(&format!("branch-{depth}-{i}"), &[U256::from(i)], "new branch")
                        .await
                        .expect("register");
                }
            }
            // Same height, new blocks carrying other events.
            None if depth % 2 == 1 => {
                let txs = [
                    (demo.update_call(depth, RECIPIENTS[0], 1, true, "reorged in"), 0),
                    (demo.tag_call(B256::repeat_byte(depth as u8), &["x"], &[1]), depth - 1),
                ];
                demo.reorg_with(depth, &txs).await.expect("anvil_reorg with transactions");
            }
            // Empty replacement blocks, then new blocks on top.
            None => {
                demo.reorg(depth).await.expect("anvil_reorg");
                demo.burst(3).await.expect("burst");
            }
        }
        let new_head = demo.block_number().await.expect("head");
        let branch =
            canonical_logs(stack.anvil.url(), &addresses, head - depth + 1, new_head).await.expect("logs");
        assert!(!branch.is_empty(), "the new branch carries events");
        assert!(branch.iter().all(|l| !orphans.contains(l)), "the new branch has new blocks");
        stack.wait_synced(&mut db, SOON).await;
        stack.assert_matches_chain(&mut db).await;

        let entries = follow_journal(&mut consumer, &mut db).await;
        let removed: HashSet<(String, i32)> = entries
            .iter()
            .filter(|e| e.kind == "removed")
            .map(|e| (e.block_hash.clone(), e.log_index))
            .collect();
        for o in &orphans {
            assert!(
                removed.contains(&(o.block_hash.clone(), o.log_index as i32)),
                "depth {depth}: orphaned log {}#{} has a removed entry",
                o.block_hash,
                o.log_index
            );
        }
        // Only the orphaned logs: a log below the common ancestor stays, with its cursor.
        let orphaned: HashSet<(String, i32)> =
            orphans.iter().map(|o| (o.block_hash.clone(), o.log_index as i32)).collect();
        assert_eq!(removed, orphaned, "depth {depth}: exactly the orphaned logs are removed");
        for e in entries.iter().filter(|e| e.kind == "removed") {
            assert_eq!(e.payload["block_hash"], e.block_hash.as_str(), "the removal carries the event");
            assert_eq!(e.payload["cursor"], e.event_cursor, "the removal names the event's cursor");
            assert!(e.payload["args"].is_object() && e.payload["topics"].is_array());
        }
        orphaned_total += orphans.len();
        eprintln!("reorg of depth {depth}: {} orphaned events removed", orphans.len());
    }

    // From scratch, the whole journal replays to the stored events too.
    let journal = db.journal().await.expect("journal");
    let mut fresh = JournalReplay::new();
    fresh.apply(&journal).unwrap_or_else(|e| panic!("replay from scratch: {e}"));
    fresh.matches(&db.events().await.expect("events")).unwrap_or_else(|e| panic!("replay from scratch: {e}"));
    let removals = journal.iter().filter(|e| e.kind == "removed").count();
    assert_eq!(removals, orphaned_total, "{removals} removals for {orphaned_total} orphaned events");
    assert!(indexer.proc.stderr().contains("reorg repaired"));
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_reorgs_racing_the_follower_end_on_the_canonical_chain() {
    let stack = Stack::shared(SCHEMA).await;
    let demo = &stack.demo;
    crate::common::traffic(demo, 12, 3).await;
    let mut cfg = stack.config();
    cfg.chains[0].finality_depth = Some(FINALITY);
    cfg.chains[0].poll_interval_ms = Some(10);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;

    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut consumer = JournalReplay::new();
    for _ in 0..25 {
        for _ in 0..rng.random_range(1..=3) {
            demo.burst(rng.random_range(1..5)).await.expect("burst");
        }
        // Let the follower get somewhere, or nowhere, before the chain changes under it.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..120))).await;
        let depth = rng.random_range(1..FINALITY);
        if rng.random_bool(0.5) {
            let at = rng.random_range(0..depth);
            demo.reorg_with(depth, &[(demo.burst_call(2), at)]).await.expect("anvil_reorg with a burst");
        } else {
            demo.reorg(depth).await.expect("anvil_reorg");
        }
        // A consumer reads the journal while all this happens: every entry must make sense.
        let entries = db.journal_after(consumer.last_cursor().unwrap_or(i64::MIN)).await.expect("journal");
        consumer.apply(&entries).unwrap_or_else(|e| panic!("seed {seed}: journal consumer: {e}"));
    }
    demo.burst(1).await.expect("burst");
    stack.wait_synced(&mut db, SOON).await;
    let events = stack.assert_matches_chain(&mut db).await;
    follow_journal(&mut consumer, &mut db).await;
    let mut fresh = JournalReplay::new();
    fresh.apply(&db.journal().await.expect("journal")).unwrap_or_else(|e| panic!("seed {seed}: replay: {e}"));
    fresh.matches(&events).unwrap_or_else(|e| panic!("seed {seed}: replay: {e}"));
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_while_the_indexer_is_down_is_repaired_on_restart() {
    let stack = Stack::shared(SCHEMA).await;
    let demo = &stack.demo;
    crate::common::traffic(demo, 12, 3).await;
    let mut cfg = stack.config();
    cfg.chains[0].finality_depth = Some(FINALITY);
    let mut db = stack.instance().await;
    let mut indexer = stack.spawn(&cfg);
    stack.wait_synced(&mut db, SOON).await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);

    // While it is down: the indexed head is orphaned, and the chain moves far ahead, so
    // the restart begins with a bulk backfill from the stale checkpoint.
    let head = demo.block_number().await.expect("head");
    let orphans =
        canonical_logs(stack.anvil.url(), &[demo.token, demo.registry], head - 2, head).await.expect("logs");
    assert!(!orphans.is_empty());
    demo.reorg_with(3, &[(demo.burst_call(2), 1)]).await.expect("anvil_reorg");
    demo.mine(300).await.expect("anvil_mine");
    crate::common::traffic(demo, 3, 3).await;

    let mut indexer = stack.spawn(&cfg);
    stack.wait_synced(&mut db, SOON).await;
    stack.assert_matches_chain(&mut db).await;
    let journal = db.journal().await.expect("journal");
    let removed: HashSet<(String, i32)> =
        journal.iter().filter(|e| e.kind == "removed").map(|e| (e.block_hash.clone(), e.log_index)).collect();
    for o in &orphans {
        assert!(removed.contains(&(o.block_hash.clone(), o.log_index as i32)), "orphaned log {o:?} removed");
    }
    let mut fresh = JournalReplay::new();
    fresh.apply(&journal).unwrap_or_else(|e| panic!("replay: {e}"));
    let events = db.events().await.expect("events");
    fresh.matches(&events).unwrap_or_else(|e| panic!("replay: {e}"));
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);

    // Retention: run again with removed entries kept for 1 s. They are pruned, the
    // events are not, and the floor is the highest pruned cursor.
    let highest = journal.iter().filter(|e| e.kind == "removed").map(|e| e.cursor).max().expect("removals");
    cfg.journal_retention_ms = Some(1000);
    let mut indexer = stack.spawn(&cfg);
    let floor = eventually(SOON, "the journal floor recorded", async || {
        db.metadata("journal_floor").await.ok().flatten().map(|m| m.value)
    })
    .await;
    assert_eq!(floor, serde_json::json!(highest.to_string()));
    let journal = db.journal().await.expect("journal");
    assert!(journal.iter().all(|e| e.kind == "log"), "removed entries pruned");
    assert_eq!(db.events().await.expect("events"), events, "events are never pruned");
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

/// A bounded range that completes near the head keeps watching its end block until it is
/// final: a reorg that replaces it after completion is repaired, and the range is indexed
/// again up to its end on the new branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_range_completed_near_the_head_follows_a_reorg_until_final() {
    let stack = Stack::shared(SCHEMA).await;
    let demo = &stack.demo;
    crate::common::traffic(demo, 6, 2).await;
    let end = demo.block_number().await.expect("head") + 3;
    let mut cfg = stack.config();
    cfg.chains[0].finality_depth = Some(FINALITY);
    cfg.chains[0].poll_interval_ms = Some(100);
    for c in &mut cfg.chains[0].contracts {
        c.end_block = Some(end);
    }
    let mut db = stack.instance().await;
    let mut indexer = stack.spawn(&cfg);
    crate::common::traffic(demo, 3, 2).await;
    assert_eq!(demo.block_number().await.expect("head"), end);
    stack.wait_synced(&mut db, SOON).await;
    let completed = db.checkpoint(stack.chain_id).await.expect("checkpoint").expect("a checkpoint");
    assert_eq!(completed.block_number as u64, end);

    // The end block and the one before are replaced, with events in the new branch.
    demo.reorg_with(2, &[(demo.burst_call(3), 1)]).await.expect("anvil_reorg");
    stack.wait_synced(&mut db, SOON).await;
    stack.assert_matches_chain(&mut db).await;
    let removed = db.journal().await.expect("journal").iter().filter(|e| e.kind == "removed").count();
    assert!(removed > 0, "the orphaned end of the range was removed");
    assert!(indexer.proc.stderr().contains("reorg repaired"));

    // Past finality nothing more happens: the chain moves on, the range stays at its end.
    demo.mine(FINALITY + 2).await.expect("anvil_mine");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cp = db.checkpoint(stack.chain_id).await.expect("checkpoint").expect("a checkpoint");
    assert_eq!(cp.block_number as u64, end);
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
