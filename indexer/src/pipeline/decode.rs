//! Turning raw logs into event rows with `args` JSON (DESIGN §3).
//!
//! Args: an object keyed by parameter name (`_0`, `_1`… when unnamed); integers as
//! decimal strings, bytes and addresses as 0x hex, arrays and tuples as JSON arrays; an
//! indexed dynamic value (string, bytes, array, tuple) as `{"topicHash": "0x…"}`. Each log
//! is decoded with the ABI of the contract that emitted it.

use std::collections::HashMap;

use alloy::dyn_abi::{DynSolType, DynSolValue};
use alloy::primitives::{Address, B256, hex};
use alloy::rpc::types::Log;
use serde_json::{Map, Value, json};

use crate::config::{ChainConfig, ResolvedEvent};

/// A decoded log, ready to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Block number.
    pub block_number: u64,
    /// 0x block hash.
    pub block_hash: String,
    /// Unix seconds.
    pub block_timestamp: u64,
    /// 0x transaction hash.
    pub tx_hash: String,
    /// Transaction index in the block.
    pub tx_index: u64,
    /// Log index in the block.
    pub log_index: u64,
    /// Emitting address, lowercase.
    pub address: String,
    /// Contract name.
    pub contract: String,
    /// Event name.
    pub event: String,
    /// Canonical signature.
    pub signature: String,
    /// 0x topics.
    pub topics: Vec<String>,
    /// 0x data.
    pub data: String,
    /// Decoded args.
    pub args: Value,
}

/// Why a log could not be turned into a row.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The node returned a log without a field that canonical logs carry.
    #[error("log lacks {0} (pending or malformed log from the node)")]
    MissingField(&'static str),
}

/// Lookup from (address, topic0) to the contract and event that decode it.
pub struct Decoder {
    by_key: HashMap<(Address, B256), (String, ResolvedEvent)>,
}

impl Decoder {
    /// Builds the lookup for a chain's contracts.
    pub fn new(chain: &ChainConfig) -> Self {
        let mut by_key = HashMap::new();
        for c in &chain.contracts {
            for a in &c.addresses {
                for e in &c.events {
                    by_key.insert((*a, e.topic0), (c.name.clone(), e.clone()));
                }
            }
        }
        Self { by_key }
    }

    /// Decodes `log`. `Ok(None)` when the log is not one of ours (e.g. the filter matched
    /// another contract's event with the same topic0 at one of our addresses — cannot
    /// happen with our filter, but a provider may be lax) or does not decode against the
    /// ABI (logged by the caller's metrics; stored events always decode).
    pub fn decode(&self, log: &Log, timestamp: u64) -> Result<Option<EventRow>, DecodeError> {
        let Some(topic0) = log.topics().first() else { return Ok(None) };
        let Some((contract, ev)) = self.by_key.get(&(log.address(), *topic0)) else { return Ok(None) };
        let Some(args) = decode_args(ev, log.topics(), &log.data().data) else {
            metrics::counter!("tidemark_undecodable_logs_total").increment(1);
            tracing::warn!(target: "tidemark::decode", contract, event = %ev.event.name, "log does not match its ABI; skipped");
            return Ok(None);
        };
        Ok(Some(EventRow {
            block_number: log.block_number.ok_or(DecodeError::MissingField("blockNumber"))?,
            block_hash: hex::encode_prefixed(log.block_hash.ok_or(DecodeError::MissingField("blockHash"))?),
            block_timestamp: timestamp,
            tx_hash: hex::encode_prefixed(
                log.transaction_hash.ok_or(DecodeError::MissingField("transactionHash"))?,
            ),
            tx_index: log.transaction_index.ok_or(DecodeError::MissingField("transactionIndex"))?,
            log_index: log.log_index.ok_or(DecodeError::MissingField("logIndex"))?,
            address: hex::encode_prefixed(log.address()),
            contract: contract.clone(),
            event: ev.event.name.clone(),
            signature: ev.signature.clone(),
            topics: log.topics().iter().map(hex::encode_prefixed).collect(),
            data: hex::encode_prefixed(&log.data().data),
            args,
        }))
    }
}

