use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use tidemark_db_client::PoolConfig;
use tidemark_db_client::test_utils::TestDb;
use tidemark_db_client::writer::{PgPool, Writer, run_migrations};
use tidemark_shared_types::SchemaName;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent() {
    let (_db, pool) = crate::migrated().await;
    run_migrations(&pool).await.expect("second run");
    let mut conn = pool.get().await.expect("conn");
    let c: Count = diesel::sql_query("SELECT count(*) AS n FROM __diesel_schema_migrations")
        .get_result(&mut conn)
        .await
        .expect("bookkeeping");
    // One row per migration directory, however often they run.
    let dirs = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
        .expect("migrations directory")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().join("up.sql").exists()))
        .count();
    assert_eq!(c.n, i64::try_from(dirs).expect("count"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_migrate_without_error() {
    let db = TestDb::new().await;
    let pools: Vec<PgPool> =
        (0..4).map(|_| PgPool::new(PoolConfig::new(db.url.clone())).expect("pool")).collect();
    let results = futures::future::join_all(pools.iter().map(run_migrations)).await;
    for r in results {
        r.expect("concurrent migration");
    }
    // And the per-instance DDL of several instances, concurrently too (each through its
    // own writer, as indexers starting at once do).
    let results = futures::future::join_all(pools.iter().enumerate().map(|(i, p)| async move {
        let schema = SchemaName::new(format!("tidemark_race_{i}")).expect("name");
        let mut writer = Writer::try_acquire(p, &schema).await?.expect("a free lock");
        writer.ensure_instance_schema().await
    }))
    .await;
    for r in results {
        r.expect("concurrent instance schema");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_schema_has_the_tables_and_drops_cleanly() {
    let (_db, pool) = crate::migrated().await;
    let schema = SchemaName::new("tidemark_demo").expect("name");
    let mut writer = Writer::try_acquire(&pool, &schema).await.expect("connects").expect("a free lock");
    writer.ensure_instance_schema().await.expect("create");
    writer.ensure_instance_schema().await.expect("idempotent");
    let mut conn = pool.get().await.expect("conn");
    let c: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'tidemark_demo'
           AND table_name IN ('events', 'removals', 'journal', 'blocks', 'checkpoints', 'epochs',
                              'sink_cursors', 'sink_jobs', 'sink_requests', 'webhook_deliveries',
                              'pending_blocks')",
    )
    .get_result(&mut conn)
    .await
    .expect("tables");
    assert_eq!(c.n, 11);
    writer.drop_instance().await.expect("drop");
    let c: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM information_schema.schemata WHERE schema_name = 'tidemark_demo'",
    )
    .get_result(&mut conn)
    .await
    .expect("schemata");
    assert_eq!(c.n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_function_rejects_bad_names_too() {
    let (_db, pool) = crate::migrated().await;
    let mut conn = pool.get().await.expect("conn");
    let err = diesel::sql_query("SELECT tidemark.ensure_instance_schema_v1('x; drop schema tidemark')")
        .execute(&mut conn)
        .await
        .expect_err("rejected");
    assert!(err.to_string().contains("invalid instance schema name"), "{err}");
}
