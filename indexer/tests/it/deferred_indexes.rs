//! The deferred indexes (docs/database.md, "Deferred indexes"): a new instance backfills
//! without the secondary indexes of `events` and builds them once its chains follow,
//! reporting it in `/status` (`indexBuild`) and `/health` (`indexes-building`); a restart
//! resumes an interrupted build; an instance with data keeps its indexes.

use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tidemark_db_client::writer::DEFERRABLE;
use tidemark_testkit::{InstanceDb, RpcProxy, SOON, Stack, eventually};

use crate::common::{SCHEMA, traffic};

#[derive(QueryableByName, Debug, Clone, PartialEq)]
struct Index {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Bool)]
    valid: bool,
    #[diesel(sql_type = BigInt)]
    oid: i64,
}

/// The deferrable indexes of `events` that exist, with their validity and oid.
async fn deferrable(db: &mut InstanceDb) -> Vec<Index> {
    let names: Vec<&str> = DEFERRABLE.iter().map(|i| i.name).collect();
    diesel::sql_query(
        "SELECT c.relname::text AS name, i.indisvalid AS valid, c.oid::bigint AS oid
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          WHERE i.indrelid = format('%I.events', $1::text)::regclass AND c.relname = ANY($2) ORDER BY 1",
    )
    .bind::<Text, _>(SCHEMA)
    .bind::<diesel::sql_types::Array<Text>, _>(names)
    .load(db.conn())
    .await
    .expect("indexes of events")
}

fn all_valid(indexes: &[Index]) -> bool {
    indexes.len() == DEFERRABLE.len() && indexes.iter().all(|i| i.valid)
}

async fn index_build(db: &mut InstanceDb) -> Option<Value> {
    db.metadata("index_build").await.expect("metadata").map(|r| r.value)
}

