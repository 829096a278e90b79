//! DESIGN §9.8 "Nothing a log contains halts indexing": a contract emitting strings with
//! NUL and bytes that are not UTF-8 (alone and inside a tuple and an array), a 256 KiB log,
//! 5,000 logs in one transaction and logs that do not fit their ABI, interleaved with
//! ordinary traffic on other contracts and on a second chain. Every log is stored (compared
//! with `eth_getLogs`), the API serves them as valid JSON, no chain stalls, and each
//! contract gets only its own block range.

use std::time::Duration;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, U256, hex, keccak256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol_types::{SolCall, SolValue};
use serde_json::{Value, json};
use tidemark_testkit::{
    Anvil, ChainSpec, ContractSpec, InstanceDb, LogRow, SOON, Stack, StoredEvent, assert_matches_chain,
    canonical_logs, demo_contracts, wait_synced,
};
use tidemark_traffic::{Demo, SENDER};
use tokio_util::sync::CancellationToken;

use crate::common::{SCHEMA, api_events, serve_api, traffic};

alloy::sol! {
    function note(bytes b);
    function wrapped(uint64 id, bytes b);
    function big(uint256 n);
    function ticks(uint256 n);
    function malformed();
}

const PAYLOADS_BIN: &str = include_str!("../../../deploy/demo/out/Payloads.bin");

/// The Payloads events, each in another of the forms users copy.
const PAYLOADS_EVENTS: [&str; 4] = [
    "Note(string text)",
    "event Wrapped(uint64 indexed id, (string label, bytes raw, string[] tags) item)",
    "event Big(bytes blob);",
    "event  Tick(uint indexed i, uint value)",
];

