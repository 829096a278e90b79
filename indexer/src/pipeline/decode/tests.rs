use std::path::Path;

use alloy::json_abi::Event;
use alloy::primitives::{Bytes, LogData, U256, keccak256};

use super::*;
use crate::config::IndexerConfig;
use crate::pipeline::children::{ChildSet, Creation, discover};

fn resolved(sig: &str) -> ResolvedEvent {
    ResolvedEvent::new(Event::parse(sig).expect("sig"))
}

#[test]
fn static_indexed_dynamic_indexed_and_body_values() {
    let ev =
        resolved("event Registered(string indexed name, address indexed owner, uint256[] ids, string label)");
    let owner = Address::repeat_byte(0xab);
    let name_hash = keccak256("alice");
    let topics = [ev.topic0, name_hash, owner.into_word()];
    let body = DynSolValue::Tuple(vec![
        DynSolValue::Array(vec![DynSolValue::Uint(U256::from(1), 256), DynSolValue::Uint(U256::MAX, 256)]),
        DynSolValue::String("first ✓".into()),
    ]);
    let args = decode_args(&ev, &topics, &body.abi_encode_params()).expect("decodes");
    assert_eq!(
        args,
        json!({"name": {"topicHash": format!("{name_hash:#x}")}, "owner": format!("{owner:#x}"),
               "ids": ["1", U256::MAX.to_string()], "label": "first ✓"})
    );
}

#[test]
fn unnamed_params_tuples_and_bytes() {
    let ev = resolved("event Tagged(bytes32 indexed, (address,uint128,bool,string), bytes)");
    let key = B256::repeat_byte(7);
    let body = DynSolValue::Tuple(vec![
        DynSolValue::Tuple(vec![
            DynSolValue::Address(Address::ZERO),
            DynSolValue::Uint(U256::from(5), 128),
            DynSolValue::Bool(true),
            DynSolValue::String("n".into()),
        ]),
        DynSolValue::Bytes(vec![1, 2]),
    ]);
    let args = decode_args(&ev, &[ev.topic0, key], &body.abi_encode_params()).expect("decodes");
    assert_eq!(
        args,
        json!({"_0": format!("{key:#x}"), "_1": [format!("{:#x}", Address::ZERO), "5", true, "n"], "_2": "0x0102"})
    );
}

#[test]
fn mismatched_logs_do_not_decode_and_say_why() {
    let ev = resolved("event Transfer(address indexed from, address indexed to, uint256 value)");
    let err = decode_args(&ev, &[ev.topic0, B256::ZERO], &[0u8; 32]).expect_err("missing topic");
    assert_eq!(err, ArgsError::TopicCount { found: 2, expected: 3 });
    let err =
        decode_args(&ev, &[ev.topic0, B256::ZERO, B256::ZERO, B256::ZERO], &[0u8; 32]).expect_err("extra");
    assert_eq!(err, ArgsError::TopicCount { found: 4, expected: 3 });
    let err = decode_args(&ev, &[ev.topic0, B256::ZERO, B256::ZERO], &[0u8; 3]).expect_err("short data");
    assert!(err.to_string().starts_with("data (3 bytes) does not decode as (uint256)"), "{err}");
    // Negative ints are decimal strings with a sign.
    let ev = resolved("event X(int8 v)");
    let data = DynSolValue::Int(alloy::primitives::I256::try_from(-3).expect("i"), 8).abi_encode_params();
    assert_eq!(decode_args(&ev, &[ev.topic0], &data).expect("decodes"), json!({"v": "-3"}));
}

/// `string` data encoded from raw bytes, as Solidity's `string(bytes)` allows.
fn raw_string(bytes: &[u8]) -> DynSolValue {
    DynSolValue::Bytes(bytes.to_vec())
}

