//! `GET /v1/epochs` and the `epochs` of `/status` over HTTP against a real database.

use std::collections::HashSet;
use std::time::Duration;
use tidemark_db_client::test_utils::eventually;

use serde_json::{Value, json};
use tidemark_db_client::test_utils::TestDb;
use tidemark_db_client::test_utils::fixtures::{
    epoch, epochs_matching, insert_epochs, seeded_instance, varied_epochs,
};
use tidemark_shared_types::{EpochItem, EpochStage};

use crate::support::{SCHEMA, TestApi, fast_config, schema};

/// 150 epochs of chain 1 and 100 of chain 10, every stage on both.
fn two_chains() -> Vec<EpochItem> {
    let mut all = varied_epochs(1, 150);
    all.extend(varied_epochs(10, 100));
    all
}

fn items(body: &Value) -> Vec<EpochItem> {
    serde_json::from_value(body["items"].clone()).unwrap_or_else(|e| panic!("items of {body}: {e}"))
}

/// Pages 1 to one past the last of `query` (which has no `page`), checking `total`,
/// `pages`, `page`, `size` and each page's length; returns the items in order.
async fn walk(api: &TestApi, query: &str, size: u64, total: u64) -> Vec<EpochItem> {
    let pages = total.div_ceil(size);
    let mut all = Vec::new();
    for page in 1..=pages + 1 {
        let sep = if query.is_empty() { "" } else { "&" };
        let path = format!("/v1/epochs?{query}{sep}page={page}&size={size}");
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        assert_eq!(
            (&r.body["total"], &r.body["pages"], &r.body["page"], &r.body["size"]),
            (&json!(total), &json!(pages), &json!(page), &json!(size)),
            "{path}"
        );
        let got = items(&r.body);
        assert_eq!(got.len() as u64, total.saturating_sub((page - 1) * size).min(size), "{path}");
        all.extend(got);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_covers_every_epoch_once_newest_first_for_sizes_1_7_and_100() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    let api = TestApi::start(fast_config(&test_db.url)).await;

    // The instance exists without epochs: empty pages, no page count.
    for size in [1, 7, 100] {
        assert!(walk(&api, "", size, 0).await.is_empty());
    }
    let r = api.get("/v1/epochs?page=9").await;
    assert_eq!(r.body, json!({"items": [], "total": 0, "page": 9, "size": 10, "pages": 0}));

    let epochs = two_chains();
    insert_epochs(&mut conn, &schema(), &epochs).await.expect("insert");
    let model = epochs_matching(&epochs, None, None);
    for size in [1, 7, 100] {
        let all = walk(&api, "", size, 250).await;
        assert_eq!(all, model, "size {size}: newest first, every field");
        let keys: HashSet<(u64, u64)> = all.iter().map(|e| (e.chain_id, e.epoch_id)).collect();
        assert_eq!(keys.len(), 250, "size {size}: each epoch exactly once");
    }

    // Defaults: page 1 of 10, the newest; the item shape of DESIGN §8.
    let r = api.get("/v1/epochs").await;
    assert_eq!((&r.body["page"], &r.body["size"], &r.body["pages"]), (&json!(1), &json!(10), &json!(25)));
    assert_eq!(r.header("cache-control"), "public, max-age=1");
    let first = &r.body["items"][0];
    let mut keys: Vec<&str> = first.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["chainId", "epochId", "error", "fromBlock", "stage", "stages", "toBlock"]);
    assert_eq!((&first["chainId"], &first["epochId"]), (&json!(1), &json!(150)));
    assert!(first["stages"][0]["at"].is_f64() && first["stages"][0]["stage"] == "planned", "{first}");

    // A page past the end is a 200 with no items.
    let r = api.get("/v1/epochs?page=4&size=100").await;
    assert_eq!(r.status, 200);
    assert_eq!((items(&r.body).len(), &r.body["total"], &r.body["pages"]), (0, &json!(250), &json!(3)));
    let r = api.get(&format!("/v1/epochs?page={}", u64::MAX)).await;
    assert_eq!((r.status.as_u16(), items(&r.body).len()), (200, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_and_chain_filters() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    let epochs = two_chains();
    insert_epochs(&mut conn, &schema(), &epochs).await.expect("insert");
    let api = TestApi::start(fast_config(&test_db.url)).await;

    for stage in EpochStage::ALL {
        let want = epochs_matching(&epochs, None, Some(stage));
        assert!(!want.is_empty(), "the fixture has {stage} epochs");
        let got = walk(&api, &format!("stage={stage}"), 7, want.len() as u64).await;
        assert_eq!(got, want, "stage={stage}");
        for chain in [1, 10] {
            let want = epochs_matching(&epochs, Some(chain), Some(stage));
            let got = walk(&api, &format!("chainId={chain}&stage={stage}"), 100, want.len() as u64).await;
            assert_eq!(got, want, "chainId={chain}&stage={stage}");
        }
    }
    let reorged = walk(&api, "stage=reorged", 100, 41).await;
    assert!(
        reorged.iter().all(|e| e.stage == EpochStage::Reorged
            && e.stages.last().map(|s| s.stage) == Some(EpochStage::Reorged))
    );

    for chain in [1, 10, 2] {
        let want = epochs_matching(&epochs, Some(chain), None);
        let got = walk(&api, &format!("chainId={chain}"), 7, want.len() as u64).await;
        assert_eq!(got, want, "chainId={chain}");
    }
    // One chain's epochs are its timeline, newest first.
    let ids: Vec<u64> = walk(&api, "chainId=10", 100, 100).await.iter().map(|e| e.epoch_id).collect();
    assert_eq!(ids, (1..=100).rev().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400s_naming_the_field() {
    let test_db = TestDb::new().await;
    let api = TestApi::start(fast_config(&test_db.url)).await;
    let cases = [
        ("size=101", "size"),
        ("size=0", "size"),
        ("size=-1", "size"),
        ("size=1e2", "size"),
        ("page=0", "page"),
        ("page=abc", "page"),
        ("page=-3", "page"),
        ("page=18446744073709551616", "page"),
        ("stage=bogus", "stage"),
        ("stage=Finalized", "stage"),
        ("stage=finalized%20", "stage"),
        ("chainId=x", "chainId"),
        ("chainId=9223372036854775808", "chainId"),
        ("chainid=1", "chainid"),
        ("limit=5", "limit"),
        ("page=1&page=2", "page"),
    ];
    for (qs, field) in cases {
        let r = api.get(&format!("/v1/epochs?{qs}")).await;
        assert_eq!(r.status, 400, "{qs}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "invalid_parameter", "{qs}");
        assert_eq!(r.body["error"]["field"], field, "{qs}: {:?}", r.body);
        assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(r.header("content-type"), "application/json");
    }
    let r = api.get("/v1/epochs?stage=bogus").await;
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.contains("reorged")), "{:?}", r.body);
    // Empty values count as absent; the instance is not there yet: an empty page.
    let r = api.get("/v1/epochs?page=&size=&stage=&chainId=").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!({"items": [], "total": 0, "page": 1, "size": 10, "pages": 0}));
    // The bounds themselves are fine.
    assert_eq!(api.get("/v1/epochs?size=100&page=1").await.status, 200);
    assert_eq!(api.get("/v1/epochs?size=1").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_carries_the_cached_epoch_summary_per_chain() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[(1, 1509, 1509), (10, 1009, 1009)]).await;
    let epochs = two_chains();
    insert_epochs(&mut conn, &schema(), &epochs).await.expect("insert");
    let api = TestApi::start(fast_config(&test_db.url)).await;
    eventually(Duration::from_secs(15), "healthy", || async { api.get("/health").await.status == 200 }).await;
    eventually(Duration::from_secs(15), "epochs cached", || async {
        api.get("/status").await.body["epochs"].as_object().is_some_and(|m| m.len() == 2)
    })
    .await;

    let status = api.get("/status").await;
    assert_eq!(status.status, 200);
    for (chain, latest_id) in [(1u64, 150u64), (10, 100)] {
        let summary = &status.body["epochs"][chain.to_string()];
        let latest: EpochItem = serde_json::from_value(summary["latest"].clone()).expect("an epoch");
        assert_eq!(Some(&latest), epochs.iter().find(|e| e.chain_id == chain && e.epoch_id == latest_id));
        let unfinished = epochs.iter().filter(|e| e.chain_id == chain && e.stage.is_not_finalized()).count();
        assert_eq!(summary["notFinalized"], json!(unfinished), "chain {chain}");
    }
    // The snapshot's own shape is unchanged.
    let mut keys: Vec<&str> = status.body.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["config", "epochs", "realtimeProjection", "responseCode", "warnings"]);
    assert!(status.body["realtimeProjection"]["snapshot"]["omnichainSnapshot"]["chains"]["1"].is_object());

    // A new epoch shows up within the refresh interval.
    let newer = epoch(1, 151, EpochStage::Decoded);
    insert_epochs(&mut conn, &schema(), std::slice::from_ref(&newer)).await.expect("insert");
    eventually(Duration::from_secs(15), "summary refreshed", || async {
        api.get("/status").await.body["epochs"]["1"]["latest"]["epochId"] == json!(151)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_with_epochs_is_served_from_the_cache() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[(1, 40, 41), (10, 40, 41)]).await;
    insert_epochs(&mut conn, &schema(), &two_chains()).await.expect("insert");
    // Default refresh intervals (config 60 s, status and epoch summary 1 s).
    let api = TestApi::start(tidemark_db_client::DbClientConfig::new(&test_db.url, SCHEMA)).await;
    eventually(Duration::from_secs(15), "epochs cached", || async {
        let r = api.get("/status").await;
        r.status == 200 && r.body["epochs"].as_object().is_some_and(|m| m.len() == 2)
    })
    .await;

    let before = api.db.queries_executed();
    let started = std::time::Instant::now();
    for _ in 0..1000 {
        let r = api.get("/status").await;
        assert_eq!(r.status, 200);
        assert!(r.body["epochs"]["10"]["latest"].is_object());
    }
    let elapsed = started.elapsed();
    let used = api.db.queries_executed() - before;
    eprintln!("1,000 /status requests with epochs in {elapsed:?} used {used} SQL statements");
    // Only the background refreshes run, once a second: status (two statements) and the
    // epoch summary (one).
    assert!(used <= 3 * (elapsed.as_secs() + 2), "{used} statements in {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_before_any_epoch_has_an_empty_epochs_object() {
    let (test_db, _pool, _conn) = seeded_instance(&schema(), &[(31337, 40, 41)]).await;
    let api = TestApi::start(fast_config(&test_db.url)).await;
    eventually(Duration::from_secs(15), "healthy", || async { api.get("/health").await.status == 200 }).await;
    let status = api.get("/status").await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["epochs"], json!({}));
}
