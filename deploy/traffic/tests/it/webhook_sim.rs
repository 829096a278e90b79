//! The webhook simulator against a real anvil and an in-test receiver: body shapes and
//! signatures of both formats (checked with an independent HMAC and with the Standard
//! Webhooks reference library), drops, duplicates and reordering, a down window, a
//! failing receiver, forged copies, and the binary's summary line.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::{Provider, RootProvider};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tidemark_testkit::{Anvil, Process, eventually};
use tidemark_traffic::webhook_sim::{
    self, FIRST_SEQUENCE, SimOptions, SimSummary, WebhookFormat, sign_alchemy, sign_standard,
};
use tidemark_traffic::{Demo, provider};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_tidemark-traffic");
const ALCHEMY_KEY: &str = "whsk_tidemark test key";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    block: u64,
    body: Vec<u8>,
    headers: HeaderMap,
    verified: bool,
    status: u16,
    at: Instant,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

struct ReceiverState {
    format: WebhookFormat,
    /// Answer 503 to valid requests until then.
    fail_until: Mutex<Option<Instant>>,
    seen: Mutex<Vec<Seen>>,
}

/// An axum receiver on a free port that verifies each request, answers 401 to a bad
/// signature, 503 while told to fail, else 200, and records everything.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    stop: CancellationToken,
}

impl Receiver {
    async fn start(format: WebhookFormat) -> Self {
        let state =
            Arc::new(ReceiverState { format, fail_until: Mutex::new(None), seen: Mutex::new(Vec::new()) });
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let addr = listener.local_addr().expect("local address");
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await;
        });
        Self { addr, state, stop }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn fail_for(&self, d: Duration) {
        *self.state.fail_until.lock().expect("lock") = Some(Instant::now() + d);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// Accepted requests (valid signature, answered 200), in arrival order.
    fn accepted(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.status == 200).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(body);
    const_hex::encode(mac.finalize().into_bytes())
}