async fn exec(db: &mut InstanceDb, sql: &str) {
    diesel::sql_query(sql).execute(db.conn()).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The snapshot's `indexBuild.state` as the indexer last wrote it.
async fn snapshot_build_state(db: &mut InstanceDb) -> Option<String> {
    let row = db.metadata("indexing_status").await.ok()??;
    row.value["indexBuild"]["state"].as_str().map(str::to_owned)
}

async fn wait_built(db: &mut InstanceDb) {
    eventually(SOON, "the deferred indexes built and recorded done", async || {
        (index_build(db).await == Some(json!({"state": "done"}))).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_backfills_without_its_secondary_indexes_and_builds_them_once_following() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 80, 3).await;
    // One block per range, slowed a little: a backfill of several seconds.
    let proxy = RpcProxy::start(stack.anvil.url()).await;
    proxy.delay("eth_getLogs", Duration::from_millis(40));
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    cfg.chains[0].max_block_range = Some(1);
    cfg.chains[0].max_concurrency = Some(1);
    let mut indexer = stack.spawn(&cfg);
    let api = stack.spawn_api(&[]);
    let mut db = stack.instance().await;

    // After the first commit, during the backfill: no deferrable index, build pending.
    eventually(SOON, "the first commit", async || db.checkpoint(31337).await.ok()?.map(drop)).await;
    let status = db.metadata("indexing_status").await.expect("query");
    assert!(
        status.is_none_or(|s| s.value["omnichainSnapshot"]["omnichainStatus"] != "omnichain-following"),
        "still backfilling"
    );
    assert_eq!(deferrable(&mut db).await, Vec::new(), "the secondary indexes are deferred");
    assert_eq!(index_build(&mut db).await, Some(json!({"state": "pending"})));
    let health = indexer.health().await.expect("indexer /health");
    assert!(health.warnings.contains(&"indexes-building".to_owned()), "{health:?}");
    eventually(SOON, "the API warns while the indexes are missing", async || {
        let h = api.health().await?;
        (h.code == 200 && h.warnings.contains(&"indexes-building".to_owned())).then_some(())
    })
    .await;
    // Filtered pages answer meanwhile (without their index).
    let (code, page) = api.get("/v1/events?contract=Token&limit=5").await.expect("events page");
    assert_eq!(code, 200, "{page}");

    // Following: built, valid, recorded, reported.
    wait_built(&mut db).await;
    let indexes = deferrable(&mut db).await;
    assert!(all_valid(&indexes), "{indexes:?}");
    assert_eq!(snapshot_build_state(&mut db).await.as_deref(), Some("done"));
    eventually(SOON, "the API's /status reports the build done", async || {
        let (code, body) = api.get("/status").await?;
        (code == 200 && body["indexBuild"]["state"] == "done").then_some(body)
    })
    .await;
    let h = api.health().await.expect("API /health");
    assert!(!h.warnings.contains(&"indexes-building".to_owned()), "{h:?}");
    let h = indexer.health().await.expect("indexer /health");
    assert!(!h.warnings.contains(&"indexes-building".to_owned()), "{h:?}");
    let (_, body) = indexer.get_json("/status").await.expect("indexer /status");
    assert_eq!(body["indexBuild"], json!({"state": "done", "built": 8, "total": 8}));
    let logs = indexer.proc.logs();
    for index in &DEFERRABLE {
        assert!(logs.contains(index.name), "the build of {} is logged", index.name);
    }
    stack.assert_matches_chain(&mut db).await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_an_interrupted_build() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 10, 3).await;
    let mut db = stack.instance().await;
    let mut indexer = stack.spawn(&stack.config());
    stack.wait_synced(&mut db, SOON).await;
    wait_built(&mut db).await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);

    // What an interrupted build leaves: one index invalid, one never built, still pending.
    let before = deferrable(&mut db).await;
    let address_oid = before.iter().find(|i| i.name == "events_address").expect("events_address").oid;
    exec(
        &mut db,
        &format!(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{SCHEMA}.events_address'::regclass"
        ),
    )
    .await;
    exec(&mut db, &format!("DROP INDEX {SCHEMA}.events_tx")).await;
    exec(
        &mut db,
        &format!(
            "UPDATE tidemark.metadata SET value = '{{\"state\": \"pending\"}}'
              WHERE instance_schema = '{SCHEMA}' AND key = 'index_build'"
        ),
    )
    .await;

    let mut indexer = stack.spawn(&stack.config());
    wait_built(&mut db).await;
    let after = deferrable(&mut db).await;
    assert!(all_valid(&after), "{after:?}");
    let rebuilt = after.iter().find(|i| i.name == "events_address").expect("events_address");
    assert_ne!(rebuilt.oid, address_oid, "the invalid index was dropped and built again");
    for (b, a) in before.iter().zip(&after) {
        if b.name != "events_address" && b.name != "events_tx" {
            assert_eq!(b, a, "a valid index is left as it was");
        }
    }
    let logs = indexer.proc.logs();
    assert!(logs.contains("events_address") && logs.contains("events_tx"), "{logs}");
    traffic(&stack.demo, 3, 2).await;
    stack.wait_synced(&mut db, SOON).await;
    stack.assert_matches_chain(&mut db).await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_data_keeps_its_indexes_on_restart() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 10, 3).await;
    let mut db = stack.instance().await;
    let mut indexer = stack.spawn(&stack.config());
    stack.wait_synced(&mut db, SOON).await;
    wait_built(&mut db).await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
    let before = deferrable(&mut db).await;
    assert!(all_valid(&before), "{before:?}");
    // As an instance of a build before deferred indexes: no record at all.
    exec(
        &mut db,
        &format!("DELETE FROM tidemark.metadata WHERE instance_schema = '{SCHEMA}' AND key = 'index_build'"),
    )
    .await;

    let mut indexer = stack.spawn(&stack.config());
    traffic(&stack.demo, 3, 2).await;
    stack.wait_synced(&mut db, SOON).await;
    assert_eq!(deferrable(&mut db).await, before, "the same indexes, never dropped");
    assert_eq!(index_build(&mut db).await, None, "nothing deferred");
    assert_eq!(snapshot_build_state(&mut db).await, None, "no indexBuild in the snapshot");
    let h = indexer.health().await.expect("indexer /health");
    assert!(!h.warnings.contains(&"indexes-building".to_owned()), "{h:?}");
    stack.assert_matches_chain(&mut db).await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
