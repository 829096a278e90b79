//! Deliveries: a block and its logs read over JSON-RPC, rendered as an Alchemy Notify
//! custom (GraphQL) webhook event or as a Standard Webhooks body.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, U64};
use alloy::providers::Provider;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::SimError;

/// `webhookId` of every Alchemy delivery.
pub const ALCHEMY_WEBHOOK_ID: &str = "wh_tidemark_sim";

/// `sequenceNumber` of the first Alchemy delivery: one past `u64::MAX`, so a receiver
/// that parses it into a 64-bit integer fails and one that compares it as text orders
/// it wrongly once the number of digits grows.
pub const FIRST_SEQUENCE: u128 = u64::MAX as u128 + 1;

/// The wire format of the deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// Alchemy Notify custom (GraphQL) webhook, signed with `X-Alchemy-Signature`.
    Alchemy,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard,
}

impl FromStr for WebhookFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "alchemy" => Ok(Self::Alchemy),
            "standard" => Ok(Self::Standard),
            other => Err(format!("unknown provider {other:?} (alchemy or standard)")),
        }
    }
}

impl fmt::Display for WebhookFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Alchemy => "alchemy",
            Self::Standard => "standard",
        })
    }
}

impl WebhookFormat {
    /// A fresh delivery id: `whevt_` and 16 hex digits (Alchemy) or `msg_` and 32 hex
    /// digits (Standard Webhooks).
    pub fn new_id(self, rng: &mut impl Rng) -> String {
        match self {
            Self::Alchemy => format!("whevt_{:016x}", rng.random::<u64>()),
            Self::Standard => format!("msg_{:032x}", rng.random::<u128>()),
        }
    }
}

/// One block and its logs, as the node returned them.
#[derive(Debug, Clone)]
pub struct BlockData {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
    /// Unix timestamp of the block.
    pub timestamp: u64,
    /// `eth_getLogs` objects of the block, byte for byte.
    pub logs: Vec<Box<RawValue>>,
}

/// One delivery: an id (the `id` field for Alchemy, the `webhook-id` header for Standard
/// Webhooks) and the body, sent unchanged however often it is re-sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Delivery id.
    pub id: String,
    /// The JSON body.
    pub body: Vec<u8>,
    /// Number of the block it carries.
    pub block_number: u64,
    /// Hash of the block it carries.
    pub block_hash: B256,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    number: U64,
    hash: B256,
    parent_hash: B256,
    timestamp: U64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeLog {
    address: String,
    topics: Vec<String>,
    data: String,
    log_index: U64,
    transaction_hash: String,
    transaction_index: U64,
}

/// Reads block `number` (`eth_getBlockByNumber`) and its logs (`eth_getLogs` by block
/// hash, limited to `addresses` unless empty). `None` when the chain has no such block.
///
/// # Errors
/// [`SimError::Rpc`] when a request fails, [`SimError::Malformed`] when the node's answer
/// lacks a field.
pub async fn fetch_block(
    rpc: &impl Provider,
    number: u64,
    addresses: &[Address],
) -> Result<Option<BlockData>, SimError> {
    let header: Option<Header> = rpc
        .raw_request("eth_getBlockByNumber".into(), (format!("{number:#x}"), false))
        .await
        .map_err(SimError::rpc("eth_getBlockByNumber"))?;
    let Some(header) = header else { return Ok(None) };
    let mut filter = serde_json::json!({ "blockHash": header.hash });
    if !addresses.is_empty() {
        filter["address"] = serde_json::json!(addresses);
    }
    let logs: Vec<Box<RawValue>> =
        rpc.raw_request("eth_getLogs".into(), (filter,)).await.map_err(SimError::rpc("eth_getLogs"))?;
    Ok(Some(BlockData {
        number: header.number.to(),
        hash: header.hash,
        parent_hash: header.parent_hash,
        timestamp: header.timestamp.to(),
        logs,
    }))
}

