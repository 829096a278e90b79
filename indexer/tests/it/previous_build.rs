//! DESIGN §3 "Every change to the per-instance layout bumps schemaVersion and ships the
//! upgrade": the new indexer starts on an instance as the previous build (0100537, layout
//! version 1) left it — tables without `decode_error`, no `ensure_instance_schema_v2`, and
//! a public config holding the event strings that build wrote (an ABI file's tuple event
//! with component names, a signature's tuple event without) — keeps it compatible (no
//! exit 3), upgrades it in place and indexes on. And an instance of layout 3 (the build
//! before the compact layout) is rewritten in layout 4 keeping every cursor, and the API
//! serves the same JSON from it.

use std::time::Duration;

use alloy::json_abi::Event;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tidemark_shared_types::canonical_event;
use tidemark_testkit::{ContractSpec, InstanceDb, SOON, Stack, eventually};
use tidemark_traffic::{REGISTRY_EVENTS, TOKEN_EVENTS};

use crate::common::{SCHEMA, api_events, serve_api, traffic};

/// Registry's events (from its ABI file) as the previous build stored them.
const PREVIOUS_REGISTRY_EVENTS: [&str; 4] = [
    "event Burst(uint256 indexed seq, uint256 value)",
    "event Registered(string indexed name, address indexed owner, uint256[] ids, string label)",
    "event Tagged(bytes32 indexed key, string[] tags, bytes data)",
    "event Updated(uint64 indexed id, tuple(address who, uint128 amount, bool active, string note) info)",
];
/// A signature's tuple event as the previous build stored it.
const PREVIOUS_SIGNATURE_TUPLE: &str =
    "event Updated(uint64 indexed id, tuple(address, uint128, bool, string) info)";
