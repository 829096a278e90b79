//! Property tests of the status derivation (DESIGN §4) and the realtime projection.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::json;
use tidemark_shared_types::status::omnichain_indexing_cursor;
use tidemark_shared_types::{
    BlockRef, ChainIndexingConfig, ChainSnapshot, IndexingStatus, OmnichainStatus, RealtimeProjection,
};

use crate::generators::{Kind, arb_chain_of, arb_chains, arb_chains_of, block_hash, with_snapshot_time};

fn is_queued(c: &ChainSnapshot) -> bool {
    matches!(c, ChainSnapshot::Queued { .. })
}

fn is_completed(c: &ChainSnapshot) -> bool {
    matches!(c, ChainSnapshot::Completed { .. })
}

fn is_following(c: &ChainSnapshot) -> bool {
    matches!(c, ChainSnapshot::Following { .. })
}

/// Started and not completed: backfilling or following.
fn is_active(c: &ChainSnapshot) -> bool {
    !is_queued(c) && !is_completed(c)
}

fn latest_ts(c: &ChainSnapshot) -> u64 {
    c.latest_indexed_block().expect("a started chain").timestamp
}

fn start_ts(c: &ChainSnapshot) -> u64 {
    c.config().start_block().timestamp
}

/// DESIGN §4, read literally: following if any chain follows; else completed if all are
/// completed; else unstarted if all are queued; else backfill.
fn design_status(chains: &BTreeMap<u64, ChainSnapshot>) -> OmnichainStatus {
    let n = chains.len();
    let count = |f: fn(&ChainSnapshot) -> bool| chains.values().filter(|c| f(c)).count();
    if count(is_following) > 0 {
        OmnichainStatus::Following
    } else if count(is_completed) == n {
        OmnichainStatus::Completed
    } else if count(is_queued) == n {
        OmnichainStatus::Unstarted
    } else {
        OmnichainStatus::Backfill
    }
}

/// DESIGN §4's cursor: the lowest latestIndexed timestamp over started-not-completed
/// chains; the highest when all are completed; the lowest start timestamp − 1 when none has
/// started. DESIGN leaves out queued + completed chains with none in between; there the
/// implementation takes the lowest start timestamp − 1 over the queued chains (nothing of
/// theirs is indexed, everything of the completed ones is), which is also what the
/// "none started" rule gives when every chain is queued.
fn design_cursor(chains: &BTreeMap<u64, ChainSnapshot>) -> u64 {
    let active: Vec<u64> = chains.values().filter(|c| is_active(c)).map(latest_ts).collect();
    if let Some(min) = active.iter().min() {
        return *min;
    }
    if chains.values().all(is_completed) {
        return chains.values().map(latest_ts).max().expect("at least one chain");
    }
    chains.values().filter(|c| is_queued(c)).map(start_ts).min().expect("a queued chain") - 1
}

fn has_kind(chains: &BTreeMap<u64, ChainSnapshot>, kind: Kind) -> bool {
    chains.values().any(|c| match kind {
        Kind::Queued => is_queued(c),
        Kind::Backfill => matches!(c, ChainSnapshot::Backfill { .. }),
        Kind::Following => is_following(c),
        Kind::Completed => is_completed(c),
    })
}

