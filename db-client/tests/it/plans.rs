//! Every filter shape `EventQuery::check_indexed` accepts is served by an index, judged on
//! the statement the API runs (`cursor > $1 … ORDER BY cursor LIMIT $n`, values bound):
//! on a table whose probe values match only rows in the middle of cursor order, its plan
//! reads no row outside them, neither for the first page nor for the page after the last
//! match, neither as first planned (for its values) nor once PostgreSQL may keep a generic
//! plan. Shapes the rule refuses (`event` without `contract`, a range without `chainId`)
//! fail this check when their statement runs regardless of the rule, so the check can
//! tell; so did `chainId`, `contract` and `address` alone before the statement named its
//! index (docs/reliability.md, fault 26).

use tidemark_db_client::test_utils::TestDb;
use tidemark_db_client::test_utils::fixtures::migrated_instance;
use tidemark_db_client::test_utils::plans::{Filter, PlanCost, PlanData, Shape, Statement};
use tidemark_db_client::types::SchemaName;

const SCHEMA: &str = "tidemark_plans";
const ROWS: i64 = 100_000;

/// Runs `statement` as the db-client's prepared statement would be: prepared once, then
/// executed; explains its first execution and its seventh (after five custom plans,
/// PostgreSQL may switch to a generic one).
async fn first_and_seventh(
    client: &tokio_postgres::Client,
    statement: &Statement,
    n: usize,
) -> [PlanCost; 2] {
    let explain = |name: &str| format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", statement.execute(name));
    let run = |sql: String| async move {
        let rows = client.query(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.first().map(|r| PlanCost::of(&r.get::<_, serde_json::Value>(0))).unwrap_or_default()
    };
    let name = format!("p{n}");
    client.batch_execute(&statement.prepare(&name)).await.expect("prepare");
    let first = run(explain(&name)).await;
    for _ in 0..5 {
        client.batch_execute(&statement.execute(&name)).await.expect("execute");
    }
    let seventh = run(explain(&name)).await;
    client.batch_execute(&format!("DEALLOCATE {name}")).await.expect("deallocate");
    [first, seventh]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_shape_reads_only_rows_an_index_leads_to_and_the_refused_ones_do_not() {
    let test_db = TestDb::new().await;
    let schema = SchemaName::new(SCHEMA).expect("valid");
    let _pool = migrated_instance(&test_db.url, &schema).await;
    let (client, connection) =
        tokio_postgres::connect(&test_db.url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let data = PlanData::seed(&client, &schema, ROWS).await.expect("seed");
    // A small table: without this, a sequential scan and a sort can be the cheapest
    // plan for 100,000 rows where they would not be at 10 M.
    client
        .batch_execute("SET enable_seqscan = off; SET max_parallel_workers_per_gather = 0")
        .await
        .expect("set");
    // The window holds every row any probe matches; a plan an index serves reads no other.
    let bound = u64::try_from(data.window.end - data.window.start).expect("positive");

    let (mut accepted, mut poor_refused, mut n) = (0, Vec::new(), 0);
    let mut failures = Vec::new();
    for shape in Shape::all() {
        let ok = shape.check().is_ok();
        for (page, after) in [("first page", None), ("after the last match", Some(data.last_match()))] {
            let query = data.query(shape, after);
            assert_eq!(query.check_indexed().is_ok(), ok, "{shape}: the rule and check_indexed agree");
            let statement = Statement::of(&schema, &query).expect("a statement");
            n += 1;
            let costs = first_and_seventh(&client, &statement, n).await;
            let worst = costs.iter().max_by_key(|c| c.filtered).cloned().unwrap_or_default();
            let poor = costs.iter().any(|c| c.seq_scan || c.filtered > bound);
            if ok && poor {
                failures.push(format!(
                    "{shape}, {page}: {} filtered {} rows (bound {bound})",
                    worst.nodes, worst.filtered
                ));
            }
            if ok && after.is_none() {
                assert!(
                    costs[0].rows >= 1,
                    "{shape}: the probe matches at least one row: {}",
                    costs[0].nodes
                );
            }
            if !ok && poor && after.is_none() {
                poor_refused.push(shape);
            }
        }
        accepted += usize::from(ok);
    }
    assert!(failures.is_empty(), "accepted shapes no index serves:\n{}", failures.join("\n"));
    assert_eq!(accepted, 978, "accepted shapes");

    // The detector can fail: shapes the rule refuses walk far outside the window.
    let shape = |filters: &[Filter]| filters.iter().fold(Shape::default(), |s, f| s.with(*f));
    use Filter::*;
    for refused in [
        shape(&[Event]),
        shape(&[Event, FromBlock]),
        shape(&[FromBlock, ToBlock]),
        shape(&[Event, FromBlock, ToBlock]),
    ] {
        assert!(
            poor_refused.contains(&refused),
            "{refused} should read outside the window; poor: {poor_refused:?}"
        );
    }
}
