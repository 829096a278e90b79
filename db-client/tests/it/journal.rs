//! The journal's tail against a real PostgreSQL, written by the real writer: pages that
//! merge `log` and `removed` entries and replay to the stored events, and subscriptions
//! that catch up, then follow the writer's notifications, and resume by cursor.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use tidemark_db_client::test_utils::fixtures::{block, seeded_instance, word};
use tidemark_db_client::types::{Cursor, JournalEntry, SchemaName};
use tidemark_db_client::writer::{Batch, EventRow, Writer};
use tidemark_db_client::{DbClient, EventQuery, JournalFilter, Limit};

use crate::client::fast;

const SCHEMA: &str = "tidemark_demo";

/// A log of `contract` at `block`/`index`, its first indexed topic `word(topic)`.
fn row(block_number: u64, index: u64, contract: &str, topic: u64) -> EventRow {
    EventRow {
        block_number,
        block_hash: block(block_number).hash,
        block_timestamp: block(block_number).timestamp,
        tx_hash: word(block_number * 100 + index),
        tx_index: 0,
        log_index: index,
        address: format!("0x{:040x}", if contract == "Token" { 1 } else { 2 }),
        contract: contract.into(),
        event: "Transfer".into(),
        signature: "event Transfer(address indexed from, address indexed to, uint256 value)".into(),
        topics: vec![word(0xdd), word(topic), word(7)],
        data: "0x".into(),
        args: Some(serde_json::json!({"n": block_number * 100 + index})),
        decode_error: None,
    }
}

/// Commits blocks `from..=to` of chain 1, three logs each (two `Token`, one `Nft`).
async fn commit_blocks(writer: &mut Writer, from: u64, to: u64) {
    for b in from..=to {
        let rows = [row(b, 0, "Token", b), row(b, 1, "Nft", b), row(b, 2, "Token", b + 1)];
        writer.commit(Batch::new(1, &rows, &block(b))).await.expect("commit");
    }
}

/// Replays entries: add on `log`, delete on `removed` by `event_cursor`. A reader that
/// comes after a reorg never sees the logs it removed (they are no longer stored), only
/// the removals; `strict` asserts that each removal removes a log seen before.
fn replay(entries: &[JournalEntry], strict: bool) -> BTreeMap<Cursor, (u64, u64)> {
    let mut state = BTreeMap::new();
    for e in entries {
        match e {
            JournalEntry::Log(l) => assert!(state.insert(l.cursor, (l.block_number, l.log_index)).is_none()),
            JournalEntry::Removed(r) => {
                let known = state.remove(&r.event_cursor).is_some();
                assert!(known || !strict, "{r:?} removes a log seen before");
            }
        }
    }
    state
}

/// Every page of the journal after `after`, checking the order.
async fn all_after(db: &DbClient, after: Cursor, filter: &JournalFilter, limit: u64) -> Vec<JournalEntry> {
    all_since(db, after, after, filter, limit).await
}

/// Every page of the journal after `after` for a reader that began at `since`.
async fn all_since(
    db: &DbClient,
    since: Cursor,
    after: Cursor,
    filter: &JournalFilter,
    limit: u64,
) -> Vec<JournalEntry> {
    let (mut out, mut after) = (Vec::<JournalEntry>::new(), after);
    loop {
        let limit = Limit::new(limit).expect("limit");
        let page = db.journal_after_since(since, after, filter, limit).await.expect("page");
        assert!(page.entries.windows(2).all(|w| w[0].cursor() < w[1].cursor()), "ascending");
        out.extend(page.entries);
        match page.next_cursor {
            Some(c) => after = c,
            None => return out,
        }
    }
}