async fn receive(State(state): State<Arc<ReceiverState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
    let (verified, id, block) = match state.format {
        WebhookFormat::Alchemy => {
            let sig = headers.get("x-alchemy-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let block = parsed["event"]["data"]["block"]["number"].as_u64().unwrap_or(u64::MAX);
            (
                sig == hmac_hex(ALCHEMY_KEY.as_bytes(), &body),
                parsed["id"].as_str().unwrap_or("").to_owned(),
                block,
            )
        }
        WebhookFormat::Standard => {
            let verifier = standardwebhooks::Webhook::new(STANDARD_SECRET).expect("secret");
            let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let block = parsed["block"]["number"]
                .as_str()
                .and_then(|n| u64::from_str_radix(n.trim_start_matches("0x"), 16).ok())
                .unwrap_or(u64::MAX);
            (verifier.verify(&body, &headers).is_ok(), id, block)
        }
    };
    let failing = state.fail_until.lock().expect("lock").is_some_and(|t| Instant::now() < t);
    let status = match (verified, failing) {
        (false, _) => StatusCode::UNAUTHORIZED,
        (true, true) => StatusCode::SERVICE_UNAVAILABLE,
        (true, false) => StatusCode::OK,
    };
    state.seen.lock().expect("lock").push(Seen {
        id,
        block,
        body: body.to_vec(),
        headers,
        verified,
        status: status.as_u16(),
        at: Instant::now(),
    });
    status
}

/// Runs the simulator in-process until `until_block`, with a deadline.
async fn simulate(opts: SimOptions) -> SimSummary {
    let run = webhook_sim::run(opts, CancellationToken::new());
    tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the simulator finished in time")
        .expect("run")
}

/// Faster retries than a provider's, so that the tests take seconds.
fn options(anvil: &Anvil, receiver: &Receiver, format: WebhookFormat, from: u64, until: u64) -> SimOptions {
    let secret = match format {
        WebhookFormat::Alchemy => ALCHEMY_KEY,
        WebhookFormat::Standard => STANDARD_SECRET,
    };
    SimOptions {
        from_block: Some(from),
        until_block: Some(until),
        seed: Some(7),
        poll: Duration::from_millis(20),
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        ..SimOptions::new(anvil.url(), receiver.url(), format, secret)
    }
}

async fn chain_block(rpc: &RootProvider, n: u64) -> Value {
    rpc.raw_request::<_, Value>("eth_getBlockByNumber".into(), (format!("{n:#x}"), false))
        .await
        .expect("eth_getBlockByNumber")
}

async fn chain_logs(rpc: &RootProvider, hash: &Value, addresses: &[Address]) -> Vec<Value> {
    let mut filter = json!({ "blockHash": hash });
    if !addresses.is_empty() {
        filter["address"] = json!(addresses);
    }
    let logs: Value = rpc.raw_request("eth_getLogs".into(), (filter,)).await.expect("eth_getLogs");
    logs.as_array().cloned().expect("an array of logs")
}

fn hex_u64(v: &Value) -> u64 {
    let s = v.as_str().expect("a hex quantity");
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

/// Anvil with the demo contracts and a few blocks of events; returns the demo and the head.
async fn chain_with_events() -> (Anvil, Demo, u64) {
    let anvil = Anvil::spawn().await;
    let demo = Demo::deploy(anvil.url()).await.expect("deploy");
    demo.mixed(6, |i| i % 3 + 1).await.expect("traffic");
    let head = demo.block_number().await.expect("head");
    (anvil, demo, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alchemy_deliveries_are_signed_over_the_raw_body_and_mirror_the_chain() {
    let (anvil, _demo, head) = chain_with_events().await;
    let receiver = Receiver::start(WebhookFormat::Alchemy).await;
    let opts = SimOptions { forge: 0.5, ..options(&anvil, &receiver, WebhookFormat::Alchemy, 1, head) };
    let summary = simulate(opts).await;

    assert_eq!(summary.blocks, head, "{summary:?}");
    assert_eq!((summary.accepted, summary.given_up, summary.dropped), (head, 0, 0), "{summary:?}");
    assert!(summary.forged > 0 && summary.forged_rejected == summary.forged, "{summary:?}");
    assert_eq!(summary.statuses.get(&401), Some(&summary.forged), "{summary:?}");

    let rpc = provider(anvil.url()).expect("url");
    let accepted = receiver.accepted();
    assert_eq!(accepted.len() as u64, head, "one accepted delivery per block");
    let refused = receiver.seen().into_iter().filter(|s| !s.verified).count() as u64;
    assert_eq!(refused, summary.forged);
    let mut sequences = Vec::new();
    for seen in &accepted {
        let sig = seen.headers.get("x-alchemy-signature").and_then(|v| v.to_str().ok()).expect("signature");
        assert_eq!(sig, hmac_hex(ALCHEMY_KEY.as_bytes(), &seen.body), "HMAC hex over the raw body");
        assert_eq!(sig, sign_alchemy(ALCHEMY_KEY, &seen.body));
        assert_eq!(seen.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));

        let v = seen.json();
        assert_eq!(v["webhookId"], "wh_tidemark_sim");
        assert_eq!(v["type"], "GRAPHQL");
        let id = v["id"].as_str().expect("id");
        assert!(id.starts_with("whevt_") && id.len() == 22 && id[6..].chars().all(|c| c.is_ascii_hexdigit()));
        let created = v["createdAt"].as_str().expect("createdAt");
        assert!(created.len() == 24 && created.ends_with('Z') && &created[10..11] == "T", "{created}");
        let sequence: u128 =
            v["event"]["sequenceNumber"].as_str().expect("a string").parse().expect("decimal");
        assert!(sequence >= FIRST_SEQUENCE && sequence > u128::from(u64::MAX));
        sequences.push((seen.block, sequence));

        let block = &v["event"]["data"]["block"];
        let n = block["number"].as_u64().expect("number is an integer");
        let on_chain = chain_block(&rpc, n).await;
        assert_eq!(block["hash"], on_chain["hash"]);
        assert_eq!(block["parent"]["hash"], on_chain["parentHash"]);
        assert_eq!(block["timestamp"].as_u64(), Some(hex_u64(&on_chain["timestamp"])), "integer timestamp");
        let logs = chain_logs(&rpc, &on_chain["hash"], &[]).await;
        let expected: Vec<Value> = logs
            .iter()
            .map(|l| {
                json!({
                    "index": hex_u64(&l["logIndex"]),
                    "account": {"address": l["address"]},
                    "topics": l["topics"],
                    "data": l["data"],
                    "transaction": {"hash": l["transactionHash"], "index": hex_u64(&l["transactionIndex"])},
                })
            })
            .collect();
        assert_eq!(block["logs"], Value::Array(expected), "logs of block {n}");
    }
    let blocks: BTreeSet<u64> = accepted.iter().map(|s| s.block).collect();
    assert_eq!(blocks, (1..=head).collect(), "every block");
    assert!(
        accepted
            .iter()
            .any(|s| s.json()["event"]["data"]["block"]["logs"].as_array().is_some_and(|l| !l.is_empty()))
    );
    // Sequence numbers follow generation (here: block) order and never repeat.
    sequences.sort();
    assert!(sequences.windows(2).all(|w| w[0].1 < w[1].1), "{sequences:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_deliveries_verify_with_the_reference_library_and_filter_by_address() {
    let (anvil, demo, head) = chain_with_events().await;
    let receiver = Receiver::start(WebhookFormat::Standard).await;
    let opts = SimOptions {
        addresses: vec![demo.registry],
        forge: 0.3,
        ..options(&anvil, &receiver, WebhookFormat::Standard, 1, head)
    };
    let summary = simulate(opts).await;
    assert_eq!((summary.blocks, summary.accepted, summary.given_up), (head, head, 0), "{summary:?}");
    assert!(summary.forged > 0 && summary.forged_rejected == summary.forged, "{summary:?}");

    let rpc = provider(anvil.url()).expect("url");
    let accepted = receiver.accepted();
    assert_eq!(accepted.len() as u64, head);
    let verifier = standardwebhooks::Webhook::new(STANDARD_SECRET).expect("secret");
    let mut registry_logs = 0;
    for seen in &accepted {
        verifier.verify(&seen.body, &seen.headers).expect("verifies with the reference library");
        let header = |k: &str| seen.headers.get(k).and_then(|v| v.to_str().ok()).expect(k).to_owned();
        let (id, ts) = (header("webhook-id"), header("webhook-timestamp"));
        assert!(id.starts_with("msg_"), "{id}");
        let ts: i64 = ts.parse().expect("unix seconds");
        assert_eq!(
            header("webhook-signature"),
            sign_standard(STANDARD_SECRET, &id, ts, &seen.body).expect("sign")
        );

        let v = seen.json();
        let on_chain = chain_block(&rpc, seen.block).await;
        assert_eq!(v["block"]["number"], on_chain["number"]);
        assert_eq!(v["block"]["hash"], on_chain["hash"]);
        assert_eq!(v["block"]["parentHash"], on_chain["parentHash"]);
        assert_eq!(v["block"]["timestamp"], on_chain["timestamp"]);
        let logs = chain_logs(&rpc, &on_chain["hash"], &[demo.registry]).await;
        assert_eq!(v["logs"], Value::Array(logs.clone()), "the node's logs of block {}", seen.block);
        let registry = demo.registry.to_string().to_lowercase();
        assert!(logs.iter().all(|l| l["address"].as_str().map(str::to_lowercase) == Some(registry.clone())));
        registry_logs += logs.len();
    }
    assert!(registry_logs > 0, "the filter keeps the registry's logs");
    // The forged copies carried a real delivery's id and were refused.
    let ids: BTreeSet<String> = accepted.iter().map(|s| s.id.clone()).collect();
    assert!(receiver.seen().iter().filter(|s| !s.verified).all(|s| s.status == 401 && ids.contains(&s.id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_duplicates_and_shuffling() {
    let anvil = Anvil::spawn().await;
    let demo = Demo::at(anvil.url(), Address::ZERO, Address::ZERO).expect("url");
    demo.mine(40).await.expect("anvil_mine");
    let receiver = Receiver::start(WebhookFormat::Alchemy).await;
    let opts = SimOptions {
        drop: 0.5,
        duplicate: 0.5,
        shuffle_window: 10,
        ..options(&anvil, &receiver, WebhookFormat::Alchemy, 1, 40)
    };
    let summary = simulate(opts).await;
    assert_eq!(summary.blocks, 40, "{summary:?}");
    assert!(summary.dropped > 0 && summary.duplicates_sent > 0, "{summary:?}");
    assert_eq!(summary.given_up, 0, "{summary:?}");

    let accepted = receiver.accepted();
    assert_eq!(accepted.len() as u64, summary.accepted);
    assert_eq!(summary.accepted, 40 - summary.dropped + summary.duplicates_sent, "{summary:?}");
    let mut by_id: BTreeMap<String, Vec<&Seen>> = BTreeMap::new();
    for s in &accepted {
        by_id.entry(s.id.clone()).or_default().push(s);
    }
    let blocks: BTreeSet<u64> = by_id.values().map(|v| v[0].block).collect();
    assert_eq!(blocks.len() as u64, 40 - summary.dropped, "each non-dropped block, under one id");
    assert_eq!(by_id.len(), blocks.len(), "one id per block");
    let rpc = provider(anvil.url()).expect("url");
    for n in &blocks {
        let hash = chain_block(&rpc, *n).await["hash"].clone();
        let seen = accepted.iter().find(|s| s.block == *n).expect("seen");
        assert_eq!(seen.json()["event"]["data"]["block"]["hash"], hash);
    }
    let duplicated: Vec<&Vec<&Seen>> = by_id.values().filter(|v| v.len() > 1).collect();
    assert_eq!(duplicated.len() as u64, summary.duplicates_sent);
    for copies in duplicated {
        assert_eq!(copies.len(), 2);
        assert_eq!(copies[0].body, copies[1].body, "a duplicate is the same body");
        assert_eq!(
            copies[0].headers.get("x-alchemy-signature"),
            copies[1].headers.get("x-alchemy-signature")
        );
    }
    let mut first_seen = Vec::new();
    for s in &accepted {
        if !first_seen.contains(&s.block) {
            first_seen.push(s.block);
        }
    }
    assert!(first_seen.windows(2).any(|w| w[0] > w[1]), "not in order: {first_seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_window_delays_deliveries_but_every_block_arrives() {
    let anvil = Anvil::spawn().await;
    let demo = Demo::at(anvil.url(), Address::ZERO, Address::ZERO).expect("url");
    demo.mine(20).await.expect("anvil_mine");
    let receiver = Receiver::start(WebhookFormat::Standard).await;
    let down_for = Duration::from_secs(2);
    let opts = SimOptions {
        down_after_blocks: Some(5),
        down_for,
        ..options(&anvil, &receiver, WebhookFormat::Standard, 1, 20)
    };
    let started = Instant::now();
    let summary = simulate(opts).await;
    assert_eq!((summary.blocks, summary.accepted, summary.given_up), (20, 20, 0), "{summary:?}");
    assert!(summary.retries > 0, "deliveries in the window were retried: {summary:?}");
    let accepted = receiver.accepted();
    let blocks: BTreeSet<u64> = accepted.iter().map(|s| s.block).collect();
    assert_eq!(blocks, (1..=20).collect());
    // The window opened once block 5 was generated, after `started`: at most blocks 1–4
    // can have arrived before it closed.
    let early = receiver.seen().iter().filter(|s| s.at < started + down_for).count();
    assert!(early <= 4, "{early} requests reached a receiver that was down");
    assert_eq!(receiver.seen().len() as u64, summary.sent, "a down receiver gets no requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_retries_until_it_accepts() {
    let anvil = Anvil::spawn().await;
    let demo = Demo::at(anvil.url(), Address::ZERO, Address::ZERO).expect("url");
    demo.mine(10).await.expect("anvil_mine");
    let receiver = Receiver::start(WebhookFormat::Alchemy).await;
    receiver.fail_for(Duration::from_millis(1500));
    let summary = simulate(options(&anvil, &receiver, WebhookFormat::Alchemy, 1, 10)).await;
    assert_eq!((summary.blocks, summary.accepted, summary.given_up), (10, 10, 0), "{summary:?}");
    let failed = summary.statuses.get(&503).copied().unwrap_or(0);
    assert!(failed > 0 && summary.retries >= failed, "{summary:?}");
    assert_eq!(summary.sent, failed + 10, "{summary:?}");
    let blocks: BTreeSet<u64> = receiver.accepted().iter().map(|s| s.block).collect();
    assert_eq!(blocks, (1..=10).collect());
    // A retry re-sends the same id and body.
    for s in receiver.seen().iter().filter(|s| s.status == 503) {
        let ok = receiver.accepted().into_iter().find(|a| a.id == s.id).expect("accepted later");
        assert_eq!(ok.body, s.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_accepts_makes_deliveries_give_up() {
    let anvil = Anvil::spawn().await;
    let demo = Demo::at(anvil.url(), Address::ZERO, Address::ZERO).expect("url");
    demo.mine(3).await.expect("anvil_mine");
    let receiver = Receiver::start(WebhookFormat::Alchemy).await;
    receiver.fail_for(Duration::from_secs(3600));
    let opts = SimOptions { max_attempts: 3, ..options(&anvil, &receiver, WebhookFormat::Alchemy, 1, 3) };
    let summary = simulate(opts).await;
    assert_eq!(
        (summary.given_up, summary.accepted, summary.sent, summary.retries),
        (3, 0, 9, 6),
        "{summary:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_delivers_the_new_blocks_at_the_same_heights() {
    let anvil = Anvil::spawn().await;
    let demo = Demo::at(anvil.url(), Address::ZERO, Address::ZERO).expect("url");
    demo.mine(5).await.expect("anvil_mine");
    let receiver = Receiver::start(WebhookFormat::Alchemy).await;
    let sim = tokio::spawn(simulate(options(&anvil, &receiver, WebhookFormat::Alchemy, 1, 6)));
    eventually(Duration::from_secs(20), "blocks 1–5 delivered", async || receiver.accepted().len() == 5)
        .await;
    let rpc = provider(anvil.url()).expect("url");
    let replaced = chain_block(&rpc, 4).await["hash"].clone();
    demo.reorg(2).await.expect("anvil_reorg");
    demo.mine(1).await.expect("anvil_mine");
    let summary = sim.await.expect("simulator task");
    assert_eq!((summary.blocks, summary.accepted), (8, 8), "4 and 5 again, then 6: {summary:?}");

    let accepted = receiver.accepted();
    let mut last_per_block = BTreeMap::new();
    for s in &accepted {
        last_per_block.insert(s.block, s.json()["event"]["data"]["block"]["hash"].clone());
    }
    for n in 1..=6 {
        assert_eq!(last_per_block.get(&n), Some(&chain_block(&rpc, n).await["hash"]), "block {n}");
    }
    let fours: Vec<Value> = accepted
        .iter()
        .filter(|s| s.block == 4)
        .map(|s| s.json()["event"]["data"]["block"]["hash"].clone())
        .collect();
    assert_eq!(fours.len(), 2);
    assert_eq!(fours[0], replaced);
    assert_ne!(fours[0], fours[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_follows_new_blocks_and_prints_a_summary_on_sigterm() {
    let anvil = Anvil::spawn().await;
    let receiver = Receiver::start(WebhookFormat::Standard).await;
    let mut sim = Process::builder("webhook-sim", BIN)
        .args([
            "--rpc-url",
            anvil.url(),
            "webhook-sim",
            "--endpoint",
            &receiver.url(),
            "--provider",
            "standard",
        ])
        .args(["--poll-ms", "20", "--seed", "3"])
        .env("WEBHOOK_SIGNING_KEY", STANDARD_SECRET)
        .env("RUST_LOG", "info")
        .spawn();
    let demo = Demo::at(anvil.url(), Address::ZERO, Address::ZERO).expect("url");
    eventually(Duration::from_secs(20), "the simulator started", async || {
        sim.stderr().contains("webhook simulator started")
    })
    .await;
    demo.mine(5).await.expect("anvil_mine");
    eventually(Duration::from_secs(20), "five deliveries", async || receiver.accepted().len() == 5).await;
    sim.sigterm();
    assert_eq!(sim.exit_code(Duration::from_secs(10)).await, 0, "{}", sim.logs());
    let line = sim.stdout();
    let summary: Value = serde_json::from_str(line.trim()).expect("one JSON line on stdout");
    assert_eq!(summary["blocks"], 5, "{summary}");
    assert_eq!(summary["accepted"], 5, "{summary}");
    assert_eq!(summary["statuses"]["200"], 5, "{summary}");
    for key in ["sent", "duplicatesSent", "dropped", "forged", "forgedRejected", "retries", "givenUp"] {
        assert!(summary[key].is_u64(), "{key} in {summary}");
    }
    let blocks: BTreeSet<u64> = receiver.accepted().iter().map(|s| s.block).collect();
    assert_eq!(blocks, (1..=5).collect(), "the blocks after the head at start");
}
