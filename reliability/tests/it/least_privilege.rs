//! Scenario 10 — least privilege (docs/database.md, "Roles and privileges"): the statements
//! of the docs, run as written for two fresh roles (neither superuser nor `CREATEROLE`),
//! are enough for the indexer to migrate, create its instance and index, and for the API
//! to serve it; the API's role cannot write; an instance schema the indexer creates after
//! the grants is served too.

use std::time::Duration;

use tidemark_db_client::test_utils::TestRole;
use tidemark_reliability::summary::{self, Recorder};
use tidemark_testkit::{Api, Indexer, IndexerConfigBuilder, InstanceDb, SOON, Stack, compare::Comparison};

use crate::common::traffic;

const SCHEMA: &str = "tidemark_rel_lp";
/// A second instance, created by the indexer role after the grants.
const LATER_SCHEMA: &str = "tidemark_rel_lp_later";

/// The SQL block between the `least-privilege` markers of docs/database.md, for roles
/// `indexer` and `api` on database `db`, without its `CREATE ROLE` statements.
fn documented_grants(indexer: &str, api: &str, db: &str) -> String {
    let path = tidemark_testkit::bins::workspace_root().join("docs/database.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let block = doc
        .split_once("<!-- least-privilege:begin -->")
        .and_then(|(_, rest)| rest.split_once("<!-- least-privilege:end -->"))
        .map(|(block, _)| block)
        .expect("docs/database.md has a least-privilege block");
    let sql = block
        .split_once("```sql")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(sql, _)| sql)
        .expect("the least-privilege block is a fenced sql block");
    // The roles themselves come from the fixture (`CREATE ROLE … LOGIN`, like the docs),
    // which drops them after the test.
    let (create, grants): (Vec<&str>, Vec<&str>) = sql.lines().partition(|l| l.starts_with("CREATE ROLE "));
    assert_eq!(create, ["CREATE ROLE tidemark_indexer LOGIN;", "CREATE ROLE tidemark_api LOGIN;"]);
    grants
        .join("\n")
        .replace("tidemark_indexer", indexer)
        .replace("tidemark_api", api)
        .replace(" app ", &format!(" \"{db}\" "))
}

