//! Clock honesty: the API projects the status and judges staleness on the database's
//! clock, so a host clock 30 s off the database's changes no verdict. The skew is real:
//! the binary runs under libfaketime (Debian's `faketime`, which `deploy/test.sh`
//! installs).

use std::time::{SystemTime, UNIX_EPOCH};

use tidemark_db_client::test_utils::fixtures::{public_config, seeded_instance};
use tidemark_db_client::test_utils::metadata::{write_indexing_status, write_public_config};
use tidemark_shared_types::{BlockRef, ChainIndexingConfig, ChainSnapshot, IndexingStatus};

use crate::support::{ApiProcess, SCHEMA, schema};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn at(number: u64, timestamp: u64) -> BlockRef {
    BlockRef { number, timestamp, hash: format!("0x{number:064x}") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_clock_30_s_ahead_of_the_database_changes_no_verdict() {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: install Debian's faketime (deploy/test.sh does)"
    );
    // Control: the library really moves a process's clock.
    let out = std::process::Command::new("date")
        .arg("+%s")
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME", "+30s")
        .output()
        .expect("date");
    let shifted: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("date +%s");
    let real = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    assert!(shifted >= real + 25, "libfaketime shifts the clock: {shifted} vs {real}");

    let (test_db, pool, mut conn) = seeded_instance(&schema(), &[]).await;
    write_public_config(&mut conn, &public_config(SCHEMA, &[31337])).await.expect("config");
    let raw = pool.connect_raw().await.expect("raw connection");
    let row = raw.query_one("SELECT extract(epoch FROM now())::bigint", &[]).await.expect("now");
    let db_now = u64::try_from(row.get::<_, i64>(0)).expect("positive");
    // Indexed to 5 s before the database's now.
    let chain = ChainSnapshot::Following {
        stalled: None,
        webhooks: None,
        progress: None,
        sources: Vec::new(),
        config: ChainIndexingConfig::LeftBounded { start_block: at(0, db_now - 100) },
        latest_indexed_block: at(95, db_now - 5),
        latest_known_block: at(95, db_now - 5),
    };
    let status = IndexingStatus::derive([(31337, chain)].into_iter().collect(), db_now).expect("status");
    write_indexing_status(&mut conn, &schema(), &status).await.expect("status");

    let api = ApiProcess::spawn_env(
        &[
            ("DATABASE_URL", &test_db.url),
            ("TIDEMARK_SCHEMA", SCHEMA),
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME", "+30s"),
        ],
        &[],
    )
    .await;
    let mut healthy = false;
    for _ in 0..100 {
        if api.get("/health").await.status == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(healthy, "{}", api.logs());
    let health = api.get("/health").await;
    assert_eq!(health.body["warnings"], serde_json::json!([]), "no status-stale from a skewed host clock");
    let realtime = api.get("/v1/realtime?maxWorstCaseDistance=20").await;
    assert_eq!(realtime.status, 200, "{}", realtime.body);
    let distance = realtime.body["worstCaseDistance"].as_u64().expect("worstCaseDistance");
    assert!((5..=15).contains(&distance), "measured on the database's clock: {distance}");
    let status = api.get("/status").await;
    let distance = status.body["realtimeProjection"]["worstCaseDistance"].as_u64().expect("distance");
    assert!((5..=15).contains(&distance), "/status on the database's clock too: {distance}");
}
