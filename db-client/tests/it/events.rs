//! Event queries against a real PostgreSQL: every filter against a model, keyset
//! pagination, finality, a missing instance.

use std::collections::HashSet;

use tidemark_db_client::test_utils::fixtures::{
    TestEvent, following_status, insert_event, insert_synthetic_events, public_config, seeded_instance,
    varied_events, word,
};
use tidemark_db_client::test_utils::metadata::{write_indexing_status, write_public_config};
use tidemark_db_client::test_utils::plans::{Filter, Shape};
use tidemark_db_client::test_utils::{TestDb, eventually};
use tidemark_db_client::{DbClient, DbClientConfig};
use tidemark_db_client::{EventQuery, Limit};
use tidemark_shared_types::{Cursor, EventItem, SchemaName};

use crate::SOON;
use crate::client::fast;

const SCHEMA: &str = "tidemark_demo";

fn schema() -> SchemaName {
    SchemaName::new(SCHEMA).expect("valid")
}

/// All pages of `q`, checking the page invariants on the way.
async fn walk(db: &DbClient, mut q: EventQuery) -> Vec<EventItem> {
    let mut all: Vec<EventItem> = Vec::new();
    loop {
        let page = db.events(&q).await.expect("page");
        assert!(page.items.len() <= q.limit.get() as usize);
        assert!(page.items.windows(2).all(|w| w[0].cursor < w[1].cursor), "ascending");
        if let (Some(prev), Some(first)) = (all.last(), page.items.first()) {
            assert!(prev.cursor < first.cursor);
        }
        all.extend(page.items.iter().cloned());
        match page.next_cursor {
            Some(c) => {
                assert_eq!(page.items.len(), q.limit.get() as usize, "a next cursor only on full pages");
                assert_eq!(Some(c), page.items.last().map(|i| i.cursor));
                q.after = Some(c);
            }
            None => return all,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_matches_the_model() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    let events = varied_events(240);
    let mut cursors = Vec::new();
    for e in &events {
        cursors.push(insert_event(&mut conn, &schema(), e).await.expect("insert"));
    }
    let db = DbClient::new(fast(&test_db.url)).expect("client");

    let base = EventQuery { limit: Limit::new(7).expect("limit"), ..Default::default() };
    let mut queries = vec![base.clone()];
    let mut add = |f: &dyn Fn(&mut EventQuery)| {
        let mut q = base.clone();
        f(&mut q);
        queries.push(q);
    };
    add(&|q| q.chain_id = Some(10));
    add(&|q| q.chain_id = Some(2));
    add(&|q| q.contract = Some("Registry".into()));
    add(&|q| {
        q.contract = Some("Token".into());
        q.event = Some("Transfer".into());
    });
    add(&|q| {
        q.contract = Some("Registry".into());
        q.event = Some("Registered".into());
    });
    add(&|q| q.address = Some(format!("0x{:040X}", 0xabc0 + 1)));
    add(&|q| q.tx_hash = Some(events[17].tx_hash.to_uppercase().replace("0X", "0x")));
    add(&|q| q.topic1 = Some(word(3)));
    add(&|q| q.topic2 = Some(word(4)));
    add(&|q| q.topic2 = Some(word(0)));
    add(&|q| q.topic3 = Some(word(1)));
    add(&|q| {
        q.chain_id = Some(1);
        q.from_block = Some(30);
        q.to_block = Some(u64::MAX - 1);
    });
    add(&|q| {
        q.chain_id = Some(10);
        q.from_block = Some(0);
        q.to_block = Some(12);
    });
    add(&|q| {
        q.from_block = Some(10);
        q.to_block = Some(20);
        q.chain_id = Some(1);
        q.event = Some("Transfer".into());
        q.topic1 = Some(word(2));
    });
    add(&|q| q.after = Some(cursors[100]));
    add(&|q| {
        q.chain_id = Some(1);
        q.from_block = Some(u64::MAX);
        q.to_block = Some(u64::MAX);
    });
    add(&|q| {
        q.chain_id = Some(1);
        q.from_block = Some(3);
        q.to_block = Some(u64::MAX);
    });
    add(&|q| q.chain_id = Some(u64::MAX));
    add(&|q| q.contract = Some("Tok\0en".into()));
    // Every shape the rule accepts, with the values of a `Registry` event (four topics)
    // and of a `Token` one: the statement names a different index per shape.
    for e in [&events[199], &events[200]] {
        // A shape with a topic the event lacks is left out (it would be another shape).
        let has = |f: Filter| match f {
            Filter::Topic3 => e.topics.len() > 3,
            _ => true,
        };
        for shape in Shape::all().filter(|s| s.check().is_ok() && s.filters().all(has)) {
            let mut q = base.clone();
            for f in shape.filters() {
                match f {
                    Filter::ChainId => q.chain_id = Some(e.chain_id),
                    Filter::Contract => q.contract = Some(e.contract.clone()),
                    Filter::Event => q.event = Some(e.event.clone()),
                    Filter::Address => q.address = Some(e.address.clone()),
                    Filter::TxHash => q.tx_hash = Some(e.tx_hash.clone()),
                    Filter::Topic1 => q.topic1 = e.topics.get(1).cloned(),
                    Filter::Topic2 => q.topic2 = e.topics.get(2).cloned(),
                    Filter::Topic3 => q.topic3 = e.topics.get(3).cloned(),
                    Filter::FromBlock => q.from_block = Some(e.block_number.saturating_sub(20)),
                    Filter::ToBlock => q.to_block = Some(e.block_number + 3),
                }
            }
            queries.push(q);
        }
    }
    // 7 is bound as a parameter; 10 is one of the page sizes written into the SQL text of
    // the statements planned once: both must read the same events.
    for limit in [7, 10] {
        for q in &queries {
            let q = EventQuery { limit: Limit::new(limit).expect("limit"), ..q.clone() };
            let got: Vec<Cursor> = walk(&db, q.clone()).await.iter().map(|i| i.cursor).collect();
            let want: Vec<Cursor> = events
                .iter()
                .zip(&cursors)
                .filter(|(e, c)| e.matches(&q) && q.after.is_none_or(|a| **c > a))
                .map(|(_, c)| *c)
                .collect();
            assert_eq!(got, want, "{q:?}");
        }
    }

    // Items carry every field.
    let q = EventQuery { tx_hash: Some(events[5].tx_hash.clone()), ..Default::default() };
    let item = &db.events(&q).await.expect("page").items[0];
    let e = &events[5];
    assert_eq!(
        (item.chain_id, item.block_number, item.log_index, item.address.as_str(), item.signature.as_str()),
        (e.chain_id, e.block_number, u64::from(e.log_index), e.address.as_str(), e.signature.as_str())
    );
    assert_eq!(item.args, e.args);
    assert_eq!(item.block_hash, word(e.block_number));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_over_ten_thousand_events_return_each_once_in_order() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    insert_synthetic_events(&mut conn, &schema(), 31337, 10_000).await.expect("insert");
    let db = DbClient::new(fast(&test_db.url)).expect("client");
    for limit in [1000, 333] {
        let q = EventQuery { limit: Limit::new(limit).expect("limit"), ..Default::default() };
        let all = walk(&db, q).await;
        assert_eq!(all.len(), 10_000);
        let distinct: HashSet<Cursor> = all.iter().map(|i| i.cursor).collect();
        assert_eq!(distinct.len(), 10_000);
    }
    // An exactly full last page has no next cursor.
    let q = EventQuery {
        limit: Limit::new(1000).expect("limit"),
        after: Some(Cursor(9000)),
        ..Default::default()
    };
    let page = db.events(&q).await.expect("page");
    assert_eq!((page.items.len(), page.next_cursor), (1000, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finality_follows_the_cached_status_and_depth() {
    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    for block in [80, 88, 89, 100] {
        insert_event(&mut conn, &schema(), &TestEvent::transfer(31337, block, 0, 1, 2))
            .await
            .expect("insert");
    }
    let db = DbClient::new(fast(&test_db.url)).expect("client");
    let finalized = |db: DbClient| async move {
        let page = db.events(&EventQuery::default()).await.expect("page");
        page.items.iter().map(|i| i.finalized).collect::<Vec<_>>()
    };
    // Nothing is known about the chain: nothing is final.
    assert_eq!(finalized(db.clone()).await, [false; 4]);

    write_public_config(&mut conn, &public_config(SCHEMA, &[31337])).await.expect("config");
    write_indexing_status(&mut conn, &schema(), &following_status(&[(31337, 95, 100)]))
        .await
        .expect("status");
    eventually(SOON, "healthy", async || db.is_healthy()).await;
    // Depth 12 behind the latest known block 100: up to 88.
    assert_eq!(finalized(db.clone()).await, [true, true, false, false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_instance_reads_as_an_empty_page() {
    let test_db = TestDb::new().await;
    let db = DbClient::new(DbClientConfig::new(&test_db.url, SCHEMA)).expect("client");
    let page = db.events(&EventQuery::default()).await.expect("no error");
    assert!(page.items.is_empty() && page.next_cursor.is_none());
}

/// A log that did not decode: `args` null and its `decode_error`, in both page forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecoded_events_have_null_args_and_their_error() {
    use diesel_async::RunQueryDsl;

    let (test_db, _pool, mut conn) = seeded_instance(&schema(), &[]).await;
    let decoded =
        insert_event(&mut conn, &schema(), &TestEvent::transfer(1, 1, 0, 1, 2)).await.expect("insert");
    let undecoded =
        insert_event(&mut conn, &schema(), &TestEvent::transfer(1, 2, 0, 1, 2)).await.expect("insert");
    diesel::sql_query(format!(
        "UPDATE {SCHEMA}.events SET args = NULL, decode_error = 'log has 2 topics; the event has 3' WHERE cursor = {}",
        undecoded.0
    ))
    .execute(&mut conn)
    .await
    .expect("update");
    let db = DbClient::new(fast(&test_db.url)).expect("client");
    let page = db.events(&EventQuery::default()).await.expect("page");
    assert_eq!(page.items.len(), 2);
    assert_eq!((page.items[0].cursor, page.items[0].decode_error.as_deref()), (decoded, None));
    assert_eq!(page.items[1].args, serde_json::Value::Null);
    assert_eq!(page.items[1].decode_error.as_deref(), Some("log has 2 topics; the event has 3"));
    let json = serde_json::to_value(&page.items[1]).expect("json");
    assert_eq!(json["decodeError"], "log has 2 topics; the event has 3");
    let raw = db.events_raw(&EventQuery::default()).await.expect("raw page");
    assert_eq!(raw.items[1].args.get(), "null");
    assert!(
        serde_json::to_value(&page.items[0]).expect("json").get("decodeError").is_none(),
        "absent when null"
    );
}

/// The reader keeps each event type's names between pages. An instance dropped and
/// created again reuses the type ids for other types: its pages carry its own names, not
/// the ones read before, and an events page and a journal page agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_instance_is_read_with_its_own_event_names() {
    use diesel_async::RunQueryDsl;
    use tidemark_db_client::JournalFilter;
    use tidemark_db_client::test_utils::fixtures::create_instance;
    use tidemark_shared_types::JournalEntry;

    let (test_db, pool, mut conn) = seeded_instance(&schema(), &[]).await;
    insert_event(&mut conn, &schema(), &TestEvent::transfer(1, 1, 0, 1, 2)).await.expect("insert");
    let db = DbClient::new(fast(&test_db.url)).expect("client");
    let names = |i: &EventItem| (i.contract.clone(), i.event.clone(), i.signature.clone());
    let page = db.events(&EventQuery::default()).await.expect("page");
    assert_eq!(
        page.items.iter().map(names).collect::<Vec<_>>(),
        [("Token".to_owned(), "Transfer".to_owned(), TestEvent::transfer(1, 1, 0, 1, 2).signature)]
    );

    diesel::sql_query(format!("DROP SCHEMA {SCHEMA} CASCADE")).execute(&mut conn).await.expect("drop");
    create_instance(&pool, &schema()).await.expect("instance again");
    let mut deposit = TestEvent::transfer(1, 1, 0, 1, 2);
    deposit.contract = "Vault".into();
    deposit.event = "Deposit".into();
    deposit.signature = "event Deposit(address indexed from, address indexed to, uint256 value)".into();
    insert_event(&mut conn, &schema(), &deposit).await.expect("insert");

    let expected = [("Vault".to_owned(), "Deposit".to_owned(), deposit.signature.clone())];
    let page = db.events(&EventQuery::default()).await.expect("page");
    assert_eq!(page.items.iter().map(names).collect::<Vec<_>>(), expected);
    let journal =
        db.journal_after(Cursor(0), &JournalFilter::default(), Limit::default()).await.expect("journal");
    let logs: Vec<_> = journal
        .entries
        .iter()
        .filter_map(|e| if let JournalEntry::Log(i) = e { Some(names(i)) } else { None })
        .collect();
    assert_eq!(logs, expected);
}