#[test]
fn strings_with_nul_or_invalid_utf8_become_hex() {
    let ev = resolved("event Note(string text, string other, bytes raw)");
    let body = DynSolValue::Tuple(vec![
        raw_string(b"a\0b"),
        raw_string(&[0xff, 0xfe, b'x']),
        DynSolValue::Bytes(vec![0, 0xff]),
    ]);
    let args = decode_args(&ev, &[ev.topic0], &body.abi_encode_params()).expect("decodes");
    assert_eq!(args, json!({"text": {"hex": "0x610062"}, "other": {"hex": "0xfffe78"}, "raw": "0x00ff"}));
    // The JSON holds no NUL for jsonb to reject, and no replacement character.
    let text = args.to_string();
    assert!(!text.contains("\\u0000") && !text.contains('\u{fffd}'), "{text}");
}

#[test]
fn nested_strings_are_checked_at_every_depth() {
    let ev = resolved("event Nested((uint8,string)[] items, string[2] pair, ((string,bool),string) deep)");
    let item = |n: u8, s: &[u8]| DynSolValue::Tuple(vec![DynSolValue::Uint(U256::from(n), 8), raw_string(s)]);
    let body = DynSolValue::Tuple(vec![
        DynSolValue::Array(vec![item(1, b"ok"), item(2, &[0xc3, 0x28])]),
        DynSolValue::FixedArray(vec![raw_string(b"\0"), raw_string("é".as_bytes())]),
        DynSolValue::Tuple(vec![
            DynSolValue::Tuple(vec![raw_string(&[0x80]), DynSolValue::Bool(false)]),
            raw_string(b"fine"),
        ]),
    ]);
    let args = decode_args(&ev, &[ev.topic0], &body.abi_encode_params()).expect("decodes");
    assert_eq!(
        args,
        json!({"items": [["1", "ok"], ["2", {"hex": "0xc328"}]],
               "pair": [{"hex": "0x00"}, "é"],
               "deep": [[{"hex": "0x80"}, false], "fine"]})
    );
}

const CONFIG: &str = r#"
namespace = "t"
schema = "t"
database_url = "postgres://x"
[[chains]]
chain_id = 5
rpc_url = "http://127.0.0.1:1"
[[chains.contracts]]
name = "Early"
addresses = ["0x00000000000000000000000000000000000000e1"]
events = ["event Note(string text)"]
[[chains.contracts]]
name = "Late"
addresses = ["0x00000000000000000000000000000000000000a1"]
start_block = 10
end_block = 20
events = ["event Transfer(address indexed from, address indexed to, uint256 value)",
          "event Transfer(address indexed from, address indexed to, uint256 indexed id)"]
"#;

fn decoder() -> Decoder {
    let cfg = IndexerConfig::parse(CONFIG, Path::new("."), &|_| None).expect("config");
    Decoder::new(&cfg.chains[0])
}

fn log(address: u8, block: u64, topics: Vec<B256>, data: Vec<u8>) -> Log {
    Log {
        inner: alloy::primitives::Log {
            address: Address::with_last_byte(address),
            data: LogData::new_unchecked(topics, Bytes::from(data)),
        },
        block_hash: Some(B256::repeat_byte(1)),
        block_number: Some(block),
        block_timestamp: Some(7),
        transaction_hash: Some(B256::repeat_byte(2)),
        transaction_index: Some(0),
        log_index: Some(3),
        removed: false,
    }
}

#[test]
fn undecodable_logs_are_rows_with_a_decode_error() {
    let d = decoder();
    let note = resolved("event Note(string text)").topic0;
    let row = d.decode(&log(0xe1, 1, vec![note], vec![0xde, 0xad]), 7).expect("row").expect("ours");
    assert_eq!(row.args, None);
    let error = row.decode_error.expect("error");
    assert!(error.starts_with("data (2 bytes) does not decode as (string)"), "{error}");
    assert_eq!((row.contract.as_str(), row.event.as_str(), row.data.as_str()), ("Early", "Note", "0xdead"));
    assert_eq!(row.signature, "event Note(string text)");
    // Extra topics on a configured event: stored raw too.
    let row = d.decode(&log(0xe1, 1, vec![note, B256::ZERO], vec![]), 7).expect("row").expect("ours");
    assert_eq!(row.topics.len(), 2);
    assert!(row.decode_error.expect("error").contains("log has 2 topics; the event has 1"));
    // Not ours at all: another topic0, or no topics.
    assert_eq!(d.decode(&log(0xe1, 1, vec![B256::ZERO], vec![]), 7).expect("ok"), None);
    assert_eq!(d.decode(&log(0xe1, 1, vec![], vec![]), 7).expect("ok"), None);
    // A node's malformed answer is an error, not a row.
    let mut pending = log(0xe1, 1, vec![note], vec![]);
    pending.block_hash = None;
    assert!(matches!(d.decode(&pending, 7), Err(DecodeError::MissingField("blockHash"))));
    // More topics than a log can have: the node's answer is malformed (its columns hold
    // four).
    let five = log(0xe1, 1, vec![note, B256::ZERO, B256::ZERO, B256::ZERO, B256::ZERO], vec![]);
    assert!(matches!(d.decode(&five, 7), Err(DecodeError::TooManyTopics(5))));
}

