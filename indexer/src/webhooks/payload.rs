//! The two delivery formats, parsed after the signature check into the one block a
//! delivery announces. Only that block's identity is kept: a delivery is a hint, and the
//! rows stored always come from the RPC. The logs are checked for shape (a body that is
//! not what the provider sends is refused with 400) but never stored.
//!
//! - Alchemy Notify custom (GraphQL) webhooks: `{webhookId, id, createdAt, type:
//!   "GRAPHQL", event: {data: {block: {number, hash, parent: {hash}, timestamp, logs:
//!   [{index, account: {address}, topics, data, transaction: {hash, index}}]}},
//!   sequenceNumber}}`. The block's fields are what the webhook's query selects: only
//!   `number` and `hash` are required.
//! - Standard: `{block: {number, hash, parentHash, timestamp}, logs: [eth_getLogs
//!   objects]}` and an optional `chainId`, numbers as JSON integers or `0x` quantities.
//!
//! A body that names its chain (Alchemy's `event.network`, when known; Standard's
//! `chainId`) must be for the path's chain: the signature does not cover the URL.

use serde::Deserialize;
use serde_json::Value;

/// The block a delivery announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Announced {
    /// The delivery id in the body (Alchemy's `id`); a Standard delivery's is its header.
    pub delivery_id: Option<String>,
    /// Block number.
    pub number: u64,
    /// 0x hash, lowercase.
    pub hash: String,
    /// Parent's 0x hash, lowercase, when given.
    pub parent_hash: Option<String>,
    /// The provider's sequence number (decimal digits), when given.
    pub sequence: Option<String>,
    /// Logs in the body.
    pub log_count: u32,
    /// The chain the body says it is for: Alchemy's `event.network` when it is a known
    /// network, a Standard body's optional `chainId`.
    pub chain_id: Option<u64>,
}

/// The chain id of an Alchemy network name (`event.network`), for the networks whose id
/// is certain; `None` for others (then nothing is checked).
fn alchemy_network(name: &str) -> Option<u64> {
    Some(match name {
        "ETH_MAINNET" => 1,
        "ETH_SEPOLIA" => 11_155_111,
        "ETH_HOLESKY" => 17_000,
        "MATIC_MAINNET" => 137,
        "MATIC_AMOY" => 80_002,
        "ARB_MAINNET" => 42_161,
        "ARB_SEPOLIA" => 421_614,
        "ARBNOVA_MAINNET" => 42_170,
        "OPT_MAINNET" => 10,
        "OPT_SEPOLIA" => 11_155_420,
        "BASE_MAINNET" => 8_453,
        "BASE_SEPOLIA" => 84_532,
        "ZKSYNC_MAINNET" => 324,
        "LINEA_MAINNET" => 59_144,
        "SCROLL_MAINNET" => 534_352,
        "BLAST_MAINNET" => 81_457,
        "BNB_MAINNET" => 56,
        "AVAX_MAINNET" => 43_114,
        "ZORA_MAINNET" => 7_777_777,
        "WORLDCHAIN_MAINNET" => 480,
        "POLYGONZKEVM_MAINNET" => 1_101,
        _ => return None,
    })
}

/// Why a body was refused (the message names the field, never echoes a value at length).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(super) struct Malformed(pub String);

fn bad(field: &str, what: &str) -> Malformed {
    Malformed(format!("{field}: {what}"))
}

/// A block number or similar: a JSON integer, a decimal string or a `0x` quantity.
fn quantity(v: &Value, field: &str) -> Result<u64, Malformed> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) if !hex.is_empty() && hex.len() <= 16 => u64::from_str_radix(hex, 16).ok(),
            Some(_) => None,
            None if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
            None => None,
        },
        _ => None,
    };
    // Stored as bigint.
    n.filter(|n| i64::try_from(*n).is_ok()).ok_or_else(|| bad(field, "not a block number"))
}

/// `0x` and exactly `bytes` bytes of hex, lowercased.
fn fixed_hex(v: &Value, field: &str, bytes: usize) -> Result<String, Malformed> {
    let s = v.as_str().ok_or_else(|| bad(field, "not a string"))?;
    let hex = s.strip_prefix("0x").ok_or_else(|| bad(field, "not 0x-prefixed"))?;
    if hex.len() != bytes * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(field, &format!("not {bytes} bytes of hex")));
    }
    Ok(format!("0x{}", hex.to_ascii_lowercase()))
}

/// `0x` and any even number of hex digits.
fn data_hex(v: &Value, field: &str) -> Result<(), Malformed> {
    let s = v.as_str().ok_or_else(|| bad(field, "not a string"))?;
    let hex = s.strip_prefix("0x").ok_or_else(|| bad(field, "not 0x-prefixed"))?;
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(field, "not hex bytes"));
    }
    Ok(())
}

fn topics(v: &Value, field: &str) -> Result<(), Malformed> {
    let list = v.as_array().ok_or_else(|| bad(field, "not an array"))?;
    if list.len() > 4 {
        return Err(bad(field, "more than 4 topics"));
    }
    for (i, t) in list.iter().enumerate() {
        fixed_hex(t, &format!("{field}[{i}]"), 32)?;
    }
    Ok(())
}

/// An id: 1 to 256 printable characters (it is stored and logged).
pub(super) fn delivery_id(s: &str, field: &str) -> Result<String, Malformed> {
    if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
        return Err(bad(field, "not an id of 1 to 256 printable characters"));
    }
    Ok(s.to_owned())
}

/// A sequence number: decimal digits (compared as a number, never as text).
fn sequence(v: &Value, field: &str) -> Result<String, Malformed> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() => n.to_string(),
        _ => return Err(bad(field, "not a decimal string")),
    };
    if s.is_empty() || s.len() > 78 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(field, "not a decimal string"));
    }
    let trimmed = s.trim_start_matches('0');
    Ok(if trimmed.is_empty() { "0".to_owned() } else { trimmed.to_owned() })
}