/// Checks the derived snapshot of `chains` against every rule; shared by all the generators.
fn check_derivation(chains: &BTreeMap<u64, ChainSnapshot>, snapshot_time: u64) -> Result<(), TestCaseError> {
    for (id, c) in chains {
        prop_assert_eq!(c.validate(), Ok(()), "generated chain {} is invalid", id);
    }
    let status = IndexingStatus::derive(chains.clone(), snapshot_time).expect("valid chains derive");
    prop_assert_eq!(status.validate(), Ok(()));
    let snap = &status.omnichain_snapshot;
    prop_assert_eq!(&snap.chains, chains);
    prop_assert_eq!(status.snapshot_time, snapshot_time);

    // omnichainStatus
    prop_assert_eq!(snap.omnichain_status, design_status(chains));

    // omnichainIndexingCursor and slowestChainIndexingCursor
    let cursor = snap.omnichain_indexing_cursor;
    prop_assert_eq!(cursor, design_cursor(chains));
    prop_assert_eq!(status.slowest_chain_indexing_cursor, cursor);
    prop_assert_eq!(omnichain_indexing_cursor(chains.values()), cursor);
    for c in chains.values().filter(|c| is_active(c)) {
        prop_assert!(cursor <= latest_ts(c), "cursor {} is past an active chain at {}", cursor, latest_ts(c));
    }
    if chains.values().any(is_active) {
        prop_assert!(chains.values().filter(|c| is_active(c)).any(|c| latest_ts(c) == cursor));
    } else if chains.values().all(is_completed) {
        prop_assert!(chains.values().all(|c| latest_ts(c) <= cursor));
    } else {
        // Nothing in progress and some chain queued: the cursor is just before the earliest
        // queued start, so it claims nothing of a queued chain.
        for c in chains.values().filter(|c| is_queued(c)) {
            prop_assert!(cursor < start_ts(c));
        }
        prop_assert!(chains.values().filter(|c| is_queued(c)).any(|c| start_ts(c) == cursor + 1));
    }
    // Every block mentioned is at or before the snapshot, so the cursor is too.
    prop_assert!(cursor <= snapshot_time);

    // JSON round-trip, through text and through a Value.
    let text = serde_json::to_string(&status).expect("serializes");
    let back: IndexingStatus = serde_json::from_str(&text).expect("a derived snapshot deserializes");
    prop_assert_eq!(&back, &status);
    let value = serde_json::to_value(&status).expect("serializes");
    let back: IndexingStatus = serde_json::from_value(value.clone()).expect("deserializes from a Value");
    prop_assert_eq!(serde_json::to_value(&back).expect("serializes"), value.clone());
    prop_assert_eq!(&value["strategy"], &json!("omnichain"));
    for id in chains.keys() {
        prop_assert!(value["omnichainSnapshot"]["chains"].get(id.to_string()).is_some());
    }
    Ok(())
}