/// The database name of `url`.
fn database_of(url: &str) -> &str {
    let path = url.split_once('?').map_or(url, |(base, _)| base);
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

/// Every event `api` serves (one page: the scenario's traffic is small).
async fn served_events(api: &Api) -> Option<usize> {
    let (code, body) = api.get("/v1/events?limit=1000").await?;
    if code != 200 || body["nextCursor"].is_string() {
        return None;
    }
    Some(body["items"].as_array()?.len())
}

/// Waits until `api` is healthy and serves `expected` events.
async fn wait_serving(api: &Api, expected: usize) -> usize {
    api.wait_healthy(SOON).await;
    let started = std::time::Instant::now();
    loop {
        let served = served_events(api).await;
        if served == Some(expected) || started.elapsed() > SOON {
            return served.unwrap_or(0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The SQLSTATE of running `sql` as the role of `url` (`None`: it succeeded).
async fn sqlstate_of(url: &str, sql: &str) -> Option<String> {
    let client = tidemark_db_client::tls::connect(url).await.expect("connecting as the API role");
    client
        .batch_execute(sql)
        .await
        .err()
        .map(|e| e.code().map_or_else(|| e.to_string(), |c| c.code().to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_roles_suffice_and_the_api_role_cannot_write() {
    summary::run("10 least privilege", |rec| async move {
        rec.step("two fresh roles and the documented grants");
        let stack = Stack::shared(SCHEMA).await;
        let indexer_role = TestRole::new(&stack.db_url, "tm_indexer").await;
        let api_role = TestRole::new(&stack.db_url, "tm_api").await;
        let grants = documented_grants(&indexer_role.name, &api_role.name, database_of(&stack.db_url));
        let admin = tidemark_db_client::tls::connect(&stack.db_url).await.expect("connecting as superuser");
        admin.batch_execute(&grants).await.unwrap_or_else(|e| panic!("the documented grants fail: {e:?}\n{grants}"));
        traffic(&stack.demo, 8, 4).await;

        rec.step("the indexer as its role, the API as its role");
        let mut cfg = stack.config();
        cfg.database_url = indexer_role.url.clone();
        let mut first = Served::start(&stack, &cfg, &api_role.url).await;
        first.require(&rec, "indexer and API with the documented roles");

        rec.step("writes as the API role");
        let s = format!("\"{SCHEMA}\"");
        let attempts = [
            "INSERT INTO tidemark.metadata (instance_schema, key, value) VALUES ('x', 'y', '{}')".to_owned(),
            format!("UPDATE tidemark.metadata SET value = '{{}}' WHERE instance_schema = '{SCHEMA}'"),
            format!("DELETE FROM {s}.events"),
            format!("INSERT INTO {s}.checkpoints (chain_id, block_number, block_hash, block_timestamp) VALUES (1, 1, 'h', 1)"),
            format!("CREATE TABLE {s}.intruder (x int)"),
            "CREATE TABLE public.intruder (x int)".to_owned(),
            "CREATE SCHEMA intruder".to_owned(),
        ];
        let mut refused = 0;
        let mut outcomes = Vec::new();
        for sql in &attempts {
            let state = sqlstate_of(&api_role.url, sql).await;
            refused += usize::from(state.as_deref() == Some("42501"));
            outcomes.push(format!("{sql}: {}", state.as_deref().unwrap_or("succeeded")));
        }
        rec.require(
            "INSERT, UPDATE, DELETE and DDL as the API role",
            format!("{refused} of {} refused with 42501 (permission denied)", attempts.len()),
            refused == attempts.len(),
            outcomes.join("; "),
        );

        rec.step("a second instance schema, created after the grants");
        let mut later_cfg =
            IndexerConfigBuilder::new(LATER_SCHEMA, indexer_role.url.clone()).chain(stack.chain_spec());
        later_cfg.namespace = "reliability-later".into();
        let mut later = Served::start(&stack, &later_cfg, &api_role.url).await;
        later.require(&rec, "an instance created after the grants, served by the API role");

        let codes = [first.indexer.stop(Duration::from_secs(10)).await, later.indexer.stop(Duration::from_secs(10)).await, stop(&mut first.api).await, stop(&mut later.api).await];
        rec.require("clean shutdown of all four", format!("exit codes {codes:?}"), codes == [0; 4], "");
    })
    .await;
}

/// An indexer and an API on one instance, as their roles, once the indexer caught up.
struct Served {
    indexer: Indexer,
    api: Api,
    comparison: Comparison,
    served: usize,
}

impl Served {
    /// Starts the indexer with `cfg` and, once it is synced, the API as `api_url`'s role.
    async fn start(stack: &Stack, cfg: &IndexerConfigBuilder, api_url: &str) -> Self {
        let indexer = stack.spawn(cfg);
        let mut db = InstanceDb::connect(&stack.db_url, &cfg.schema).await.expect("connecting");
        stack.wait_synced(&mut db, SOON).await;
        let comparison = stack.compare(&mut db).await;
        let api = stack.spawn_api_as(api_url, &cfg.schema, &[]);
        let served = wait_serving(&api, comparison.stored).await;
        Self { indexer, api, comparison, served }
    }

    /// Records that the stored events are the chain's and that the API serves them all.
    fn require(&self, rec: &Recorder, tried: &str) {
        let (cmp, served) = (&self.comparison, self.served);
        rec.require(
            tried,
            format!("stored events = chain: {}; API serves {served} of {}", cmp.is_exact(), cmp.stored),
            cmp.is_exact() && cmp.stored > 0 && served == cmp.stored,
            format!("{} events; indexer: {}", cmp.stored, last_error(&self.indexer.proc.logs())),
        );
    }
}

async fn stop(api: &mut Api) -> i32 {
    api.proc.sigterm();
    api.proc.exit_code(Duration::from_secs(10)).await
}

/// The last line of `logs` that mentions an error, for the summary.
fn last_error(logs: &str) -> String {
    logs.lines().rev().find(|l| l.contains("ERROR") || l.contains("denied")).unwrap_or("none").to_owned()
}
