//! What the chain says, in the shape of stored events, for comparisons.

use std::collections::HashMap;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, hex};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::Filter;

use crate::error::{Error, Result};

/// A log as both the chain and the database can state it: lowercase 0x hex strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogRow {
    /// Block number.
    pub block_number: u64,
    /// Log index in the block.
    pub log_index: u64,
    /// Block hash.
    pub block_hash: String,
    /// Block timestamp (unix seconds).
    pub block_timestamp: u64,
    /// Transaction hash.
    pub tx_hash: String,
    /// Transaction index in the block.
    pub tx_index: u64,
    /// Emitting contract.
    pub address: String,
    /// Topics.
    pub topics: Vec<String>,
    /// Data.
    pub data: String,
}

fn provider(rpc_url: &str) -> Result<RootProvider> {
    let url = rpc_url.parse().map_err(|_| Error::Invalid(format!("not a URL: {rpc_url}")))?;
    tidemark_db_client::tls::install_crypto_provider();
    Ok(RootProvider::new_http(url))
}

fn rpc_err(method: &'static str) -> impl FnOnce(alloy::transports::TransportError) -> Error {
    move |e| Error::Rpc { method, message: e.to_string() }
}

/// Every log of `addresses` in blocks `[from, to]` (`eth_getLogs`), ordered by block and
/// log index; timestamps from the logs or, when missing, from the headers.
pub async fn canonical_logs(rpc_url: &str, addresses: &[Address], from: u64, to: u64) -> Result<Vec<LogRow>> {
    let p = provider(rpc_url)?;
    let mut out = Vec::new();
    let mut timestamps: HashMap<u64, u64> = HashMap::new();
    let mut a = from;
    while a <= to {
        let b = to.min(a + 4_999);
        let filter = Filter::new().address(addresses.to_vec()).from_block(a).to_block(b);
        let logs = p.get_logs(&filter).await.map_err(rpc_err("eth_getLogs"))?;
        for log in logs {
            let missing = |f: &str| Error::Rpc { method: "eth_getLogs", message: format!("log without {f}") };
            let block_number = log.block_number.ok_or_else(|| missing("blockNumber"))?;
            let block_timestamp = match log.block_timestamp {
                Some(t) => t,
                None => match timestamps.get(&block_number) {
                    Some(t) => *t,
                    None => {
                        let block = p
                            .get_block_by_number(BlockNumberOrTag::Number(block_number))
                            .await
                            .map_err(rpc_err("eth_getBlockByNumber"))?
                            .ok_or_else(|| missing("a block"))?;
                        timestamps.insert(block_number, block.header.timestamp);
                        block.header.timestamp
                    }
                },
            };
            out.push(LogRow {
                block_number,
                log_index: log.log_index.ok_or_else(|| missing("logIndex"))?,
                block_hash: format!("{:#x}", log.block_hash.ok_or_else(|| missing("blockHash"))?),
                block_timestamp,
                tx_hash: format!("{:#x}", log.transaction_hash.ok_or_else(|| missing("transactionHash"))?),
                tx_index: log.transaction_index.ok_or_else(|| missing("transactionIndex"))?,
                address: format!("{:#x}", log.address()),
                topics: log.topics().iter().map(|t| format!("{t:#x}")).collect(),
                data: format!("0x{}", hex::encode(&log.data().data)),
            });
        }
        a = b + 1;
    }
    out.sort();
    Ok(out)
}

/// The hash of block `number` (`None` when the chain is shorter).
pub async fn block_hash(rpc_url: &str, number: u64) -> Result<Option<String>> {
    let block = provider(rpc_url)?
        .get_block_by_number(BlockNumberOrTag::Number(number))
        .await
        .map_err(rpc_err("eth_getBlockByNumber"))?;
    Ok(block.map(|b| format!("{:#x}", b.header.hash)))
}

/// The latest block: number and hash.
pub async fn head(rpc_url: &str) -> Result<(u64, String)> {
    let block = provider(rpc_url)?
        .get_block_by_number(BlockNumberOrTag::Latest)
        .await
        .map_err(rpc_err("eth_getBlockByNumber"))?
        .ok_or_else(|| Error::Rpc { method: "eth_getBlockByNumber", message: "no latest block".into() })?;
    Ok((block.header.number, format!("{:#x}", block.header.hash)))
}
