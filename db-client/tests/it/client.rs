//! `DbClient` against a real PostgreSQL: lifecycle, compatibility, staleness, caching.

use std::time::Duration;

use tidemark_db_client::test_utils::fixtures::{
    backdate_metadata, following_status, migrated_instance, public_config, seeded_instance,
};
use tidemark_db_client::test_utils::metadata::{
    INDEXING_STATUS_KEY, PUBLIC_CONFIG_KEY, delete_metadata, write_indexing_status, write_public_config,
};
use tidemark_db_client::test_utils::proxy::TcpProxy;
use tidemark_db_client::test_utils::{TestDb, authority, eventually};
use tidemark_db_client::{DbClient, DbClientConfig, DbError, Reason};
use tidemark_shared_types::SchemaName;

use crate::SOON;

const SCHEMA: &str = "tidemark_demo";

/// Settings with intervals short enough for tests.
pub(crate) fn fast(url: &str) -> DbClientConfig {
    let mut c = DbClientConfig::new(url, SCHEMA);
    c.config_refresh = Duration::from_millis(200);
    c.config_refresh_while_missing = Duration::from_millis(100);
    c.status_refresh = Duration::from_millis(100);
    c.retry_max = Duration::from_millis(200);
    c.unreachable_after = Duration::from_secs(1);
    c.pool.connect_timeout = Duration::from_secs(1);
    c.pool.checkout_timeout = Duration::from_secs(1);
    c
}

fn schema() -> SchemaName {
    SchemaName::new(SCHEMA).expect("valid")
}