proptest! {
    /// The allocation-free check readers run on every cached read agrees with comparing
    /// the sorted id lists, whatever the config's chain ids: the status's own, in any
    /// order, with some left out, others added, or repeated.
    #[test]
    fn has_chains_of_is_comparing_the_chain_ids(
        (chains, time) in with_snapshot_time(arb_chains()),
        config in crate::generators::arb_config(),
        picks in proptest::collection::vec((any::<bool>(), any::<Index>(), 1u64..4), 0..6),
    ) {
        let status = IndexingStatus::derive(chains, time).expect("valid");
        let ids = status.chain_ids();
        let mut config = config;
        let template = config.chains[0].clone();
        // Either the status's own ids (half the cases) or a mix drawn by `picks`.
        let config_ids: Vec<u64> = if picks.first().is_some_and(|p| p.0) {
            ids.iter().rev().copied().collect()
        } else {
            picks.iter().map(|(own, at, other)| if *own { *at.get(&ids) } else { *other }).collect()
        };
        config.chains = config_ids
            .iter()
            .map(|&chain_id| tidemark_shared_types::PublicChainConfig { chain_id, ..template.clone() })
            .collect();
        prop_assert_eq!(status.has_chains_of(&config), ids == config.chain_ids(),
            "status {:?}, config {:?}", ids, config_ids);
    }

    #[test]
    fn derived_snapshots_follow_the_design((chains, time) in with_snapshot_time(arb_chains())) {
        check_derivation(&chains, time)?;
    }

    #[test]
    fn all_queued_is_unstarted_before_the_earliest_start(
        (chains, time) in with_snapshot_time(arb_chains_of(&[Kind::Queued]))
    ) {
        check_derivation(&chains, time)?;
        let status = IndexingStatus::derive(chains.clone(), time).expect("valid");
        prop_assert_eq!(status.omnichain_snapshot.omnichain_status, OmnichainStatus::Unstarted);
        let earliest = chains.values().map(start_ts).min().expect("a chain");
        prop_assert_eq!(status.slowest_chain_indexing_cursor, earliest - 1);
    }

    #[test]
    fn all_completed_takes_the_latest_end(
        (chains, time) in with_snapshot_time(arb_chains_of(&[Kind::Completed]))
    ) {
        check_derivation(&chains, time)?;
        let status = IndexingStatus::derive(chains.clone(), time).expect("valid");
        prop_assert_eq!(status.omnichain_snapshot.omnichain_status, OmnichainStatus::Completed);
        let latest = chains.values().map(|c| c.config().end_block().expect("bounded").timestamp).max();
        prop_assert_eq!(Some(status.slowest_chain_indexing_cursor), latest);
    }

    /// The case DESIGN does not spell out: some chains queued, the others completed.
    #[test]
    fn queued_and_completed_is_backfill_before_the_earliest_queued_start(
        (chains, time) in with_snapshot_time(
            arb_chains_of(&[Kind::Queued, Kind::Completed])
                .prop_filter("queued and completed", |m| has_kind(m, Kind::Queued) && has_kind(m, Kind::Completed))
        )
    ) {
        check_derivation(&chains, time)?;
        let status = IndexingStatus::derive(chains.clone(), time).expect("valid");
        prop_assert_eq!(status.omnichain_snapshot.omnichain_status, OmnichainStatus::Backfill);
        let earliest_queued = chains.values().filter(|c| is_queued(c)).map(start_ts).min().expect("queued");
        prop_assert_eq!(status.slowest_chain_indexing_cursor, earliest_queued - 1);
    }

    /// Queued and completed chains do not hold the cursor back while another chain is in
    /// progress: it is the slowest in-progress chain's.
    #[test]
    fn in_progress_chains_set_the_cursor(
        (chains, time) in with_snapshot_time(
            arb_chains().prop_filter("something in progress", |m| m.values().any(is_active))
        )
    ) {
        check_derivation(&chains, time)?;
        let status = IndexingStatus::derive(chains.clone(), time).expect("valid");
        let slowest = chains.values().filter(|c| is_active(c)).map(latest_ts).min();
        prop_assert_eq!(Some(status.slowest_chain_indexing_cursor), slowest);
        let expected = if chains.values().any(is_following) {
            OmnichainStatus::Following
        } else {
            OmnichainStatus::Backfill
        };
        prop_assert_eq!(status.omnichain_snapshot.omnichain_status, expected);
    }

    #[test]
    fn projection_measures_the_distance_to_the_cursor(
        (chains, time) in with_snapshot_time(arb_chains()),
        skew in -5_000i64..100_000,
    ) {
        let status = IndexingStatus::derive(chains, time).expect("valid");
        let now = time.saturating_add_signed(skew);
        let p = RealtimeProjection::project(status.clone(), now);
        prop_assert!(p.projected_at >= status.snapshot_time);
        prop_assert!(p.projected_at >= now);
        prop_assert_eq!(p.projected_at, now.max(status.snapshot_time));
        prop_assert_eq!(p.worst_case_distance, p.projected_at - status.slowest_chain_indexing_cursor);
        prop_assert_eq!(&p.snapshot, &status);
        let value = serde_json::to_value(&p).expect("serializes");
        prop_assert_eq!(&value["worstCaseDistance"], &json!(p.worst_case_distance));
        let back: RealtimeProjection = serde_json::from_value(value).expect("deserializes");
        prop_assert_eq!(back, p);
    }

    /// A stored omnichain field that is not the derived one is refused on read.
    #[test]
    fn tampered_omnichain_fields_are_rejected(
        (chains, time) in with_snapshot_time(arb_chains()),
        delta in 1u64..1_000_000,
        field in 0usize..3,
    ) {
        let status = IndexingStatus::derive(chains, time).expect("valid");
        let mut value = serde_json::to_value(&status).expect("serializes");
        let cursor = status.slowest_chain_indexing_cursor;
        let other = if cursor >= delta { cursor - delta } else { cursor + delta };
        let expected = match field {
            0 => {
                value["slowestChainIndexingCursor"] = json!(other);
                "slowestChainIndexingCursor differs from omnichainIndexingCursor"
            }
            1 => {
                value["slowestChainIndexingCursor"] = json!(other);
                value["omnichainSnapshot"]["omnichainIndexingCursor"] = json!(other);
                "omnichainIndexingCursor does not match the chains"
            }
            _ => {
                let names = ["omnichain-unstarted", "omnichain-backfill", "omnichain-following", "omnichain-completed"];
                let current = value["omnichainSnapshot"]["omnichainStatus"].clone();
                let wrong = names.iter().find(|n| json!(n) != current).expect("another status");
                value["omnichainSnapshot"]["omnichainStatus"] = json!(wrong);
                "omnichainStatus does not match the chain statuses"
            }
        };
        let err = serde_json::from_value::<IndexingStatus>(value).expect_err("tampered").to_string();
        prop_assert!(err.contains(expected), "{}", err);
    }

    /// Breaking one chain's invariant makes derivation fail, naming that invariant.
    #[test]
    fn a_broken_chain_is_rejected(
        (mut chains, time) in with_snapshot_time(arb_chains()),
        pick in any::<Index>(),
        replacement in arb_chain_of(vec![Kind::Backfill, Kind::Following, Kind::Completed]),
    ) {
        let id = *pick.get(&chains.keys().copied().collect::<Vec<_>>());
        let (broken, expected) = break_chain(replacement);
        chains.insert(id, broken);
        let err = IndexingStatus::derive(chains, time).expect_err("a broken chain");
        prop_assert!(err.to_string().contains(expected), "{} vs {}", err, expected);
    }
}

