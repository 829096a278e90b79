//! `/v1/stream` against a real PostgreSQL and the real writer: catch-up then live with a
//! reorg, resume by `Last-Event-ID`, a slow client that lags and still gets every entry,
//! bad parameters and the client limit.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tidemark_api::settings::HttpSettings;
use tidemark_db_client::test_utils::fixtures::{block, seeded_instance, word};
use tidemark_db_client::writer::{Batch, EventRow, Writer};
use tidemark_testkit::sse::{self, SseEvent, SseReader};

use crate::support::{TestApi, fast_config, schema};

async fn open(api: &TestApi, query: &str, last_event_id: Option<&str>) -> reqwest::Response {
    sse::open(&api.http, &format!("{}/v1/stream{query}", api.base), last_event_id)
        .await
        .expect("stream request")
}

async fn connect(api: &TestApi, query: &str, last_event_id: Option<&str>) -> SseReader {
    SseReader::connect(&api.http, &format!("{}/v1/stream{query}", api.base), last_event_id)
        .await
        .unwrap_or_else(|(status, body)| panic!("/v1/stream{query}: {status} {body}"))
}

fn row(block_number: u64, index: u64) -> EventRow {
    EventRow {
        block_number,
        block_hash: block(block_number).hash,
        block_timestamp: block(block_number).timestamp,
        tx_hash: word(block_number * 1000 + index),
        tx_index: 0,
        log_index: index,
        address: format!("0x{:040x}", 1 + index % 2),
        contract: if index.is_multiple_of(2) { "Token" } else { "Nft" }.into(),
        event: "Transfer".into(),
        signature: "event Transfer(address indexed from, address indexed to, uint256 value)".into(),
        topics: vec![word(0xdd), word(index), word(7)],
        data: "0x".into(),
        args: Some(serde_json::json!({"pad": "x".repeat(200)})),
        decode_error: None,
    }
}

async fn commit(writer: &mut Writer, block_number: u64, logs: u64) {
    let rows: Vec<EventRow> = (0..logs).map(|i| row(block_number, i)).collect();
    writer.commit(Batch::new(1, &rows, &block(block_number))).await.expect("commit");
}

/// Replays `log`/`removed` events; returns cursor → log index.
fn replay(events: &[SseEvent]) -> BTreeMap<String, u64> {
    let mut state = BTreeMap::new();
    for e in events {
        let d = e.json();
        match e.event.as_str() {
            "log" => assert!(
                state
                    .insert(
                        d["cursor"].as_str().expect("cursor").to_owned(),
                        d["logIndex"].as_u64().expect("index")
                    )
                    .is_none()
            ),
            "removed" => {
                state.remove(d["eventCursor"].as_str().expect("eventCursor"));
            }
            other => panic!("unexpected {other}"),
        }
    }
    state
}

