//! The writer session's server-side limits (docs/database.md, "Time limits"):
//! `lock_timeout` (10 s) makes a commit that waits for another session's lock give up
//! instead of waiting for `statement_timeout` (120 s); `idle_in_transaction_session_timeout`
//! (30 s) makes the server end the session of a writer that hangs inside a transaction,
//! so that its writer lock and row locks do not outlive it. Either way the indexer carries
//! on by itself, without a restart, and stores every event exactly once.

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{Array, Double, Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tidemark_testkit::{Indexer, JournalReplay, SOON, Stack, eventually};

use crate::common::{SCHEMA, traffic};
use crate::writer::{Flag, WRITER_LOCK_CLASS, assert_no_duplicates};

/// Advisory-lock class taken per transaction by a commit (db-client/src/writer/mod.rs).
const COMMIT_LOCK_CLASS: i32 = 0x7464_6d02;

/// The writer's `lock_timeout` plus a margin for two busy cores.
const LOCK_TIMEOUT_WITH_MARGIN: Duration = Duration::from_secs(15);

/// The writer's `idle_in_transaction_session_timeout` plus a margin.
const IDLE_TIMEOUT_WITH_MARGIN: Duration = Duration::from_secs(40);

/// The indexer's writer connection as `pg_stat_activity` shows it.
#[derive(QueryableByName, Debug)]
struct WriterBackend {
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Text)]
    state: String,
    /// Seconds since `state` last changed, by the database clock.
    #[diesel(sql_type = Double)]
    in_state_s: f64,
    #[diesel(sql_type = Array<Integer>)]
    blocked_by: Vec<i32>,
}

#[derive(QueryableByName)]
struct BackendPid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

/// Backends of this database named `tidemark-indexer-writer`.
async fn writer_backends(conn: &mut AsyncPgConnection) -> Vec<WriterBackend> {
    diesel::sql_query(
        "SELECT pid, coalesce(state, '') AS state,
                coalesce(extract(epoch FROM clock_timestamp() - state_change), 0)::float8 AS in_state_s,
                pg_blocking_pids(pid) AS blocked_by
           FROM pg_stat_activity
          WHERE application_name = 'tidemark-indexer-writer' AND datname = current_database()",
    )
    .load(conn)
    .await
    .expect("pg_stat_activity")
}

