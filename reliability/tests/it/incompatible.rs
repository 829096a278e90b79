//! Scenario 5 — incompatible configs (DESIGN §2 "Compatibility", §7 "Start-up", §5):
//! - at indexer start-up: exit 3 naming the field, and nothing written (metadata rows,
//!   events and checkpoint unchanged, `updated_at` included);
//! - under a running API: the instance is reset and re-created with another chain set;
//!   the API exits 3 by itself, within 70 s with the default config refresh.

use std::time::{Duration, Instant};

use tidemark_reliability::summary;
use tidemark_testkit::{Anvil, ChainSpec, IndexerConfigBuilder, SOON, Stack, free_port};
use tidemark_traffic::{Demo, TOKEN_EVENTS};

use crate::common::{secs, traffic};

/// What must not change: both metadata rows (value and `updated_at`), the event count,
/// the checkpoints and the highest cursor.
async fn written_state(db: &mut tidemark_testkit::InstanceDb) -> String {
    let config = db.metadata("public_config").await.expect("metadata");
    let status = db.metadata("indexing_status").await.expect("metadata");
    let show = |r: Option<tidemark_testkit::MetadataRow>| r.map(|r| format!("{} @{}", r.value, r.updated_at));
    format!(
        "config {:?}; status {:?}; events {}; checkpoints {:?}; max cursor {:?}",
        show(config),
        show(status),
        db.event_count().await.expect("count"),
        db.checkpoints().await.expect("checkpoints"),
        db.max_cursor().await.expect("cursor")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_config_exits_3_at_start_up_and_writes_nothing() {
    summary::run("5a incompatible config at start-up", |rec| async move {
        let full = rec.scale().is_full();
        rec.step("indexing, then a clean stop");
        let stack = Stack::shared("tidemark_rel_incompat").await;
        traffic(&stack.demo, 8, 4).await;
        let mut db = stack.instance().await;
        let mut first = stack.spawn(&stack.config());
        stack.wait_synced(&mut db, SOON).await;
        assert_eq!(first.stop(Duration::from_secs(10)).await, 0, "clean stop");
        let before = written_state(&mut db).await;

        let mut variants: Vec<(&str, &str, IndexerConfigBuilder)> = Vec::new();
        let mut v = stack.config();
        v.chains[0].finality_depth = Some(3);
        variants.push(("finality depth 12 → 3", "finalityDepth", v));
        let mut v = stack.config();
        v.chains[0].contracts[0].events = vec![TOKEN_EVENTS[1].to_owned()];
        variants.push(("Token loses an event", "contracts[Token].events", v));
        let mut other = ChainSpec::new(31338, format!("http://127.0.0.1:{}", free_port()));
        other.contracts = stack.contracts();
        variants.push((
            "the chain replaced by another (dead endpoint)",
            "chainId",
            IndexerConfigBuilder { chains: vec![other], ..stack.config() },
        ));
        if full {
            let mut v = stack.config();
            v.chains[0].contracts[1].start_block = 5;
            variants.push(("Registry start block 0 → 5", "startBlock", v));
            let mut v = stack.config();
            // Another address that no other contract of the config uses (the registry's would
            // make the config invalid, exit 2, before compatibility is checked).
            v.chains[0].contracts[0].addresses = vec!["0x00000000000000000000000000000000000d0d0e".into()];
            variants.push(("Token address changed", "addresses", v));
            let mut v = stack.config();
            v.namespace = "other".into();
            variants.push(("namespace changed", "namespace", v));
            let mut v = stack.config();
            v.chains[0].contracts[1].end_block = Some(1_000_000);
            variants.push(("Registry gains an end block", "endBlock", v));
        }

        let mut bad = Vec::new();
        let mut slowest = Duration::ZERO;
        for (what, field, cfg) in &variants {
            rec.step(format!("start with: {what}"));
            let started = Instant::now();
            let mut p = stack.spawn(cfg);
            let code = p.proc.wait_timeout(SOON).await.and_then(|s| s.code());
            slowest = slowest.max(started.elapsed());
            let stderr = p.proc.stderr();
            if code != Some(3) {
                bad.push(format!("{what}: exit {code:?}"));
            } else if !stderr.contains(field) {
                bad.push(format!("{what}: the message does not name {field}"));
            }
            if stderr.contains("panicked") {
                bad.push(format!("{what}: panicked"));
            }
            let after = written_state(&mut db).await;
            if after != before {
                bad.push(format!("{what}: something was written: before {before} / after {after}"));
            }
        }
        rec.record(
            format!("{} incompatible configs at start-up: {}", variants.len(), variants.iter().map(|v| v.0).collect::<Vec<_>>().join("; ")),
            if bad.is_empty() {
                "each exits 3 naming the field; metadata rows (updated_at too), events, checkpoint, cursors unchanged".to_owned()
            } else {
                bad.join("; ")
            },
            bad.is_empty(),
            format!("slowest exit {} s", secs(slowest)),
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_exits_3_when_the_instance_is_recreated_for_other_chains() {
    summary::run("5b incompatible config under a running API", |rec| async move {
        let full = rec.scale().is_full();
        rec.step("indexer and API on chain 31337");
        let stack = Stack::shared("tidemark_rel_api3").await;
        traffic(&stack.demo, 6, 4).await;
        let mut db = stack.instance().await;
        let mut indexer = stack.spawn(&stack.config());
        stack.wait_synced(&mut db, SOON).await;
        // The full run keeps the default refresh (60 s); the reduced one refreshes every 2 s.
        let mut api = stack.spawn_api(if full { &[] } else { &["--config-refresh-ms", "2000"] });
        api.wait_healthy(SOON).await;

        rec.step("indexer stopped, reset --yes, indexer for chain 31338");
        assert_eq!(indexer.stop(Duration::from_secs(10)).await, 0, "clean stop");
        let (code, p) = stack.run_command(&stack.config(), &["reset", "--yes"]).await;
        assert_eq!(code, 0, "reset: {}", p.logs());
        let other = Anvil::spawn_with(&["--chain-id", "31338"]).await;
        let demo = Demo::deploy(other.url()).await.expect("deploying on 31338");
        traffic(&demo, 3, 3).await;
        let mut spec = ChainSpec::new(31338, other.url());
        spec.contracts = stack.contracts();
        let mut cfg = stack.config();
        cfg.chains = vec![spec];
        let started = Instant::now();
        let mut second = stack.spawn(&cfg);
        let limit = Duration::from_secs(70);
        let exit = api.proc.wait_timeout(limit + Duration::from_secs(5)).await;
        let took = started.elapsed();
        let code = exit.and_then(|s| s.code());
        let logs = api.proc.stderr();
        rec.record(
            format!(
                "instance reset and re-created for chain 31338 under a running API ({} config refresh)",
                if full { "default 60 s" } else { "2 s" }
            ),
            format!(
                "API exit {code:?}; the log names the chain set: {}",
                logs.contains("chainId") || logs.contains("31338")
            ),
            code == Some(3) && took <= limit && !logs.contains("panicked"),
            format!("exited {} s after the new indexer started (limit {} s)", secs(took), limit.as_secs()),
        );
        let exit = second.stop(Duration::from_secs(10)).await;
        assert_eq!(exit, 0, "second indexer exit code");
    })
    .await;
}