/// Reads block `number` and builds its delivery in `format` with a random id; `sequence`
/// is the Alchemy `sequenceNumber` (ignored for Standard Webhooks). `None` when the
/// chain has no such block.
///
/// # Errors
/// As [`fetch_block`].
pub async fn delivery_for_block(
    rpc: &impl Provider,
    format: WebhookFormat,
    number: u64,
    addresses: &[Address],
    sequence: u128,
) -> Result<Option<Delivery>, SimError> {
    let Some(block) = fetch_block(rpc, number, addresses).await? else { return Ok(None) };
    let id = format.new_id(&mut rand::rng());
    let delivery = match format {
        WebhookFormat::Alchemy => alchemy_delivery(&block, id, SystemTime::now(), sequence)?,
        WebhookFormat::Standard => standard_delivery(&block, id)?,
    };
    Ok(Some(delivery))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlchemyEvent<'a> {
    webhook_id: &'a str,
    id: &'a str,
    created_at: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    event: AlchemyInner<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlchemyInner<'a> {
    data: AlchemyData<'a>,
    sequence_number: String,
}

#[derive(Serialize)]
struct AlchemyData<'a> {
    block: AlchemyBlock<'a>,
}

#[derive(Serialize)]
struct AlchemyBlock<'a> {
    number: u64,
    hash: B256,
    parent: HashOnly<'a>,
    timestamp: u64,
    logs: Vec<AlchemyLog<'a>>,
}

#[derive(Serialize)]
struct HashOnly<'a> {
    hash: &'a B256,
}

#[derive(Serialize)]
struct AlchemyLog<'a> {
    index: u64,
    account: AlchemyAccount<'a>,
    topics: &'a [String],
    data: &'a str,
    transaction: AlchemyTransaction<'a>,
}

#[derive(Serialize)]
struct AlchemyAccount<'a> {
    address: &'a str,
}

#[derive(Serialize)]
struct AlchemyTransaction<'a> {
    hash: &'a str,
    index: u64,
}

