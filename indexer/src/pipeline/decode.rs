//! Turning raw logs into event rows with `args` JSON (DESIGN §3).
//!
//! Args: an object keyed by parameter name (`_0`, `_1`… when unnamed); integers as
//! decimal strings, bytes and addresses as 0x hex, arrays and tuples as JSON arrays; an
//! indexed dynamic value (string, bytes, array, tuple) as `{"topicHash": "0x…"}`; a
//! `string` that is not valid UTF-8 or contains NUL (which `jsonb` rejects) as
//! `{"hex": "0x…"}`, its raw bytes, at any depth. Each log is decoded with the ABI of the
//! contract that emitted it, and only inside that contract's own block range.
//!
//! Invariant (DESIGN §9.8): nothing a log contains stops it from being stored. A log of a
//! configured (address, topic0) that does not fit its ABI becomes a row with `args` null
//! and a `decode_error`; the raw `topics` and `data` are always kept.

use std::collections::HashMap;

use alloy::dyn_abi::{DynSolType, DynSolValue};
use alloy::primitives::{Address, B256, hex};
use alloy::rpc::types::Log;
use serde_json::{Map, Value, json};

use super::children::ChildSet;
use crate::config::{ChainConfig, ResolvedEvent};

/// A decoded log, ready to insert (the row type of the writer, which owns `events`).
pub use tidemark_db_client::writer::EventRow;

/// Why a log could not be turned into a row at all: the node's answer is malformed (not
/// the log's content), so the caller fetches it again.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The node returned a log without a field that canonical logs carry.
    #[error("log lacks {0} (pending or malformed log from the node)")]
    MissingField(&'static str),
    /// The node returned a log with more topics than the EVM allows (four).
    #[error("log has {0} topics; an EVM log has at most 4 (malformed log from the node)")]
    TooManyTopics(usize),
}

/// Why a log's arguments do not decode against its event's ABI (stored as `decode_error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// The log carries another number of topics than topic0 plus the indexed parameters.
    #[error("log has {found} topics; the event has {expected} (topic0 and its indexed parameters)")]
    TopicCount {
        /// Topics the log carries.
        found: usize,
        /// Topics the event expects.
        expected: usize,
    },
    /// An indexed static parameter does not decode from its topic.
    #[error("indexed parameter {key}: {message}")]
    Topic {
        /// Args key of the parameter.
        key: String,
        /// The decoder's message.
        message: String,
    },
    /// The data does not decode as the non-indexed parameters.
    #[error("data ({len} bytes) does not decode as {types}: {message}")]
    Data {
        /// Length of the data.
        len: usize,
        /// The expected tuple type.
        types: String,
        /// The decoder's message.
        message: String,
    },
    /// A parameter type did not resolve (a configuration that validation let through).
    #[error("parameter types do not resolve")]
    Unresolved,
}

/// One event of one contract, ready to decode.
struct Candidate {
    contract: String,
    start_block: u64,
    end_block: Option<u64>,
    event: ResolvedEvent,
    /// The data layout with every `string` read as `bytes`, so that no byte is lost.
    wire: DynSolType,
}

/// Lookup from (address, topic0) to the contract and events that decode it, and from
/// (factory contract, topic0) for the children of factory contracts.
pub struct Decoder {
    chain: String,
    by_key: HashMap<(Address, B256), Vec<Candidate>>,
    by_child_key: HashMap<(usize, B256), Vec<Candidate>>,
    /// (address, contract) pairs whose overlap was logged (once each).
    overlaps: std::sync::Mutex<std::collections::HashSet<(Address, String)>>,
}

impl Decoder {
    /// Builds the lookup for a chain's contracts.
    pub fn new(chain: &ChainConfig) -> Self {
        let mut by_key: HashMap<(Address, B256), Vec<Candidate>> = HashMap::new();
        let mut by_child_key: HashMap<(usize, B256), Vec<Candidate>> = HashMap::new();
        for (j, c) in chain.contracts.iter().enumerate() {
            let candidate = |e: &ResolvedEvent| Candidate {
                contract: c.name.clone(),
                start_block: c.start_block,
                end_block: c.end_block,
                wire: strings_as_bytes(&e.body),
                event: e.clone(),
            };
            for e in &c.events {
                for a in &c.addresses {
                    by_key.entry((*a, e.topic0)).or_default().push(candidate(e));
                }
                if c.factory.is_some() {
                    by_child_key.entry((j, e.topic0)).or_default().push(candidate(e));
                }
            }
        }
        Self { chain: chain.chain_id.to_string(), by_key, by_child_key, overlaps: Default::default() }
    }

    /// [`Self::decode_in`] for a chain without factory children.
    pub fn decode(&self, log: &Log, timestamp: u64) -> Result<Option<EventRow>, DecodeError> {
        self.decode_in(log, timestamp, &ChildSet::default())
    }

