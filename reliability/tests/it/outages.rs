//! Scenario 3 — outages, with times to detect and to recover:
//! - the indexer down while the API serves (`/status` and `/health` 200, then the
//!   `status-stale` warning, judged on the database clock);
//! - the RPC node unresponsive (anvil frozen with SIGSTOP): requests time out instead of
//!   hanging, the indexer keeps running and reports `rpc-unreachable:<chainId>`, and
//!   recovers by itself after SIGCONT;
//! - the database down while both services run (a private cluster, `pg_ctl stop -m fast`,
//!   then start): both keep running, both report `database-unreachable`, both recover by
//!   themselves, and nothing is lost.

use std::time::{Duration, Instant};

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use tidemark_reliability::summary;

use crate::common::{Frozen, Traffic, private_with_services, record_recovery, secs, traffic};
use tidemark_testkit::{HealthView, SOON, Stack};

/// Polls `f` every 100 ms until it returns `Some`; `None` after `timeout`.
async fn poll<T>(timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if started.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has(h: &Option<HealthView>, reason: &str) -> bool {
    h.as_ref().is_some_and(|h| h.reasons.iter().any(|r| r == reason))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_while_the_indexer_is_down() {
    summary::run("3a outage: indexer down", |rec| async move {
        let full = rec.scale().is_full();
        rec.step("indexer and API up");
        let stack = Stack::shared("tidemark_rel_idxdown").await;
        traffic(&stack.demo, 12, 4).await;
        let mut indexer = stack.spawn(&stack.config());
        let api = stack.spawn_api(&[]);
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, SOON).await;
        api.wait_healthy(SOON).await;
        let stored = db.event_count().await.expect("count");

        rec.step("kill -9 of the indexer");
        indexer.proc.kill9();
        let killed = Instant::now();
        let status = api.get("/status").await;
        let health = api.health().await;
        let page = api.get("/v1/events?limit=1000").await;
        let served = page.as_ref().and_then(|(_, v)| v["items"].as_array().map(Vec::len)).unwrap_or(0);
        let ok = status.as_ref().is_some_and(|s| s.0 == 200)
            && health.as_ref().is_some_and(|h| h.code == 200)
            && served as i64 == stored.min(1000);
        rec.record(
            "indexer killed; API /status, /health, /v1/events",
            format!(
                "/status {:?}, /health {:?}, /v1/events {served} of {stored} events",
                status.map(|s| s.0),
                health.map(|h| h.code)
            ),
            ok,
            "",
        );

        rec.step("waiting for the status-stale warning");
        if !full {
            // The reduced run ages the snapshot instead of waiting 30 s: staleness is judged
            // on the database clock, from `updated_at`.
            diesel::sql_query(
                "UPDATE tidemark.metadata SET updated_at = now() - interval '31 seconds'
                  WHERE instance_schema = $1 AND key = 'indexing_status'",
            )
            .bind::<Text, _>(&stack.schema)
            .execute(db.conn())
            .await
            .expect("backdating the status");
        }
        let stale = poll(Duration::from_secs(if full { 60 } else { 20 }), async || {
            let h = api.health().await?;
            h.warnings.iter().any(|w| w == "status-stale").then_some(h)
        })
        .await;
        let stale_after = killed.elapsed();
        let status = api.get("/status").await;
        let status_warns = status.as_ref().is_some_and(|(c, v)| {
            *c == 200 && v["warnings"].as_array().is_some_and(|w| w.iter().any(|x| x == "status-stale"))
        });
        rec.record(
            if full {
                "indexer down for 30 s (real time)"
            } else {
                "status row backdated by 31 s (database clock)"
            },
            match &stale {
                Some(h) => format!(
                    "/health {} with warning status-stale; /status 200 with it: {status_warns}",
                    h.code
                ),
                None => "no status-stale warning".into(),
            },
            stale.as_ref().is_some_and(|h| h.code == 200) && status_warns,
            format!("warning after {} s", secs(stale_after)),
        );

        rec.step("indexer restarted");
        let restarted = Instant::now();
        let mut indexer = stack.spawn(&stack.config());
        let fresh = poll(SOON, async || {
            let h = api.health().await?;
            (h.code == 200 && h.warnings.is_empty()).then_some(())
        })
        .await;
        rec.record(
            "indexer restarted",
            if fresh.is_some() { "warning cleared, API healthy" } else { "warning not cleared" },
            fresh.is_some(),
            format!("cleared after {} s", secs(restarted.elapsed())),
        );

        // Invariant 4: while the indexer runs, the status row is at most ~1 s old (sampled
        // on the database clock for 6 s; up to 4 s allows for a busy machine, while a
        // status loop that stopped shows up as an age growing past 4 s).
        rec.step("status row age while the indexer runs");
        let mut oldest = 0f64;
        let sampling = Instant::now();
        while sampling.elapsed() < Duration::from_secs(6) {
            let row = db.metadata("indexing_status").await.expect("metadata");
            oldest = oldest.max(row.map_or(f64::INFINITY, |r| r.age_secs));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rec.record(
            "status row age sampled for 6 s while the indexer runs (invariant 4)",
            format!("oldest {oldest:.2} s"),
            oldest <= 4.0,
            "",
        );
        let exit = indexer.stop(Duration::from_secs(10)).await;
        assert_eq!(exit, 0, "indexer exit code");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_rpc_node_times_out_and_the_indexer_recovers() {
    summary::run("3b outage: RPC unresponsive", |rec| async move {
        let pause = Duration::from_secs(rec.scale().pick(8, 30));
        rec.step("indexer following");
        let stack = Stack::shared("tidemark_rel_rpcdown").await;
        traffic(&stack.demo, 10, 4).await;
        let mut cfg = stack.config();
        cfg.chains[0].request_timeout_ms = Some(500);
        let mut indexer = stack.spawn(&cfg);
        let mut db = stack.instance().await;
        stack.wait_synced(&mut db, SOON).await;
        let id = stack.chain_id;
        let reason = format!("rpc-unreachable:{id}");

        rec.step(format!("anvil frozen (SIGSTOP) for {} s", pause.as_secs()));
        let frozen = Frozen::freeze(stack.anvil.pid());
        let stopped = Instant::now();
        let mut detected: Option<Duration> = None;
        let mut slowest = Duration::ZERO;
        let mut unanswered = 0;
        while stopped.elapsed() < pause {
            let asked = Instant::now();
            let h = indexer.health().await;
            slowest = slowest.max(asked.elapsed());
            if h.is_none() {
                unanswered += 1;
            }
            if detected.is_none() && has(&h, &reason) && h.as_ref().is_some_and(|h| h.code == 503) {
                detected = Some(stopped.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let running = indexer.proc.is_running();
        frozen.thaw();
        let thawed = Instant::now();
        rec.record(
            format!("anvil frozen {} s (request_timeout_ms 500)", pause.as_secs()),
            format!(
                "indexer running: {running}; /health 503 {reason}: {}; /health unanswered {unanswered} times",
                detected.is_some()
            ),
            running && detected.is_some() && unanswered == 0,
            format!(
                "reported after {} s; slowest /health {} ms",
                detected.map_or("-".into(), secs),
                slowest.as_millis()
            ),
        );

        rec.step("anvil thawed (SIGCONT)");
        let recovered = poll(SOON, async || {
            let h = indexer.health().await?;
            (h.code == 200).then_some(())
        })
        .await;
        let recovered_after = thawed.elapsed();
        traffic(&stack.demo, 5, 4).await;
        let synced = stack.wait_synced(&mut db, SOON).await;
        let c = stack.compare(&mut db).await;
        rec.record(
            "anvil thawed, new blocks",
            format!(
                "recovered without restart: {}; missing {}, duplicated {}",
                recovered.is_some(),
                c.missing,
                c.duplicated
            ),
            recovered.is_some() && c.is_exact() && indexer.proc.is_running(),
            format!("/health 200 after {} s; synced {} s later", secs(recovered_after), secs(synced)),
        );
        let exit = indexer.stop(Duration::from_secs(10)).await;
        assert_eq!(exit, 0, "indexer exit code");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_survive_a_database_outage() {
    summary::run("3c outage: database down", |rec| async move {
        let full = rec.scale().is_full();
        rec.step("private PostgreSQL, indexer and API up");
        let (mut stack, mut indexer, mut api) = private_with_services("tidemark_rel_dbdown").await;

        rec.step("pg_ctl stop -m fast");
        let load = Traffic::start(&stack.demo, 4, 100..300);
        stack.pg().stop().await;
        let down_at = Instant::now();
        let (mut idx_seen, mut api_seen) = (None, None);
        let mut status_codes = Vec::new();
        let hold = if full { Duration::from_secs(30) } else { Duration::ZERO };
        let deadline = Duration::from_secs(40);
        while down_at.elapsed() < deadline && (idx_seen.is_none() || api_seen.is_none() || down_at.elapsed() < hold) {
            if idx_seen.is_none() && has(&indexer.health().await, "database-unreachable") {
                idx_seen = Some(down_at.elapsed());
            }
            if api_seen.is_none() && has(&api.health().await, "database-unreachable") {
                api_seen = Some(down_at.elapsed());
                status_codes.push(api.get("/status").await.map_or(0, |s| s.0));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let both_running = indexer.proc.is_running() && api.proc.is_running();
        let down_for = down_at.elapsed();
        rec.record(
            format!("database stopped for {} s under traffic", down_for.as_secs()),
            format!(
                "both running: {both_running}; database-unreachable on indexer: {}, on API: {}; API /status during the outage: {status_codes:?}",
                idx_seen.is_some(),
                api_seen.is_some()
            ),
            both_running && idx_seen.is_some() && api_seen.is_some() && status_codes.iter().all(|c| *c == 200),
            format!(
                "reported after: indexer {} s, API {} s",
                idx_seen.map_or("-".into(), secs),
                api_seen.map_or("-".into(), secs)
            ),
        );

        rec.step("pg_ctl start");
        stack.pg().restart().await;
        let up_at = Instant::now();
        let (mut idx_back, mut api_back) = (None, None);
        while up_at.elapsed() < Duration::from_secs(60) && (idx_back.is_none() || api_back.is_none()) {
            if idx_back.is_none()
                && indexer.health().await.is_some_and(|h| h.code == 200 && h.role.as_deref() == Some("writer"))
            {
                idx_back = Some(up_at.elapsed());
            }
            if api_back.is_none() && api.health().await.is_some_and(|h| h.code == 200) {
                api_back = Some(up_at.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sent = load.stop().await;
        record_recovery(
            &rec,
            &stack,
            "database started again; services left alone",
            (idx_back, api_back),
            sent,
            Some(up_at),
        )
        .await;
        let exit = indexer.stop(Duration::from_secs(10)).await;
        assert_eq!(exit, 0, "indexer exit code");
    })
    .await;
}
