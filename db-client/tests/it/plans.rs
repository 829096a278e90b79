//! Every filter shape `EventQuery::check_indexed` accepts is served by an index: with
//! sequential scans disabled, PostgreSQL's plan for its conditions reads `events` only
//! through indexes whose leading column the conditions fix. Every shape it rejects has
//! no such plan (a sequential scan, or a full scan of an index on a later column).

use serde_json::Value;
use tidemark_db_client::EventQuery;
use tidemark_db_client::test_utils::TestDb;
use tidemark_db_client::test_utils::fixtures::{insert_event, migrated_instance, varied_events, word};
use tidemark_shared_types::SchemaName;

const SCHEMA: &str = "tidemark_plans";

/// A filter: how it is set on an [`EventQuery`] and the condition the db-client writes
/// for it (`db-client/src/events.rs`), with a literal value that matches no stored row
/// (the selective case an index exists for: with a value matching most rows, the planner
/// rightly prefers another index or a scan).
type Filter = (fn(&mut EventQuery), &'static str);

fn filters() -> Vec<Filter> {
    vec![
        (|q| q.chain_id = Some(7), "chain_id = 7"),
        (|q| q.contract = Some("Absent".into()), "contract = 'Absent'"),
        (|q| q.event = Some("Absent".into()), "event = 'Absent'"),
        (|q| q.address = Some(format!("0x{:040x}", 7)), "address = '0x07'"),
        (|q| q.tx_hash = Some(word(7)), "tx_hash = '0x07'"),
        (|q| q.topic1 = Some(word(7)), "topics[2] = '0x07'"),
        (|q| q.topic2 = Some(word(7)), "topics[3] = '0x07'"),
        (|q| q.topic3 = Some(word(7)), "topics[4] = '0x07'"),
        (|q| q.from_block = Some(30), "block_number >= 30"),
        (|q| q.to_block = Some(40), "block_number <= 40"),
    ]
}

/// Each scan node of `plan` on `events`: its node type, index name and index condition.
fn scans(plan: &Value, out: &mut Vec<(String, String, String)>) {
    let text = |k: &str| plan[k].as_str().unwrap_or_default().to_owned();
    if text("Relation Name") == "events" || text("Index Name").starts_with("events") {
        out.push((text("Node Type"), text("Index Name"), text("Index Cond")));
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        scans(child, out);
    }
}

/// Why the plan is not an index plan, if it is not: a sequential scan, or an index scan
/// whose condition does not fix the index's leading column.
fn not_indexed(plan: &Value, leading: &[(String, String)]) -> Option<String> {
    let mut found = Vec::new();
    scans(plan, &mut found);
    for (node, index, cond) in &found {
        if node == "Seq Scan" {
            return Some("Seq Scan on events".into());
        }
        if index.is_empty() {
            // A bitmap heap scan: its bitmap index scans are checked.
            continue;
        }
        let Some((_, column)) = leading.iter().find(|(name, _)| name == index) else {
            return Some(format!("{node} of an unknown index {index}"));
        };
        if !cond.contains(&format!("({column} =")) {
            return Some(format!("{node} using {index} with condition {cond:?} (leading column {column})"));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_filter_shape_has_an_index_plan_and_no_rejected_one_has() {
    let test_db = TestDb::new().await;
    let schema = SchemaName::new(SCHEMA).expect("valid");
    let pool = migrated_instance(&test_db.url, &schema).await;
    let mut conn = pool.get().await.expect("conn");
    for e in varied_events(200) {
        insert_event(&mut conn, &schema, &e).await.expect("insert");
    }
    let (client, connection) =
        tokio_postgres::connect(&test_db.url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client.batch_execute(&format!("ANALYZE {SCHEMA}.events; SET enable_seqscan = off")).await.expect("set");
    // The leading column of each index on events, from its definition.
    let mut leading = Vec::new();
    for row in client
        .query(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'events'",
            &[&SCHEMA],
        )
        .await
        .expect("indexes")
    {
        let (name, def): (String, String) = (row.get(0), row.get(1));
        let columns = def.split_once("USING btree (").map(|(_, c)| c).expect("a btree index");
        let first = columns.split(", ").next().expect("a column").trim_matches(['(', ')']);
        leading.push((name, first.to_owned()));
    }

    let filters = filters();
    let (mut accepted, mut rejected) = (0, 0);
    for mask in 1u32..(1 << filters.len()) {
        let mut query = EventQuery::default();
        let mut conditions = Vec::new();
        for (i, (set, condition)) in filters.iter().enumerate() {
            if mask & (1 << i) != 0 {
                set(&mut query);
                conditions.push(*condition);
            }
        }
        let sql = format!(
            "EXPLAIN (FORMAT JSON) SELECT cursor FROM {SCHEMA}.events WHERE {}",
            conditions.join(" AND ")
        );
        let rows = client.query(&sql, &[]).await.expect("explain");
        let plan: Value = rows[0].get(0);
        let problem = not_indexed(&plan[0]["Plan"], &leading);
        match query.check_indexed() {
            Ok(()) => {
                accepted += 1;
                assert_eq!(problem, None, "accepted shape {conditions:?} has no index plan: {plan}");
            }
            Err(_) => {
                rejected += 1;
                assert!(problem.is_some(), "rejected shape {conditions:?} has an index plan: {plan}");
            }
        }
    }
    assert!(accepted > 900 && rejected > 0, "accepted {accepted}, rejected {rejected}");
}
