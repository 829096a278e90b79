//! DESIGN §3 "One writer per instance" and invariant 6: a second indexer on the same
//! schema stands by and takes over when the writer dies; a writer whose lock was lost
//! cannot commit, and takes the lock again cleanly.

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tidemark_testkit::{JournalReplay, SOON, Stack, eventually};

use crate::common::{SCHEMA, traffic};

/// Advisory-lock class of the writer lock: `pg_advisory_lock(0x74646d01, hashtext(schema))`
/// (db-client/src/writer/mod.rs).
pub(crate) const WRITER_LOCK_CLASS: i32 = 0x7464_6d01;

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = BigInt)]
    pid: i64,
}

#[derive(QueryableByName)]
pub(crate) struct Flag {
    #[diesel(sql_type = Bool)]
    pub(crate) flag: bool,
}

/// Backends of the indexer's writer connections (`tidemark-indexer-writer`) that hold an advisory lock in this database.
async fn lock_holders(conn: &mut AsyncPgConnection) -> Vec<i64> {
    let rows: Vec<Pid> = diesel::sql_query(format!(
        "SELECT a.pid::bigint AS pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
          WHERE a.application_name = 'tidemark-indexer-writer' AND a.datname = current_database()
            AND l.locktype = 'advisory' AND l.granted AND l.classid = {WRITER_LOCK_CLASS}::oid"
    ))
    .load(conn)
    .await
    .expect("pg_locks");
    rows.into_iter().map(|r| r.pid).collect()
}

pub(crate) fn assert_no_duplicates(events: &[tidemark_testkit::StoredEvent]) {
    let mut keys: Vec<_> = events.iter().map(|e| (e.chain_id, e.block_hash.clone(), e.log_index)).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), events.len(), "no duplicated event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_within_5_s_when_the_writer_is_killed() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 10, 3).await;
    let mut db = stack.instance().await;
    let cfg = stack.config();
    let mut first = stack.spawn(&cfg);
    first.wait_role("writer", SOON).await;
    stack.wait_synced(&mut db, SOON).await;

    let mut second = stack.spawn(&cfg.clone().with_fresh_http_port());
    second.wait_role("standby", SOON).await;
    eventually(SOON, "the standby says it stands by", async || {
        second.proc.stderr().contains("standing by").then_some(())
    })
    .await;
    let mut admin = tidemark_db_client::tls::establish(&stack.db_url).await.expect("connect");
    assert_eq!(lock_holders(&mut admin).await.len(), 1, "one lock holder");

    traffic(&stack.demo, 6, 3).await;
    first.proc.kill9();
    let killed = Instant::now();
    second.wait_role("writer", Duration::from_secs(5)).await;
    eprintln!("standby took over {:.2} s after kill -9", killed.elapsed().as_secs_f64());

    traffic(&stack.demo, 6, 3).await;
    stack.wait_synced(&mut db, SOON).await;
    let events = stack.assert_matches_chain(&mut db).await;
    assert_no_duplicates(&events);
    assert_eq!(lock_holders(&mut admin).await.len(), 1, "one lock holder");
    assert_eq!(second.stop(Duration::from_secs(5)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_lost_its_lock_cannot_commit_and_retakes_it() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 10, 3).await;
    let mut db = stack.instance().await;
    let mut indexer = stack.spawn(&stack.config());
    indexer.wait_role("writer", SOON).await;
    stack.wait_synced(&mut db, SOON).await;
    let mut consumer = JournalReplay::new();
    consumer.apply(&db.journal().await.expect("journal")).expect("replay");

    // Cut the writer's connection, and take its lock before the indexer can.
    let mut admin = tidemark_db_client::tls::establish(&stack.db_url).await.expect("connect");
    let holders = lock_holders(&mut admin).await;
    assert_eq!(holders.len(), 1, "one writer backend: {holders:?}");
    let terminated: Flag = diesel::sql_query("SELECT pg_terminate_backend($1::int) AS flag")
        .bind::<BigInt, _>(holders[0])
        .get_result(&mut admin)
        .await
        .expect("pg_terminate_backend");
    assert!(terminated.flag);
    let mut thief = tidemark_db_client::tls::establish(&stack.db_url).await.expect("connect");
    eventually(Duration::from_secs(5), "the test takes the writer lock", async || {
        let row: Flag = diesel::sql_query(format!(
            "SELECT pg_try_advisory_lock({WRITER_LOCK_CLASS}, hashtext($1)) AS flag"
        ))
        .bind::<Text, _>(SCHEMA)
        .get_result(&mut thief)
        .await
        .ok()?;
        row.flag.then_some(())
    })
    .await;

    // New blocks arrive; the indexer notices its lost lock and cannot commit them.
    let before = db.snapshot().await.expect("snapshot");
    traffic(&stack.demo, 6, 3).await;
    eventually(SOON, "the indexer gives up its writer role", async || {
        (indexer.role().await.as_deref() != Some("writer")).then_some(())
    })
    .await;
    let quiet_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet_until {
        assert_eq!(db.snapshot().await.expect("snapshot"), before, "nothing commits without the lock");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(indexer.proc.is_running(), "the indexer waits for the lock instead of exiting");

    // Released, the lock is re-taken and indexing resumes where it stopped.
    drop(thief);
    indexer.wait_role("writer", SOON).await;
    stack.wait_synced(&mut db, SOON).await;
    let events = stack.assert_matches_chain(&mut db).await;
    assert_no_duplicates(&events);
    consumer
        .apply(&db.journal_after(consumer.last_cursor().unwrap_or(0)).await.expect("journal"))
        .expect("replay");
    consumer.matches(&events).expect("journal consumer sees the events once");
    assert_eq!(indexer.proc.stderr().matches("writer lock taken").count(), 2, "the lock was taken again");
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}
