//! Connection poolers (docs/database.md, "Connection poolers"): behind PgBouncer in
//! transaction mode the writer lock (a session advisory lock) means nothing, so the
//! indexer refuses to start, with exit code 2 and a message naming the problem, before
//! it migrates anything; in session mode it indexes as on a direct connection.

use std::time::Duration;

use tidemark_testkit::{PgBouncer, SOON, Stack};

use crate::common::{SCHEMA, traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_mode_pooler_is_refused_with_exit_code_2() {
    let stack = Stack::shared(SCHEMA).await;
    let bouncer = PgBouncer::start(&stack.db_url, "transaction").await;
    let mut cfg = stack.config();
    cfg.database_url = bouncer.url(&stack.db_url);
    let (code, proc) = stack.run_command(&cfg, &[]).await;
    let logs = proc.logs();
    assert_eq!(code, 2, "{logs}\npgbouncer:\n{}", bouncer.logs());
    assert!(logs.contains("transaction") && logs.contains("session mode"), "{logs}");
    let mut db = stack.instance().await;
    assert_eq!(db.metadata_count().await.expect("metadata"), 0, "nothing was written");
    assert!(!db.schema_exists().await.expect("schema"), "no instance schema was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_mode_pooler_is_accepted() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 5, 3).await;
    let bouncer = PgBouncer::start(&stack.db_url, "session").await;
    let mut cfg = stack.config();
    cfg.database_url = bouncer.url(&stack.db_url);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    stack.assert_matches_chain(&mut db).await;
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0, "{}", indexer.proc.logs());
}
