//! Health and status through the instance's life, in-process against a real database
//! (acceptance 1, 2, 4 and 7).

use std::time::Duration;
use tidemark_db_client::test_utils::eventually;
use tidemark_db_client::test_utils::fixtures::{
    TestEvent, backdate_metadata, following_status, insert_event, migrated_instance, public_config,
    seeded_instance,
};
use tidemark_db_client::test_utils::metadata::{
    INDEXING_STATUS_KEY, write_indexing_status, write_public_config,
};
use tidemark_db_client::test_utils::proxy::TcpProxy;
use tidemark_db_client::test_utils::{TestDb, authority};

use tidemark_api::clock::Clock;

use crate::support::{SCHEMA, TestApi, fast_config, schema};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_database_and_the_instance_without_a_restart() {
    let test_db = TestDb::new().await;
    // The database is unreachable when the API starts: a proxy that refuses.
    let proxy = TcpProxy::start(authority(&test_db.url), false).await;
    let api = TestApi::start(fast_config(&proxy.url_for(&test_db.url))).await;

    let live = api.get("/live").await;
    assert_eq!(live.status, 200);
    let health = api.get("/health").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.body["status"], "unhealthy");
    assert_eq!(health.body["reasons"], serde_json::json!(["database-unreachable"]));
    assert_eq!(health.header("cache-control"), "no-store");
    let status = api.get("/status").await;
    assert_eq!(status.status, 503);
    assert_eq!(status.body["responseCode"], "error");
    assert_eq!(api.get("/config").await.status, 503);

    // The database comes up (nothing migrated yet).
    proxy.set_up(true);
    eventually(Duration::from_secs(15), "uninitialized", || async {
        api.reasons().await == ["uninitialized"]
    })
    .await;

    // The indexer stores its config.
    let pool = migrated_instance(&test_db.url, &schema()).await;
    let mut conn = pool.get().await.expect("conn");
    write_public_config(&mut conn, &public_config(SCHEMA, &[31337])).await.expect("config");
    eventually(Duration::from_secs(15), "no-status", || async { api.reasons().await == ["no-status"] }).await;
    let config = api.get("/config").await;
    assert_eq!(config.status, 200);
    assert_eq!(config.body["instanceSchema"], SCHEMA);

    // And its first status snapshot.
    write_indexing_status(&mut conn, &schema(), &following_status(&[(31337, 40, 41)])).await.expect("status");
    eventually(Duration::from_secs(15), "healthy", || async { api.get("/health").await.status == 200 }).await;
    let health = api.get("/health").await;
    assert_eq!(health.body, serde_json::json!({"status": "ok", "warnings": []}));

    let status = api.get("/status").await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["responseCode"], "ok");
    assert_eq!(status.body["config"]["chains"][0]["chainId"], 31337);
    assert_eq!(status.body["warnings"], serde_json::json!([]));
    let projection = &status.body["realtimeProjection"];
    assert_eq!(projection["snapshot"]["omnichainSnapshot"]["omnichainStatus"], "omnichain-following");
    assert!(
        projection["projectedAt"].as_u64().is_some() && projection["worstCaseDistance"].as_u64().is_some()
    );
    assert_eq!(status.header("cache-control"), "public, max-age=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_indexer_leaves_everything_served_with_a_stale_warning() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[(31337, 40, 41)]).await;
    let proxy = TcpProxy::start(authority(&test_db.url), true).await;
    insert_event(&mut conn, &schema(), &TestEvent::transfer(31337, 7, 0, 1, 2)).await.expect("event");

    let api = TestApi::start(fast_config(&proxy.url_for(&test_db.url))).await;
    eventually(Duration::from_secs(15), "healthy", || async { api.get("/health").await.status == 200 }).await;

    // The indexer stopped 31 s ago (by the database clock, with the default threshold).
    backdate_metadata(&mut conn, &schema(), INDEXING_STATUS_KEY, 31.0).await.expect("backdate");
    eventually(Duration::from_secs(15), "stale", || async {
        api.get("/health").await.body["warnings"] == serde_json::json!(["status-stale"])
    })
    .await;
    let health = api.get("/health").await;
    assert_eq!(health.status, 200, "{:?}", health.body);
    let status = api.get("/status").await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["warnings"], serde_json::json!(["status-stale"]));
    let events = api.get("/v1/events").await;
    assert_eq!(events.status, 200);
    assert_eq!(events.body["items"].as_array().map(Vec::len), Some(1));

    // The database goes away too: /health says so, /status still serves the cache.
    proxy.set_up(false);
    eventually(Duration::from_secs(15), "unreachable", || async {
        api.reasons().await.contains(&"database-unreachable".to_owned())
    })
    .await;
    assert_eq!(api.get("/status").await.status, 200);
    let events = api.get("/v1/events").await;
    assert_eq!(events.status, 503);
    assert_eq!(events.body["error"]["code"], "database_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_for_other_chains_is_not_served() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    write_public_config(&mut conn, &public_config(SCHEMA, &[1, 10])).await.expect("config");
    write_indexing_status(&mut conn, &schema(), &following_status(&[(1, 5, 5), (137, 5, 5)]))
        .await
        .expect("status");

    let api = TestApi::start(fast_config(&test_db.url)).await;
    eventually(Duration::from_secs(15), "incompatible", || async { api.reasons().await == ["incompatible"] })
        .await;
    let status = api.get("/status").await;
    assert_eq!(status.status, 503);
    assert_eq!(status.body, serde_json::json!({"responseCode": "error", "reasons": ["incompatible"]}));
    let realtime = api.get("/v1/realtime").await;
    assert_eq!(realtime.status, 503);
    assert!(realtime.body["worstCaseDistance"].is_null());
    assert!(realtime.body["error"].as_str().is_some_and(|e| e.contains("incompatible")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_served_from_the_cache() {
    let (test_db, _pool, _conn) = seeded_instance(&schema(), &[(31337, 40, 41)]).await;
    // Default refresh intervals (config 60 s, status and epoch summary 1 s).
    let api = TestApi::start(tidemark_db_client::DbClientConfig::new(&test_db.url, SCHEMA)).await;
    eventually(Duration::from_secs(15), "healthy", || async { api.get("/health").await.status == 200 }).await;

    let before = api.db.queries_executed();
    let started = std::time::Instant::now();
    for _ in 0..1000 {
        assert_eq!(api.get("/status").await.status, 200);
    }
    let elapsed = started.elapsed();
    let used = api.db.queries_executed() - before;
    eprintln!("1,000 /status requests in {elapsed:?} used {used} SQL statements");
    // Only the background refreshes run, once a second: the status (two statements) and
    // the epoch summary (one).
    assert!(used <= 3 * (elapsed.as_secs() + 2), "{used} statements in {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_compares_the_distance_with_the_threshold() {
    let (test_db, _pool, _conn) = seeded_instance(&schema(), &[(31337, 40, 41)]).await;
    // The slowest chain is indexed up to the fixture's block timestamp 1_795_400_040;
    // "now" is fixed 100 s later.
    let clock = Clock::fixed(1_795_400_140);
    let api = TestApi::start_with_clock(fast_config(&test_db.url), clock.clone()).await;
    eventually(Duration::from_secs(15), "healthy", || async { api.get("/health").await.status == 200 }).await;

    let r = api.get("/v1/realtime?maxWorstCaseDistance=99").await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.body["worstCaseDistance"], 100);
    assert_eq!(r.body["slowestChainIndexingCursor"], 1_795_400_040u64);
    assert!(r.body["error"].as_str().is_some_and(|e| e.contains("100 s behind")), "{:?}", r.body);
    let ok = api.get("/v1/realtime?maxWorstCaseDistance=100").await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["maxWorstCaseDistance"], 100);
    assert!(ok.body.get("error").is_none());
    // The default threshold is 60 s: 100 s behind fails it, 30 s behind passes.
    let default = api.get("/v1/realtime").await;
    assert_eq!((default.status.as_u16(), default.body["maxWorstCaseDistance"].as_u64()), (503, Some(60)));
    clock.set(1_795_400_070);
    assert_eq!(api.get("/v1/realtime").await.status, 200);
    // /status projects to the same clock.
    let status = api.get("/status").await;
    assert_eq!(status.body["realtimeProjection"]["worstCaseDistance"], 30, "{:?}", status.body);
    assert_eq!(api.get("/v1/realtime?maxWorstCaseDistance=-1").await.status, 400);
}
