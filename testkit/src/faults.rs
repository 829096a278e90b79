//! Lagging and lying backends for [`RpcProxy`](crate::RpcProxy): each mode answers a
//! fraction of requests the way a faulty node behind a load balancer does.
//!
//! - **lagging**: answered as a node `blocks` behind the head — `eth_blockNumber − blocks`,
//!   `null` for blocks above that, `eth_getLogs` ranges cut at it, `unknown block` for
//!   `blockHash` queries above it, `null` receipts above it;
//! - **null headers**: `eth_getBlockByNumber` answered `null`;
//! - **empty answers**: `eth_getLogs` answered `[]`;
//! - **out of range**, **duplicates**, **hash mismatch**: an `eth_getLogs` range answer
//!   with one extra log from past the range's end, one log twice, or one log's block hash
//!   replaced.
//!
//! Each mode counts the answers it actually altered ([`Injected`]).

use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use serde_json::{Value, json};

/// Fractions (0.0–1.0) of requests each mode takes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// `(fraction, blocks behind)`.
    pub lagging: Option<(f64, u64)>,
    /// `eth_getBlockByNumber` answered `null`.
    pub null_headers: f64,
    /// `eth_getLogs` answered `[]`.
    pub empty_logs: f64,
    /// An extra log from outside the requested range.
    pub out_of_range: f64,
    /// One log twice.
    pub duplicates: f64,
    /// One log's block hash replaced.
    pub hash_mismatch: f64,
}

/// Altered answers per mode.
#[derive(Debug, Default)]
pub(crate) struct Injected {
    /// Answered as a lagging node (and different from the head's answer).
    pub(crate) lagging: AtomicU64,
    /// `null` headers.
    pub(crate) null_headers: AtomicU64,
    /// Empty log answers that were not empty.
    pub(crate) empty_logs: AtomicU64,
    /// Out-of-range logs added.
    pub(crate) out_of_range: AtomicU64,
    /// Logs doubled.
    pub(crate) duplicates: AtomicU64,
    /// Hashes replaced.
    pub(crate) hash_mismatch: AtomicU64,
}

/// A snapshot of [`Injected`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InjectedCounts {
    /// See [`Injected::lagging`].
    pub lagging: u64,
    /// See [`Injected::null_headers`].
    pub null_headers: u64,
    /// See [`Injected::empty_logs`].
    pub empty_logs: u64,
    /// See [`Injected::out_of_range`].
    pub out_of_range: u64,
    /// See [`Injected::duplicates`].
    pub duplicates: u64,
    /// See [`Injected::hash_mismatch`].
    pub hash_mismatch: u64,
}

impl InjectedCounts {
    /// Faults injected, of every kind.
    pub fn total(&self) -> u64 {
        self.lagging
            + self.null_headers
            + self.empty_logs
            + self.out_of_range
            + self.duplicates
            + self.hash_mismatch
    }
}