fn reasons(db: &DbClient) -> Vec<Reason> {
    db.health().reasons
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_schema_name_is_rejected_before_any_sql() {
    // Nothing listens there: only the name can be the problem.
    let err = DbClient::new(DbClientConfig::new("postgres://postgres@127.0.0.1:1/x", "Bad-Name"))
        .expect_err("rejected");
    assert!(matches!(err, DbError::InvalidSchema(_)), "{err:?}");
    // A good name with the database down builds fine.
    DbClient::new(DbClientConfig::new("postgres://postgres@127.0.0.1:1/x", SCHEMA)).expect("lazy");
}

#[test]
fn building_outside_a_runtime_is_a_configuration_error() {
    let err = DbClient::new(DbClientConfig::new("postgres://127.0.0.1:1/x", SCHEMA)).expect_err("no runtime");
    assert!(matches!(err, DbError::Config(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_instance_lifecycle() {
    let test_db = TestDb::new().await;
    let proxy = TcpProxy::start(authority(&test_db.url), false).await;
    let db = DbClient::new(fast(&proxy.url_for(&test_db.url))).expect("client");

    db.first_load().await;
    assert_eq!(reasons(&db), [Reason::DatabaseUnreachable]);
    assert_eq!(db.public_config().expect_err("none"), Reason::DatabaseUnreachable);

    // The database comes up, empty: not even the migrations have run.
    proxy.set_up(true);
    eventually(SOON, "uninitialized", async || reasons(&db) == [Reason::Uninitialized]).await;

    let pool = migrated_instance(&test_db.url, &schema()).await;
    let mut conn = pool.get().await.expect("conn");
    write_public_config(&mut conn, &public_config(SCHEMA, &[31337])).await.expect("config");
    eventually(SOON, "no-status", async || reasons(&db) == [Reason::NoStatus]).await;

    write_indexing_status(&mut conn, &schema(), &following_status(&[(31337, 40, 41)])).await.expect("status");
    eventually(SOON, "healthy", async || db.is_healthy()).await;
    let health = db.health();
    assert!(health.warnings.is_empty(), "{health:?}");
    assert_eq!(db.public_config().expect("config").chain_ids(), [31337]);
    let projection = db.realtime_projection(1_795_400_100).expect("projection");
    assert_eq!(projection.worst_case_distance, 60);

    // The database goes away: unhealthy after `unreachable_after`, but the cached status
    // is still served.
    proxy.set_up(false);
    eventually(SOON, "unreachable", async || reasons(&db) == [Reason::DatabaseUnreachable]).await;
    assert!(db.indexing_status().is_ok());
    assert!(db.events(&Default::default()).await.expect_err("down").is_unavailable());

    // And comes back.
    proxy.set_up(true);
    eventually(SOON, "healthy again", async || db.is_healthy()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_for_other_chains_is_not_served() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    write_public_config(&mut conn, &public_config(SCHEMA, &[1, 10])).await.expect("config");
    write_indexing_status(&mut conn, &schema(), &following_status(&[(1, 5, 5), (137, 5, 5)]))
        .await
        .expect("status");

    let db = DbClient::new(fast(&test_db.url)).expect("client");
    eventually(SOON, "incompatible", async || reasons(&db) == [Reason::Incompatible]).await;
    assert_eq!(db.indexing_status().expect_err("rejected"), Reason::Incompatible);
    assert_eq!(db.realtime_projection(0).expect_err("rejected"), Reason::Incompatible);

    // A status without chain 10 is served: a config may gain a chain (a compatible
    // change) before the indexer reports it.
    write_indexing_status(&mut conn, &schema(), &following_status(&[(1, 5, 5)])).await.expect("subset");
    eventually(SOON, "healthy with a chain not reported yet", async || db.is_healthy()).await;

    write_indexing_status(&mut conn, &schema(), &following_status(&[(1, 5, 5), (10, 7, 9)]))
        .await
        .expect("fix");
    eventually(SOON, "both chains served", async || {
        db.indexing_status().is_ok_and(|s| s.chain_ids() == [1, 10])
    })
    .await;
    assert!(db.is_healthy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_transitions_are_checked_across_a_deleted_row() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[(31337, 40, 41)]).await;
    let original = public_config(SCHEMA, &[31337]);

    let db = DbClient::new(fast(&test_db.url)).expect("client");
    let mut transitions = db.subscribe_incompatible_transitions();
    eventually(SOON, "healthy", async || db.is_healthy()).await;

    // A compatible change (versionInfo) is adopted without a transition.
    let mut newer = original.clone();
    newer.version_info.tidemark = "9.9.9".into();
    write_public_config(&mut conn, &newer).await.expect("compatible");
    eventually(SOON, "new version cached", async || {
        db.public_config().is_ok_and(|c| c.version_info.tidemark == "9.9.9")
    })
    .await;
    assert!(transitions.try_recv().is_err(), "no transition for a compatible change");

    // The row disappears: uninitialized.
    delete_metadata(&mut conn, &schema(), PUBLIC_CONFIG_KEY).await.expect("delete");
    eventually(SOON, "uninitialized", async || reasons(&db) == [Reason::Uninitialized]).await;

    // A config for other chains arrives: compared with the one before the reset.
    let other = public_config(SCHEMA, &[1]);
    write_public_config(&mut conn, &other).await.expect("incompatible");
    let t = tokio::time::timeout(Duration::from_secs(10), transitions.recv())
        .await
        .expect("a transition within 10 s")
        .expect("received");
    assert_eq!(t.previous.chain_ids(), [31337]);
    assert_eq!(t.current.chain_ids(), [1]);
    assert_eq!(t.incompatibility.diffs[0].field, "chains[].chainId");
    // The new config is cached right after the transition is raised (the transition
    // itself carries it); the old status does not describe it.
    eventually(SOON, "new config cached", async || db.public_config().is_ok_and(|c| c.chain_ids() == [1]))
        .await;
    eventually(SOON, "incompatible", async || reasons(&db) == [Reason::Incompatible]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_not_rewritten_for_30_seconds_is_stale_by_the_database_clock() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[(31337, 40, 41)]).await;
    // Default staleness threshold (30 s).
    let db = DbClient::new(fast(&test_db.url)).expect("client");
    assert_eq!(db.settings().status_stale_after, Duration::from_secs(30));
    eventually(SOON, "healthy", async || db.is_healthy()).await;
    assert!(db.health().warnings.is_empty());

    // The indexer stopped writing 25 s ago: not yet stale.
    backdate_metadata(&mut conn, &schema(), INDEXING_STATUS_KEY, 25.0).await.expect("backdate");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(db.health().warnings.is_empty());
    // 31 s ago: stale, still healthy, status still served.
    backdate_metadata(&mut conn, &schema(), INDEXING_STATUS_KEY, 31.0).await.expect("backdate");
    eventually(SOON, "stale", async || db.health().warnings == [Reason::StatusStale]).await;
    let health = db.health();
    assert!(health.healthy, "{health:?}");
    assert!(db.indexing_status().is_ok());
    // A fresh snapshot clears the warning.
    write_indexing_status(&mut conn, &schema(), &following_status(&[(31337, 41, 41)])).await.expect("status");
    eventually(SOON, "fresh", async || db.health().warnings.is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_reads_do_not_query_the_database() {
    let (test_db, _pool, _conn) = seeded_instance(&schema(), &[(31337, 40, 41)]).await;
    // Default refresh intervals: config 60 s, status and epoch summary 1 s.
    let db = DbClient::new(DbClientConfig::new(&test_db.url, SCHEMA)).expect("client");
    eventually(SOON, "healthy", async || db.is_healthy()).await;
    let before = db.queries_executed();
    let started = std::time::Instant::now();
    for _ in 0..1000 {
        db.indexing_status().expect("status");
        db.public_config().expect("config");
        assert!(db.health().healthy);
    }
    let elapsed = started.elapsed();
    let used = db.queries_executed() - before;
    // Only the background refreshes run, once a second: the status (two statements) and
    // the epoch summary (one).
    let allowed = 3 * (elapsed.as_secs() + 2);
    assert!(used <= allowed, "{used} statements for 3,000 cached reads in {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_client_stops_its_background_tasks() {
    let test_db = TestDb::new().await;
    let _pool = migrated_instance(&test_db.url, &schema()).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let db = DbClient::new(fast(&test_db.url)).expect("client");
    db.first_load().await;
    assert!(metrics.num_alive_tasks() > baseline);
    drop(db);
    eventually(SOON, "tasks stopped after drop", async || metrics.num_alive_tasks() <= baseline).await;

    // `shutdown` stops them too, and reads keep answering from the cache.
    let db = DbClient::new(fast(&test_db.url)).expect("client");
    db.first_load().await;
    db.shutdown();
    // What remains are the drivers of the pool's idle connections (at most one per cache).
    eventually(SOON, "tasks stopped after shutdown", async || metrics.num_alive_tasks() <= baseline + 3)
        .await;
    let before = db.queries_executed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.queries_executed(), before);
    assert_eq!(db.public_config().expect_err("uninitialized"), Reason::Uninitialized);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_the_indexer_reports_stalled_is_a_warning_naming_it() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[(1, 40, 41), (31337, 40, 41)]).await;
    let db = DbClient::new(fast(&test_db.url)).expect("client");
    eventually(SOON, "healthy", async || db.is_healthy()).await;
    assert!(db.health().warnings.is_empty());

    // The indexer marks chain 31337 stalled: a warning, still healthy, data still served.
    let mut status = following_status(&[(1, 40, 41), (31337, 40, 45)]);
    let stalled =
        tidemark_shared_types::Stalled { since: 1_795_420_000, last_error: Some("rpc timed out".into()) };
    if let Some(tidemark_shared_types::ChainSnapshot::Following { stalled: s, .. }) =
        status.omnichain_snapshot.chains.get_mut(&31337)
    {
        *s = Some(stalled);
    }
    write_indexing_status(&mut conn, &schema(), &status).await.expect("status");
    eventually(SOON, "chain-stalled", async || db.health().warnings == [Reason::ChainStalled(31337)]).await;
    let health = db.health();
    assert!(health.healthy, "{health:?}");
    assert_eq!(serde_json::to_value(&health.warnings).ok(), Some(serde_json::json!(["chain-stalled:31337"])));
    // Progress again: the warning goes.
    write_indexing_status(&mut conn, &schema(), &following_status(&[(1, 41, 41), (31337, 45, 45)]))
        .await
        .expect("status");
    eventually(SOON, "not stalled", async || db.health().warnings.is_empty()).await;
}
