//! Scenario 1 — crash points (DESIGN §7 "Restart", invariants 1, 2 and 6): `kill -9` of
//! the indexer at N moments spread over start-up, bulk backfill and following under
//! traffic, restarting it each time. After every kill the stored events are exactly the
//! chain's logs up to the checkpoint (data and checkpoint commit together) and the
//! checkpoint never goes back; at the end, after a last restart, the stored events are
//! compared with `eth_getLogs` of the canonical chain: missing and duplicated must be 0.
//! A writer audit checks that every committed write came from the lock holder.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tidemark_reliability::{audit, summary};
use tidemark_testkit::{RpcProxy, SOON, Stack, compare};

use crate::common::{Traffic, secs, traffic};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    StartUp,
    Backfill,
    Follow,
}

/// Polls the checkpoint every 5 ms until it reaches `target`.
async fn wait_checkpoint(db: &mut tidemark_testkit::InstanceDb, chain_id: u64, target: i64) {
    let started = Instant::now();
    loop {
        if let Ok(Some(cp)) = db.checkpoint(chain_id).await
            && cp.block_number >= target
        {
            return;
        }
        assert!(started.elapsed() < SOON, "checkpoint did not reach {target} within {SOON:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_crash_points_loses_and_duplicates_nothing() {
    summary::run("1 crash points", |rec| async move {
        let scale = rec.scale();
        let kills = scale.pick(5, 20);
        let seed = tidemark_reliability::seed();
        let mut rng = StdRng::seed_from_u64(seed);

        rec.step("building a history to backfill");
        let stack = Stack::shared("tidemark_rel_crash").await;
        traffic(&stack.demo, scale.pick(150, 500), 4).await;
        let head0 = stack.demo.block_number().await.expect("head");
        let finality = 6;
        let bulk_end = (head0 - finality) as i64;
        // A slower provider and small ranges make the backfill last long enough to hit.
        let proxy = RpcProxy::start(stack.anvil.url()).await;
        proxy.delay("eth_getLogs", Duration::from_millis(15));
        let mut cfg = stack.config();
        cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
        cfg.chains[0].max_block_range = Some(2);
        cfg.chains[0].max_concurrency = Some(2);
        cfg.chains[0].finality_depth = Some(finality);
        let mut db = stack.instance().await;
        let mut admin = tidemark_db_client::tls::establish(&stack.db_url).await.expect("connect");
        let mut audited = false;

        let mut traffic_task: Option<Traffic> = None;
        let mut previous = -1i64;
        let mut at_kill: Vec<String> = Vec::new();
        let (mut n_start, mut n_backfill, mut n_follow) = (0, 0, 0);
        let mut bad: Vec<String> = Vec::new();
        let backfill_kills = (0..kills).filter(|k| k % 5 != 0 && *k < kills * 3 / 5).count() as i64;
        let mut backfill_done = 0i64;
        for k in 0..kills {
            let moment = if k % 5 == 0 {
                Moment::StartUp
            } else if k < kills * 3 / 5 {
                Moment::Backfill
            } else {
                Moment::Follow
            };
            if moment == Moment::Follow && traffic_task.is_none() {
                traffic_task = Some(Traffic::start(&stack.demo, 5, 20..80));
            }
            rec.step(format!("kill {}/{kills} ({moment:?})", k + 1));
            let mut indexer = stack.spawn(&cfg);
            let spawned = Instant::now();
            match moment {
                Moment::StartUp => {
                    tokio::time::sleep(Duration::from_millis(rng.random_range(0..700))).await;
                }
                Moment::Backfill => {
                    let left = (backfill_kills - backfill_done).max(1);
                    let span = ((bulk_end - previous.max(0)) / (left + 1)).max(1);
                    let target = previous.max(0) + rng.random_range(span / 2..=span + span / 2).max(1);
                    wait_checkpoint(&mut db, stack.chain_id, target.min(bulk_end)).await;
                    tokio::time::sleep(Duration::from_millis(rng.random_range(0..30))).await;
                    backfill_done += 1;
                }
                Moment::Follow => {
                    let head = stack.demo.block_number().await.expect("head") as i64;
                    wait_checkpoint(&mut db, stack.chain_id, head).await;
                    tokio::time::sleep(Duration::from_millis(rng.random_range(0..800))).await;
                }
            }
            let alive_for = spawned.elapsed();
            indexer.proc.kill9();
            if !audited && db.has_table("events").await.expect("query") {
                audit::install(&mut admin, &stack.schema).await.expect("installing the writer audit");
                audited = true;
            }

            let c = stack.compare(&mut db).await;
            let cp = c.checkpoint.map_or(-1, |n| n as i64);
            let nothing_yet = c.checkpoint.is_none() && c.stored == 0;
            if !(c.is_exact() || nothing_yet) {
                bad.push(format!("kill {}: {c}", k + 1));
            }
            if cp < previous {
                bad.push(format!("kill {}: checkpoint went back from {previous} to {cp}", k + 1));
            }
            match moment {
                Moment::StartUp => n_start += 1,
                _ if cp < bulk_end => n_backfill += 1,
                _ => n_follow += 1,
            }
            at_kill.push(format!("{cp}@{}ms", alive_for.as_millis()));
            previous = cp;
        }
        let sent_during_follow = match traffic_task.take() {
            Some(t) => t.stop().await,
            None => 0,
        };
        rec.record(
            format!("kill -9 ×{kills}: start-up {n_start}, bulk backfill {n_backfill}, follow under traffic {n_follow}"),
            if bad.is_empty() {
                "after every kill: stored events = chain logs up to the checkpoint; checkpoint never went back"
                    .to_owned()
            } else {
                bad.join("; ")
            },
            bad.is_empty(),
            format!(
                "seed {seed}; history {head0} blocks; checkpoint@uptime per kill: {}; {sent_during_follow} events sent while following",
                at_kill.join(" ")
            ),
        );

        rec.step("last restart and comparison with eth_getLogs");
        let mut indexer = stack.spawn(&cfg);
        let took = stack.wait_synced(&mut db, Duration::from_secs(120)).await;
        let c = stack.compare(&mut db).await;
        let removed = compare::replay_journal(&mut db).await;
        let (audited_writes, unfenced) = audit::counts(&mut admin).await.expect("audit");
        let exit = indexer.stop(Duration::from_secs(10)).await;
        rec.record(
            "restart after the last kill; stored events vs eth_getLogs of the canonical chain",
            format!("missing {}, duplicated {}, orphaned {}, mismatched {}", c.missing, c.duplicated, c.orphaned, c.mismatched),
            c.is_exact(),
            format!("{} events up to block {:?}; caught up in {} s", c.stored, c.checkpoint, secs(took)),
        );
        rec.record(
            "journal replayed in cursor order",
            match &removed {
                Ok(n) => format!("equals the stored events ({n} removals)"),
                Err(e) => e.clone(),
            },
            removed.is_ok(),
            "",
        );
        rec.record(
            "every committed write made by the writer-lock holder (audit trigger)",
            format!("{unfenced} of {audited_writes} audited statements without the lock"),
            unfenced == 0 && audited_writes > 0,
            "",
        );
        rec.record("SIGTERM after the run", format!("exit {exit}"), exit == 0, "");
    })
    .await;
}
