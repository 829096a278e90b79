//! The indexer driven in-process through `run::run`, as an embedding application would,
//! two instances at once: each indexes its own chain, keeps its own metrics (a recorder
//! per run, not a process-wide one), and stops cleanly when its token is cancelled.

use std::time::Duration;

use crate::common::SCHEMA;
use tidemark_indexer::config::IndexerConfig;
use tidemark_testkit::{SOON, Stack, eventually, get_text};
use tokio_util::sync::CancellationToken;

/// The value of `tidemark_events_indexed_total{chain_id="…"}` in a Prometheus text.
fn events_indexed(metrics: &str, chain_id: u64) -> Option<u64> {
    let prefix = format!("tidemark_events_indexed_total{{chain_id=\"{chain_id}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_indexers_in_one_process_index_their_own_chains_and_count_their_own_events() {
    let (a, b) = tokio::join!(Stack::shared(SCHEMA), Stack::shared(SCHEMA));
    // Different amounts of events on the two chains (both are chain 31337).
    a.demo.burst(30).await.expect("burst");
    b.demo.burst(70).await.expect("burst");
    b.demo.burst(5).await.expect("burst");

    let mut running = Vec::new();
    for stack in [&a, &b] {
        let builder = stack.config();
        let config = IndexerConfig::load(&stack.write_config(&builder)).expect("a valid config");
        let token = CancellationToken::new();
        let task = tokio::spawn(tidemark_indexer::run::run(config, token.clone()));
        running.push((builder.http_url(), token, task));
    }

    for (stack, (http, _, _)) in [&a, &b].into_iter().zip(&running) {
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, SOON).await;
        let stored = stack.assert_matches_chain(&mut db).await.len() as u64;
        assert!(stored > 0);
        // Its own /metrics counts its own events only: a shared recorder would show the
        // sum of both (same chain id) here.
        eventually(SOON, format!("/metrics of {http} counting {stored} events"), async || {
            let (_, text) = get_text(&format!("{http}/metrics")).await?;
            (events_indexed(&text, stack.chain_id) == Some(stored)).then_some(())
        })
        .await;
    }

    for (_, token, task) in running {
        token.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("run returns within 10 s of the cancellation")
            .expect("run does not panic");
        assert!(result.is_ok(), "run ended with {result:?}");
    }
}