/// Decodes an event's arguments into the args object; `None` when they do not match.
pub fn decode_args(ev: &ResolvedEvent, topics: &[B256], data: &[u8]) -> Option<Value> {
    let inputs = &ev.event.inputs;
    if ev.types.len() != inputs.len() {
        return None;
    }
    let body = match ev.body.abi_decode_sequence(data).ok()? {
        DynSolValue::Tuple(values) => values,
        _ => return None,
    };
    let mut body = body.into_iter();
    let mut indexed_topics = topics.iter().skip(1);
    let mut out = Map::with_capacity(inputs.len());
    for ((param, ty), key) in inputs.iter().zip(&ev.types).zip(&ev.keys) {
        let value = if param.indexed {
            let topic = indexed_topics.next()?;
            if is_dynamic(ty) {
                json!({ "topicHash": hex::encode_prefixed(topic) })
            } else {
                to_json(&ty.abi_decode(topic.as_slice()).ok()?)
            }
        } else {
            to_json(&body.next()?)
        };
        out.insert(key.clone(), value);
    }
    if indexed_topics.next().is_some() {
        return None;
    }
    Some(Value::Object(out))
}

/// Types whose indexed value is stored as a keccak hash in the topic.
fn is_dynamic(ty: &DynSolType) -> bool {
    matches!(
        ty,
        DynSolType::String
            | DynSolType::Bytes
            | DynSolType::Array(_)
            | DynSolType::FixedArray(..)
            | DynSolType::Tuple(_)
    )
}

/// A decoded value as JSON (DESIGN §3).
pub fn to_json(v: &DynSolValue) -> Value {
    match v {
        DynSolValue::Bool(b) => Value::Bool(*b),
        DynSolValue::Int(i, _) => Value::String(i.to_string()),
        DynSolValue::Uint(u, _) => Value::String(u.to_string()),
        DynSolValue::FixedBytes(word, size) => Value::String(hex::encode_prefixed(&word[..*size])),
        DynSolValue::Address(a) => Value::String(hex::encode_prefixed(a)),
        DynSolValue::Function(f) => Value::String(hex::encode_prefixed(f.as_slice())),
        DynSolValue::Bytes(b) => Value::String(hex::encode_prefixed(b)),
        DynSolValue::String(s) => Value::String(s.clone()),
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) | DynSolValue::Tuple(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use alloy::json_abi::Event;
    use alloy::primitives::{U256, keccak256};

    use super::*;

    fn resolved(sig: &str) -> ResolvedEvent {
        ResolvedEvent::new(Event::parse(sig).expect("sig"))
    }

    #[test]
    fn static_indexed_dynamic_indexed_and_body_values() {
        let ev = resolved(
            "event Registered(string indexed name, address indexed owner, uint256[] ids, string label)",
        );
        let owner = Address::repeat_byte(0xab);
        let name_hash = keccak256("alice");
        let topics = [ev.topic0, name_hash, owner.into_word()];
        let body = DynSolValue::Tuple(vec![
            DynSolValue::Array(vec![
                DynSolValue::Uint(U256::from(1), 256),
                DynSolValue::Uint(U256::MAX, 256),
            ]),
            DynSolValue::String("first".into()),
        ]);
        let data = body.abi_encode_params();
        let args = decode_args(&ev, &topics, &data).expect("decodes");
        assert_eq!(
            args,
            json!({"name": {"topicHash": format!("{name_hash:#x}")}, "owner": format!("{owner:#x}"),
                   "ids": ["1", U256::MAX.to_string()], "label": "first"})
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
    fn mismatched_logs_do_not_decode() {
        let ev = resolved("event Transfer(address indexed from, address indexed to, uint256 value)");
        // Missing a topic.
        assert!(decode_args(&ev, &[ev.topic0, B256::ZERO], &[0u8; 32]).is_none());
        // Truncated data.
        assert!(decode_args(&ev, &[ev.topic0, B256::ZERO, B256::ZERO], &[0u8; 3]).is_none());
        // Negative ints are decimal strings with a sign.
        let ev = resolved("event X(int8 v)");
        let data = DynSolValue::Int(alloy::primitives::I256::try_from(-3).expect("i"), 8).abi_encode_params();
        assert_eq!(decode_args(&ev, &[ev.topic0], &data).expect("decodes"), json!({"v": "-3"}));
    }
}