/// The Alchemy custom-webhook event of `block`: `{"webhookId", "id", "createdAt",
/// "type": "GRAPHQL", "event": {"data": {"block": …}, "sequenceNumber"}}`.
///
/// # Errors
/// [`SimError::Malformed`] when a log lacks a field.
pub fn alchemy_delivery(
    block: &BlockData,
    id: String,
    created_at: SystemTime,
    sequence: u128,
) -> Result<Delivery, SimError> {
    let parsed: Vec<NodeLog> = block
        .logs
        .iter()
        .map(|raw| {
            serde_json::from_str(raw.get()).map_err(|e| SimError::Malformed(format!("eth_getLogs item: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let logs = parsed
        .iter()
        .map(|l| AlchemyLog {
            index: l.log_index.to(),
            account: AlchemyAccount { address: &l.address },
            topics: &l.topics,
            data: &l.data,
            transaction: AlchemyTransaction { hash: &l.transaction_hash, index: l.transaction_index.to() },
        })
        .collect();
    let event = AlchemyEvent {
        webhook_id: ALCHEMY_WEBHOOK_ID,
        id: &id,
        created_at: &rfc3339(created_at),
        kind: "GRAPHQL",
        event: AlchemyInner {
            data: AlchemyData {
                block: AlchemyBlock {
                    number: block.number,
                    hash: block.hash,
                    parent: HashOnly { hash: &block.parent_hash },
                    timestamp: block.timestamp,
                    logs,
                },
            },
            sequence_number: sequence.to_string(),
        },
    };
    let body = serde_json::to_vec(&event).map_err(|e| SimError::Malformed(e.to_string()))?;
    Ok(Delivery { id, body, block_number: block.number, block_hash: block.hash })
}

#[derive(Serialize)]
struct StandardBody<'a> {
    block: StandardBlock<'a>,
    logs: &'a [Box<RawValue>],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StandardBlock<'a> {
    number: String,
    hash: &'a B256,
    parent_hash: &'a B256,
    timestamp: String,
}

/// The Standard Webhooks body of `block`: `{"block": {"number", "hash", "parentHash",
/// "timestamp"}, "logs": [...]}`, quantities in hex and the logs as the node returned them.
///
/// # Errors
/// [`SimError::Malformed`] when the body cannot be serialized.
pub fn standard_delivery(block: &BlockData, id: String) -> Result<Delivery, SimError> {
    let body = StandardBody {
        block: StandardBlock {
            number: format!("{:#x}", block.number),
            hash: &block.hash,
            parent_hash: &block.parent_hash,
            timestamp: format!("{:#x}", block.timestamp),
        },
        logs: &block.logs,
    };
    let body = serde_json::to_vec(&body).map_err(|e| SimError::Malformed(e.to_string()))?;
    Ok(Delivery { id, body, block_number: block.number, block_hash: block.hash })
}

/// `t` as an RFC 3339 UTC timestamp with milliseconds (`2024-01-02T03:04:05.678Z`).
pub(super) fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn block() -> BlockData {
        let log = r#"{"address":"0x5fbdb2315678afecb367f032d93f642f64180aa3","topics":["0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"],"data":"0x01","blockHash":"0x11","blockNumber":"0x7b","transactionHash":"0x22","transactionIndex":"0x1","logIndex":"0x2","removed":false}"#;
        BlockData {
            number: 123,
            hash: B256::repeat_byte(0x11),
            parent_hash: B256::repeat_byte(0x10),
            timestamp: 1_700_000_000,
            logs: vec![RawValue::from_string(log.to_owned()).expect("raw")],
        }
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789); // a leap day
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
    }

    #[test]
    fn alchemy_body_shape() {
        let d = alchemy_delivery(&block(), "whevt_00".into(), UNIX_EPOCH, FIRST_SEQUENCE).expect("body");
        let v: serde_json::Value = serde_json::from_slice(&d.body).expect("json");
        assert_eq!(v["webhookId"], ALCHEMY_WEBHOOK_ID);
        assert_eq!(v["id"], "whevt_00");
        assert_eq!(v["type"], "GRAPHQL");
        assert_eq!(v["createdAt"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["event"]["sequenceNumber"], "18446744073709551616");
        let b = &v["event"]["data"]["block"];
        assert_eq!(b["number"], 123);
        assert_eq!(b["timestamp"], 1_700_000_000u64);
        assert_eq!(b["hash"], B256::repeat_byte(0x11).to_string());
        assert_eq!(b["parent"]["hash"], B256::repeat_byte(0x10).to_string());
        let log = &b["logs"][0];
        assert_eq!(log["index"], 2);
        assert_eq!(log["account"]["address"], "0x5fbdb2315678afecb367f032d93f642f64180aa3");
        assert_eq!(log["data"], "0x01");
        assert_eq!(log["transaction"], serde_json::json!({"hash": "0x22", "index": 1}));
    }

    #[test]
    fn standard_body_keeps_the_logs_verbatim() {
        let b = block();
        let d = standard_delivery(&b, "msg_1".into()).expect("body");
        let text = String::from_utf8(d.body).expect("utf8");
        assert!(text.contains(b.logs[0].get()), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["block"]["number"], "0x7b");
        assert_eq!(v["block"]["timestamp"], "0x6553f100");
        assert_eq!(v["block"]["parentHash"], B256::repeat_byte(0x10).to_string());
    }

    #[test]
    fn ids_and_formats() {
        let mut rng = rand::rng();
        let a = WebhookFormat::Alchemy.new_id(&mut rng);
        assert!(a.starts_with("whevt_") && a.len() == 6 + 16, "{a}");
        let s = WebhookFormat::Standard.new_id(&mut rng);
        assert!(s.starts_with("msg_") && s.len() == 4 + 32, "{s}");
        assert_eq!("standard".parse::<WebhookFormat>(), Ok(WebhookFormat::Standard));
        assert!("svix".parse::<WebhookFormat>().is_err());
    }
}
