//! `GET /v1/events` over HTTP against a real database (acceptance 5).

use std::collections::HashSet;
use std::time::Duration;
use tidemark_db_client::test_utils::eventually;

use serde_json::Value;
use tidemark_db_client::test_utils::TestDb;
use tidemark_db_client::test_utils::fixtures::{
    TestEvent, block, following_status, insert_event, insert_synthetic_events, seeded_instance,
    varied_events, word,
};
use tidemark_db_client::test_utils::metadata::write_indexing_status;
use tidemark_db_client::writer::PgPool;
use tidemark_db_client::{DbClientConfig, EventQuery, PoolConfig};
use tidemark_shared_types::{Cursor, EventItem};

use crate::support::{SCHEMA, TestApi, fast_config, schema};

fn cursors(body: &Value) -> Vec<i64> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["cursor"].as_str().expect("a string").parse().expect("decimal"))
        .collect()
}

/// Every page of `query` (without `after`), following `nextCursor`.
async fn walk(api: &TestApi, query: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let sep = if query.is_empty() { "" } else { "&" };
        let path = match &after {
            Some(a) => format!("/v1/events?{query}{sep}after={a}"),
            None => format!("/v1/events?{query}"),
        };
        let r = api.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        out.extend(cursors(&r.body));
        match r.body["nextCursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => {
                assert!(r.body["nextCursor"].is_null());
                return out;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_works() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    let events = varied_events(120);
    let mut stored = Vec::new();
    for e in &events {
        stored.push(insert_event(&mut conn, &schema(), e).await.expect("insert").0);
    }
    let api = TestApi::start(fast_config(&test_db.url)).await;

    let registry = format!("0x{:040X}", 0xabc0 + 10);
    let tx = events[9].tx_hash.to_uppercase().replacen("0X", "0x", 1);
    let cases: Vec<(String, EventQuery)> = vec![
        (String::new(), EventQuery::default()),
        ("chainId=10".into(), EventQuery { chain_id: Some(10), ..Default::default() }),
        ("contract=Registry".into(), EventQuery { contract: Some("Registry".into()), ..Default::default() }),
        (
            "contract=Token&event=Transfer".into(),
            EventQuery {
                contract: Some("Token".into()),
                event: Some("Transfer".into()),
                ..Default::default()
            },
        ),
        (format!("address={registry}"), EventQuery { address: Some(registry.clone()), ..Default::default() }),
        (format!("txHash={tx}"), EventQuery { tx_hash: Some(tx.clone()), ..Default::default() }),
        (format!("topic1={}", word(3)), EventQuery { topic1: Some(word(3)), ..Default::default() }),
        (format!("topic2={}", word(6)), EventQuery { topic2: Some(word(6)), ..Default::default() }),
        (format!("topic3={}", word(1)), EventQuery { topic3: Some(word(1)), ..Default::default() }),
        (
            "chainId=1&fromBlock=20&toBlock=1000".into(),
            EventQuery {
                chain_id: Some(1),
                from_block: Some(20),
                to_block: Some(1000),
                ..Default::default()
            },
        ),
        (
            "chainId=10&fromBlock=0&toBlock=5".into(),
            EventQuery { chain_id: Some(10), from_block: Some(0), to_block: Some(5), ..Default::default() },
        ),
        (
            format!("chainId=1&event=Transfer&fromBlock=3&toBlock=25&topic1={}", word(2)),
            EventQuery {
                chain_id: Some(1),
                event: Some("Transfer".into()),
                from_block: Some(3),
                to_block: Some(25),
                topic1: Some(word(2)),
                ..Default::default()
            },
        ),
    ];
    for (qs, model) in &cases {
        let want: Vec<i64> =
            events.iter().zip(&stored).filter(|(e, _)| e.matches(model)).map(|(_, c)| *c).collect();
        assert!(!want.is_empty() || qs.is_empty(), "{qs}: the fixture should match something");
        let newest_first: Vec<i64> = want.iter().rev().copied().collect();
        for limit in ["7", "1000"] {
            let sep = if qs.is_empty() { "" } else { "&" };
            assert_eq!(walk(&api, &format!("{qs}{sep}limit={limit}")).await, want, "{qs} limit {limit}");
            // Newest first, `nextCursor` paging towards older events: the same set reversed.
            assert_eq!(
                walk(&api, &format!("{qs}{sep}limit={limit}&order=desc")).await,
                newest_first,
                "{qs} limit {limit} order=desc"
            );
        }
    }

    // `order=desc` without `after` is the newest page, which changes with every commit.
    let r = api.get("/v1/events?order=desc&limit=3").await;
    assert_eq!(cursors(&r.body), [stored[119], stored[118], stored[117]]);
    assert_eq!(r.header("cache-control"), "public, max-age=1");
    let r = api.get(&format!("/v1/events?order=desc&after={}&limit=2", stored[10])).await;
    assert_eq!(cursors(&r.body), [stored[9], stored[8]], "`after` is exclusive, towards older events");
    assert_eq!(api.get("/v1/events?order=newest").await.status, 400);

    // `after` is exclusive.
    let r = api.get(&format!("/v1/events?after={}&limit=2", stored[10])).await;
    assert_eq!(cursors(&r.body), [stored[11], stored[12]]);

    // The item shape of DESIGN §6.
    let r = api.get(&format!("/v1/events?txHash={}", events[0].tx_hash)).await;
    let item = &r.body["items"][0];
    let mut keys: Vec<&str> = item.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "address",
            "args",
            "blockHash",
            "blockNumber",
            "blockTimestamp",
            "chainId",
            "contract",
            "cursor",
            "event",
            "finalized",
            "logIndex",
            "signature",
            "transactionHash",
            "transactionIndex"
        ]
    );
    assert_eq!(item["args"]["from"], word(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_the_pages_over_ten_thousand_events_returns_each_once_in_order() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    insert_synthetic_events(&mut conn, &schema(), 31337, 10_000).await.expect("insert");
    let api = TestApi::start(fast_config(&test_db.url)).await;
    for limit in [1000, 97] {
        let all = walk(&api, &format!("limit={limit}")).await;
        assert_eq!(all.len(), 10_000, "limit {limit}");
        assert!(all.windows(2).all(|w| w[0] < w[1]), "cursor order");
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 10_000);
    }
    // The default page is 100.
    assert_eq!(cursors(&api.get("/v1/events").await.body).len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400s_naming_the_field() {
    let test_db = TestDb::new().await;
    let api = TestApi::start(fast_config(&test_db.url)).await;
    let cases = [
        ("limit=1001", "limit"),
        ("limit=0", "limit"),
        ("limit=-5", "limit"),
        ("limit=abc", "limit"),
        ("chainId=x", "chainId"),
        ("chainId=9223372036854775808", "chainId"),
        ("fromBlock=18446744073709551616", "fromBlock"),
        ("fromBlock=9&toBlock=3", "fromBlock"),
        ("toBlock=1.5", "toBlock"),
        ("after=-1", "after"),
        ("after=9223372036854775808", "after"),
        ("after=abc", "after"),
        ("address=0x1234", "address"),
        ("address=5fbdb2315678afecb367f032d93f642f64180aa3", "address"),
        ("txHash=0xzz", "txHash"),
        ("topic1=0x00", "topic1"),
        ("topic2=nothex", "topic2"),
        ("topic3=0x0000000000000000000000000000000000000000000000000000000000000000ff", "topic3"),
        ("chainid=1", "chainid"),
        ("limit=5&limit=6", "limit"),
        ("contract=a%00b", "contract"),
        // Shapes no index serves: the missing companion parameter is named.
        ("event=Transfer", "contract"),
        ("event=Transfer&fromBlock=3", "contract"),
        ("fromBlock=20", "chainId"),
        ("toBlock=5", "chainId"),
        ("fromBlock=1&toBlock=5&limit=3", "chainId"),
        ("chainId=1&event=Transfer", "contract"),
        ("address=0x0000000000000000000000000000000000000001&event=Transfer", "contract"),
        ("chainId=1&fromBlock=20", "toBlock"),
        ("chainId=1&toBlock=5", "fromBlock"),
        ("contract=Token&fromBlock=1&toBlock=5", "chainId"),
    ];
    for (qs, field) in cases {
        let r = api.get(&format!("/v1/events?{qs}")).await;
        assert_eq!(r.status, 400, "{qs}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "invalid_parameter", "{qs}");
        assert_eq!(r.body["error"]["field"], field, "{qs}");
        assert!(r.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(r.header("content-type"), "application/json");
    }
    let long = "x".repeat(300);
    assert_eq!(api.get(&format!("/v1/events?contract={long}")).await.status, 400);
    // Empty values count as absent; the instance is not there yet: an empty page.
    let r = api.get("/v1/events?limit=&chainId=").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, serde_json::json!({"items": [], "nextCursor": null}));
}

/// `events` stored under a config of chains 1 and 10 and a status where chain 1 knows
/// block 17 (final up to block 5, depth 12) and chain 10 block 3 (nothing final); the API
/// serving them, healthy; the events' cursors.
async fn serve_with_finality(events: &[TestEvent]) -> (TestDb, TestApi, Vec<Cursor>) {
    serve_with_finality_using(events, |_| {}).await
}

/// [`serve_with_finality`] with the API's client settings changed by `tweak`.
async fn serve_with_finality_using(
    events: &[TestEvent],
    tweak: impl FnOnce(&mut DbClientConfig),
) -> (TestDb, TestApi, Vec<Cursor>) {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[(1, 17, 17), (10, 3, 3)]).await;
    let mut stored = Vec::new();
    for e in events {
        stored.push(insert_event(&mut conn, &schema(), e).await.expect("insert"));
    }
    let mut config = fast_config(&test_db.url);
    tweak(&mut config);
    let api = TestApi::start(config).await;
    eventually(Duration::from_secs(15), "healthy", || async { api.get("/health").await.status == 200 }).await;
    (test_db, api, stored)
}

/// A database session of the test's own.
async fn session(url: &str) -> tokio_postgres::Client {
    tidemark_db_client::tls::connect(url).await.expect("connect")
}

/// A session that holds `tables` in ACCESS EXCLUSIVE mode until it runs `COMMIT`: every
/// read of them waits meanwhile.
async fn lock_tables(url: &str, tables: &str) -> tokio_postgres::Client {
    let locker = session(url).await;
    locker
        .batch_execute(&format!("BEGIN; LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"))
        .await
        .expect("lock");
    locker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalized_flags_and_cache_headers_follow_finality() {
    let events: Vec<TestEvent> = varied_events(40).into_iter().filter(|e| e.chain_id == 1).collect();
    let (_db, api, _) = serve_with_finality(&events).await;

    let r = api.get("/v1/events?limit=1000").await;
    for item in r.body["items"].as_array().expect("items") {
        let final_ = item["blockNumber"].as_u64().expect("number") <= 5;
        assert_eq!(item["finalized"], final_, "{item}");
    }
    assert_eq!(r.header("cache-control"), "public, max-age=1");
    // A full page of final events with more to come cannot change: cacheable longer.
    let r = api.get("/v1/events?chainId=1&fromBlock=0&toBlock=5&limit=2").await;
    assert!(r.body["nextCursor"].is_string());
    assert_eq!(r.header("cache-control"), "public, max-age=60");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_are_exactly_the_event_item_of_each_stored_event() {
    let events = varied_events(30);
    let (test_db, api, stored) = serve_with_finality(&events).await;

    let r = api.get("/v1/events?limit=1000").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let want: Vec<Value> = events
        .iter()
        .zip(&stored)
        .map(|(e, cursor)| {
            let b = block(e.block_number);
            let item = EventItem {
                cursor: *cursor,
                chain_id: e.chain_id,
                block_number: e.block_number,
                block_hash: b.hash,
                block_timestamp: b.timestamp,
                transaction_hash: e.tx_hash.clone(),
                transaction_index: u64::from(e.tx_index),
                log_index: u64::from(e.log_index),
                address: e.address.clone(),
                contract: e.contract.clone(),
                event: e.event.clone(),
                signature: e.signature.clone(),
                args: e.args.clone(),
                decode_error: None,
                finalized: e.chain_id == 1 && e.block_number <= 5,
            };
            serde_json::to_value(item).expect("serializes")
        })
        .collect();
    assert_eq!(
        r.body["items"],
        Value::Array(want),
        "every field, named and typed as EventItem serializes it"
    );
    assert!(r.body["nextCursor"].is_null());
    // The library reads the same items back as EventItem values.
    let db = tidemark_db_client::DbClient::new(fast_config(&test_db.url)).expect("client");
    db.first_load().await;
    let page = db.events(&EventQuery::default()).await.expect("page");
    assert_eq!(serde_json::to_value(&page.items).expect("serializes"), r.body["items"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_cancelled_by_the_statement_timeout_is_a_503_that_says_so() {
    let (test_db, api, _) = serve_with_finality_using(&varied_events(5), |c| {
        c.pool.statement_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    assert_eq!(api.get("/v1/events").await.status, 200);

    // Another session holds the tables: the API's reads wait until the server cancels them.
    let locker = lock_tables(&test_db.url, &format!("{SCHEMA}.events, {SCHEMA}.epochs")).await;
    for path in ["/v1/events", "/v1/epochs"] {
        let r = api.get(path).await;
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "query_timeout", "{path}: {}", r.body);
        assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.contains("300 ms")), "{}", r.body);
        assert_eq!(r.header("cache-control"), "no-store");
    }
    // The database itself was reachable all along: the instance stays healthy.
    assert_eq!(api.get("/health").await.status, 200);

    locker.batch_execute("COMMIT").await.expect("unlock");
    assert_eq!(api.get("/v1/events").await.status, 200);
    assert_eq!(api.get("/v1/epochs").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_stays_current_while_slow_queries_hold_every_pooled_connection() {
    let (test_db, api, _) = serve_with_finality_using(&varied_events(5), |c| {
        c.pool.max_size = 2;
        c.pool.statement_timeout = std::time::Duration::from_secs(6);
    })
    .await;

    // Two requests wait on a locked table, holding both of the pool's connections.
    let locker = lock_tables(&test_db.url, &format!("{SCHEMA}.events")).await;
    tidemark_db_client::tls::install_crypto_provider();
    let slow: Vec<_> = (0..2)
        .map(|_| {
            // A client each: two connections to the API, whatever its pooling does.
            let url = format!("{}/v1/events", api.base);
            tokio::spawn(
                async move { reqwest::Client::new().get(url).send().await.map(|r| r.status().as_u16()) },
            )
        })
        .collect();
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()";
    // Watched from outside the locking transaction, whose view of pg_stat_activity is
    // the snapshot of its first read.
    let observer = session(&test_db.url).await;
    eventually(Duration::from_secs(5), "both requests waiting on the lock", || async {
        observer.query_one(waiting, &[]).await.is_ok_and(|r| r.get::<_, i64>(0) == 2)
    })
    .await;

    // The indexer writes a new snapshot: the status cache still re-reads it at once.
    let pool = PgPool::new(PoolConfig::new(test_db.url.clone())).expect("pool");
    let mut conn = pool.get().await.expect("conn");
    write_indexing_status(&mut conn, &schema(), &following_status(&[(1, 40, 40), (10, 3, 3)]))
        .await
        .expect("status");
    let indexed = || async {
        let status = api.db.indexing_status().expect("status");
        status.omnichain_snapshot.chains.get(&1).and_then(|c| c.latest_indexed_block()).map(|b| b.number)
    };
    eventually(Duration::from_secs(3), "the new status served", || async { indexed().await == Some(40) })
        .await;
    assert_eq!(api.get("/status").await.status, 200);
    assert!(slow.iter().all(|t| !t.is_finished()), "the slow requests were still waiting");

    locker.batch_execute("COMMIT").await.expect("unlock");
    for t in slow {
        assert_eq!(t.await.expect("task").expect("response"), 200);
    }
}
