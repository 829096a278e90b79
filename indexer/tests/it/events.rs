//! Invariant 1 (DESIGN §9) at volume, and the args JSON of DESIGN §3: thousands of events
//! of two contracts with different events are stored exactly as `eth_getLogs` reports
//! them, and every args object matches an independent decoding with alloy's static
//! bindings and the values the test sent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::SCHEMA;
use alloy::primitives::{Address, B256, U256, hex, keccak256};
use alloy::sol_types::SolEvent;
use serde_json::{Value, json};
use tidemark_testkit::{SOON, Stack, StoredEvent};
use tidemark_traffic::abi::{Approval, Burst, Registered, Tagged, Transfer, Updated};
use tidemark_traffic::{RECIPIENTS, REGISTRY_EVENTS, SENDER, TOKEN_EVENTS};

fn hexs(a: impl std::fmt::LowerHex) -> String {
    format!("{a:#x}")
}

/// What the test sent, by transaction hash.
#[derive(Default)]
struct Sent {
    registered: HashMap<String, (String, Vec<U256>, String)>,
    tagged: HashMap<String, (B256, Vec<String>, Vec<u8>)>,
    updated: HashMap<String, (u64, Address, u128, bool, String)>,
    bursts: u64,
}

/// The args object DESIGN §3 prescribes, from alloy's static decoding of the raw log.
fn independent_args(e: &StoredEvent) -> (String, Value) {
    let topics: Vec<B256> = e.topics.iter().map(|t| t.parse().expect("topic is 32-byte hex")).collect();
    let data = hex::decode(&e.data).expect("data is hex");
    let topic0 = topics[0];
    let decoded = if topic0 == Transfer::SIGNATURE_HASH {
        let x = Transfer::decode_raw_log(topics, &data).expect("Transfer decodes");
        ("Transfer", json!({"from": hexs(x.from), "to": hexs(x.to), "value": x.value.to_string()}))
    } else if topic0 == Approval::SIGNATURE_HASH {
        let x = Approval::decode_raw_log(topics, &data).expect("Approval decodes");
        (
            "Approval",
            json!({"owner": hexs(x.owner), "spender": hexs(x.spender), "value": x.value.to_string()}),
        )
    } else if topic0 == Registered::SIGNATURE_HASH {
        let x = Registered::decode_raw_log(topics, &data).expect("Registered decodes");
        let ids: Vec<String> = x.ids.iter().map(U256::to_string).collect();
        (
            "Registered",
            json!({"name": {"topicHash": hexs(x.name)}, "owner": hexs(x.owner), "ids": ids, "label": x.label}),
        )
    } else if topic0 == Tagged::SIGNATURE_HASH {
        let x = Tagged::decode_raw_log(topics, &data).expect("Tagged decodes");
        ("Tagged", json!({"key": hexs(x.key), "tags": x.tags, "data": format!("0x{}", hex::encode(&x.data))}))
    } else if topic0 == Updated::SIGNATURE_HASH {
        let x = Updated::decode_raw_log(topics, &data).expect("Updated decodes");
        let i = x.info;
        (
            "Updated",
            json!({"id": x.id.to_string(), "info": [hexs(i.who), i.amount.to_string(), i.active, i.note]}),
        )
    } else if topic0 == Burst::SIGNATURE_HASH {
        let x = Burst::decode_raw_log(topics, &data).expect("Burst decodes");
        ("Burst", json!({"seq": x.seq.to_string(), "value": x.value.to_string()}))
    } else {
        panic!("unexpected topic0 {topic0:#x} at cursor {}", e.cursor);
    };
    (decoded.0.to_owned(), decoded.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_events_from_two_contracts_match_eth_get_logs_and_decode() {
    let stack = Stack::shared(SCHEMA).await;
    let demo = &stack.demo;
    let mut sent = Sent::default();
    let generated = Instant::now();
    for i in 0..230u64 {
        let who = RECIPIENTS[(i % 9) as usize];
        match i % 10 {
            0..=4 => {
                demo.burst(45).await.expect("burst");
                sent.bursts += 45;
            }
            5 => {
                demo.batch_transfer(&RECIPIENTS[..6], U256::from(i)).await.expect("batchTransfer");
            }
            6 => {
                let (name, ids, label) = (
                    format!("name-{i}"),
                    vec![U256::from(i), U256::MAX - U256::from(i), U256::ZERO],
                    format!("label «{i}»"),
                );
                let r = demo.register(&name, &ids, &label).await.expect("register");
                sent.registered.insert(hexs(r.transaction_hash), (name, ids, label));
            }
            7 => {
                let key = keccak256(i.to_be_bytes());
                let tags = vec![format!("t{i}"), String::new(), "green".to_owned()];
                let data = vec![0xde, 0xad, i as u8];
                let tag_refs: Vec<&str> = tags.iter().map(String::as_str).collect();
                let r = demo.tag(key, &tag_refs, &data).await.expect("tag");
                sent.tagged.insert(hexs(r.transaction_hash), (key, tags, data));
            }
            8 => {
                let (amount, active, note) = (u128::MAX - u128::from(i), i % 3 == 0, format!("note {i}"));
                let r = demo.update(i, who, amount, active, &note).await.expect("update");
                sent.updated.insert(hexs(r.transaction_hash), (i, who, amount, active, note));
            }
            _ if i % 20 == 9 => {
                demo.transfer(who, U256::from(i)).await.expect("transfer");
            }
            _ => {
                demo.approve(who, U256::from(i)).await.expect("approve");
            }
        }
        if i == 100 {
            demo.mine(25).await.expect("anvil_mine");
        }
    }
    let head = demo.block_number().await.expect("head");
    eprintln!("generated {head} blocks in {:.1} s", generated.elapsed().as_secs_f64());

    let started = Instant::now();
    let mut indexer = stack.spawn(&stack.config());
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, SOON).await;
    let took = started.elapsed().as_secs_f64();
    let stored = stack.assert_matches_chain(&mut db).await;
    eprintln!(
        "indexed {} events over {} blocks in {took:.2} s from process start: {:.0} events/s, {:.0} blocks/s",
        stored.len(),
        head + 1,
        stored.len() as f64 / took,
        (head + 1) as f64 / took
    );
    assert!(stored.len() >= 5_000, "at least 5,000 events, got {}", stored.len());
    assert!(head >= 200, "at least 200 blocks, got {head}");

    // Every row: contract and event names, canonical signature, args as alloy decodes them.
    let token = hexs(demo.token);
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for e in &stored {
        let (name, args) = independent_args(e);
        assert_eq!(e.event, name, "event name at cursor {}", e.cursor);
        assert_eq!(e.args, args, "args of {name} at cursor {}", e.cursor);
        let (contract, sigs) = if e.address == token {
            ("Token", &TOKEN_EVENTS[..])
        } else {
            ("Registry", &REGISTRY_EVENTS[..])
        };
        assert_eq!(e.contract, contract);
        assert!(sigs.contains(&e.signature.as_str()), "signature {} of {contract}", e.signature);
        assert!(e.signature.starts_with(&format!("event {name}(")));
        *per_event.entry(name).or_default() += 1;
    }
    for name in ["Transfer", "Approval", "Registered", "Tagged", "Updated", "Burst"] {
        assert!(per_event.get(name).copied().unwrap_or(0) > 0, "some {name} events: {per_event:?}");
    }

    // Against what was sent.
    let bursts: Vec<&StoredEvent> = stored.iter().filter(|e| e.event == "Burst").collect();
    assert_eq!(bursts.len() as u64, sent.bursts);
    for (k, e) in bursts.iter().enumerate() {
        assert_eq!(e.args, json!({"seq": k.to_string(), "value": (k % 45).to_string()}), "Burst #{k}");
    }
    let by_tx = |event: &str| -> HashMap<String, &StoredEvent> {
        stored.iter().filter(|e| e.event == event).map(|e| (e.tx_hash.clone(), e)).collect()
    };
    let registered = by_tx("Registered");
    assert_eq!(registered.len(), sent.registered.len());
    for (tx, (name, ids, label)) in &sent.registered {
        let e = registered.get(tx).expect("the Registered event of each register call");
        let ids: Vec<String> = ids.iter().map(U256::to_string).collect();
        assert_eq!(
            e.args,
            json!({"name": {"topicHash": hexs(keccak256(name.as_bytes()))}, "owner": hexs(SENDER), "ids": ids, "label": label})
        );
    }
    let tagged = by_tx("Tagged");
    assert_eq!(tagged.len(), sent.tagged.len());
    for (tx, (key, tags, data)) in &sent.tagged {
        let e = tagged.get(tx).expect("the Tagged event of each tag call");
        assert_eq!(
            e.args,
            json!({"key": hexs(*key), "tags": tags, "data": format!("0x{}", hex::encode(data))})
        );
    }
    let updated = by_tx("Updated");
    assert_eq!(updated.len(), sent.updated.len());
    for (tx, (id, who, amount, active, note)) in &sent.updated {
        let e = updated.get(tx).expect("the Updated event of each update call");
        assert_eq!(
            e.args,
            json!({"id": id.to_string(), "info": [hexs(*who), amount.to_string(), active, note]})
        );
    }
    let mint = stored.iter().find(|e| e.event == "Transfer").expect("the mint");
    assert_eq!(
        mint.args,
        json!({"from": hexs(Address::ZERO), "to": hexs(SENDER), "value": "1000000000000000000000000000"})
    );

    assert_eq!(indexer.stop(Duration::from_secs(5)).await, 0, "clean shutdown");
}
