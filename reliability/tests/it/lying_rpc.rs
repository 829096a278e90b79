//! Scenario 8 — lagging and lying RPC backends (invariant 9: an RPC answer is evidence,
//! not truth). The indexer reads the chain through the fault-injecting proxy while traffic
//! runs; a share of the answers comes from a node lagging 3 blocks behind, or lies (logs
//! out of range, logs twice, another block hash, `null` headers, empty answers), or the
//! only live endpoint is a fresh node of another chain. Each ends with the stored events
//! equal to the canonical chain, no invented reorg (no `removed` journal entry), no
//! restart (no writer term ended, the process still running), and the rejected answers
//! counted in `tidemark_rpc_bad_answers_total` and logged.

use std::time::{Duration, Instant};

use tidemark_reliability::summary::{self, Recorder};
use tidemark_testkit::{Anvil, Faults, Indexer, RpcProxy, SOON, Stack, get_json};

use crate::common::{secs, traffic};

/// `tidemark_rpc_bad_answers_total` summed over endpoints for `kind`.
async fn rejected(indexer: &Indexer, kind: &str) -> u64 {
    let Ok(r) = reqwest::get(format!("{}/metrics", indexer.http)).await else { return 0 };
    let text = r.text().await.unwrap_or_default();
    tidemark_testkit::metric_sum(&text, "tidemark_rpc_bad_answers_total", &format!("kind=\"{kind}\"")) as u64
}

/// Runs traffic at the head for `duration` with `faults` on the proxy, then checks and
/// records the outcome.
async fn faulty_backend(rec: &Recorder, name: &str, faults: Faults, kind: &str) {
    let duration = rec.scale().pick(Duration::from_secs(8), Duration::from_secs(120));
    rec.step(format!("{name}: indexing through the proxy under traffic for {} s", duration.as_secs()));
    let stack = Stack::shared("tidemark_rel_lying").await;
    traffic(&stack.demo, 10, 3).await;
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    proxy.set_faults(faults);
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    cfg.chains[0].finality_depth = Some(4);
    cfg.chains[0].poll_interval_ms = Some(200);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    let started = Instant::now();
    let mut blocks = 0;
    while started.elapsed() < duration {
        traffic(&stack.demo, 2, 2).await;
        blocks += 2;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Faults are rolled per request, and a loaded machine follows in fewer, larger steps:
    // more traffic until the proxy has altered a few answers that mattered.
    for _ in 0..60 {
        if proxy.injected().total() >= 3 {
            break;
        }
        traffic(&stack.demo, 2, 2).await;
        blocks += 2;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let settle = stack.wait_synced(&mut db, SOON).await;
    let cmp = stack.compare(&mut db).await;
    let removed = db.journal().await.expect("journal").iter().filter(|e| e.kind == "removed").count();
    let stderr = indexer.proc.stderr();
    let restarted = stderr.contains("writer term ended") || !indexer.proc.is_running();
    let count = rejected(&indexer, kind).await;
    let logged = stderr.contains("rpc answer rejected");
    let injected = proxy.injected();
    rec.require(
        format!("{name}: {blocks} blocks of traffic"),
        format!(
            "{}; {removed} removed entries; {}; {count} `{kind}` answers rejected, {}",
            if cmp.is_exact() { "stored = canonical".to_owned() } else { format!("{cmp:?}") },
            if restarted { "RESTARTED" } else { "no restart" },
            if logged { "logged" } else { "NOT logged" },
        ),
        cmp.is_exact() && removed == 0 && !restarted && count > 0 && logged,
        format!("{} events, settled in {} s; injected {injected:?}", cmp.stored, secs(settle)),
    );
    assert_eq!(indexer.stop(Duration::from_secs(10)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_lagging_three_blocks() {
    summary::run("8a lagging RPC backend", |rec| async move {
        faulty_backend(
            &rec,
            "30 % of answers from a node 3 blocks behind",
            Faults { lagging: Some((0.3, 3)), ..Faults::default() },
            "not-yet",
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_backends() {
    summary::run("8b lying RPC backend", |rec| async move {
        let modes: [(&str, Faults, &str); 5] = [
            (
                "30 % of log answers with a log out of range",
                Faults { out_of_range: 0.3, ..Faults::default() },
                "out-of-range",
            ),
            (
                "30 % of log answers with a log twice",
                Faults { duplicates: 0.3, ..Faults::default() },
                "duplicate",
            ),
            (
                "30 % of log answers with another block hash",
                Faults { hash_mismatch: 0.3, ..Faults::default() },
                "hash-mismatch",
            ),
            ("30 % of headers null", Faults { null_headers: 0.3, ..Faults::default() }, "not-yet"),
            ("30 % of log answers empty", Faults { empty_logs: 0.3, ..Faults::default() }, "incomplete"),
        ];
        for (name, faults, kind) in modes {
            faulty_backend(&rec, name, faults, kind).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_failover_node_of_another_chain() {
    summary::run("8c failover to a fresh node", |rec| async move {
        rec.step("indexing through endpoint A");
        let stack = Stack::shared("tidemark_rel_failover").await;
        traffic(&stack.demo, 10, 3).await;
        let proxy = RpcProxy::start(stack.anvil.url()).await;
        let fresh = Anvil::spawn_with(&["--block-time", "1"]).await;
        let mut cfg = stack.config();
        cfg.chains[0].rpc_url = None;
        cfg.chains[0].rpc_urls = Some(vec![proxy.url().to_owned(), fresh.url().to_owned()]);
        cfg.chains[0].finality_depth = Some(4);
        cfg.chains[0].poll_interval_ms = Some(200);
        let mut indexer = stack.spawn(&cfg);
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, SOON).await;
        let before = db.event_count().await.expect("count");

        rec.step("endpoint A down; B is a new anvil of another chain");
        proxy.set_down(true);
        let outage = rec.scale().pick(Duration::from_secs(6), Duration::from_secs(30));
        let started = Instant::now();
        let mut warned = false;
        while started.elapsed() < outage {
            traffic(&stack.demo, 1, 2).await;
            if let Some((_, body)) = get_json(&format!("{}/health", indexer.http)).await {
                warned |= body["warnings"].as_array().is_some_and(|w| {
                    w.iter().any(|w| {
                        w.as_str().is_some_and(|w| {
                            w.starts_with("rpc-endpoint-wrong-chain:")
                                || w.starts_with("rpc-endpoint-behind:")
                        })
                    })
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let after = db.event_count().await.expect("count");
        let removed = db.journal().await.expect("journal").iter().filter(|e| e.kind == "removed").count();
        rec.require(
            format!("{} s with only the fresh node answering", outage.as_secs()),
            format!(
                "{before} events before, {after} during; {removed} removed entries; /health {}",
                if warned { "names rpc[1] as behind or on another chain" } else { "SAYS NOTHING of rpc[1]" }
            ),
            after == before && removed == 0 && warned && indexer.proc.is_running(),
            "",
        );

        rec.step("endpoint A back");
        proxy.set_down(false);
        let settle = stack.wait_synced(&mut db, SOON).await;
        let cmp = stack.compare(&mut db).await;
        let removed = db.journal().await.expect("journal").iter().filter(|e| e.kind == "removed").count();
        rec.require(
            "A back: catching up",
            format!(
                "{}; {removed} removed entries",
                if cmp.is_exact() { "stored = canonical".to_owned() } else { format!("{cmp:?}") }
            ),
            cmp.is_exact() && removed == 0,
            format!("settled in {} s", secs(settle)),
        );
        assert_eq!(indexer.stop(Duration::from_secs(10)).await, 0);
    })
    .await;
}
