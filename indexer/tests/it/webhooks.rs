//! DESIGN §8 "Webhook ingestion": signed pushes as a fast path, confirmed over RPC. Real
//! processes: PostgreSQL, anvil, the indexer binary. The chain polls every 60 s, so a
//! block stored sooner was stored because of its delivery. Deliveries under shuffling,
//! duplicates, drops and an outage (the provider simulator) are the reliability suite's
//! scenario 13.

use std::time::{Duration, Instant};

use alloy::providers::Provider as _;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sha2::Sha256;
use tidemark_testkit::{IndexerConfigBuilder, SOON, Stack, eventually};

use crate::common::{SCHEMA, traffic};

const ALCHEMY_KEY: &str = "whsec_alchemyKeyAsShownInTheDashboard";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Well below the 60 s poll interval: stored this fast, a block came by webhook.
const FAST: Duration = Duration::from_secs(10);

fn hooked(stack: &Stack) -> IndexerConfigBuilder {
    let mut cfg = stack.config();
    let chain = cfg.chains.remove(0);
    cfg.chain(
        chain.poll_interval_ms(60_000).webhook("alchemy", ALCHEMY_KEY).webhook("standard", STANDARD_SECRET),
    )
}

async fn rpc(stack: &Stack, method: &'static str, params: Value) -> Value {
    stack.demo.provider().raw_request::<_, Value>(method.into(), params).await.expect(method)
}

/// Block `n` and its logs as Alchemy's custom webhook delivers them.
async fn alchemy_body(stack: &Stack, n: u64, id: &str, sequence: u128) -> Vec<u8> {
    let block = rpc(stack, "eth_getBlockByNumber", json!([format!("{n:#x}"), false])).await;
    let logs = rpc(stack, "eth_getLogs", json!([{"blockHash": block["hash"]}])).await;
    let num = |v: &Value| {
        u64::from_str_radix(v.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or(0)
    };
    let logs: Vec<Value> = logs
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| {
            json!({"index": num(&l["logIndex"]), "account": {"address": l["address"]}, "topics": l["topics"],
                   "data": l["data"], "transaction": {"hash": l["transactionHash"], "index": num(&l["transactionIndex"])}})
        })
        .collect();
    serde_json::to_vec(&json!({
        "webhookId": "wh_test", "id": id, "createdAt": "2026-12-07T10:00:00.000Z", "type": "GRAPHQL",
        "event": {"data": {"block": {"number": n, "hash": block["hash"], "parent": {"hash": block["parentHash"]},
                  "timestamp": num(&block["timestamp"]), "logs": logs}},
                  "sequenceNumber": sequence.to_string()}
    }))
    .expect("json")
}

/// Block `n` and its logs in the Standard format.
async fn standard_body(stack: &Stack, n: u64) -> Vec<u8> {
    let block = rpc(stack, "eth_getBlockByNumber", json!([format!("{n:#x}"), false])).await;
    let logs = rpc(stack, "eth_getLogs", json!([{"blockHash": block["hash"]}])).await;
    let b = json!({"number": block["number"], "hash": block["hash"], "parentHash": block["parentHash"],
                   "timestamp": block["timestamp"]});
    serde_json::to_vec(&json!({"block": b, "logs": logs})).expect("json")
}

fn alchemy_signature(body: &[u8]) -> String {
    let mut m = <Hmac<Sha256>>::new_from_slice(ALCHEMY_KEY.as_bytes()).expect("key");
    m.update(body);
    const_hex::encode(m.finalize().into_bytes())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

struct Poster {
    http: reqwest::Client,
    base: String,
    chain_id: u64,
}

impl Poster {
    fn new(base: &str, chain_id: u64) -> Self {
        Self { http: reqwest::Client::new(), base: base.to_owned(), chain_id }
    }

    async fn alchemy(&self, body: &[u8], signature: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/webhooks/alchemy/{}", self.base, self.chain_id))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(s) = signature {
            req = req.header("X-Alchemy-Signature", s);
        }
        Self::answer(req).await
    }

    async fn standard(
        &self,
        id: &str,
        body: &[u8],
        signature: Option<String>,
        timestamp: i64,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/webhooks/standard/{}", self.base, self.chain_id))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .body(body.to_vec());
        if let Some(s) = signature {
            req = req.header("webhook-signature", s);
        }
        Self::answer(req).await
    }

    /// Signed over the raw bytes (the reference library signs UTF-8 text only; a fuzzed
    /// body need not be).
    async fn signed_standard(&self, id: &str, body: &[u8]) -> (u16, Value) {
        let ts = now();
        let key = base64::engine::general_purpose::STANDARD.decode(&STANDARD_SECRET[6..]).expect("secret");
        let mut m = <Hmac<Sha256>>::new_from_slice(&key).expect("key");
        m.update(format!("{id}.{ts}.").as_bytes());
        m.update(body);
        let sig =
            format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes()));
        self.standard(id, body, Some(sig), ts).await
    }

    async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.send().await.expect("request");
        let code = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