/// The same event as this build's config lists it (Solidity's inline form).
const SIGNATURE_TUPLE: &str =
    "event Updated(uint64 indexed id, (address who, uint128 amount, bool active, string note) info)";

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn exec(db: &mut InstanceDb, sql: &str) {
    diesel::sql_query(sql).execute(db.conn()).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn count(db: &mut InstanceDb, sql: &str) -> i64 {
    let c: Count =
        diesel::sql_query(sql).get_result(db.conn()).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    c.n
}

/// Turns the instance into what the previous build leaves: layout 1 (the journal view as
/// v1 makes it), no v2 function or migration, its public config strings and version.
async fn make_previous_build_instance(db: &mut InstanceDb, current: &Value) {
    db.downgrade_to_layout_3().await.expect("layout 3");
    exec(db, &format!("DROP VIEW {SCHEMA}.journal")).await;
    exec(db, &format!("ALTER TABLE {SCHEMA}.events DROP COLUMN decode_error")).await;
    exec(db, &format!("ALTER TABLE {SCHEMA}.events ALTER COLUMN args SET NOT NULL")).await;
    exec(db, &format!("SELECT tidemark.ensure_instance_schema_v1('{SCHEMA}')")).await;
    exec(db, "DROP FUNCTION tidemark.ensure_instance_schema_v2(text)").await;
    let sql = "DELETE FROM __diesel_schema_migrations WHERE version = '20261206000001'";
    assert_eq!(diesel::sql_query(sql).execute(db.conn()).await.expect("migration row"), 1, "{sql}");
    exec(
        db,
        &format!(
            "UPDATE {SCHEMA}.events SET signature = '{}' WHERE event = 'Updated'",
            PREVIOUS_REGISTRY_EVENTS[3]
        ),
    )
    .await;
    let mut previous = current.clone();
    previous["versionInfo"] = json!({"tidemark": "0.1.0", "schemaVersion": 1});
    for c in previous["chains"][0]["contracts"].as_array_mut().expect("contracts") {
        c["events"] = match c["name"].as_str() {
            Some("Registry") => json!(PREVIOUS_REGISTRY_EVENTS),
            Some("Signed") => json!([PREVIOUS_SIGNATURE_TUPLE]),
            _ => c["events"].clone(),
        };
    }
    diesel::sql_query(
        "UPDATE tidemark.metadata SET value = $1::jsonb WHERE instance_schema = $2 AND key = 'public_config'",
    )
    .bind::<Text, _>(previous.to_string())
    .bind::<Text, _>(SCHEMA)
    .execute(db.conn())
    .await
    .expect("storing the previous build's config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_of_the_previous_build_is_upgraded_and_stays_compatible() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 6, 4).await;
    stack.demo.update(7, stack.demo.token, 5, true, "note").await.expect("update");
    let mut chain = stack.chain_spec();
    // A contract whose tuple event is declared by signature (no logs at this address).
    chain.contracts.push(ContractSpec::new(
        "Signed",
        "0x000000000000000000000000000000000000dead",
        &[SIGNATURE_TUPLE],
    ));
    let config = tidemark_testkit::IndexerConfigBuilder { chains: vec![chain], ..stack.config() };
    let mut db = stack.instance().await;
    let mut first = stack.spawn(&config);
    stack.wait_synced(&mut db, SOON).await;
    assert_eq!(first.stop(Duration::from_secs(5)).await, 0);
    let current = db.metadata("public_config").await.expect("query").expect("stored config").value;
    make_previous_build_instance(&mut db, &current).await;
    let decode_error_columns = format!(
        "SELECT count(*) AS n FROM information_schema.columns
          WHERE table_schema = '{SCHEMA}' AND table_name = 'events' AND column_name = 'decode_error'"
    );
    assert_eq!(count(&mut db, &decode_error_columns).await, 0, "a layout-1 instance");

    // The new build starts on it: compatible, upgraded, indexing on.
    let mut second = stack.spawn(&config);
    traffic(&stack.demo, 4, 3).await;
    stack.wait_synced(&mut db, SOON).await;
    assert!(second.proc.is_running(), "no exit 3 on the previous build's config: {}", second.proc.logs());
    stack.assert_matches_chain(&mut db).await;
    assert_eq!(count(&mut db, &decode_error_columns).await, 1, "upgraded to layout 2");
    let nullable = format!(
        "SELECT count(*) AS n FROM information_schema.columns WHERE table_schema = '{SCHEMA}'
            AND table_name = 'events' AND column_name = 'args' AND is_nullable = 'YES'"
    );
    assert_eq!(count(&mut db, &nullable).await, 1, "args nullable");
    let compact = format!(
        "SELECT count(*) AS n FROM information_schema.columns WHERE table_schema = '{SCHEMA}'
            AND table_name = 'events' AND column_name = 'block_hash' AND data_type = 'bytea'"
    );
    assert_eq!(count(&mut db, &compact).await, 1, "rewritten in layout 4");
    assert!(!db.journal().await.expect("journal").is_empty(), "the journal view reads");
    let stored = db.metadata("public_config").await.expect("query").expect("stored config").value;
    assert_eq!(stored["versionInfo"]["schemaVersion"], tidemark_shared_types::config::SCHEMA_VERSION);
    assert_eq!(stored["chains"], current["chains"], "rewritten in canonical form");
    assert_eq!(second.stop(Duration::from_secs(5)).await, 0);
}

#[test]
fn the_canonical_strings_of_config_parse_back() {
    // This build's canonical strings: alloy's parser and ours read them, unchanged.
    for s in TOKEN_EVENTS.iter().chain(&REGISTRY_EVENTS) {
        let event = Event::parse(s).unwrap_or_else(|e| panic!("alloy reads {s}: {e}"));
        assert_eq!(canonical_event(&event.full_signature()).as_deref(), Ok(*s));
        assert_eq!(canonical_event(s).as_deref(), Ok(*s));
    }
    // The previous build's ABI tuple form (component names inside `tuple(…)`) is the gap:
    // alloy's parser rejects it, ours reads it as the same event.
    assert!(Event::parse(PREVIOUS_REGISTRY_EVENTS[3]).is_err());
    assert_eq!(canonical_event(PREVIOUS_REGISTRY_EVENTS[3]).as_deref(), Ok(REGISTRY_EVENTS[3]));
    assert_eq!(canonical_event(SIGNATURE_TUPLE).as_deref(), Ok(PREVIOUS_SIGNATURE_TUPLE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_of_layout_3_is_rewritten_in_place_and_serves_the_same_json() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 8, 5).await;
    stack.demo.update(9, stack.demo.token, 5, true, "note").await.expect("update");
    let config = stack.config();
    let mut db = stack.instance().await;
    let mut first = stack.spawn(&config);
    stack.wait_synced(&mut db, SOON).await;
    assert_eq!(first.stop(Duration::from_secs(5)).await, 0);

    let stop = tokio_util::sync::CancellationToken::new();
    let base = serve_api(&stack.db_url, &stop).await;
    let token = format!("{:#x}", stack.demo.token);
    let queries = ["", "contract=Token", "contract=Token&event=Transfer", &format!("address={token}")];
    let mut before = Vec::new();
    for q in queries {
        before.push(api_events(&base, q, 7).await);
    }
    assert!(before.iter().all(|items| !items.is_empty()), "every sample query has items");
    let stored = db.events_by_cursor().await.expect("events");
    assert!(stored.len() > 20, "a sample to compare: {}", stored.len());

    // What a build of layout 3 leaves: text columns, names per row, its journal view.
    db.downgrade_to_layout_3().await.expect("layout 3");
    assert!(!db.has_table("event_types").await.expect("query"), "layout 3");
    let journal_v3 = db.journal().await.expect("journal of layout 3");

    let mut second = stack.spawn(&config);
    eventually(SOON, "the instance rewritten in layout 4", async || {
        db.has_table("event_types").await.ok()?.then_some(())
    })
    .await;
    stack.wait_synced(&mut db, SOON).await;
    assert_eq!(db.events_by_cursor().await.expect("events"), stored, "every row and cursor kept");
    assert_eq!(db.journal().await.expect("journal"), journal_v3, "the journal's entries unchanged");
    for (q, before) in queries.iter().zip(&before) {
        let mut after = api_events(&base, q, 7).await;
        // `finalized` may have moved on with the head in between; the rest is stored data.
        for (a, b) in after.iter_mut().zip(before) {
            a["finalized"] = b["finalized"].clone();
        }
        assert_eq!(&after, before, "/v1/events?{q}");
    }
    assert_eq!(second.stop(Duration::from_secs(5)).await, 0);
    stop.cancel();
}
