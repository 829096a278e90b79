//! The deferred indexes of `events` (db-client/src/events/indexes.rs): the list matches
//! what the migrations create, a new instance defers them in one transaction, the
//! instance functions leave them alone while the build is pending, the builder rebuilds
//! missing and invalid ones, and an instance with data never defers.

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tidemark_db_client::test_utils::fixtures::{block, create_instance};
use tidemark_db_client::types::SchemaName;
use tidemark_db_client::writer::{Batch, DEFERRABLE, EventRow, PgPool, Writer};

/// Indexes every instance keeps, deferred or not.
const KEPT: [&str; 2] = ["events_pkey", "events_chain_block"];

#[derive(QueryableByName, Debug)]
struct Index {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    def: String,
    #[diesel(sql_type = Bool)]
    valid: bool,
}

/// Every index of `events` with its definition and validity, by name.
async fn indexes(conn: &mut AsyncPgConnection, schema: &SchemaName) -> Vec<Index> {
    diesel::sql_query(
        "SELECT c.relname::text AS name, pg_get_indexdef(c.oid) AS def, i.indisvalid AS valid
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          WHERE i.indrelid = format('%I.events', $1::text)::regclass ORDER BY 1",
    )
    .bind::<Text, _>(schema.as_str())
    .load(conn)
    .await
    .expect("indexes of events")
}

fn names(indexes: &[Index]) -> Vec<&str> {
    indexes.iter().map(|i| i.name.as_str()).collect()
}

fn sorted(mut v: Vec<&str>) -> Vec<&str> {
    v.sort_unstable();
    v
}

/// The sorted names of every index of `events`.
async fn index_names(conn: &mut AsyncPgConnection, schema: &SchemaName) -> Vec<String> {
    let mut v: Vec<String> = indexes(conn, schema).await.into_iter().map(|i| i.name).collect();
    v.sort_unstable();
    v
}

async fn new_instance(schema: &SchemaName) -> (tidemark_db_client::test_utils::TestDb, PgPool) {
    let db = tidemark_db_client::test_utils::TestDb::new().await;
    let pool = PgPool::new(tidemark_db_client::PoolConfig::new(db.url.clone())).expect("pool");
    create_instance(&pool, schema).await.expect("instance");
    (db, pool)
}