async fn delivery_count(stack: &Stack) -> i64 {
    let mut db = stack.instance().await;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let sql = format!("SELECT count(*) AS n FROM {SCHEMA}.webhook_deliveries");
    let r: N = diesel_async::RunQueryDsl::get_result(diesel::sql_query(sql), db.conn()).await.expect("count");
    r.n
}

async fn webhooks_status(base: &str) -> Value {
    let (_, status) = tidemark_testkit::get_json(&format!("{base}/status")).await.unwrap_or_default();
    status["realtimeProjection"]["snapshot"]["omnichainSnapshot"]["chains"]["31337"]["webhooks"].clone()
}

/// Waits until the checkpoint reaches `n`; returns how long it took.
async fn stored(stack: &Stack, n: u64, within: Duration) -> Duration {
    let start = Instant::now();
    let mut db = stack.instance().await;
    eventually(within, format!("block {n} stored"), async || {
        db.checkpoint(31337).await.ok().flatten().filter(|c| c.block_number >= n as i64).map(|_| ())
    })
    .await;
    start.elapsed()
}

async fn head(stack: &Stack) -> u64 {
    stack.demo.provider().get_block_number().await.expect("head")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_in_either_format_store_their_block_before_the_next_poll() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 4, 2).await;
    let cfg = hooked(&stack);
    let indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    let post = Poster::new(&cfg.http_url(), 31337);

    // Alchemy.
    traffic(&stack.demo, 1, 3).await;
    let n = head(&stack).await;
    let body = alchemy_body(&stack, n, "whevt_first", u128::from(u64::MAX) + 1).await;
    let (code, answer) = post.alchemy(&body, Some(&alchemy_signature(&body))).await;
    assert_eq!((code, answer["status"].as_str()), (200, Some("recorded")), "{answer}");
    let took = stored(&stack, n, FAST).await;
    // Standard, and a heartbeat (a block without logs).
    traffic(&stack.demo, 1, 3).await;
    stack.demo.mine(1).await.expect("mine");
    let n2 = head(&stack).await;
    for m in [n2 - 1, n2] {
        let body = standard_body(&stack, m).await;
        let (code, answer) = post.signed_standard(&format!("msg_{m}"), &body).await;
        assert_eq!((code, answer["status"].as_str()), (200, Some("recorded")), "{answer}");
    }
    stored(&stack, n2, FAST).await;
    stack.assert_matches_chain(&mut db).await;
    eventually(SOON, "released counted", async || {
        let w = webhooks_status(&indexer.http).await;
        (w["received"] == 3 && w["released"].as_u64() >= Some(2) && w["parked"].as_u64() >= Some(2))
            .then_some(())
    })
    .await;
    let w = webhooks_status(&indexer.http).await;
    assert!(w["webhookLatency"]["blocks"].as_u64() >= Some(2), "{w}");
    eprintln!("stored {took:?} after the delivery (polling: 60 s); status {w}");
    // The API serves the same per-chain field from the stored snapshot.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_fuzzed_and_replayed_deliveries_store_nothing() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 3, 2).await;
    let cfg = hooked(&stack);
    let indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    let post = Poster::new(&cfg.http_url(), 31337);
    traffic(&stack.demo, 1, 2).await;
    let n = head(&stack).await;
    let body = alchemy_body(&stack, n, "whevt_valid", 10).await;
    let sig = alchemy_signature(&body);
    let sbody = standard_body(&stack, n).await;
    let before = delivery_count(&stack).await;

    // 1,000 forged, missing and truncated signatures: 401, nothing stored.
    let mut rng = StdRng::seed_from_u64(23);
    for i in 0..1000 {
        let (code, _) = match i % 6 {
            0 => post.alchemy(&body, None).await,
            1 => post.alchemy(&body, Some(&sig[..rng.random_range(0..sig.len())])).await,
            2 => {
                let mut forged = sig.clone().into_bytes();
                let at = rng.random_range(0..forged.len());
                forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
                post.alchemy(&body, Some(std::str::from_utf8(&forged).expect("hex"))).await
            }
            3 => post.standard(&format!("msg_f{i}"), &sbody, None, now()).await,
            4 => {
                // Signed with another key, and a stale timestamp signed with the right one.
                let other = "whsec_dGhpcyBpcyBub3QgdGhlIGtleQ==";
                let ts = now();
                let s =
                    standardwebhooks::Webhook::new(other).expect("k").sign("msg_x", ts, &sbody).expect("s");
                post.standard("msg_x", &sbody, Some(s), ts).await
            }
            _ => {
                let ts = now() - 600;
                let s = standardwebhooks::Webhook::new(STANDARD_SECRET)
                    .expect("k")
                    .sign("msg_y", ts, &sbody)
                    .expect("s");
                post.standard("msg_y", &sbody, Some(s), ts).await
            }
        };
        assert_eq!(code, 401, "forged request {i}");
    }
    assert_eq!(delivery_count(&stack).await, before, "nothing stored for a forged request");

    // 10,000 fuzzed bodies with valid signatures: 2xx or 4xx, never 5xx.
    let base: Value = serde_json::from_slice(&body).expect("json");
    let mut codes = std::collections::BTreeMap::<u16, u32>::new();
    for i in 0..10_000u32 {
        let fuzzed = fuzz(&mut rng, &base, i);
        let (code, answer) = if i % 2 == 0 {
            post.alchemy(&fuzzed, Some(&alchemy_signature(&fuzzed))).await
        } else {
            post.signed_standard(&format!("msg_z{i}"), &fuzzed).await
        };
        assert!(code < 500, "fuzzed body {i} answered {code}: {answer}");
        *codes.entry(code).or_default() += 1;
    }
    eprintln!("fuzzed answers: {codes:?}");
    assert!(codes.get(&400).copied().unwrap_or(0) > 1000, "most mutations are malformed: {codes:?}");
    assert!(codes.get(&200).copied().unwrap_or(0) > 100, "some mutations are well-formed: {codes:?}");

    // Replays: the same id again is a 200 and nothing new (a fresh id: the fuzzed
    // deliveries that kept the envelope's id were duplicates of the first of them).
    let body = alchemy_body(&stack, n, "whevt_replayed", 11).await;
    let sig = alchemy_signature(&body);
    let (code, answer) = post.alchemy(&body, Some(&sig)).await;
    assert_eq!((code, answer["status"].as_str()), (200, Some("recorded")), "{answer}");
    let count = delivery_count(&stack).await;
    for _ in 0..3 {
        let (code, answer) = post.alchemy(&body, Some(&sig)).await;
        assert_eq!((code, answer["status"].as_str()), (200, Some("duplicate")), "{answer}");
    }
    assert_eq!(delivery_count(&stack).await, count);

    // Whatever the fuzzed deliveries announced, the events are the chain's (a real
    // delivery of the new head wakes the follower).
    traffic(&stack.demo, 2, 2).await;
    let last = head(&stack).await;
    let body = alchemy_body(&stack, last, "whevt_last", 12).await;
    assert_eq!(post.alchemy(&body, Some(&alchemy_signature(&body))).await.0, 200);
    stored(&stack, last, FAST).await;
    stack.assert_matches_chain(&mut db).await;
    let w = webhooks_status(&indexer.http).await;
    assert!(w["rejected"]["signature"].as_u64() >= Some(1000), "{w}");
    assert!(indexer.proc.stderr().matches("panicked").count() == 0, "no panic");
}