async fn run(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql).execute(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn flag(conn: &mut AsyncPgConnection, sql: &str) -> bool {
    let row: Flag = diesel::sql_query(sql).get_result(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.flag
}

/// A session of its own holding `LOCK TABLE <table> IN EXCLUSIVE MODE` in an open
/// transaction: readers pass, every writer of the table waits.
async fn lock_table_for_writers(url: &str, table: &str) -> (AsyncPgConnection, i32) {
    let mut conn = tidemark_db_client::tls::establish(url).await.expect("connect");
    let BackendPid { pid } =
        diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result(&mut conn).await.expect("pid");
    run(&mut conn, "BEGIN").await;
    run(&mut conn, &format!("LOCK TABLE {SCHEMA}.{table} IN EXCLUSIVE MODE")).await;
    (conn, pid)
}

/// Waits until the writer's connection waits for a lock held by `blocker`; returns its pid.
async fn writer_blocked_by(admin: &mut AsyncPgConnection, blocker: i32) -> i32 {
    eventually(SOON, format!("the writer's commit waiting for the lock of backend {blocker}"), async || {
        writer_backends(admin).await.into_iter().find(|b| b.blocked_by.contains(&blocker)).map(|b| b.pid)
    })
    .await
}

/// The indexer up to the head of a chain with some history, and a journal consumer that
/// has read everything so far.
async fn synced_indexer(stack: &Stack) -> (Indexer, JournalReplay) {
    traffic(&stack.demo, 10, 3).await;
    let mut db = stack.instance().await;
    // No limit from the server's own configuration: only the writer's session settings
    // can end a wait here.
    run(
        db.conn(),
        "DO $$ BEGIN
           EXECUTE format('ALTER DATABASE %I SET lock_timeout = 0', current_database());
           EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = 0', current_database());
         END $$",
    )
    .await;
    let indexer = stack.spawn(&stack.config());
    indexer.wait_role("writer", SOON).await;
    stack.wait_synced(&mut db, SOON).await;
    // The deferred index build done: a `LOCK TABLE` below while `CREATE INDEX
    // CONCURRENTLY` waits for older transactions is a deadlock (PostgreSQL ends one side).
    eventually(SOON, "the deferred indexes built", async || {
        let row = db.metadata("index_build").await.ok()??;
        (row.value["state"] == "done").then_some(())
    })
    .await;
    let mut consumer = JournalReplay::new();
    consumer.apply(&db.journal().await.expect("journal")).expect("replay");
    (indexer, consumer)
}

/// After new traffic: the same process is the writer again, every event is stored once
/// and the journal consumer sees each once. Returns how many times the writer lock was
/// taken.
async fn assert_recovered(stack: &Stack, indexer: &mut Indexer, consumer: &mut JournalReplay) -> usize {
    traffic(&stack.demo, 4, 3).await;
    let mut db = stack.instance().await;
    indexer.wait_role("writer", SOON).await;
    stack.wait_synced(&mut db, SOON).await;
    assert!(indexer.proc.is_running(), "the indexer recovered without a restart");
    let events = stack.assert_matches_chain(&mut db).await;
    assert_no_duplicates(&events);
    consumer
        .apply(&db.journal_after(consumer.last_cursor().unwrap_or(0)).await.expect("journal"))
        .expect("replay");
    consumer.matches(&events).expect("journal consumer sees every event once");
    indexer.proc.stderr().matches("writer lock taken").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_waiting_for_another_sessions_lock_gives_up_within_15_s_and_resumes() {
    let stack = Stack::shared(SCHEMA).await;
    let (mut indexer, mut consumer) = synced_indexer(&stack).await;
    let mut admin = tidemark_db_client::tls::establish(&stack.db_url).await.expect("connect");

    // The next batch's first write, the lock on `events` its COPY takes, waits for this
    // session.
    let (mut blocker, blocker_pid) = lock_table_for_writers(&stack.db_url, "events").await;
    traffic(&stack.demo, 3, 3).await;
    writer_blocked_by(&mut admin, blocker_pid).await;
    let waiting_since = Instant::now();
    let line = eventually(
        LOCK_TIMEOUT_WITH_MARGIN,
        "the writer to give up on the locked table (a lock timeout ending its term in the log); \
         without lock_timeout it waits for statement_timeout, 120 s",
        async || {
            indexer
                .proc
                .stderr()
                .lines()
                .find(|l| l.contains("writer term ended") && l.contains("lock timeout"))
                .map(str::to_owned)
        },
    )
    .await;
    eprintln!(
        "the writer gave up {:.1} s after it started waiting: {line}",
        waiting_since.elapsed().as_secs_f64()
    );
    assert!(indexer.proc.is_running(), "a lock timeout ends the writer term, not the process");
    // The connection outlives the failed statement: nothing else on it reports it closed.
    let closed: Vec<_> = indexer
        .proc
        .stderr()
        .lines()
        .filter(|l| l.contains("connection closed"))
        .map(str::to_owned)
        .collect();
    assert!(closed.is_empty(), "the lock timeout broke the writer's connection: {closed:#?}");

    // Released, the lock no longer stops anything: indexing resumes where it stopped.
    run(&mut blocker, "ROLLBACK").await;
    let terms = assert_recovered(&stack, &mut indexer, &mut consumer).await;
    assert!(terms >= 2, "the writer lock was taken again after the lock timeout ({terms} terms)");
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_frozen_inside_a_transaction_loses_its_session_within_40_s_and_recovers() {
    let stack = Stack::shared(SCHEMA).await;
    let (mut indexer, mut consumer) = synced_indexer(&stack).await;
    let mut admin = tidemark_db_client::tls::establish(&stack.db_url).await.expect("connect");

    // Catch the writer inside a commit: its checkpoint upsert, after the events and
    // headers, waits for this session's lock. The process is frozen, then the lock
    // released: the statement completes and the session is left idle in transaction,
    // holding the writer lock and the transaction's locks, with nobody to finish it.
    let (mut blocker, blocker_pid) = lock_table_for_writers(&stack.db_url, "checkpoints").await;
    traffic(&stack.demo, 3, 3).await;
    let writer_pid = writer_blocked_by(&mut admin, blocker_pid).await;
    indexer.proc.sigstop();
    let frozen = Instant::now();
    run(&mut blocker, "ROLLBACK").await;
    eventually(Duration::from_secs(5), "the frozen writer's session idle in transaction", async || {
        writer_backends(&mut admin)
            .await
            .into_iter()
            .any(|b| b.pid == writer_pid && b.state == "idle in transaction")
            .then_some(())
    })
    .await;

    // The server ends that session after idle_in_transaction_session_timeout (30 s).
    let ended_after = loop {
        let Some(b) = writer_backends(&mut admin).await.into_iter().find(|b| b.pid == writer_pid) else {
            break frozen.elapsed();
        };
        assert!(
            frozen.elapsed() < IDLE_TIMEOUT_WITH_MARGIN,
            "the frozen writer's session (backend {writer_pid}) is still open {:.1} s after the process was \
             stopped: {} for {:.1} s (idle_in_transaction_session_timeout is 30 s)",
            frozen.elapsed().as_secs_f64(),
            b.state,
            b.in_state_s
        );
        tokio::time::sleep(tidemark_testkit::POLL).await;
    };
    eprintln!(
        "the server ended the frozen writer's session {:.1} s after the freeze",
        ended_after.as_secs_f64()
    );

    // Its locks went with it: another session takes the writer lock, the commit lock and
    // a lock on the table the frozen transaction wrote to, without waiting.
    let mut other = tidemark_db_client::tls::establish(&stack.db_url).await.expect("connect");
    let writer_lock = format!("{WRITER_LOCK_CLASS}, hashtext('{SCHEMA}')");
    assert!(
        flag(&mut other, &format!("SELECT pg_try_advisory_lock({writer_lock}) AS flag")).await,
        "another session takes the writer lock"
    );
    run(&mut other, "BEGIN").await;
    assert!(
        flag(
            &mut other,
            &format!("SELECT pg_try_advisory_xact_lock({COMMIT_LOCK_CLASS}, hashtext('{SCHEMA}')) AS flag")
        )
        .await,
        "another session takes the commit lock"
    );
    run(&mut other, &format!("LOCK TABLE {SCHEMA}.events IN EXCLUSIVE MODE NOWAIT")).await;
    run(&mut other, "ROLLBACK").await;
    assert!(flag(&mut other, &format!("SELECT pg_advisory_unlock({writer_lock}) AS flag")).await);
    drop(other);

    // Thawed, the indexer finds its session gone, takes the lock again and carries on.
    indexer.proc.sigcont();
    let terms = assert_recovered(&stack, &mut indexer, &mut consumer).await;
    assert_eq!(terms, 2, "one new writer term after the session was ended");
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