fn block(number: u64, timestamp: u64) -> BlockRef {
    BlockRef { number, timestamp, hash: block_hash(7, number) }
}

/// Breaks one invariant of a valid started chain; returns it with the expected message.
fn break_chain(chain: ChainSnapshot) -> (ChainSnapshot, &'static str) {
    match chain {
        ChainSnapshot::Backfill { config, backfill_end_block, .. } => {
            let beyond = block(backfill_end_block.number + 1, backfill_end_block.timestamp + 1);
            (
                ChainSnapshot::Backfill {
                    stalled: None,
                    webhooks: None,
                    progress: None,
                    sources: Vec::new(),
                    config,
                    latest_indexed_block: beyond,
                    backfill_end_block,
                },
                "chain-backfill: latestIndexedBlock is beyond backfillEndBlock",
            )
        }
        ChainSnapshot::Following { latest_indexed_block, latest_known_block, .. } => {
            let start = block(latest_indexed_block.number + 1, latest_indexed_block.timestamp + 1);
            (
                ChainSnapshot::Following {
                    stalled: None,
                    webhooks: None,
                    progress: None,
                    sources: Vec::new(),
                    config: ChainIndexingConfig::LeftBounded { start_block: start },
                    latest_indexed_block,
                    latest_known_block,
                },
                "chain-following: latestIndexedBlock is below startBlock",
            )
        }
        ChainSnapshot::Completed { config, latest_indexed_block } => (
            ChainSnapshot::Completed {
                config: ChainIndexingConfig::LeftBounded { start_block: config.start_block().clone() },
                latest_indexed_block,
            },
            "chain-completed requires a bounded range",
        ),
        ChainSnapshot::Queued { .. } => unreachable!("only started chains are generated here"),
    }
}

/// The cursor of the implementation equals DESIGN's rules in the cases written out there,
/// on hand-made inputs (ties and single chains included).
#[test]
fn cursor_examples() {
    let lb = |n, t| ChainIndexingConfig::LeftBounded { start_block: block(n, t) };
    let bd = |n, t, e, et| ChainIndexingConfig::Bounded { start_block: block(n, t), end_block: block(e, et) };
    let queued = |n, t| ChainSnapshot::Queued { stalled: None, webhooks: None, config: lb(n, t) };
    let backfill = |l, lt| ChainSnapshot::Backfill {
        stalled: None,
        webhooks: None,
        progress: None,
        sources: Vec::new(),
        config: lb(0, 100),
        latest_indexed_block: block(l, lt),
        backfill_end_block: block(1_000, 10_000),
    };
    let completed =
        |e, et| ChainSnapshot::Completed { config: bd(0, 100, e, et), latest_indexed_block: block(e, et) };
    let derive = |chains: Vec<ChainSnapshot>| {
        let map: BTreeMap<u64, ChainSnapshot> = (1u64..).zip(chains).collect();
        let s = IndexingStatus::derive(map, 20_000).expect("valid");
        (s.omnichain_snapshot.omnichain_status, s.slowest_chain_indexing_cursor)
    };
    assert_eq!(derive(vec![queued(5, 150), queued(0, 100)]), (OmnichainStatus::Unstarted, 99));
    assert_eq!(derive(vec![backfill(10, 200), backfill(20, 300)]), (OmnichainStatus::Backfill, 200));
    assert_eq!(derive(vec![backfill(10, 200), backfill(10, 200)]), (OmnichainStatus::Backfill, 200));
    assert_eq!(derive(vec![completed(10, 200), completed(20, 300)]), (OmnichainStatus::Completed, 300));
    // Queued and completed chains do not count while a chain is in progress...
    assert_eq!(
        derive(vec![queued(0, 100), backfill(50, 600), completed(20, 9_000)]),
        (OmnichainStatus::Backfill, 600)
    );
    // ...and with none in progress, the earliest queued start − 1 bounds the cursor.
    assert_eq!(derive(vec![queued(0, 100), completed(20, 9_000)]), (OmnichainStatus::Backfill, 99));
    assert_eq!(derive(vec![queued(0, 10_000), completed(20, 300)]), (OmnichainStatus::Backfill, 9_999));
}