    /// The contract that owns `log` and its events in range, if any. One owner per log
    /// (the unique key of `events` is the log's position): a static address first, then
    /// the children of factory contracts in the order they were created. Every other
    /// contract that would have matched is counted in `tidemark_overlapping_logs_total`
    /// and logged once per (address, contract): never silently dropped.
    fn owner<'d>(
        &'d self,
        log: &Log,
        block: u64,
        topic0: &B256,
        children: &ChildSet,
    ) -> Option<Vec<&'d Candidate>> {
        let in_range = |cs: &'d Vec<Candidate>| -> Vec<&'d Candidate> {
            cs.iter().filter(|c| c.start_block <= block && c.end_block.is_none_or(|e| block <= e)).collect()
        };
        let address = log.address();
        let mut groups = self
            .by_key
            .get(&(address, *topic0))
            .map(in_range)
            .into_iter()
            .chain(
                children
                    .get(&address)
                    .iter()
                    .filter(|k| k.block <= block)
                    .filter_map(|k| self.by_child_key.get(&(k.contract, *topic0)))
                    .map(in_range),
            )
            .filter(|g| !g.is_empty());
        let owner = groups.next()?;
        for other in groups {
            let loser = other[0].contract.clone();
            metrics::counter!("tidemark_overlapping_logs_total", "chain_id" => self.chain.clone(), "contract" => loser.clone())
                .increment(1);
            let first =
                self.overlaps.lock().map(|mut seen| seen.insert((address, loser.clone()))).unwrap_or(false);
            if first {
                tracing::warn!(target: "tidemark::decode", chain_id = %self.chain, address = %address, owner = %owner[0].contract,
                    contract = %loser, "address belongs to two contracts; its logs are stored under the first (static addresses first, then children by creation); counted in tidemark_overlapping_logs_total");
            }
        }
        Some(owner)
    }

    /// Turns `log` into a row. `Ok(None)` when the log is not one of ours: no configured
    /// (address, topic0), or a block outside the emitting contract's own range (the
    /// chain's filter spans every contract's range). A log that is ours always gives a
    /// row; when its args do not decode, the row has `args` null and a `decode_error`
    /// (counted in `tidemark_decode_errors_total`). Several events of one contract may
    /// share a topic0 (they differ in `indexed`): the first that decodes wins.
    /// A child's logs are its contract's from the block that created it.
    pub fn decode_in(
        &self,
        log: &Log,
        timestamp: u64,
        children: &ChildSet,
    ) -> Result<Option<EventRow>, DecodeError> {
        let Some(topic0) = log.topics().first() else { return Ok(None) };
        if log.topics().len() > 4 {
            return Err(DecodeError::TooManyTopics(log.topics().len()));
        }
        if !self.by_key.contains_key(&(log.address(), *topic0)) && children.get(&log.address()).is_empty() {
            return Ok(None);
        }
        let block_number = log.block_number.ok_or(DecodeError::MissingField("blockNumber"))?;
        let Some(owner) = self.owner(log, block_number, topic0, children) else { return Ok(None) };
        let first = owner[0];
        let in_range = owner.into_iter();
        let data = &log.data().data;
        let mut failure = None;
        let mut decoded = None;
        for c in in_range {
            match decode_with(&c.event, &c.wire, log.topics(), data) {
                Ok(args) => {
                    decoded = Some((c, args));
                    break;
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let (c, args, decode_error) = match (decoded, failure) {
            (Some((c, args)), _) => (c, Some(args), None),
            (None, e) => {
                let message = e.map_or_else(|| "no event decodes".to_owned(), |e| e.to_string());
                metrics::counter!("tidemark_decode_errors_total", "chain" => self.chain.clone(),
                    "contract" => first.contract.clone(), "event" => first.event.event.name.clone())
                .increment(1);
                tracing::debug!(target: "tidemark::decode", contract = first.contract, event = %first.event.event.name, error = %message, "log does not fit its ABI; stored raw");
                // Text columns reject NUL; the message never should hold one, but be sure.
                (first, None, Some(message.replace('\0', "\u{fffd}")))
            }
        };
        Ok(Some(EventRow {
            block_number,
            block_hash: hex::encode_prefixed(log.block_hash.ok_or(DecodeError::MissingField("blockHash"))?),
            block_timestamp: timestamp,
            tx_hash: hex::encode_prefixed(
                log.transaction_hash.ok_or(DecodeError::MissingField("transactionHash"))?,
            ),
            tx_index: log.transaction_index.ok_or(DecodeError::MissingField("transactionIndex"))?,
            log_index: log.log_index.ok_or(DecodeError::MissingField("logIndex"))?,
            address: hex::encode_prefixed(log.address()),
            contract: c.contract.clone(),
            event: c.event.event.name.clone(),
            signature: c.event.signature.clone(),
            topics: log.topics().iter().map(hex::encode_prefixed).collect(),
            data: hex::encode_prefixed(data),
            args,
            decode_error,
        }))
    }
}

/// Decodes an event's arguments into the args object.
pub fn decode_args(ev: &ResolvedEvent, topics: &[B256], data: &[u8]) -> Result<Value, ArgsError> {
    decode_with(ev, &strings_as_bytes(&ev.body), topics, data)
}

/// [`decode_args`] with the data layout `wire` precomputed by [`strings_as_bytes`].
fn decode_with(
    ev: &ResolvedEvent,
    wire: &DynSolType,
    topics: &[B256],
    data: &[u8],
) -> Result<Value, ArgsError> {
    let inputs = &ev.event.inputs;
    if ev.types.len() != inputs.len() {
        return Err(ArgsError::Unresolved);
    }
    let expected = 1 + inputs.iter().filter(|p| p.indexed).count();
    if topics.len() != expected {
        return Err(ArgsError::TopicCount { found: topics.len(), expected });
    }
    let data_error =
        |message: String| ArgsError::Data { len: data.len(), types: tuple_name(&ev.body), message };
    let body = match wire.abi_decode_sequence(data).map_err(|e| data_error(e.to_string()))? {
        DynSolValue::Tuple(values) => values,
        other => return Err(data_error(format!("decoded as {other:?}, not a tuple"))),
    };
    let mut body = body.into_iter();
    let mut indexed_topics = topics.iter().skip(1);
    let mut out = Map::with_capacity(inputs.len());
    for ((param, ty), key) in inputs.iter().zip(&ev.types).zip(&ev.keys) {
        let value = if param.indexed {
            let topic =
                indexed_topics.next().ok_or(ArgsError::TopicCount { found: topics.len(), expected })?;
            if is_dynamic(ty) {
                json!({ "topicHash": hex::encode_prefixed(topic) })
            } else {
                let v = ty
                    .abi_decode(topic.as_slice())
                    .map_err(|e| ArgsError::Topic { key: key.clone(), message: e.to_string() })?;
                to_json(ty, &v)
            }
        } else {
            let v = body.next().ok_or_else(|| data_error("fewer values than parameters".into()))?;
            to_json(ty, &v)
        };
        out.insert(key.clone(), value);
    }
    Ok(Value::Object(out))
}

/// `ty` with every `string` replaced by `bytes`: the same ABI encoding, read without the
/// lossy UTF-8 conversion alloy applies to strings.
pub fn strings_as_bytes(ty: &DynSolType) -> DynSolType {
    match ty {
        DynSolType::String => DynSolType::Bytes,
        DynSolType::Array(inner) => DynSolType::Array(Box::new(strings_as_bytes(inner))),
        DynSolType::FixedArray(inner, n) => DynSolType::FixedArray(Box::new(strings_as_bytes(inner)), *n),
        DynSolType::Tuple(items) => DynSolType::Tuple(items.iter().map(strings_as_bytes).collect()),
        other => other.clone(),
    }
}

/// `(t1,t2)` for a tuple type (alloy writes a one-element tuple as `(t1,)`).
fn tuple_name(ty: &DynSolType) -> String {
    match ty {
        DynSolType::Tuple(items) => {
            format!(
                "({})",
                items.iter().map(|t| t.sol_type_name().into_owned()).collect::<Vec<_>>().join(",")
            )
        }
        other => other.sol_type_name().into_owned(),
    }
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

/// The JSON of a `string`'s raw bytes: the text when it is valid UTF-8 without NUL, else
/// `{"hex": "0x…"}`.
fn string_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains('\0') => Value::String(s.to_owned()),
        _ => json!({ "hex": hex::encode_prefixed(bytes) }),
    }
}

/// A decoded value of declared type `ty` as JSON (DESIGN §3). `ty` tells strings (read
/// as bytes, see [`strings_as_bytes`]) from bytes.
pub fn to_json(ty: &DynSolType, v: &DynSolValue) -> Value {
    match (ty, v) {
        (DynSolType::String, DynSolValue::Bytes(b)) => string_json(b),
        (DynSolType::String, DynSolValue::String(s)) => string_json(s.as_bytes()),
        (DynSolType::Array(inner) | DynSolType::FixedArray(inner, _), DynSolValue::Array(items))
        | (DynSolType::Array(inner) | DynSolType::FixedArray(inner, _), DynSolValue::FixedArray(items)) => {
            Value::Array(items.iter().map(|i| to_json(inner, i)).collect())
        }
        (DynSolType::Tuple(tys), DynSolValue::Tuple(items)) if tys.len() == items.len() => {
            Value::Array(tys.iter().zip(items).map(|(t, i)| to_json(t, i)).collect())
        }
        (_, DynSolValue::Bool(b)) => Value::Bool(*b),
        (_, DynSolValue::Int(i, _)) => Value::String(i.to_string()),
        (_, DynSolValue::Uint(u, _)) => Value::String(u.to_string()),
        (_, DynSolValue::FixedBytes(word, size)) => Value::String(hex::encode_prefixed(&word[..*size])),
        (_, DynSolValue::Address(a)) => Value::String(hex::encode_prefixed(a)),
        (_, DynSolValue::Function(f)) => Value::String(hex::encode_prefixed(f.as_slice())),
        (_, DynSolValue::Bytes(b)) => Value::String(hex::encode_prefixed(b)),
        (_, DynSolValue::String(s)) => string_json(s.as_bytes()),
        (_, DynSolValue::Array(items) | DynSolValue::FixedArray(items) | DynSolValue::Tuple(items)) => {
            Value::Array(items.iter().map(|i| to_json(&DynSolType::Bytes, i)).collect())
        }
    }
}

#[cfg(test)]
mod tests;