/// Every stored event matching `filter`, as (cursor → block, log index).
async fn stored(db: &DbClient, filter: &JournalFilter) -> BTreeMap<Cursor, (u64, u64)> {
    let mut q: EventQuery = filter.to_query(Cursor(0), Limit::MAX);
    let mut out = BTreeMap::new();
    loop {
        let page = db.events(&q).await.expect("events");
        out.extend(page.items.iter().map(|e| (e.cursor, (e.block_number, e.log_index))));
        match page.next_cursor {
            Some(c) => q.after = Some(c),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_merge_logs_and_removals_and_replay_to_the_stored_events() {
    let schema = SchemaName::new(SCHEMA).expect("name");
    let (test_db, pool, _conn) = seeded_instance(&schema, &[]).await;
    let mut writer = Writer::try_acquire(&pool, &schema).await.expect("connects").expect("the lock");
    commit_blocks(&mut writer, 1, 6).await;
    // A reorg back to block 3, a new branch, another reorg back to block 5.
    assert_eq!(writer.rollback(1, Some(&block(3))).await.expect("rollback"), 9);
    commit_blocks(&mut writer, 4, 8).await;
    assert_eq!(writer.rollback(1, Some(&block(5))).await.expect("rollback"), 9);
    let db = DbClient::new(fast(&test_db.url)).expect("client");

    for filter in [
        JournalFilter::default(),
        JournalFilter { contract: Some("Token".into()), ..JournalFilter::default() },
        JournalFilter { chain_id: Some(1), topic1: Some(word(5)), ..JournalFilter::default() },
    ] {
        for limit in [1, 4, 1000] {
            let entries = all_after(&db, Cursor(0), &filter, limit).await;
            let removed = entries.iter().filter(|e| matches!(e, JournalEntry::Removed(_))).count();
            assert!(removed > 0, "{filter:?}: the reorgs are in the journal");
            assert_eq!(replay(&entries, false), stored(&db, &filter).await, "{filter:?}, pages of {limit}");
        }
    }
    // From any cursor: exactly the entries after it.
    let all = all_after(&db, Cursor(0), &JournalFilter::default(), 1000).await;
    let middle = all[all.len() / 2].cursor();
    let rest = all_after(&db, middle, &JournalFilter::default(), 7).await;
    assert_eq!(rest, all.iter().filter(|e| e.cursor() > middle).cloned().collect::<Vec<_>>());
    assert_eq!(
        db.journal_head().await.expect("head"),
        all.last().map(JournalEntry::cursor).expect("entries")
    );
    // The shapes no index serves are refused, as for events.
    let e = db
        .journal_after(
            Cursor(0),
            &JournalFilter { event: Some("Transfer".into()), ..JournalFilter::default() },
            Limit::DEFAULT,
        )
        .await;
    assert!(e.is_err_and(|e| e.is_invalid_input()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_removals_raise_the_floor_and_reads_below_it_are_refused_not_short() {
    let schema = SchemaName::new(SCHEMA).expect("name");
    let (test_db, pool, _conn) = seeded_instance(&schema, &[]).await;
    let mut writer = Writer::try_acquire(&pool, &schema).await.expect("connects").expect("the lock");
    let db = DbClient::new(fast(&test_db.url)).expect("client");
    commit_blocks(&mut writer, 1, 6).await;
    assert_eq!(writer.rollback(1, Some(&block(3))).await.expect("rollback"), 9);
    // Nothing old enough yet: nothing pruned, no floor.
    assert_eq!(writer.prune_journal(Duration::from_secs(3600), &[]).await.expect("prune"), (0, Cursor(0)));
    assert_eq!(db.journal_floor().await.expect("floor"), Cursor(0));
    let before = all_after(&db, Cursor(0), &JournalFilter::default(), 1000).await;
    let removals: Vec<Cursor> = before
        .iter()
        .filter_map(|e| if let JournalEntry::Removed(r) = e { Some(r.cursor) } else { None })
        .collect();
    assert_eq!(removals.len(), 9);
    let first_log = before[0].cursor();

    // With no retention every removal recorded before is pruned; new ones stay.
    let (pruned, floor) = writer.prune_journal(Duration::ZERO, &[]).await.expect("prune");
    assert_eq!((pruned, floor), (9, removals[8]));
    commit_blocks(&mut writer, 4, 6).await;
    assert_eq!(writer.rollback(1, Some(&block(5))).await.expect("rollback"), 3);
    assert_eq!(db.journal_floor().await.expect("floor"), floor);

    // Below the floor (where a pruned removal could be missed): refused with the floor.
    for after in [first_log, removals[0], Cursor(floor.0 - 1)] {
        let e =
            db.journal_after(after, &JournalFilter::default(), Limit::DEFAULT).await.expect_err("expired");
        assert!(matches!(e, tidemark_db_client::DbError::CursorExpired { floor: f } if f == floor), "{e}");
        let e = db.subscribe(Some(after), JournalFilter::default()).await.err().expect("expired");
        assert!(matches!(e, tidemark_db_client::DbError::CursorExpired { .. }), "{e}");
    }
    // A replay from 0 that began before the prune could have seen a pruned removal's
    // log: refused once past its first page.
    let (all, first) = (JournalFilter::default(), before[0].cursor());
    let e = db.journal_after_since(first, first, &all, Limit::DEFAULT).await;
    assert!(e.is_err_and(|e| matches!(e, tidemark_db_client::DbError::CursorExpired { .. })));
    // From 0 (a replay of what is stored, since the head it began at) and from the
    // floor on: complete.
    let head = db.journal_head().await.expect("head");
    let replayed = all_since(&db, head, Cursor(0), &JournalFilter::default(), 4).await;
    assert_eq!(replay(&replayed, false), stored(&db, &JournalFilter::default()).await);
    let rest = all_after(&db, floor, &JournalFilter::default(), 1000).await;
    assert_eq!(rest, replayed.iter().filter(|e| e.cursor() > floor).cloned().collect::<Vec<_>>());
    assert_eq!(rest.iter().filter(|e| matches!(e, JournalEntry::Removed(_))).count(), 3);
    let mut tail =
        std::pin::pin!(db.subscribe(Some(floor), JournalFilter::default()).await.expect("at the floor"));
    assert_eq!(tail.next().await.expect("an entry").expect("ok"), rest[0]);

    // A later prune never lowers the floor.
    let (_, again) = writer.prune_journal(Duration::from_secs(3600), &[]).await.expect("prune");
    assert_eq!(again, floor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_catches_up_then_follows_the_writers_notifications_and_resumes() {
    let schema = SchemaName::new(SCHEMA).expect("name");
    let (test_db, pool, _conn) = seeded_instance(&schema, &[]).await;
    let mut writer = Writer::try_acquire(&pool, &schema).await.expect("connects").expect("the lock");
    commit_blocks(&mut writer, 1, 3).await;
    let mut config = fast(&test_db.url);
    // Far beyond the deadlines below: only a notification can deliver in time.
    config.journal_poll = Duration::from_secs(600);
    let db = DbClient::new(config).expect("client");
    let within = Duration::from_secs(5);

    let mut replayed =
        std::pin::pin!(db.subscribe(Some(Cursor(0)), JournalFilter::default()).await.expect("subscribe"));
    let mut live = std::pin::pin!(db.subscribe(None, JournalFilter::default()).await.expect("subscribe"));
    let mut seen = Vec::new();
    for _ in 0..9 {
        seen.push(
            tokio::time::timeout(within, replayed.next())
                .await
                .expect("caught up")
                .expect("open")
                .expect("entry"),
        );
    }
    // A commit, then a reorg that takes it back: each subscriber sees the three logs,
    // then the three removals of exactly those logs.
    for step in 0..2 {
        // Both wait for news (no entry within 300 ms) before the write, so only the
        // writer's notification can deliver it within the deadline.
        for stream in [&mut replayed, &mut live] {
            let idle = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
            assert!(idle.is_err(), "nothing new before the write: {idle:?}");
        }
        if step == 0 {
            commit_blocks(&mut writer, 4, 4).await;
        } else {
            writer.rollback(1, Some(&block(3))).await.expect("rollback");
        }
        for _ in 0..3 {
            let entry = tokio::time::timeout(within, replayed.next())
                .await
                .expect("notified")
                .expect("open")
                .expect("entry");
            let from_live = tokio::time::timeout(within, live.next())
                .await
                .expect("notified")
                .expect("open")
                .expect("entry");
            assert_eq!(
                entry, from_live,
                "the live subscription starts at the head and sees the same entries"
            );
            seen.push(entry);
        }
    }
    assert!(seen.windows(2).all(|w| w[0].cursor() < w[1].cursor()), "strictly increasing, no duplicate");
    assert_eq!(replay(&seen, true), stored(&db, &JournalFilter::default()).await);
    assert!(matches!(seen.last(), Some(JournalEntry::Removed(_))));

    // Resuming after a cursor gives exactly the journal's entries after it: here after
    // the first log of block 4, which the reorg has since removed, so the two other logs
    // are gone too and only the three removals follow.
    let at = seen[9].cursor();
    let want = all_after(&db, at, &JournalFilter::default(), 1000).await;
    assert!(want.len() == 3 && want.iter().all(|e| matches!(e, JournalEntry::Removed(_))), "{want:?}");
    let mut resumed =
        std::pin::pin!(db.subscribe(Some(at), JournalFilter::default()).await.expect("subscribe"));
    for want in &want {
        let got = tokio::time::timeout(within, resumed.next())
            .await
            .expect("resumed")
            .expect("open")
            .expect("entry");
        assert_eq!(&got, want);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), resumed.next()).await.is_err(),
        "nothing more until the next commit"
    );
}

/// The `tail` example's binary, built by `cargo test` beside this test binary.
fn tail_example() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let debug = exe.parent().and_then(|deps| deps.parent()).expect("target dir");
    let path = debug.join("examples").join("tail");
    assert!(path.exists(), "{} is missing: cargo test builds the examples", path.display());
    path
}

/// Lines of the example's file, each as (kind, cursor, event cursor for a removal).
fn lines(path: &std::path::Path) -> Vec<(String, Cursor, Option<Cursor>)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let cursor =
                |i: usize| f.get(i).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("line {l:?}"));
            (f[0].to_owned(), cursor(1), (f[0] == "removed").then(|| cursor(2)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_example_killed_and_restarted_twice_resumes_exactly() {
    let schema = SchemaName::new(SCHEMA).expect("name");
    let (test_db, pool, _conn) = seeded_instance(&schema, &[]).await;
    let mut writer = Writer::try_acquire(&pool, &schema).await.expect("connects").expect("the lock");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("journal.log");
    let start = |from_start: bool| {
        let mut cmd = tokio::process::Command::new(tail_example());
        cmd.env("DATABASE_URL", &test_db.url).arg(SCHEMA).arg(&file).kill_on_drop(true);
        if from_start {
            cmd.arg("--from-start");
        }
        cmd.stdout(std::process::Stdio::null()).spawn().expect("tail starts")
    };
    let wait_lines = async |n: usize| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while lines(&file).len() < n {
            assert!(tokio::time::Instant::now() < deadline, "{} of {n} lines", lines(&file).len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    commit_blocks(&mut writer, 1, 3).await;
    let mut tail = start(true);
    wait_lines(9).await;
    tail.kill().await.expect("kill -9");
    // Written while it is down: read when it comes back.
    commit_blocks(&mut writer, 4, 5).await;
    let mut tail = start(false);
    wait_lines(15).await;
    // Killed while entries arrive.
    commit_blocks(&mut writer, 6, 9).await;
    tail.kill().await.expect("kill -9");
    writer.rollback(1, Some(&block(7))).await.expect("rollback");
    commit_blocks(&mut writer, 8, 10).await;
    let mut tail = start(false);
    let db = DbClient::new(fast(&test_db.url)).expect("client");
    let journal = all_after(&db, Cursor(0), &JournalFilter::default(), 1000).await;
    let last = journal.last().map(JournalEntry::cursor).expect("entries");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while lines(&file).last().map(|l| l.1) != Some(last) {
        assert!(tokio::time::Instant::now() < deadline, "the tail reached {last:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tail.kill().await.expect("kill -9");

    let got = lines(&file);
    assert!(got.windows(2).all(|w| w[0].1 < w[1].1), "strictly increasing cursors, no line twice");
    // Nothing missed: every entry the journal holds now is in the file (the file also
    // holds the logs the reorg removed, seen before it).
    let cursors: std::collections::HashSet<Cursor> = got.iter().map(|l| l.1).collect();
    assert!(journal.iter().all(|e| cursors.contains(&e.cursor())), "every journal entry was written");
    // Replaying the file gives the stored events.
    let mut state = std::collections::BTreeSet::new();
    for (kind, cursor, removes) in &got {
        match removes {
            Some(c) => {
                state.remove(c);
            }
            None => {
                assert_eq!(kind, "log");
                state.insert(*cursor);
            }
        }
    }
    let stored: std::collections::BTreeSet<Cursor> =
        stored(&db, &JournalFilter::default()).await.into_keys().collect();
    assert_eq!(state, stored);
}
