//! Scenario 13 — provider webhooks (DESIGN §8 "Webhook ingestion"): the provider
//! simulator pushes every new block (Alchemy's format) shuffled in a window of 20, 20 %
//! duplicated, 20 % dropped, while the indexer is down for a while (30 s in the full run:
//! kill -9, then started again; the simulator retries like the provider). Polling every
//! 30 s is the safety net. The events must equal the canonical chain's logs, and no block
//! may be stored before its predecessor (events in cursor order have non-decreasing
//! block numbers).

use std::time::Duration;

use alloy::providers::Provider as _;
use tidemark_reliability::summary;
use tidemark_testkit::{SOON, Stack, eventually};
use tidemark_traffic::webhook_sim::{SimOptions, WebhookFormat, run as simulate};
use tokio_util::sync::CancellationToken;

use crate::common::traffic;

const KEY: &str = "whsec_alchemy-signing-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_duplicated_dropped_deliveries_through_an_outage_store_the_canonical_chain() {
    summary::run("13 provider webhooks", |rec| async move {
        let blocks = rec.scale().pick(60, 300);
        let outage = Duration::from_secs(rec.scale().pick(5, 30));
        let stack = Stack::shared("tidemark_rel_webhooks").await;
        traffic(&stack.demo, 3, 2).await;
        let mut cfg = stack.config();
        let chain = cfg.chains.remove(0).poll_interval_ms(30_000).webhook("alchemy", KEY);
        let cfg = cfg.chain(chain);
        let mut indexer = stack.spawn(&cfg);
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, SOON).await;

        let head = stack.demo.provider().get_block_number().await.expect("head");
        let mut opts = SimOptions::new(
            stack.anvil.url(),
            format!("{}/v1/webhooks/alchemy/31337", cfg.http_url()),
            WebhookFormat::Alchemy,
            KEY,
        );
        opts.from_block = Some(head + 1);
        opts.until_block = Some(head + blocks);
        opts.shuffle_window = 20;
        opts.duplicate = 0.2;
        opts.drop = 0.2;
        opts.seed = Some(tidemark_reliability::seed());
        // Retries cover the outage (backoff capped at 5 s).
        opts.max_attempts = 40;
        let stop = CancellationToken::new();
        let sim = tokio::spawn(simulate(opts, stop.clone()));

        rec.step(format!("{blocks} blocks of traffic; the indexer down {} s a third of the way", outage.as_secs()));
        let third = blocks / 3;
        traffic(&stack.demo, third, 2).await;
        indexer.proc.kill9();
        let during = tokio::spawn({
            let demo = stack.demo.clone();
            async move { traffic(&demo, third, 2).await }
        });
        tokio::time::sleep(outage).await;
        during.await.expect("traffic during the outage");
        indexer = stack.spawn(&cfg);
        traffic(&stack.demo, blocks - 2 * third, 2).await;

        rec.step("the simulator delivers the rest; the index catches up");
        let summary = tokio::time::timeout(Duration::from_secs(180), sim)
            .await
            .expect("the simulator finishes")
            .expect("simulator task")
            .expect("simulator");
        stack.wait_synced(&mut db, Duration::from_secs(90)).await;
        let events = stack.assert_matches_chain(&mut db).await;
        let by_cursor = db.events_by_cursor().await.expect("events");
        let in_order = by_cursor.windows(2).all(|w| w[0].block_number <= w[1].block_number);
        let status = eventually(SOON, "webhook status", async || {
            let (_, body) = indexer.get_json("/status").await?;
            let w = body["realtimeProjection"]["snapshot"]["omnichainSnapshot"]["chains"]["31337"]["webhooks"].clone();
            (!w.is_null()).then_some(w)
        })
        .await;
        let released = status["released"].as_u64().unwrap_or(0);
        rec.require(
            "shuffled (window 20), 20 % duplicated, 20 % dropped, the indexer killed and down for a while",
            format!(
                "{} events equal the chain's; blocks stored in order: {in_order}; {released} blocks released after a delivery",
                events.len()
            ),
            in_order && released > 0 && summary.dropped > 0 && summary.duplicates_sent > 0,
            format!(
                "{} blocks, {} deliveries sent ({} duplicates, {} dropped, {} retries, {} given up), down {} s; status {status}",
                summary.blocks,
                summary.sent,
                summary.duplicates_sent,
                summary.dropped,
                summary.retries,
                summary.given_up,
                outage.as_secs()
            ),
        );
        stop.cancel();
        assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
    })
    .await;
}