/// A mutation of a valid Alchemy envelope `base` (or a Standard body), as a hostile or
/// broken relay might send it with a valid signature.
fn fuzz(rng: &mut StdRng, base: &Value, i: u32) -> Vec<u8> {
    let pick = |rng: &mut StdRng| -> Value {
        match rng.random_range(0..12) {
            0 => Value::Null,
            1 => json!(rng.random::<i64>()),
            2 => json!(u64::MAX),
            3 => json!("0x"),
            4 => json!(format!("0x{}", "f".repeat(rng.random_range(0..80)))),
            5 => json!("\u{0000}\u{202e}"),
            6 => json!([]),
            7 => json!({}),
            8 => json!(-1),
            9 => json!(1e308),
            10 => json!("9".repeat(rng.random_range(1..100))),
            _ => json!(format!("0x{:064x}", rng.random::<u128>())),
        }
    };
    let mut v = base.clone();
    if i % 2 == 1 {
        // A Standard body from the same block.
        let b = &base["event"]["data"]["block"];
        v = json!({"block": {"number": b["number"], "hash": b["hash"], "parentHash": b["parent"]["hash"],
                              "timestamp": b["timestamp"]}, "logs": []});
    }
    let paths: &[&[&str]] = &[
        &["id"],
        &["type"],
        &["event", "sequenceNumber"],
        &["event", "data", "block", "number"],
        &["event", "data", "block", "hash"],
        &["event", "data", "block", "parent"],
        &["event", "data", "block", "logs"],
        &["block", "number"],
        &["block", "hash"],
        &["block", "parentHash"],
        &["logs"],
        &["event"],
    ];
    for _ in 0..rng.random_range(1..4) {
        let path = paths[rng.random_range(0..paths.len())];
        let mut at = Some(&mut v);
        for key in &path[..path.len() - 1] {
            at = at.and_then(|x| x.get_mut(*key));
        }
        if let Some(obj) = at.and_then(Value::as_object_mut) {
            obj.insert(path[path.len() - 1].to_owned(), pick(rng));
        }
    }
    let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
    match rng.random_range(0..10) {
        0 => bytes.truncate(rng.random_range(0..bytes.len().max(1))),
        1 if !bytes.is_empty() => {
            let at = rng.random_range(0..bytes.len());
            bytes[at] = rng.random();
        }
        2 => bytes = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
        _ => {}
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_for_a_branch_that_loses_never_reaches_events() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 3, 2).await;
    let mut cfg = hooked(&stack);
    cfg.pending_ttl_ms = Some(2_000);
    let indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    let post = Poster::new(&cfg.http_url(), 31337);

    // Branch A: one block with events, captured, then reverted away.
    let snapshot = stack.demo.snapshot().await.expect("snapshot");
    traffic(&stack.demo, 1, 4).await;
    let n = head(&stack).await;
    let lost = alchemy_body(&stack, n, "whevt_lost", 100).await;
    let lost_hash =
        rpc(&stack, "eth_getBlockByNumber", json!([format!("{n:#x}"), false])).await["hash"].clone();
    stack.demo.revert(snapshot).await.expect("revert");
    // Branch B wins at the same height.
    stack.demo.mine(1).await.expect("mine");
    assert_eq!(head(&stack).await, n);

    let (code, answer) = post.alchemy(&lost, Some(&alchemy_signature(&lost))).await;
    assert_eq!((code, answer["status"].as_str()), (200, Some("recorded")), "{answer}");
    // The delivery wakes the follower, which stores the canonical block B.
    stored(&stack, n, FAST).await;
    eventually(SOON, "the lost branch's block expires", async || {
        let w = webhooks_status(&indexer.http).await;
        (w["expired"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    let events = stack.assert_matches_chain(&mut db).await;
    let lost_hash = lost_hash.as_str().expect("hash");
    assert!(events.iter().all(|e| e.block_hash != lost_hash), "nothing of the lost branch is stored");
    let w = webhooks_status(&indexer.http).await;
    assert_eq!(w["released"], 0, "{w}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_records_deliveries_and_the_next_writer_processes_them() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 3, 2).await;
    let cfg = hooked(&stack);
    let mut writer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    let standby_cfg = cfg.clone().with_fresh_http_port();
    let standby = stack.spawn(&standby_cfg);
    standby.wait_role("standby", SOON).await;

    // The writer hangs (its lock still held); the standby takes the deliveries.
    writer.proc.sigstop();
    let post = Poster::new(&standby_cfg.http_url(), 31337);
    traffic(&stack.demo, 2, 2).await;
    let n = head(&stack).await;
    for m in [n - 1, n] {
        let body = alchemy_body(&stack, m, &format!("whevt_{m}"), u128::from(m)).await;
        let (code, answer) = post.alchemy(&body, Some(&alchemy_signature(&body))).await;
        assert_eq!((code, answer["status"].as_str()), (200, Some("recorded")), "{answer}");
    }
    assert_eq!(delivery_count(&stack).await, 2, "recorded by the standby");
    writer.proc.kill9();
    standby.wait_role("writer", SOON).await;
    stored(&stack, n, SOON).await;
    stack.assert_matches_chain(&mut db).await;
    eventually(SOON, "the new writer processed them", async || {
        let w = webhooks_status(&standby.http).await;
        (w["received"] == 2 && w["parked"].as_u64().unwrap_or(0) + w["released"].as_u64().unwrap_or(0) >= 2)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_the_answer_loses_nothing() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 3, 2).await;
    let cfg = hooked(&stack);
    let mut indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    let post = Poster::new(&cfg.http_url(), 31337);
    traffic(&stack.demo, 1, 5).await;
    let n = head(&stack).await;
    let body = alchemy_body(&stack, n, "whevt_kill", 1).await;
    let (code, _) = post.alchemy(&body, Some(&alchemy_signature(&body))).await;
    assert_eq!(code, 200);
    indexer.proc.kill9();
    let _restarted = stack.spawn(&cfg);
    stored(&stack, n, SOON).await;
    stack.assert_matches_chain(&mut db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_database_deliveries_get_503_and_unknown_chains_404() {
    let mut stack = Stack::private(SCHEMA).await;
    traffic(&stack.demo, 2, 2).await;
    let cfg = hooked(&stack);
    let _indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    drop(db);
    let post = Poster::new(&cfg.http_url(), 31337);
    let n = head(&stack).await;
    let body = alchemy_body(&stack, n, "whevt_down", 1).await;
    let sig = alchemy_signature(&body);

    let other = Poster::new(&cfg.http_url(), 1);
    assert_eq!(other.alchemy(&body, Some(&sig)).await.0, 404, "a chain without webhooks");
    // A webhook created on another network, pointed at this chain: refused, not parked.
    let mut other_network: Value = serde_json::from_slice(&body).expect("json");
    other_network["event"]["network"] = json!("BASE_MAINNET");
    let other_network = serde_json::to_vec(&other_network).expect("json");
    let (code, answer) = post.alchemy(&other_network, Some(&alchemy_signature(&other_network))).await;
    assert_eq!(code, 400, "{answer}");
    assert!(answer.to_string().contains("chain 8453"), "{answer}");
    let big = vec![b' '; 6 * 1024 * 1024];
    assert_eq!(post.alchemy(&big, Some(&alchemy_signature(&big))).await.0, 413);

    stack.pg().stop().await;
    let (code, answer) = post.alchemy(&body, Some(&sig)).await;
    assert_eq!(code, 503, "{answer}");
    stack.pg().restart().await;
    // The provider's retry succeeds once the database is back.
    eventually(SOON, "recorded after the restart", async || {
        let (code, answer) = post.alchemy(&body, Some(&sig)).await;
        (code == 200 && answer["status"] == "recorded").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_ahead_of_a_lagging_node_is_stored_once_the_node_catches_up() {
    let stack = Stack::shared(SCHEMA).await;
    traffic(&stack.demo, 3, 2).await;
    let proxy = tidemark_testkit::RpcProxy::start(stack.anvil.url()).await;
    let mut cfg = hooked(&stack);
    cfg.chains[0].rpc_url = Some(proxy.url().to_owned());
    let _indexer = stack.spawn(&cfg);
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    let post = Poster::new(&cfg.http_url(), 31337);

    // The node behind the load balancer is a block behind the provider.
    proxy.set_faults(tidemark_testkit::Faults { lagging: Some((1.0, 1)), ..Default::default() });
    traffic(&stack.demo, 1, 3).await;
    let n = head(&stack).await;
    let body = alchemy_body(&stack, n, "whevt_ahead", 1).await;
    let (code, answer) = post.alchemy(&body, Some(&alchemy_signature(&body))).await;
    assert_eq!((code, answer["status"].as_str()), (200, Some("recorded")), "{answer}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut db2 = stack.instance().await;
    let cp = db2.checkpoint(31337).await.expect("checkpoint").expect("a checkpoint");
    assert!(cp.block_number < n as i64, "nothing the node does not serve yet is stored");
    // The node catches up: the parked block is stored long before the 60 s poll.
    proxy.set_faults(tidemark_testkit::Faults::default());
    stored(&stack, n, FAST).await;
    stack.assert_matches_chain(&mut db).await;
}