#[test]
fn each_contract_gets_only_its_own_block_range() {
    let d = decoder();
    let transfer = resolved("event Transfer(address indexed from, address indexed to, uint256 value)");
    let topics = vec![transfer.topic0, B256::ZERO, B256::ZERO];
    let data = U256::from(9).to_be_bytes::<32>().to_vec();
    for (block, ours) in [(0, false), (9, false), (10, true), (20, true), (21, false)] {
        let got = d.decode(&log(0xa1, block, topics.clone(), data.clone()), 7).expect("ok");
        assert_eq!(got.is_some(), ours, "block {block}");
    }
    // The earlier contract is unbounded from block 0.
    let note = resolved("event Note(string text)");
    let data = DynSolValue::Tuple(vec![DynSolValue::String("x".into())]).abi_encode_params();
    assert!(d.decode(&log(0xe1, 0, vec![note.topic0], data), 7).expect("ok").is_some());
}

#[test]
fn events_sharing_a_topic0_decode_with_the_one_that_fits() {
    let d = decoder();
    let erc721 = resolved("event Transfer(address indexed from, address indexed to, uint256 indexed id)");
    let id = U256::from(42);
    let topics = vec![erc721.topic0, B256::ZERO, B256::ZERO, B256::from(id)];
    let row = d.decode(&log(0xa1, 10, topics, vec![]), 7).expect("ok").expect("ours");
    assert_eq!(row.signature, erc721.signature);
    let zero = format!("{:#x}", Address::ZERO);
    assert_eq!(row.args, Some(json!({"from": zero, "to": zero, "id": "42"})));
    assert_eq!(row.decode_error, None);
}

const FACTORY_CONFIG: &str = r#"
namespace = "t"
schema = "t"
database_url = "postgres://x"
[[chains]]
chain_id = 5
rpc_url = "http://127.0.0.1:1"
[[chains.contracts]]
name = "Early"
addresses = ["0x00000000000000000000000000000000000000e1"]
events = ["event Note(string text)"]
[[chains.contracts]]
name = "Maker"
addresses = ["0x00000000000000000000000000000000000000f1"]
events = ["event Created(address indexed by, address child)"]
[[chains.contracts]]
name = "Made"
factory = { contract = "Maker", event = "Created", parameter = "child" }
start_block = 5
events = ["event Note(string text)"]
"#;

fn created(block: u64, log_index: u64, child: Address) -> Log {
    let topic0 = resolved("event Created(address indexed by, address child)").topic0;
    let mut l = log(0xf1, block, vec![topic0, B256::left_padding_from(&[0x99])], child.into_word().to_vec());
    l.log_index = Some(log_index);
    l
}