impl Injected {
    /// Current counts.
    pub(crate) fn counts(&self) -> InjectedCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        InjectedCounts {
            lagging: g(&self.lagging),
            null_headers: g(&self.null_headers),
            empty_logs: g(&self.empty_logs),
            out_of_range: g(&self.out_of_range),
            duplicates: g(&self.duplicates),
            hash_mismatch: g(&self.hash_mismatch),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

fn roll(p: f64) -> bool {
    p > 0.0 && rand::rng().random_bool(p.clamp(0.0, 1.0))
}

fn hex(n: u64) -> Value {
    Value::String(format!("{n:#x}"))
}

fn num(v: Option<&Value>) -> Option<u64> {
    u64::from_str_radix(v?.as_str()?.strip_prefix("0x")?, 16).ok()
}

/// Sends one JSON-RPC request upstream; the whole response object.
pub(crate) type Upstream<'a> =
    &'a (dyn Fn(Value) -> futures::future::BoxFuture<'a, Option<Value>> + Send + Sync);

/// The response to `request` under `faults`, or `None` to forward it untouched.
pub(crate) async fn answer(
    faults: Faults,
    injected: &Injected,
    request: &Value,
    upstream: Upstream<'_>,
) -> Option<Value> {
    let method = request.get("method")?.as_str()?;
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let params = request.get("params").cloned().unwrap_or(Value::Array(Vec::new()));
    let result = |r: Value| json!({"jsonrpc": "2.0", "id": id.clone(), "result": r});
    if let Some((p, behind)) = faults.lagging
        && roll(p)
        && let Some(r) = lagging(method, &params, behind, injected, upstream).await
    {
        return Some(match r {
            Ok(v) => result(v),
            Err(message) => {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": message}})
            }
        });
    }
    match method {
        "eth_getBlockByNumber" if roll(faults.null_headers) => {
            bump(&injected.null_headers);
            Some(result(Value::Null))
        }
        "eth_getLogs" => {
            if roll(faults.empty_logs) {
                let full = upstream(request.clone()).await?;
                if full["result"].as_array().is_some_and(|a| !a.is_empty()) {
                    bump(&injected.empty_logs);
                }
                return Some(result(Value::Array(Vec::new())));
            }
            let (oor, dup, hash) =
                (roll(faults.out_of_range), roll(faults.duplicates), roll(faults.hash_mismatch));
            if !(oor || dup || hash) {
                return None;
            }
            let mut response = upstream(request.clone()).await?;
            let to = num(params.get(0).and_then(|f| f.get("toBlock")));
            if let Some(logs) = response.get_mut("result").and_then(Value::as_array_mut)
                && let Some(first) = logs.first().cloned()
            {
                if oor && let Some(to) = to {
                    let mut extra = first.clone();
                    extra["blockNumber"] = hex(to + 1);
                    logs.push(extra);
                    bump(&injected.out_of_range);
                }
                if dup {
                    logs.push(first);
                    bump(&injected.duplicates);
                }
                if hash && let Some(log) = logs.first_mut() {
                    log["blockHash"] = Value::String(format!("0x{}", "ee".repeat(32)));
                    bump(&injected.hash_mismatch);
                }
            }
            Some(response)
        }
        _ => None,
    }
}

/// What a node `behind` blocks behind the head answers; `None` to forward. `Err` is a
/// JSON-RPC error message.
async fn lagging(
    method: &str,
    params: &Value,
    behind: u64,
    injected: &Injected,
    upstream: Upstream<'_>,
) -> Option<Result<Value, String>> {
    let call = |method: &str, params: Value| {
        upstream(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
    };
    let head = num(call("eth_blockNumber", json!([])).await?.get("result"))?;
    let top = head.saturating_sub(behind);
    // The number of a block given by hash, when the node has it.
    let number_of = async |hash: &Value| -> Option<u64> {
        let block = call("eth_getBlockByHash", json!([hash, false])).await?;
        num(block.get("result")?.get("number"))
    };
    let out = match method {
        "eth_blockNumber" => Ok(hex(top)),
        "eth_getBlockByNumber" => {
            let n = match params.get(0)? {
                Value::String(s) if s == "latest" => top,
                v => num(Some(v))?,
            };
            if n <= top {
                let r = call(method, json!([hex(n), params.get(1).cloned().unwrap_or(Value::Bool(false))]))
                    .await?;
                Ok(r.get("result").cloned().unwrap_or(Value::Null))
            } else {
                Ok(Value::Null)
            }
        }
        "eth_getBlockReceipts" | "eth_getBlockByHash" => {
            let n = number_of(params.get(0)?).await?;
            if n <= top {
                return None;
            }
            Ok(Value::Null)
        }
        "eth_getLogs" => {
            let filter = params.get(0)?;
            if let Some(hash) = filter.get("blockHash") {
                if number_of(hash).await? <= top {
                    return None;
                }
                Err("unknown block".to_owned())
            } else {
                let (from, to) = (num(filter.get("fromBlock"))?, num(filter.get("toBlock"))?);
                if to <= top {
                    return None;
                }
                if from > top {
                    Ok(Value::Array(Vec::new()))
                } else {
                    let mut cut = filter.clone();
                    cut["toBlock"] = hex(top);
                    Ok(call(method, json!([cut])).await?.get("result").cloned().unwrap_or(Value::Null))
                }
            }
        }
        _ => return None,
    };
    bump(&injected.lagging);
    Some(out)
}
