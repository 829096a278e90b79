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
          WHERE i.indrelid = to_regclass(format('%I.events', $1::text)) AND c.relname = ANY($2) ORDER BY 1",
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
    proxy.delay("eth_getLogs", Duration::from_millis(60));
    let mut cfg = stack.config();
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    cfg.chains[0].max_block_range = Some(1);
    cfg.chains[0].max_concurrency = Some(1);
    let api = stack.spawn_api(&[]);
    eventually(SOON, "the API listening", async || api.health().await.map(drop)).await;
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;

    // During the backfill (the indexer's own /status, read after the catalog, still says
    // so): no deferrable index, the build pending, both /health warn.
    let chain_status = async |indexer: &tidemark_testkit::Indexer| {
        let (_, body) = indexer.get_json("/status").await?;
        body["realtimeProjection"]["snapshot"]["omnichainSnapshot"]["chains"]["31337"]["chainStatus"]
            .as_str()
            .map(str::to_owned)
    };
    let (mut observed, mut indexer_warned, mut api_warned) = (0, false, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(std::time::Instant::now() < deadline, "no following status within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let committed = db.checkpoint(31337).await.ok().flatten().is_some();
        let present = deferrable(&mut db).await;
        let record = index_build(&mut db).await;
        let indexer_health = indexer.health().await;
        let api_health = api.health().await;
        match chain_status(&indexer).await.as_deref() {
            Some("chain-backfill") if committed => {
                assert_eq!(present, Vec::new(), "the secondary indexes are deferred during the backfill");
                assert_eq!(record, Some(json!({"state": "pending"})));
                let h = indexer_health.expect("indexer /health");
                assert!(h.warnings.contains(&"indexes-building".to_owned()), "{h:?}");
                indexer_warned = true;
                api_warned |= api_health
                    .is_some_and(|h| h.code == 200 && h.warnings.contains(&"indexes-building".to_owned()));
                observed += 1;
            }
            Some("chain-following") => break,
            _ => {}
        }
    }
    assert!(observed >= 3 && indexer_warned, "the backfill was observed ({observed} times)");
    assert!(api_warned, "the API warned indexes-building during the backfill");
    // Filtered pages answer meanwhile (here, or with their index by now).
    let (code, page) = api.get("/v1/events?contract=Token&limit=5").await.expect("events page");
    assert_eq!(code, 200, "{page}");

    // Following: built, valid, recorded, reported.
    wait_built(&mut db).await;
    let indexes = deferrable(&mut db).await;
    assert!(all_valid(&indexes), "{indexes:?}");
    eventually(SOON, "the snapshot reports the build done", async || {
        (snapshot_build_state(&mut db).await.as_deref() == Some("done")).then_some(())
    })
    .await;
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
    eventually(SOON, "a snapshot of the new process, without indexBuild", async || {
        let row = db.metadata("indexing_status").await.ok()??;
        (row.value.get("indexBuild").is_none()).then_some(())
    })
    .await;
    let h = indexer.health().await.expect("indexer /health");
    assert!(!h.warnings.contains(&"indexes-building".to_owned()), "{h:?}");
    stack.assert_matches_chain(&mut db).await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
