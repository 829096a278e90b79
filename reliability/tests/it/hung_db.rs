//! Scenario 3d — a hung PostgreSQL: every process of the cluster `SIGSTOP`ped (sockets
//! open, packets acknowledged by the kernel, nothing answers). Both services must report
//! `database-unreachable` within 15 s and recover by themselves after `SIGCONT`, with
//! nothing lost.

use std::time::{Duration, Instant};

use tidemark_reliability::summary;

use crate::common::{Traffic, private_with_services, record_recovery, secs};
use tidemark_testkit::HealthView;

fn unreachable(h: &Option<HealthView>) -> bool {
    h.as_ref().is_some_and(|h| h.reasons.iter().any(|r| r == "database-unreachable"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_survive_a_hung_database() {
    summary::run("3d outage: database hung (SIGSTOP)", |rec| async move {
        rec.step("private PostgreSQL, indexer and API up");
        let (mut stack, mut indexer, mut api) = private_with_services("tidemark_rel_dbhung").await;

        rec.step("SIGSTOP every process of the cluster");
        let load = Traffic::start(&stack.demo, 4, 100..300);
        let frozen = stack.pg().freeze();
        let stopped = frozen.processes();
        let down_at = Instant::now();
        let (mut idx_seen, mut api_seen) = (None, None);
        while down_at.elapsed() < Duration::from_secs(20) && (idx_seen.is_none() || api_seen.is_none()) {
            if idx_seen.is_none() && unreachable(&indexer.health().await) {
                idx_seen = Some(down_at.elapsed());
            }
            if api_seen.is_none() && unreachable(&api.health().await) {
                api_seen = Some(down_at.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let limit = Duration::from_secs(15);
        let running = indexer.proc.is_running() && api.proc.is_running();
        rec.record(
            format!("{stopped} PostgreSQL processes stopped under traffic"),
            format!(
                "both running: {running}; database-unreachable within 15 s on indexer: {}, on API: {}",
                idx_seen.is_some_and(|d| d < limit),
                api_seen.is_some_and(|d| d < limit)
            ),
            running && idx_seen.is_some_and(|d| d < limit) && api_seen.is_some_and(|d| d < limit),
            format!(
                "reported after: indexer {} s, API {} s",
                idx_seen.map_or("-".into(), secs),
                api_seen.map_or("-".into(), secs)
            ),
        );

        rec.step("SIGCONT");
        frozen.thaw();
        let up_at = Instant::now();
        let (mut idx_back, mut api_back) = (None, None);
        while up_at.elapsed() < Duration::from_secs(60) && (idx_back.is_none() || api_back.is_none()) {
            if idx_back.is_none()
                && indexer
                    .health()
                    .await
                    .is_some_and(|h| h.code == 200 && h.role.as_deref() == Some("writer"))
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
            "processes continued; services left alone",
            (idx_back, api_back),
            sent,
            None,
        )
        .await;
        assert_eq!(indexer.stop(Duration::from_secs(10)).await, 0, "indexer exit code");
    })
    .await;
}