/// Sends a transaction from anvil's first account with room for thousands of logs.
async fn send(demo: &Demo, tx: TransactionRequest, what: &'static str) -> TransactionReceipt {
    let tx = tx.with_from(SENDER).with_gas_limit(25_000_000);
    let pending = demo.provider().send_transaction(tx).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    demo.wait(*pending.tx_hash(), what).await.unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn call(demo: &Demo, to: Address, input: Vec<u8>, what: &'static str) -> TransactionReceipt {
    send(demo, TransactionRequest::default().with_to(to).with_input(Bytes::from(input)), what).await
}

/// The 256 KiB blob `big(n)` emits: word `i` is `keccak256(abi.encode(i))`.
fn big_blob(n: usize) -> Vec<u8> {
    (0..n / 32).flat_map(|i| keccak256(U256::from(i).abi_encode()).0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payloads_are_stored_and_served_without_stalling_any_chain() {
    let stack = Stack::shared(SCHEMA).await;
    let demo = &stack.demo;
    let deployed = send(
        demo,
        TransactionRequest::default()
            .with_deploy_code(Bytes::from(hex::decode(PAYLOADS_BIN.trim()).expect("hex"))),
        "deploy Payloads",
    )
    .await;
    let payloads = deployed.contract_address.expect("Payloads address");
    let payloads_start = deployed.block_number.expect("deploy block");

    // A second chain whose Registry starts later than its Token: Registry's earlier logs
    // fall inside the chain's filter (from Token's start) but are not Registry's.
    let other = Anvil::spawn_with(&["--chain-id", "31338"]).await;
    let other_demo = Demo::deploy(other.url()).await.expect("deploying on the second chain");
    traffic(&other_demo, 4, 5).await;
    let registry_start = other_demo.block_number().await.expect("block") + 1;
    let mut other_chain = ChainSpec::new(31338, other.url());
    other_chain.contracts = demo_contracts(&other_demo);
    other_chain.contracts[1].start_block = registry_start;

    let mut chain = stack.chain_spec();
    let mut contract = ContractSpec::new("Payloads", format!("{payloads:#x}"), &PAYLOADS_EVENTS);
    contract.start_block = payloads_start;
    chain.contracts.push(contract);
    let config = stack.config();
    let config = tidemark_testkit::IndexerConfigBuilder { chains: vec![chain], ..config }.chain(other_chain);
    let mut indexer = stack.spawn(&config);

    // Hostile payloads, interleaved with ordinary traffic on both chains.
    let text_cases: [&[u8]; 3] = [b"nul\0inside", &[0xff, 0xfe, b'a', 0xc3], "plain ✓".as_bytes()];
    for b in text_cases {
        call(demo, payloads, noteCall { b: Bytes::copy_from_slice(b) }.abi_encode(), "note").await;
        traffic(demo, 1, 3).await;
    }
    call(demo, payloads, wrappedCall { id: 7, b: Bytes::from_static(&[0x80, 0x81]) }.abi_encode(), "wrapped")
        .await;
    call(demo, payloads, wrappedCall { id: 8, b: Bytes::from_static(b"\0") }.abi_encode(), "wrapped").await;
    traffic(&other_demo, 3, 7).await;
    let big = call(demo, payloads, bigCall { n: U256::from(262_144) }.abi_encode(), "big").await;
    traffic(demo, 2, 4).await;
    let ticks = call(demo, payloads, ticksCall { n: U256::from(5_000) }.abi_encode(), "ticks").await;
    assert_eq!(ticks.inner.logs().len(), 5_000);
    call(demo, payloads, malformedCall {}.abi_encode(), "malformed").await;
    traffic(demo, 2, 4).await;
    traffic(&other_demo, 3, 7).await;

    // Both chains reach their heads and every log is stored.
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    wait_synced(&mut db, 31338, other.url(), SOON).await;
    assert!(indexer.proc.is_running(), "the indexer runs on: {}", indexer.proc.logs());
    let stored = assert_matches_chain(
        &mut db,
        stack.chain_id,
        stack.anvil.url(),
        &[demo.token, demo.registry, payloads],
    )
    .await;
    assert_second_chain_ranges(&mut db, &other_demo, other.url(), registry_start).await;

    // What the rows hold.
    let of = |event: &str| stored.iter().filter(|e| e.event == event).collect::<Vec<&StoredEvent>>();
    let notes: Vec<Value> = of("Note").iter().map(|e| e.args.clone()).collect();
    assert_eq!(
        notes,
        [
            json!({"text": {"hex": format!("0x{}", hex::encode(b"nul\0inside"))}}),
            json!({"text": {"hex": "0xfffe61c3"}}),
            json!({"text": "plain ✓"}),
            Value::Null,
            Value::Null
        ]
    );
    let undecoded: Vec<&str> = of("Note").iter().filter_map(|e| e.decode_error.as_deref()).collect();
    assert_eq!(undecoded.len(), 2, "{undecoded:?}");
    assert!(undecoded[0].contains("data (2 bytes) does not decode"), "{undecoded:?}");
    assert!(undecoded[1].contains("log has 3 topics; the event has 1"), "{undecoded:?}");
    let wrapped: Vec<Value> = of("Wrapped").iter().map(|e| e.args.clone()).collect();
    assert_eq!(
        wrapped,
        [
            json!({"id": "7", "item": [{"hex": "0x8081"}, "0x8081", [{"hex": "0x8081"}, "plain"]]}),
            json!({"id": "8", "item": [{"hex": "0x00"}, "0x00", [{"hex": "0x00"}, "plain"]]}),
        ]
    );
    let big_row = of("Big");
    assert_eq!(big_row.len(), 1);
    assert_eq!(big_row[0].tx_hash, format!("{:#x}", big.transaction_hash));
    assert_eq!(big_row[0].args, json!({"blob": format!("0x{}", hex::encode(big_blob(262_144)))}));
    let tick_rows = of("Tick");
    assert_eq!(tick_rows.len(), 5_000);
    assert!(tick_rows.iter().all(|e| e.tx_hash == format!("{:#x}", ticks.transaction_hash)));
    assert_eq!(tick_rows[4_999].args, json!({"i": "4999", "value": "1"}));

    // The API serves every one of them as JSON, decodeError only where set.
    let stop = CancellationToken::new();
    let base = serve_api(&stack.db_url, &stop).await;
    let items = api_events(&base, "contract=Payloads", 1000).await;
    assert_eq!(items.len(), of("Note").len() + of("Wrapped").len() + 1 + 5_000);
    let failed: Vec<&Value> = items.iter().filter(|i| i.get("decodeError").is_some()).collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|i| i["args"].is_null() && i["event"] == "Note"));
    assert_eq!(items[0]["args"], notes[0]);
    assert_eq!(items[0]["signature"], "event Note(string text)");
    let second: Vec<Value> = api_events(&base, "chainId=31338", 1000).await;
    assert!(!second.is_empty() && second.iter().all(|i| i.get("decodeError").is_none()));
    stop.cancel();

    // Counted per chain, contract and event (a range decoded again may count twice).
    let (_, metrics) = indexer.get_text("/metrics").await.expect("/metrics");
    let counted = metrics
        .lines()
        .find(|l| {
            l.starts_with("tidemark_decode_errors_total{")
                && ["chain=\"31337\"", "contract=\"Payloads\"", "event=\"Note\""]
                    .iter()
                    .all(|p| l.contains(p))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(counted.is_some_and(|n| n >= 2.0), "{metrics}");
    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0);
}

/// Chain 31338: Token's logs from block 0 and Registry's only from `registry_start`.
async fn assert_second_chain_ranges(db: &mut InstanceDb, demo: &Demo, url: &str, registry_start: u64) {
    let cp = db.checkpoint(31338).await.expect("query").expect("checkpoint").block_number as u64;
    let mut want: Vec<LogRow> = canonical_logs(url, &[demo.token], 0, cp).await.expect("eth_getLogs");
    want.extend(canonical_logs(url, &[demo.registry], registry_start, cp).await.expect("eth_getLogs"));
    want.sort_by_key(|r| (r.block_number, r.log_index));
    let early = canonical_logs(url, &[demo.registry], 0, registry_start - 1).await.expect("eth_getLogs");
    assert!(!early.is_empty(), "Registry emitted before its start block");
    let mut stored: Vec<LogRow> = db
        .events()
        .await
        .expect("events")
        .iter()
        .filter(|e| e.chain_id == 31338)
        .map(StoredEvent::log_row)
        .collect();
    stored.sort_by_key(|r| (r.block_number, r.log_index));
    assert_eq!(stored.len(), want.len(), "chain 31338: stored vs canonical within each contract's range");
    assert!(stored == want, "chain 31338: stored rows differ from the canonical logs in range");
}

/// The writer's last resort (§9.8): a batch PostgreSQL rejects because of one row's args
/// (here a NUL escape, which `jsonb` refuses) is committed with that row stored raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn args_the_database_rejects_are_stored_raw_with_the_reason() {
    use tidemark_db_client::test_utils::fixtures::seeded_instance;
    use tidemark_indexer::pipeline::decode::EventRow;
    use tidemark_indexer::store::{Batch, Writer};
    use tidemark_shared_types::{BlockRef, SchemaName};

    let schema = SchemaName::new(SCHEMA).expect("schema name");
    let (test_db, pool, _conn) = seeded_instance(&schema, &[]).await;
    let mut writer = Writer::try_acquire(&pool, &schema).await.expect("connection").expect("writer lock");
    let row = |log_index: u64, args: Value| EventRow {
        block_number: 1,
        block_hash: format!("0x{:064x}", 1),
        block_timestamp: 1,
        tx_hash: format!("0x{:064x}", 2),
        tx_index: 0,
        log_index,
        address: format!("0x{:040x}", 3),
        contract: "C".into(),
        event: "Note".into(),
        signature: "event Note(string text)".into(),
        topics: vec![format!("0x{:064x}", 4)],
        data: "0x".into(),
        args: Some(args),
        decode_error: None,
    };
    let events = [row(0, json!({"text": "nul\u{0}"})), row(1, json!({"text": "fine"}))];
    let checkpoint = BlockRef { number: 1, timestamp: 1, hash: format!("0x{:064x}", 1) };
    writer.commit(Batch::new(1, &events, &checkpoint)).await.expect("the batch commits");

    let mut db = InstanceDb::connect(&test_db.url, SCHEMA).await.expect("instance");
    let stored = db.events().await.expect("events");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].args, Value::Null);
    let reason = stored[0].decode_error.as_deref().expect("a reason");
    assert!(reason.starts_with("args not storable:"), "{reason}");
    assert_eq!((&stored[1].args, &stored[1].decode_error), (&json!({"text": "fine"}), &None));
    assert_eq!(db.checkpoint(1).await.expect("query").map(|c| c.block_number), Some(1));
}