#[test]
fn children_are_discovered_from_creating_logs_and_own_their_logs_from_that_block() {
    let cfg = IndexerConfig::parse(FACTORY_CONFIG, Path::new("."), &|_| None).expect("config");
    let chain = &cfg.chains[0];
    let d = Decoder::new(chain);
    let child = Address::with_last_byte(0xc1);
    let mut short = created(7, 2, child);
    short.inner.data = LogData::new_unchecked(short.topics().to_vec(), Bytes::from(vec![1, 2, 3]));
    let found = discover(chain, &[created(7, 4, child), short, created(3, 0, Address::with_last_byte(0xc2))]);
    // The malformed creating log is skipped; both others create a child (the factory's
    // range starts at 0), in block order.
    let addresses: Vec<Address> = found.iter().map(|f| f.address).collect();
    assert_eq!(addresses, [Address::with_last_byte(0xc2), child]);
    let made = chain.contracts.iter().position(|c| c.name == "Made").expect("Made");
    assert_eq!(found[1].creation, Creation { contract: made, block: 7, log_index: 4 });
    assert_eq!(found[1].row.address, format!("{child:#x}"));

    let mut set = ChildSet::default();
    for f in &found {
        assert!(set.insert(f.address, f.creation));
    }
    assert!(!set.insert(child, Creation { contract: made, block: 9, log_index: 0 }), "first creation kept");
    let note = resolved("event Note(string text)").topic0;
    let text = DynSolValue::Tuple(vec![DynSolValue::String("hi".into())]).abi_encode_params();
    let note_of = |a: u8, block: u64| log(a, block, vec![note], text.clone());
    // From the creating block on (the whole block: a constructor logs before its factory).
    let row = d.decode_in(&note_of(0xc1, 7), 1, &set).expect("row").expect("a child's log");
    assert_eq!((row.contract.as_str(), row.args), ("Made", Some(json!({"text": "hi"}))));
    assert_eq!(d.decode_in(&note_of(0xc1, 6), 1, &set).expect("ok"), None, "before its creation");
    // 0xc2 was created at block 3, before Made's start block 5: indexed from 5.
    assert_eq!(d.decode_in(&note_of(0xc2, 4), 1, &set).expect("ok"), None, "before the contract's start");
    assert!(d.decode_in(&note_of(0xc2, 5), 1, &set).expect("ok").is_some());
    // Without the set, a child's log is nobody's.
    assert_eq!(d.decode(&note_of(0xc1, 8), 1).expect("ok"), None);

    // An address both static (Early) and a child: one row, the static contract's.
    set.insert(Address::with_last_byte(0xe1), Creation { contract: made, block: 6, log_index: 0 });
    let row = d.decode_in(&note_of(0xe1, 8), 1, &set).expect("row").expect("ours");
    assert_eq!(row.contract, "Early");

    // A child of two factory contracts: its logs belong to the one that created it first.
    let twice = FACTORY_CONFIG.to_owned()
        + r#"
[[chains.contracts]]
name = "Listed"
factory = { contract = "Maker", event = "Created", parameter = "child" }
events = ["event Note(string text)"]
"#;
    let cfg2 = IndexerConfig::parse(&twice, Path::new("."), &|_| None).expect("config");
    let d2 = Decoder::new(&cfg2.chains[0]);
    let index = |name: &str| cfg2.chains[0].contracts.iter().position(|c| c.name == name).expect(name);
    let mut both = ChildSet::default();
    both.insert(child, Creation { contract: index("Listed"), block: 6, log_index: 0 });
    both.insert(child, Creation { contract: index("Made"), block: 7, log_index: 4 });
    let row = d2.decode_in(&note_of(0xc1, 8), 1, &both).expect("row").expect("ours");
    assert_eq!(row.contract, "Listed", "the earlier creation owns the log");
    // Before Made's creation only Listed matched; in its range both do, one row either way.
    let row = d2.decode_in(&note_of(0xc1, 6), 1, &both).expect("row").expect("ours");
    assert_eq!(row.contract, "Listed");

    // A rollback to block 6 forgets the child created at 7.
    set.truncate_above(6);
    assert_eq!(set.len(), 2);
    assert_eq!(d.decode_in(&note_of(0xc1, 8), 1, &set).expect("ok"), None);
    assert_eq!(set.addresses_upto(10, None), [Address::with_last_byte(0xc2), Address::with_last_byte(0xe1)]);
    assert_eq!(set.addresses_upto(5, None), [Address::with_last_byte(0xc2)]);
}
