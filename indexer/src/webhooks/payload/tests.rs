use serde_json::json;

use super::{Announced, alchemy, standard};

const HASH: &str = "0x3fe2a0b7e4d1b7d5c6e2f1a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9";
const PARENT: &str = "0x0a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526272829";
const TRANSFER: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// The shape of Alchemy's documented custom-webhook delivery (extra fields included).
fn alchemy_doc() -> serde_json::Value {
    json!({
        "webhookId": "wh_octjglnywaupz6th",
        "id": "whevt_ogrc5v64myey69ux",
        "createdAt": "2024-04-28T17:48:53.306Z",
        "type": "GRAPHQL",
        "event": {
            "data": {"block": {
                "hash": HASH.to_uppercase().replacen("0X", "0x", 1),
                "number": 17131563,
                "parent": {"hash": PARENT},
                "timestamp": 1682700983,
                "logs": [{
                    "data": "0x00000000000000000000000000000000000000000000000000000000000f4240",
                    "topics": [TRANSFER,
                        "0x000000000000000000000000a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
                        "0x0000000000000000000000005e1b802b5c0e3c7ae6bb9f0b3b2f6d7e9a1c3b5d"],
                    "index": 176,
                    "account": {"address": "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"},
                    "transaction": {"hash": PARENT, "nonce": 3, "index": 79, "value": "0x0",
                        "from": {"address": "0x5e1b802b5c0e3c7ae6bb9f0b3b2f6d7e9a1c3b5d"}, "status": 1}
                }]
            }},
            "sequenceNumber": "10000000000578619000",
            "network": "ETH_MAINNET"
        }
    })
}

#[test]
fn alchemy_deliveries_announce_their_block() {
    let body = serde_json::to_vec(&alchemy_doc()).expect("json");
    assert_eq!(
        alchemy(&body),
        Ok(Announced {
            delivery_id: Some("whevt_ogrc5v64myey69ux".into()),
            number: 17131563,
            hash: HASH.into(),
            parent_hash: Some(PARENT.into()),
            sequence: Some("10000000000578619000".into()),
            log_count: 1,
            chain_id: Some(1),
        })
    );
    // A heartbeat (no logs), with only what a minimal query selects.
    let beat = json!({"webhookId": "wh_1", "id": "whevt_2", "type": "GRAPHQL",
        "event": {"data": {"block": {"number": 5, "hash": HASH}}, "sequenceNumber": "7"}});
    let a = alchemy(&serde_json::to_vec(&beat).expect("json")).expect("heartbeat");
    assert_eq!((a.number, a.log_count, a.parent_hash, a.sequence.as_deref()), (5, 0, None, Some("7")));
}

#[test]
fn alchemy_bodies_that_are_not_the_envelope_are_refused() {
    let mut cases = Vec::new();
    let mut v = alchemy_doc();
    v["type"] = json!("ADDRESS_ACTIVITY");
    cases.push(("type", v));
    let mut v = alchemy_doc();
    v["event"]["data"]["block"]["number"] = json!(-1);
    cases.push(("number", v));
    let mut v = alchemy_doc();
    v["event"]["data"]["block"]["number"] = json!(u64::MAX);
    cases.push(("number", v));
    let mut v = alchemy_doc();
    v["event"]["data"]["block"]["hash"] = json!("0x1234");
    cases.push(("hash", v));
    let mut v = alchemy_doc();
    v["event"]["data"]["block"]["logs"][0]["topics"][0] = json!("not hex");
    cases.push(("topics[0]", v));
    let mut v = alchemy_doc();
    v["event"]["sequenceNumber"] = json!("12a");
    cases.push(("sequenceNumber", v));
    let mut v = alchemy_doc();
    v["id"] = json!("a\u{0000}b");
    cases.push(("id", v));
    let mut v = alchemy_doc();
    v["event"]["data"]["block"] = json!(null);
    cases.push(("block", v));
    for (field, v) in cases {
        let e = alchemy(&serde_json::to_vec(&v).expect("json")).expect_err(field);
        assert!(e.0.contains(field), "{field}: {e}");
    }
    assert!(alchemy(b"not json").is_err());
    assert!(alchemy(b"[]").is_err());
}

#[test]
fn sequence_numbers_keep_their_value_not_their_text() {
    let mut v = alchemy_doc();
    v["event"]["sequenceNumber"] = json!("000123");
    let a = alchemy(&serde_json::to_vec(&v).expect("json")).expect("parsed");
    assert_eq!(a.sequence.as_deref(), Some("123"));
}

/// A Standard delivery with the log as `eth_getLogs` returns it (viem/ethers shape).
fn standard_body() -> serde_json::Value {
    json!({
        "block": {"number": "0x1055f2b", "hash": HASH, "parentHash": PARENT, "timestamp": "0x644bfbb7"},
        "logs": [{
            "address": "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
            "topics": [TRANSFER],
            "data": "0x",
            "blockNumber": "0x1055f2b",
            "blockHash": HASH,
            "transactionHash": PARENT,
            "transactionIndex": "0x4f",
            "logIndex": "0xb0",
            "removed": false
        }]
    })
}

#[test]
fn standard_deliveries_announce_their_block() {
    let a = standard(&serde_json::to_vec(&standard_body()).expect("json")).expect("parsed");
    assert_eq!((a.number, a.hash.as_str(), a.log_count), (17_129_259, HASH, 1));
    assert_eq!(a.parent_hash.as_deref(), Some(PARENT));
    assert_eq!(a.chain_id, None);
    let mut v = standard_body();
    v["chainId"] = json!("0x1");
    assert_eq!(standard(&serde_json::to_vec(&v).expect("json")).map(|a| a.chain_id), Ok(Some(1)));
    let mut v = standard_body();
    v["block"]["number"] = json!(17_129_259);
    assert_eq!(standard(&serde_json::to_vec(&v).expect("json")).map(|a| a.number), Ok(17_129_259));
    let mut v = standard_body();
    v["logs"][0]["blockHash"] = json!(PARENT);
    assert!(standard(&serde_json::to_vec(&v).expect("json")).is_err(), "a log of another block");
    let mut v = standard_body();
    v["logs"][0]["blockNumber"] = json!("0x1");
    assert!(standard(&serde_json::to_vec(&v).expect("json")).is_err(), "a log of another number");
    let mut v = standard_body();
    v["logs"][0]["topics"] = json!([TRANSFER, TRANSFER, TRANSFER, TRANSFER, TRANSFER]);
    assert!(standard(&serde_json::to_vec(&v).expect("json")).is_err(), "five topics");
    let mut v = standard_body();
    v["block"]["number"] = json!("0x8000000000000000");
    assert!(standard(&serde_json::to_vec(&v).expect("json")).is_err(), "above bigint");
}
