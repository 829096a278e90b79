//! Epoch pages and the cached epoch summary against a real PostgreSQL: pagination math,
//! order, filters against a model, a missing instance, stored rows a newer indexer wrote.

use std::collections::HashSet;
use std::time::Duration;

use diesel_async::RunQueryDsl;
use tidemark_db_client::EpochQuery;
use tidemark_db_client::test_utils::fixtures::{
    epoch, epochs_matching, insert_epochs, migrated_instance, seeded_instance, varied_epochs,
};
use tidemark_db_client::test_utils::{TestDb, eventually};
use tidemark_db_client::{DbClient, DbClientConfig, DbError, EpochPage};
use tidemark_shared_types::{EpochItem, EpochStage, SchemaName};

use crate::SOON;
use crate::client::fast;

const SCHEMA: &str = "tidemark_demo";

fn schema() -> SchemaName {
    SchemaName::new(SCHEMA).expect("valid")
}

/// 150 epochs of chain 1 and 100 of chain 10 (ids overlap: ties are ordered by chain),
/// every stage on both chains.
fn two_chains() -> Vec<EpochItem> {
    let mut all = varied_epochs(1, 150);
    all.extend(varied_epochs(10, 100));
    all
}

/// Every page of `query` from 1 to one past the last, checking the page math on the way;
/// returns the items in order.
async fn walk(db: &DbClient, query: EpochQuery, expected_total: u64) -> Vec<EpochItem> {
    let mut all = Vec::new();
    let expected_pages = expected_total.div_ceil(query.size);
    for page in 1..=expected_pages + 1 {
        let q = EpochQuery { page, ..query };
        let got: EpochPage = db.epochs(&q).await.expect("page");
        assert_eq!(
            (got.total, got.pages, got.page, got.size),
            (expected_total, expected_pages, page, q.size)
        );
        let before = (page - 1) * q.size;
        let want_len = expected_total.saturating_sub(before).min(q.size);
        assert_eq!(got.items.len() as u64, want_len, "page {page} of {q:?}");
        all.extend(got.items);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_1_7_and_100_return_every_epoch_once_newest_first() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    let epochs = two_chains();
    insert_epochs(&mut conn, &schema(), &epochs).await.expect("insert");
    let db = DbClient::new(fast(&test_db.url)).expect("client");
    let model = epochs_matching(&epochs, None, None);

    for size in [1, 7, 100] {
        let all = walk(&db, EpochQuery { size, ..Default::default() }, 250).await;
        assert_eq!(all, model, "size {size}: every epoch once, newest first, every field");
        let keys: HashSet<(u64, u64)> = all.iter().map(|e| (e.chain_id, e.epoch_id)).collect();
        assert_eq!(keys.len(), 250);
    }
    // The first page is the newest: ids 150..141 of chain 1 (chain 10 stops at 100).
    let first = db.epochs(&EpochQuery::default()).await.expect("page");
    assert_eq!(
        first.items.iter().map(|e| e.epoch_id).collect::<Vec<_>>(),
        (141..=150).rev().collect::<Vec<_>>()
    );
    // Ties across chains: chain 1 before chain 10.
    let q = EpochQuery { page: 6, size: 10, ..Default::default() };
    let tie = db.epochs(&q).await.expect("page");
    assert_eq!(
        tie.items.iter().take(2).map(|e| (e.epoch_id, e.chain_id)).collect::<Vec<_>>(),
        [(100, 1), (100, 10)]
    );
    // Far past the end, even beyond the bigint range of the offset: empty, not an error.
    for page in [26, 1000, u64::MAX] {
        let past = db
            .epochs(&EpochQuery { page, size: EpochQuery::MAX_PAGE_SIZE, ..Default::default() })
            .await
            .expect("past");
        assert!(past.items.is_empty());
        assert_eq!((past.total, past.pages, past.page), (250, 3, page));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_and_chain_filters_match_the_model() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    let epochs = two_chains();
    insert_epochs(&mut conn, &schema(), &epochs).await.expect("insert");
    let db = DbClient::new(fast(&test_db.url)).expect("client");

    let stages = std::iter::once(None).chain(EpochStage::ALL.map(Some));
    for stage in stages {
        for chain_id in [None, Some(1), Some(10), Some(2), Some(u64::MAX)] {
            let want = epochs_matching(&epochs, chain_id, stage);
            assert!(
                !want.is_empty() || matches!(chain_id, Some(2) | Some(u64::MAX)),
                "the fixture covers {stage:?} on {chain_id:?}"
            );
            let q = EpochQuery { chain_id, stage, size: 7, page: 1 };
            let got = walk(&db, q, want.len() as u64).await;
            assert_eq!(got, want, "{q:?}");
            // `delivered` is a stage of the history only.
            assert!(
                got.iter()
                    .all(|e| stage.is_none_or(|s| e.stage == s || e.stages.iter().any(|h| h.stage == s)))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_table_and_a_missing_instance_read_as_empty_pages() {
    let test_db = TestDb::new().await;
    // No migrations, no schema.
    let db = DbClient::new(fast(&test_db.url)).expect("client");
    for q in
        [EpochQuery::default(), EpochQuery { page: 3, stage: Some(EpochStage::Stored), ..Default::default() }]
    {
        let page = db.epochs(&q).await.expect("no error");
        assert_eq!(page, EpochPage { items: vec![], total: 0, page: q.page, size: q.size, pages: 0 });
    }
    eventually(SOON, "summary read", async || db.epoch_summary().is_some()).await;
    assert_eq!(db.epoch_summary().as_deref(), Some(&Default::default()));

    // The instance exists, without epochs.
    let _pool = migrated_instance(&test_db.url, &schema()).await;
    for size in [1, 7, 100] {
        let page = db.epochs(&EpochQuery { size, ..Default::default() }).await.expect("page");
        assert_eq!((page.items.len(), page.total, page.pages), (0, 0, 0));
        let past = db.epochs(&EpochQuery { size, page: 2, ..Default::default() }).await.expect("page");
        assert_eq!((past.items.len(), past.total, past.pages, past.page), (0, 0, 0, 2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_pages_and_sizes_are_rejected_before_any_sql() {
    // Nothing listens there: the bounds are checked first.
    let db = DbClient::new(DbClientConfig::new("postgres://postgres@127.0.0.1:1/x", SCHEMA)).expect("lazy");
    for (q, field) in [
        (EpochQuery { page: 0, ..Default::default() }, "page"),
        (EpochQuery { size: 0, ..Default::default() }, "size"),
        (EpochQuery { size: 101, ..Default::default() }, "size"),
    ] {
        match db.epochs(&q).await {
            Err(DbError::InvalidQuery { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{q:?}: expected an invalid query, got {other:?}"),
        }
    }
    assert_eq!(db.queries_executed(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_holds_the_latest_epoch_and_the_unfinished_count_per_chain() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    let epochs = two_chains();
    insert_epochs(&mut conn, &schema(), &epochs).await.expect("insert");
    let db = DbClient::new(fast(&test_db.url)).expect("client");
    eventually(SOON, "summary", async || db.epoch_summary().is_some_and(|s| s.len() == 2)).await;

    let summary = db.epoch_summary().expect("cached");
    for (chain, n) in [(1, 150), (10, 100)] {
        let s = &summary[&chain];
        assert_eq!(s.latest.as_ref(), epochs.iter().find(|e| e.chain_id == chain && e.epoch_id == n));
        let unfinished = epochs.iter().filter(|e| e.chain_id == chain && e.stage.is_not_finalized()).count();
        assert_eq!(s.not_finalized, unfinished as u64, "chain {chain}");
    }

    // The indexer moves on: a new epoch of chain 10 and chain 10's stored ones finalized.
    diesel::sql_query(format!(
        "UPDATE {}.epochs SET stage = 'finalized' WHERE chain_id = 10 AND stage = 'stored'",
        schema().quoted()
    ))
    .execute(&mut conn)
    .await
    .expect("finalize");
    let newer = epoch(10, 101, EpochStage::Fetched);
    insert_epochs(&mut conn, &schema(), std::slice::from_ref(&newer)).await.expect("insert");
    let unfinished = epochs
        .iter()
        .filter(|e| {
            e.chain_id == 10
                && matches!(e.stage, EpochStage::Planned | EpochStage::Fetched | EpochStage::Decoded)
        })
        .count() as u64
        + 1;
    eventually(SOON, "summary refreshed", async || {
        db.epoch_summary()
            .is_some_and(|s| s[&10].latest.as_ref() == Some(&newer) && s[&10].not_finalized == unfinished)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_summary_costs_no_query() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    insert_epochs(&mut conn, &schema(), &two_chains()).await.expect("insert");
    // Default refresh intervals: config 60 s, status and epoch summary 1 s.
    let db = DbClient::new(DbClientConfig::new(&test_db.url, SCHEMA)).expect("client");
    eventually(SOON, "summary", async || db.epoch_summary().is_some_and(|s| s.len() == 2)).await;
    let before = db.queries_executed();
    let started = std::time::Instant::now();
    for _ in 0..1000 {
        assert!(db.epoch_summary().is_some());
    }
    let elapsed = started.elapsed();
    let used = db.queries_executed() - before;
    // Only the background refreshes run: status (two statements) and epochs (one), each a
    // second (the config has none stored, so it is re-read every second too: two more).
    let allowed = 5 * (elapsed.as_secs() + 2);
    assert!(used <= allowed, "{used} statements for 1,000 summary reads in {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_a_newer_indexer_added_are_left_out() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    let epochs = varied_epochs(1, 12);
    insert_epochs(&mut conn, &schema(), &epochs).await.expect("insert");
    // A newer indexer archived epoch 12 (the newest) and noted it in epoch 6's history.
    let s = schema().quoted();
    diesel::sql_query(format!("UPDATE {s}.epochs SET stage = 'archived' WHERE epoch_id = 12"))
        .execute(&mut conn)
        .await
        .expect("update");
    diesel::sql_query(format!(
        "UPDATE {s}.epochs SET stages = stages || '[{{\"stage\": \"archived\", \"at\": 1795400999.5}}]'::jsonb
          WHERE epoch_id = 6"
    ))
    .execute(&mut conn)
    .await
    .expect("update");
    let db = DbClient::new(fast(&test_db.url)).expect("client");

    let page = db.epochs(&EpochQuery { size: 100, ..Default::default() }).await.expect("served");
    assert_eq!(page.total, 11);
    assert_eq!(page.items.iter().map(|e| e.epoch_id).collect::<Vec<_>>(), (1..=11).rev().collect::<Vec<_>>());
    let six = page.items.iter().find(|e| e.epoch_id == 6).expect("epoch 6");
    assert_eq!(six.stages, epochs[5].stages, "the unknown history entry is skipped");

    eventually(SOON, "summary", async || db.epoch_summary().is_some_and(|s| !s.is_empty())).await;
    let summary = db.epoch_summary().expect("cached");
    assert_eq!(summary[&1].latest.as_ref().map(|e| e.epoch_id), Some(11));

    // A malformed row is an error, never a panic; the summary keeps the last good value.
    diesel::sql_query(format!("UPDATE {s}.epochs SET from_block = -5 WHERE epoch_id = 11"))
        .execute(&mut conn)
        .await
        .expect("update");
    let err = db.epochs(&EpochQuery::default()).await.expect_err("invalid");
    assert!(matches!(err, DbError::InvalidStoredValue { key: "epochs", .. }), "{err:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(db.epoch_summary().expect("kept")[&1].latest.as_ref().map(|e| e.epoch_id), Some(11));
}
