//! Scenario 2 — reorg storm (DESIGN §7 "Follow", invariants 1 and 3): M reorgs of random
//! depth 1..finality_depth−1 while the indexer follows a chain under traffic
//! (`anvil_reorg`, with and without transactions in the new branch). After each settles,
//! the stored events equal the canonical chain's, and a journal consumer that followed
//! along (applying `log` and `removed` in cursor order) holds exactly the stored events;
//! at the end a replay from scratch does too.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tidemark_reliability::summary;
use tidemark_testkit::{JournalReplay, SOON, Stack};

use crate::common::{secs, traffic};

const FINALITY: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg_storm_ends_on_the_canonical_chain_and_the_journal_replays() {
    summary::run("2 reorg storm", |rec| async move {
        let scale = rec.scale();
        let reorgs = scale.pick(8, 50);
        let seed = tidemark_reliability::seed();
        let mut rng = StdRng::seed_from_u64(seed);

        rec.step("indexing a first stretch of chain");
        let stack = Stack::shared("tidemark_rel_reorg").await;
        let demo = &stack.demo;
        traffic(demo, 20, 4).await;
        let mut cfg = stack.config();
        cfg.chains[0].finality_depth = Some(FINALITY);
        cfg.chains[0].poll_interval_ms = Some(20);
        let mut indexer = stack.spawn(&cfg);
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, SOON).await;
        let mut consumer = JournalReplay::new();

        let mut depths: BTreeMap<u64, usize> = BTreeMap::new();
        let mut settle_max = Duration::ZERO;
        let mut settle_total = Duration::ZERO;
        let mut bad: Vec<String> = Vec::new();
        let mut removed_seen = 0usize;
        let mut restarts = 0usize;
        for i in 0..reorgs {
            rec.step(format!("reorg {}/{reorgs}", i + 1));
            // Traffic: a few blocks of events, some of which the reorg will orphan.
            for _ in 0..rng.random_range(1..=3) {
                demo.burst(rng.random_range(1..6)).await.expect("burst");
            }
            // Let the follower get somewhere, or nowhere, before the chain changes under it.
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
            let depth = rng.random_range(1..FINALITY);
            // Every fourth reorg happens while the indexer is down, and the chain then moves
            // far enough for a bulk backfill on top of the old checkpoint; every fourth
            // other one kills the indexer right after the reorg, while it may be repairing.
            let while_down = i % 4 == 3;
            if while_down {
                indexer.proc.kill9();
                restarts += 1;
            }
            match rng.random_range(0..3) {
                0 => demo.reorg(depth).await.expect("anvil_reorg"),
                1 => {
                    let at = rng.random_range(0..depth);
                    demo.reorg_with(depth, &[(demo.burst_call(rng.random_range(1..4)), at)])
                        .await
                        .expect("anvil_reorg with a burst")
                }
                _ => {
                    let txs = [
                        (demo.burst_call(2), 0),
                        (demo.register_call(&format!("r{i}"), &[alloy::primitives::U256::from(i)], "x"), depth - 1),
                    ];
                    demo.reorg_with(depth, &txs).await.expect("anvil_reorg with transactions")
                }
            }
            if while_down {
                demo.mine(rng.random_range(210..260)).await.expect("anvil_mine");
                indexer = stack.spawn(&cfg);
            } else if i % 4 == 1 {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..60))).await;
                indexer.proc.kill9();
                restarts += 1;
                indexer = stack.spawn(&cfg);
            }
            *depths.entry(depth).or_default() += 1;
            // More traffic on the new branch.
            if rng.random_bool(0.5) {
                demo.burst(rng.random_range(1..4)).await.expect("burst");
            }
            let took = stack.wait_synced(&mut db, SOON).await;
            settle_max = settle_max.max(took);
            settle_total += took;
            let c = stack.compare(&mut db).await;
            if !c.is_exact() {
                bad.push(format!("reorg {} (depth {depth}): {c}", i + 1));
            }
            let entries =
                db.journal_after(consumer.last_cursor().unwrap_or(i64::MIN)).await.expect("journal");
            removed_seen += entries.iter().filter(|e| e.kind == "removed").count();
            let events = db.events().await.expect("events");
            if let Err(e) = consumer.apply(&entries).and_then(|()| consumer.matches(&events)) {
                bad.push(format!("reorg {} (depth {depth}): journal consumer: {e}", i + 1));
                consumer = JournalReplay::new();
                let _ = consumer.apply(&db.journal().await.expect("journal"));
            }
            if bad.len() > 3 {
                break;
            }
        }
        let histogram: Vec<String> = depths.iter().map(|(d, n)| format!("{d}:{n}")).collect();
        rec.record(
            format!(
                "{reorgs} reorgs of depth 1..{} under traffic (finality depth {FINALITY}); {restarts} of them with kill -9 of the indexer (during the repair, or reorg while down + 200 blocks)",
                FINALITY - 1
            ),
            if bad.is_empty() {
                "after each: stored events = canonical chain; incremental journal consumer = stored events".to_owned()
            } else {
                bad.join("; ")
            },
            bad.is_empty(),
            format!(
                "seed {seed}; depths {}; removed entries {removed_seen}; settle max {} s, mean {} s",
                histogram.join(" "),
                secs(settle_max),
                secs(settle_total / reorgs.max(1) as u32)
            ),
        );

        rec.step("replaying the whole journal from scratch");
        let fresh = tidemark_testkit::compare::replay_journal(&mut db).await;
        let c = stack.compare(&mut db).await;
        rec.record(
            "whole journal replayed from scratch in cursor order",
            match &fresh {
                Ok(n) => format!("equals the stored events ({n} removals); final comparison: missing {}, duplicated {}, orphaned {}", c.missing, c.duplicated, c.orphaned),
                Err(e) => e.clone(),
            },
            fresh.is_ok() && c.is_exact(),
            format!("{} events, {} blocks", c.stored, c.checkpoint.unwrap_or(0)),
        );
        let exit = indexer.stop(Duration::from_secs(10)).await;
        rec.record("SIGTERM after the storm", format!("exit {exit}"), exit == 0, "");
    })
    .await;
}