fn field<'v>(v: &'v Value, key: &str, path: &str) -> Result<&'v Value, Malformed> {
    v.get(key).filter(|x| !x.is_null()).ok_or_else(|| bad(&format!("{path}.{key}"), "missing"))
}

fn optional<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[derive(Deserialize)]
struct Envelope {
    id: Value,
    #[serde(rename = "type")]
    kind: Option<Value>,
    event: Value,
}

/// An Alchemy custom webhook delivery.
pub(super) fn alchemy(body: &[u8]) -> Result<Announced, Malformed> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| Malformed(format!("not the Alchemy envelope: {e}")))?;
    if let Some(kind) = &env.kind
        && kind.as_str() != Some("GRAPHQL")
    {
        return Err(bad("type", "only custom (GRAPHQL) webhooks are supported"));
    }
    let id = delivery_id(env.id.as_str().ok_or_else(|| bad("id", "not a string"))?, "id")?;
    let event = &env.event;
    let block = field(field(event, "data", "event")?, "block", "event.data")?;
    let p = "event.data.block";
    let number = quantity(field(block, "number", p)?, &format!("{p}.number"))?;
    let hash = fixed_hex(field(block, "hash", p)?, &format!("{p}.hash"), 32)?;
    let parent_hash = match optional(block, "parent") {
        Some(parent) => {
            Some(fixed_hex(field(parent, "hash", &format!("{p}.parent"))?, &format!("{p}.parent.hash"), 32)?)
        }
        None => None,
    };
    if let Some(t) = optional(block, "timestamp") {
        quantity(t, &format!("{p}.timestamp"))?;
    }
    let logs = match optional(block, "logs") {
        Some(l) => l.as_array().ok_or_else(|| bad(&format!("{p}.logs"), "not an array"))?.as_slice(),
        None => &[],
    };
    for (i, log) in logs.iter().enumerate() {
        let q = format!("{p}.logs[{i}]");
        if !log.is_object() {
            return Err(bad(&q, "not an object"));
        }
        if let Some(v) = optional(log, "index") {
            quantity(v, &format!("{q}.index"))?;
        }
        if let Some(a) = optional(log, "account") {
            fixed_hex(field(a, "address", &format!("{q}.account"))?, &format!("{q}.account.address"), 20)?;
        }
        if let Some(t) = optional(log, "topics") {
            topics(t, &format!("{q}.topics"))?;
        }
        if let Some(d) = optional(log, "data") {
            data_hex(d, &format!("{q}.data"))?;
        }
        if let Some(tx) = optional(log, "transaction") {
            if let Some(h) = optional(tx, "hash") {
                fixed_hex(h, &format!("{q}.transaction.hash"), 32)?;
            }
            if let Some(ix) = optional(tx, "index") {
                quantity(ix, &format!("{q}.transaction.index"))?;
            }
        }
    }
    let sequence =
        optional(event, "sequenceNumber").map(|s| sequence(s, "event.sequenceNumber")).transpose()?;
    let chain_id = optional(event, "network").and_then(Value::as_str).and_then(alchemy_network);
    Ok(Announced {
        delivery_id: Some(id),
        number,
        hash,
        parent_hash,
        sequence,
        log_count: count(logs.len()),
        chain_id,
    })
}

/// A Standard delivery.
pub(super) fn standard(body: &[u8]) -> Result<Announced, Malformed> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Malformed(format!("not JSON: {e}")))?;
    if !v.is_object() {
        return Err(bad("(root)", "not an object"));
    }
    let block = field(&v, "block", "")?;
    let number = quantity(field(block, "number", "block")?, "block.number")?;
    let hash = fixed_hex(field(block, "hash", "block")?, "block.hash", 32)?;
    let parent_hash =
        optional(block, "parentHash").map(|h| fixed_hex(h, "block.parentHash", 32)).transpose()?;
    if let Some(t) = optional(block, "timestamp") {
        quantity(t, "block.timestamp")?;
    }
    let logs = match optional(&v, "logs") {
        Some(l) => l.as_array().ok_or_else(|| bad("logs", "not an array"))?.as_slice(),
        None => &[],
    };
    for (i, log) in logs.iter().enumerate() {
        let q = format!("logs[{i}]");
        if !log.is_object() {
            return Err(bad(&q, "not an object"));
        }
        fixed_hex(field(log, "address", &q)?, &format!("{q}.address"), 20)?;
        topics(field(log, "topics", &q)?, &format!("{q}.topics"))?;
        data_hex(field(log, "data", &q)?, &format!("{q}.data"))?;
        if let Some(h) = optional(log, "blockHash")
            && fixed_hex(h, &format!("{q}.blockHash"), 32)? != hash
        {
            return Err(bad(&format!("{q}.blockHash"), "differs from block.hash"));
        }
        if let Some(n) = optional(log, "blockNumber")
            && quantity(n, &format!("{q}.blockNumber"))? != number
        {
            return Err(bad(&format!("{q}.blockNumber"), "differs from block.number"));
        }
        if let Some(h) = optional(log, "transactionHash") {
            fixed_hex(h, &format!("{q}.transactionHash"), 32)?;
        }
        if let Some(ix) = optional(log, "logIndex") {
            quantity(ix, &format!("{q}.logIndex"))?;
        }
    }
    let chain_id = optional(&v, "chainId").map(|c| quantity(c, "chainId")).transpose()?;
    Ok(Announced {
        delivery_id: None,
        number,
        hash,
        parent_hash,
        sequence: None,
        log_count: count(logs.len()),
        chain_id,
    })
}

#[cfg(test)]
mod tests;