/// Every event `/v1/events` serves: cursor → log index.
async fn served(api: &TestApi, query: &str) -> BTreeMap<String, u64> {
    let r = api.get(&format!("/v1/events?limit=1000{query}")).await;
    r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| (i["cursor"].as_str().expect("c").to_owned(), i["logIndex"].as_u64().expect("i")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_catches_up_follows_commits_and_reorgs_and_resumes_by_last_event_id() {
    let (test_db, pool, _conn) = seeded_instance(&schema(), &[]).await;
    let mut writer = Writer::try_acquire(&pool, &schema()).await.expect("connects").expect("lock");
    for b in 1..=3 {
        commit(&mut writer, b, 3).await;
    }
    let api = TestApi::start(fast_config(&test_db.url)).await;
    let mut replayed = connect(&api, "?after=0", None).await;
    let mut live = connect(&api, "", None).await;
    let mut token = connect(&api, "?contract=Token", None).await;
    let mut seen = Vec::new();
    for _ in 0..9 {
        seen.push(replayed.next().await);
    }
    // The logs of block 4 reach both streams, then their removals. (Were the rollback
    // committed before the streams read block 4, its logs would never be sent: a log
    // removed before a reader reaches it is not in the journal any more.)
    commit(&mut writer, 4, 3).await;
    let (mut from_live, mut token_events) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        seen.push(replayed.next().await);
        from_live.push(live.next().await);
    }
    token_events.extend([token.next().await, token.next().await]);
    writer.rollback(1, Some(&block(3))).await.expect("rollback");
    for _ in 0..3 {
        seen.push(replayed.next().await);
        from_live.push(live.next().await);
    }
    token_events.extend([token.next().await, token.next().await]);
    assert_eq!(&seen[9..], &from_live[..], "the head stream sees exactly the new entries");
    let ids: Vec<i64> = seen.iter().map(|e| e.id.as_deref().expect("id").parse().expect("cursor")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "strictly increasing, no duplicate: {ids:?}");
    assert!(seen.iter().all(|e| e.id.as_deref() == e.json()["cursor"].as_str()), "id is the cursor");
    assert_eq!(replay(&seen), served(&api, "").await, "replay equals /v1/events");
    // The filtered stream: Token's two logs of block 4, then their removals.
    assert!(token_events.iter().all(|e| e.json()["contract"] == "Token"), "{token_events:?}");
    assert_eq!(token_events.iter().filter(|e| e.event == "removed").count(), 2);
    // The log item is exactly /v1/events's item.
    let first = served(&api, "").await.into_keys().next().expect("an event");
    let page = api.get(&format!("/v1/events?limit=1&after={}", first.parse::<i64>().expect("c") - 1)).await;
    assert_eq!(seen[0].json(), page.body["items"][0]);

    // The live entries' fan-out latency is measured.
    let text = api.http.get(format!("{}/metrics", api.base)).send().await.expect("metrics").text().await;
    let text = text.expect("text");
    let count = text.lines().find_map(|l| l.strip_prefix("tidemark_stream_fanout_seconds_count "));
    assert!(count.is_some_and(|n| n != "0"), "fan-out latency in /metrics:\n{text}");

    // Last-Event-ID wins over after.
    let at = seen[4].id.clone().expect("id");
    let mut resumed = connect(&api, "?after=0", Some(&at)).await;
    for want in &seen[5..9] {
        assert_eq!(&resumed.next().await, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_gets_lagged_then_every_entry() {
    let (test_db, pool, _conn) = seeded_instance(&schema(), &[]).await;
    let mut writer = Writer::try_acquire(&pool, &schema()).await.expect("connects").expect("lock");
    commit(&mut writer, 1, 1).await;
    let http = HttpSettings { stream_queue: 8, ..HttpSettings::default() };
    let api = TestApi::start_with_http(fast_config(&test_db.url), http).await;
    let mut slow = connect(&api, "", None).await;
    // Far more than the socket buffers hold, while the client reads nothing.
    for b in 2..=60 {
        commit(&mut writer, b, 200).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut got = Vec::new();
    let mut lagged = 0;
    while got.len() < 59 * 200 {
        let e = slow.next().await;
        if e.event == "lagged" {
            lagged += 1;
            assert!(e.id.is_none());
            assert!(e.json()["behind"].as_u64().is_some_and(|n| n > 0), "{e:?}");
            // It resumes after the last entry it was sent (the head it started at, 1,
            // before the first).
            let last = got.last().and_then(|l: &SseEvent| l.id.clone()).unwrap_or_else(|| "1".to_owned());
            assert_eq!(e.json()["resumeAfter"].as_str(), Some(last.as_str()));
            continue;
        }
        got.push(e);
    }
    assert!(lagged >= 1, "the slow client was told it lagged");
    let ids: Vec<i64> = got.iter().map(|e| e.id.as_deref().expect("id").parse().expect("cursor")).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "every entry once, in order, after the lag");
    let metrics = api.http.get(format!("{}/metrics", api.base)).send().await.expect("metrics");
    let text = metrics.text().await.expect("text");
    for line in ["tidemark_stream_clients 1", "tidemark_stream_entries_sent_total 11800"] {
        assert!(text.lines().any(|l| l == line), "{line} in /metrics:\n{text}");
    }
    assert!(text.lines().any(|l| l.starts_with("tidemark_stream_lagged_total ") && !l.ends_with(" 0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400_and_streams_beyond_the_limit_503() {
    let (test_db, _pool, _conn) = seeded_instance(&schema(), &[]).await;
    let http = HttpSettings { stream_max_clients: 1, ..HttpSettings::default() };
    let api = TestApi::start_with_http(fast_config(&test_db.url), http).await;
    for (query, id, field) in [
        ("?after=x", None, "after"),
        ("", Some("-1"), "Last-Event-ID"),
        ("", Some("abc"), "Last-Event-ID"),
        ("?event=Transfer", None, "contract"),
        ("?fromBlock=1", None, "fromBlock"),
        ("?address=0x12", None, "address"),
    ] {
        let resp = open(&api, query, id).await;
        assert_eq!(resp.status(), 400, "{query} {id:?}");
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body["error"]["field"], field, "{query} {id:?}: {body}");
    }
    let _open = connect(&api, "", None).await;
    let resp = open(&api, "", None).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "too_many_streams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_below_the_retained_floor_is_410_with_the_floor_and_a_replay_from_0_is_not() {
    let (test_db, pool, _conn) = seeded_instance(&schema(), &[]).await;
    let mut writer = Writer::try_acquire(&pool, &schema()).await.expect("connects").expect("lock");
    for b in 1..=3 {
        commit(&mut writer, b, 2).await;
    }
    writer.rollback(1, Some(&block(1))).await.expect("rollback");
    commit(&mut writer, 2, 2).await;
    let (pruned, floor) = writer.prune_journal(Duration::ZERO, &[]).await.expect("prune");
    assert_eq!(pruned, 4);
    let api = TestApi::start(fast_config(&test_db.url)).await;

    for (query, id) in [("?after=1", None), ("?after=0", Some("2")), ("", Some(&*(floor.0 - 1).to_string()))]
    {
        let resp = open(&api, query, id).await;
        assert_eq!(resp.status(), 410, "{query} {id:?}");
        let body: Value = resp.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "cursor_expired", "{body}");
        assert_eq!(body["error"]["floor"], floor.to_string(), "{body}");
    }
    // At the floor, and from 0: served; the replay equals /v1/events.
    let mut at_floor = connect(&api, &format!("?after={floor}"), None).await;
    let mut replay_all = connect(&api, "?after=0", None).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(replay_all.next().await);
    }
    assert!(seen.iter().all(|e| e.event == "log"), "the pruned removals' logs are gone: {seen:?}");
    assert_eq!(replay(&seen), served(&api, "").await);
    let first = at_floor.next().await;
    assert_eq!(first.id, Some((floor.0 + 1).to_string()), "{first:?}");
    assert_eq!(at_floor.next().await.json()["blockNumber"], 2);
    commit(&mut writer, 4, 1).await;
    let next = at_floor.next().await;
    assert_eq!(next.json()["blockNumber"], 4, "{next:?}");
}

/// `tidemark_stream_catch_up_queries_total` from `/metrics`.
async fn catch_up_queries(api: &TestApi) -> u64 {
    let text = api.http.get(format!("{}/metrics", api.base)).send().await.expect("metrics").text().await;
    let text = text.expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix("tidemark_stream_catch_up_queries_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no catch-up counter in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_filtered_stream_follows_the_shared_tail_filtering_in_memory() {
    let (test_db, pool, _conn) = seeded_instance(&schema(), &[]).await;
    let mut writer = Writer::try_acquire(&pool, &schema()).await.expect("connects").expect("lock");
    commit(&mut writer, 1, 3).await;
    let api = TestApi::start(fast_config(&test_db.url)).await;
    // Log 1 of each block has topic1 = word(1); upper case as users paste it.
    let topic = word(1).to_uppercase().replacen("0X", "0x", 1);
    let mut filtered = connect(&api, &format!("?topic1={topic}"), None).await;
    commit(&mut writer, 2, 3).await;
    let first = filtered.next().await;
    assert_eq!((first.event.as_str(), first.json()["blockNumber"].as_u64()), ("log", Some(2)));

    let before = catch_up_queries(&api).await;
    for b in 3..=6 {
        commit(&mut writer, b, 3).await;
    }
    let mut got = Vec::new();
    for _ in 3..=6 {
        got.push(filtered.next().await);
    }
    writer.rollback(1, Some(&block(5))).await.expect("rollback");
    got.push(filtered.next().await);
    let seen: Vec<(String, u64, u64)> = got
        .iter()
        .map(|e| {
            let d = e.json();
            (
                e.event.clone(),
                d["blockNumber"].as_u64().expect("block"),
                d["logIndex"].as_u64().expect("index"),
            )
        })
        .collect();
    let want: Vec<(String, u64, u64)> = [("log", 3), ("log", 4), ("log", 5), ("log", 6), ("removed", 6)]
        .map(|(k, b)| (k.to_owned(), b, 1))
        .into();
    assert_eq!(seen, want, "only the logs with that topic, then the removal of one");
    let reads = catch_up_queries(&api).await - before;
    assert!(reads <= 1, "{reads} catch-up reads for 5 commits: the live entries were filtered in memory");
}