async fn metadata(conn: &mut AsyncPgConnection, schema: &SchemaName) -> Option<String> {
    #[derive(QueryableByName)]
    struct V {
        #[diesel(sql_type = Text)]
        v: String,
    }
    let rows: Vec<V> = diesel::sql_query(
        "SELECT value::text AS v FROM tidemark.metadata WHERE instance_schema = $1 AND key = 'index_build'",
    )
    .bind::<Text, _>(schema.as_str())
    .load(conn)
    .await
    .expect("metadata");
    rows.into_iter().next().map(|r| r.v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_matches_the_catalog_of_a_new_instance() {
    let schema = SchemaName::new("tidemark_demo").expect("name");
    let (_db, pool) = new_instance(&schema).await;
    let mut conn = pool.get().await.expect("conn");
    let all = indexes(&mut conn, &schema).await;
    let deferrable: Vec<&str> = names(&all).into_iter().filter(|n| !KEPT.contains(n)).collect::<Vec<_>>();
    let listed = sorted(DEFERRABLE.iter().map(|i| i.name).collect());
    assert_eq!(deferrable, listed, "every index but the kept ones is listed, and only those");
    for kept in KEPT {
        assert!(names(&all).contains(&kept), "{kept} in {:?}", names(&all));
    }
    for index in &DEFERRABLE {
        let def = &all.iter().find(|i| i.name == index.name).expect("listed index exists").def;
        let expected = format!(
            "CREATE INDEX {} ON {}.events USING btree {}",
            index.name,
            schema.as_str(),
            index.columns
        );
        assert_eq!(def, &expected, "{} as the migrations create it", index.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_defers_and_the_builder_rebuilds_what_is_missing_or_invalid() {
    let schema = SchemaName::new("tidemark_demo").expect("name");
    let (_db, pool) = new_instance(&schema).await;
    let mut conn = pool.get().await.expect("conn");
    let mut writer = Writer::try_acquire(&pool, &schema).await.expect("connects").expect("the lock");
    assert!(!writer.index_build_pending().await.expect("pending?"), "nothing recorded yet");

    assert!(writer.defer_indexes().await.expect("defer"), "a new instance defers");
    assert_eq!(index_names(&mut conn, &schema).await, sorted(KEPT.to_vec()));
    assert!(writer.index_build_pending().await.expect("pending?"));
    assert_eq!(metadata(&mut conn, &schema).await.as_deref(), Some(r#"{"state": "pending"}"#));
    // The instance functions leave the deferred indexes alone while the build is pending.
    writer.ensure_instance_schema().await.expect("ensure again");
    assert_eq!(index_names(&mut conn, &schema).await, sorted(KEPT.to_vec()));
    assert!(writer.finish_index_build().await.is_err(), "not done while indexes are missing");

    // Some rows, then the build: first interrupted (one index built, one left invalid).
    let rows: Vec<EventRow> = (0..50).map(row).collect();
    writer.commit(Batch::new(1, &rows, &block(10))).await.expect("commit");
    let builder = writer.index_builder(&pool).await.expect("builder");
    assert_eq!(builder.to_build().await.expect("to build").len(), DEFERRABLE.len());
    builder.build(&DEFERRABLE[0]).await.expect("one index");
    builder.build(&DEFERRABLE[1]).await.expect("another");
    diesel::sql_query(format!(
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{}.{}'::regclass",
        schema.as_str(),
        DEFERRABLE[1].name
    ))
    .execute(&mut conn)
    .await
    .expect("invalidating, as an interrupted CREATE INDEX CONCURRENTLY leaves it");
    assert_eq!(writer.valid_indexes().await.expect("valid"), 1);
    let left = builder.to_build().await.expect("to build");
    assert_eq!(left.len(), DEFERRABLE.len() - 1, "the invalid one is rebuilt too");
    assert_eq!(left[0], DEFERRABLE[1]);
    for index in &left {
        builder.build(index).await.expect("build");
    }
    assert!(builder.to_build().await.expect("to build").is_empty());
    let all = indexes(&mut conn, &schema).await;
    assert_eq!(all.len(), KEPT.len() + DEFERRABLE.len());
    assert!(all.iter().all(|i| i.valid), "{all:?}");
    writer.finish_index_build().await.expect("done");
    assert!(!writer.index_build_pending().await.expect("pending?"));
    assert_eq!(metadata(&mut conn, &schema).await.as_deref(), Some(r#"{"state": "done"}"#));

    // An instance with data never defers again.
    assert!(!writer.defer_indexes().await.expect("defer"), "an instance with data keeps its indexes");
    assert_eq!(indexes(&mut conn, &schema).await.len(), KEPT.len() + DEFERRABLE.len());
    assert_eq!(metadata(&mut conn, &schema).await.as_deref(), Some(r#"{"state": "done"}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_a_checkpoint_but_no_events_keeps_its_indexes() {
    let schema = SchemaName::new("tidemark_demo").expect("name");
    let (_db, pool) = new_instance(&schema).await;
    let mut conn = pool.get().await.expect("conn");
    let mut writer = Writer::try_acquire(&pool, &schema).await.expect("connects").expect("the lock");
    writer.commit(Batch::new(1, &[], &block(5))).await.expect("an empty batch");
    assert!(!writer.defer_indexes().await.expect("defer"));
    assert_eq!(indexes(&mut conn, &schema).await.len(), KEPT.len() + DEFERRABLE.len());
    assert_eq!(metadata(&mut conn, &schema).await, None);
}

fn row(n: u64) -> EventRow {
    let word = |v: u64| format!("0x{v:064x}");
    EventRow {
        block_number: 1 + n / 10,
        block_hash: word(1 + n / 10),
        block_timestamp: 1_700_000_000 + n,
        tx_hash: word(n),
        tx_index: 0,
        log_index: n % 10,
        address: "0x5fbdb2315678afecb367f032d93f642f64180aa3".into(),
        contract: "Token".into(),
        event: "Transfer".into(),
        signature: "event Transfer(address indexed from, address indexed to, uint256 value)".into(),
        topics: vec![word(0xe0), word(n), word(n + 1)],
        data: "0x".into(),
        args: Some(serde_json::json!({"value": n.to_string()})),
        decode_error: None,
    }
}
