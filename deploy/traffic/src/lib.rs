//! `tidemark-traffic`: typed access to Tidemark's demo contracts on an anvil chain.
//!
//! [`Demo::deploy`] deploys `deploy/demo/out/Token.bin` and `Registry.bin` (embedded at
//! build time) from anvil's first, unlocked account with plain `eth_sendTransaction`, so
//! no key or signer is involved. Its methods send the calls that emit each demo event and
//! wait for the receipt; the `*_call` builders return the calldata for batching or for
//! `anvil_reorg`. [`Demo::mine`], [`Demo::reorg`], [`Demo::snapshot`] and
//! [`Demo::revert`] drive anvil itself.
//!
//! [`webhook_sim`] plays a hosted provider's webhooks (Alchemy Notify or Standard
//! Webhooks) from the chain's blocks, with faults, against an indexer's endpoint.
//!
//! Used by the `tidemark-traffic` binary and by the tests. This crate only talks to a
//! development chain: it never handles keys and must not be pointed at a real network.

pub mod abi;
pub mod pairs;
pub mod webhook_sim;

use std::time::Duration;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256, address, hex};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolCall;
use alloy::transports::TransportError;

pub use abi::{
    REGISTRY_ABI, REGISTRY_EVENT_NAMES, REGISTRY_EVENTS, TOKEN_ABI, TOKEN_EVENT_NAMES, TOKEN_EVENTS,
};

/// anvil's first default account (unlocked): deploys and sends everything.
pub const SENDER: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");

/// Addresses of anvil's default accounts 1..=9: recipients of transfers.
pub const RECIPIENTS: [Address; 9] = [
    address!("70997970C51812dc3A010C7d01b50e0d17dc79C8"),
    address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
    address!("90F79bf6EB2c4f870365E96D44e4DC6A84dD1C2E"),
    address!("15d34AAf54267DB7D7c367839AAf71A00a2C6A65"),
    address!("9965507D1a55bcC2695C58ba16FB37d819B0A4dc"),
    address!("976EA74026E726554dB657fA54763abd0C3a0aa9"),
    address!("14dC79964da2C08b23698B3D3cc7Ca32193d9955"),
    address!("23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f"),
    address!("a0Ee7A142d267C1f36714E4a8F75612F20a79720"),
];

/// Where Token lands when it is the first deployment of account 0 on a fresh anvil.
pub const DEFAULT_TOKEN: Address = address!("5FbDB2315678afecb367f032d93F642f64180aa3");
/// Where Registry lands when it is the second deployment of account 0 on a fresh anvil.
pub const DEFAULT_REGISTRY: Address = address!("e7f1725E7734CE288F8367e1Bb143E90bb3F0512");

const TOKEN_BIN: &str = include_str!("../../demo/out/Token.bin");
const REGISTRY_BIN: &str = include_str!("../../demo/out/Registry.bin");

/// Gas limit of every call (anvil's blocks hold 30 M): no estimation round-trip, and a
/// `burst` of a few hundred events fits.
const GAS_LIMIT: u64 = 3_000_000;

/// Why a demo operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The RPC URL does not parse.
    #[error("invalid RPC URL: {0}")]
    InvalidUrl(String),
    /// A JSON-RPC request failed.
    #[error("{method} failed: {source}")]
    Rpc {
        /// JSON-RPC method.
        method: &'static str,
        /// Cause.
        #[source]
        source: TransportError,
    },
    /// The transaction was mined but reverted.
    #[error("transaction {tx_hash} ({what}) reverted")]
    Reverted {
        /// Transaction hash.
        tx_hash: B256,
        /// What was sent.
        what: &'static str,
    },
    /// No receipt arrived in time (is the chain mining?).
    #[error("no receipt for {tx_hash} ({what}) after {waited:?}")]
    ReceiptTimeout {
        /// Transaction hash.
        tx_hash: B256,
        /// What was sent.
        what: &'static str,
        /// How long we waited.
        waited: Duration,
    },
    /// A deployment receipt names no contract address.
    #[error("deploying {contract} created no contract")]
    NoContract {
        /// Contract name.
        contract: &'static str,
    },
    /// The embedded bytecode is not hex (the artifacts in `deploy/demo/out` are damaged).
    #[error("the embedded bytecode of {contract} is not hex")]
    BadBytecode {
        /// Contract name.
        contract: &'static str,
    },
    /// anvil answered an anvil-specific request unexpectedly.
    #[error("{method} returned {value}")]
    Unexpected {
        /// JSON-RPC method.
        method: &'static str,
        /// What came back.
        value: String,
    },
}

impl TrafficError {
    fn rpc(method: &'static str) -> impl FnOnce(TransportError) -> Self {
        move |source| Self::Rpc { method, source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = TrafficError> = std::result::Result<T, E>;

/// One contract call: target, calldata and a short name for logs and errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Contract address.
    pub to: Address,
    /// ABI-encoded calldata.
    pub input: Bytes,
    /// What the call is (`"burst"`, `"transfer"`…).
    pub what: &'static str,
}

impl Call {
    /// The transaction request sending this call from [`SENDER`].
    pub fn request(&self) -> TransactionRequest {
        TransactionRequest::default()
            .with_from(SENDER)
            .with_to(self.to)
            .with_input(self.input.clone())
            .with_gas_limit(GAS_LIMIT)
    }
}

/// The demo contracts on one chain.
#[derive(Debug, Clone)]
pub struct Demo {
    provider: RootProvider,
    /// Token (ERC20-like): `Transfer`, `Approval`.
    pub token: Address,
    /// Registry: `Registered`, `Tagged`, `Updated`, `Burst`.
    pub registry: Address,
    receipt_timeout: Duration,
}

/// A provider for `rpc_url`.
pub fn provider(rpc_url: &str) -> Result<RootProvider> {
    let url = rpc_url.parse().map_err(|_| TrafficError::InvalidUrl(redact(rpc_url)))?;
    install_crypto_provider();
    Ok(RootProvider::new_http(url))
}

/// Installs rustls' `ring` provider for the process unless one is installed: the
/// workspace builds reqwest without a provider of its own (see `tidemark_db_client::tls`).
fn install_crypto_provider() {
    // An error means a provider is installed already, which serves as well.
    #[allow(deprecated)] // ring lacks post-quantum key exchange; aws-lc-rs is too slow to build.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `url` without its query string and credentials, for messages.
fn redact(url: &str) -> String {
    let no_query = url.split('?').next().unwrap_or_default();
    match no_query.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => no_query.to_owned(),
        },
        None => no_query.to_owned(),
    }
}

impl Demo {
    /// Deploys Token then Registry from [`SENDER`] and waits for both receipts.
    pub async fn deploy(rpc_url: &str) -> Result<Self> {
        let provider = provider(rpc_url)?;
        let mut demo = Self {
            provider,
            token: Address::ZERO,
            registry: Address::ZERO,
            receipt_timeout: Duration::from_secs(60),
        };
        demo.token = demo.deploy_one("Token", TOKEN_BIN).await?;
        demo.registry = demo.deploy_one("Registry", REGISTRY_BIN).await?;
        Ok(demo)
    }

    /// The contracts already deployed at `token` and `registry`.
    pub fn at(rpc_url: &str, token: Address, registry: Address) -> Result<Self> {
        Ok(Self { provider: provider(rpc_url)?, token, registry, receipt_timeout: Duration::from_secs(60) })
    }

    /// The contracts at [`DEFAULT_TOKEN`] and [`DEFAULT_REGISTRY`] when both have code,
    /// else a fresh deployment.
    pub async fn deploy_if_missing(rpc_url: &str) -> Result<Self> {
        let demo = Self::at(rpc_url, DEFAULT_TOKEN, DEFAULT_REGISTRY)?;
        if demo.has_code(DEFAULT_TOKEN).await? && demo.has_code(DEFAULT_REGISTRY).await? {
            return Ok(demo);
        }
        Self::deploy(rpc_url).await
    }

    /// How long [`Demo::send`] waits for a receipt (default 60 s).
    pub fn with_receipt_timeout(mut self, timeout: Duration) -> Self {
        self.receipt_timeout = timeout;
        self
    }

    /// The underlying provider.
    pub fn provider(&self) -> &RootProvider {
        &self.provider
    }

    /// Whether `address` holds code.
    pub async fn has_code(&self, address: Address) -> Result<bool> {
        let code = self.provider.get_code_at(address).await.map_err(TrafficError::rpc("eth_getCode"))?;
        Ok(!code.is_empty())
    }

    async fn deploy_one(&self, contract: &'static str, bin: &str) -> Result<Address> {
        self.deploy_code(contract, bin).await
    }

    /// Deploys the hex bytecode `bin` (named `contract` in errors) and returns its address.
    pub async fn deploy_code(&self, contract: &'static str, bin: &str) -> Result<Address> {
        let code = hex::decode(bin.trim()).map_err(|_| TrafficError::BadBytecode { contract })?;
        let tx = TransactionRequest::default()
            .with_from(SENDER)
            .with_deploy_code(Bytes::from(code))
            .with_gas_limit(GAS_LIMIT);
        let hash = self.submit_request(tx).await?;
        let receipt = self.wait(hash, contract).await?;
        receipt.contract_address.ok_or(TrafficError::NoContract { contract })
    }

    /// Sends `call` and waits for its successful receipt.
    pub async fn send(&self, call: Call) -> Result<TransactionReceipt> {
        let hash = self.submit(&call).await?;
        self.wait(hash, call.what).await
    }

    /// Sends `call` without waiting for it to be mined.
    pub async fn submit(&self, call: &Call) -> Result<B256> {
        self.submit_request(call.request()).await
    }

    pub(crate) async fn submit_request(&self, tx: TransactionRequest) -> Result<B256> {
        let pending =
            self.provider.send_transaction(tx).await.map_err(TrafficError::rpc("eth_sendTransaction"))?;
        Ok(*pending.tx_hash())
    }

    /// Waits for the receipt of `hash`; a reverted transaction is an error.
    pub async fn wait(&self, hash: B256, what: &'static str) -> Result<TransactionReceipt> {
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(2);
        loop {
            let receipt = self
                .provider
                .get_transaction_receipt(hash)
                .await
                .map_err(TrafficError::rpc("eth_getTransactionReceipt"))?;
            if let Some(r) = receipt {
                if !r.status() {
                    return Err(TrafficError::Reverted { tx_hash: hash, what });
                }
                return Ok(r);
            }
            if started.elapsed() > self.receipt_timeout {
                return Err(TrafficError::ReceiptTimeout { tx_hash: hash, what, waited: started.elapsed() });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// `transfer(to, value)` on Token: one `Transfer`.
    pub fn transfer_call(&self, to: Address, value: U256) -> Call {
        Call { to: self.token, input: abi::transferCall { to, value }.abi_encode().into(), what: "transfer" }
    }

    /// `approve(spender, value)` on Token: one `Approval`.
    pub fn approve_call(&self, spender: Address, value: U256) -> Call {
        Call {
            to: self.token,
            input: abi::approveCall { spender, value }.abi_encode().into(),
            what: "approve",
        }
    }

    /// `batchTransfer(recipients, amount)` on Token: one `Transfer` per recipient.
    pub fn batch_transfer_call(&self, recipients: &[Address], amount: U256) -> Call {
        let input = abi::batchTransferCall { to: recipients.to_vec(), amount }.abi_encode().into();
        Call { to: self.token, input, what: "batchTransfer" }
    }

    /// `register(name, ids, label)` on Registry: one `Registered`.
    pub fn register_call(&self, name: &str, ids: &[U256], label: &str) -> Call {
        let input = abi::registerCall { name: name.to_owned(), ids: ids.to_vec(), label: label.to_owned() }
            .abi_encode();
        Call { to: self.registry, input: input.into(), what: "register" }
    }

    /// `tag(key, tags, data)` on Registry: one `Tagged`.
    pub fn tag_call(&self, key: B256, tags: &[&str], data: &[u8]) -> Call {
        let input = abi::tagCall {
            key,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            data: Bytes::copy_from_slice(data),
        }
        .abi_encode();
        Call { to: self.registry, input: input.into(), what: "tag" }
    }

    /// `update(id, who, amount, active, note)` on Registry: one `Updated`.
    pub fn update_call(&self, id: u64, who: Address, amount: u128, active: bool, note: &str) -> Call {
        let input = abi::updateCall { id, who, amount, active, note: note.to_owned() }.abi_encode();
        Call { to: self.registry, input: input.into(), what: "update" }
    }

    /// `burst(n)` on Registry: `n` `Burst` events.
    pub fn burst_call(&self, n: u64) -> Call {
        Call {
            to: self.registry,
            input: abi::burstCall { n: U256::from(n) }.abi_encode().into(),
            what: "burst",
        }
    }

    /// Sends [`Demo::transfer_call`].
    pub async fn transfer(&self, to: Address, value: U256) -> Result<TransactionReceipt> {
        self.send(self.transfer_call(to, value)).await
    }

    /// Sends [`Demo::approve_call`].
    pub async fn approve(&self, spender: Address, value: U256) -> Result<TransactionReceipt> {
        self.send(self.approve_call(spender, value)).await
    }

    /// Sends [`Demo::batch_transfer_call`].
    pub async fn batch_transfer(&self, recipients: &[Address], amount: U256) -> Result<TransactionReceipt> {
        self.send(self.batch_transfer_call(recipients, amount)).await
    }

    /// Sends [`Demo::register_call`].
    pub async fn register(&self, name: &str, ids: &[U256], label: &str) -> Result<TransactionReceipt> {
        self.send(self.register_call(name, ids, label)).await
    }

    /// Sends [`Demo::tag_call`].
    pub async fn tag(&self, key: B256, tags: &[&str], data: &[u8]) -> Result<TransactionReceipt> {
        self.send(self.tag_call(key, tags, data)).await
    }

    /// Sends [`Demo::update_call`].
    pub async fn update(
        &self,
        id: u64,
        who: Address,
        amount: u128,
        active: bool,
        note: &str,
    ) -> Result<TransactionReceipt> {
        self.send(self.update_call(id, who, amount, active, note)).await
    }

    /// Sends [`Demo::burst_call`].
    pub async fn burst(&self, n: u64) -> Result<TransactionReceipt> {
        self.send(self.burst_call(n)).await
    }

    /// Sends `blocks` transactions, one after another (one block each on an automining
    /// chain), cycling through a mix that touches every demo event shape: three `Burst`s
    /// of `burst(i)` events, a `batchTransfer`, a `register` (indexed string, array) and an
    /// `update` (struct). Returns the number of events emitted.
    pub async fn mixed(&self, blocks: u64, burst: impl Fn(u64) -> u64) -> Result<u64> {
        let mut events = 0;
        for i in 0..blocks {
            let who = RECIPIENTS[(i % RECIPIENTS.len() as u64) as usize];
            let receipt = match i % 6 {
                0..=2 => self.burst(burst(i)).await,
                3 => self.batch_transfer(&RECIPIENTS[..3], U256::from(7)).await,
                4 => self.register(&format!("n{i}"), &[U256::from(i)], "l").await,
                _ => self.update(i, who, u128::from(i), true, "u").await,
            }?;
            events += receipt.inner.logs().len() as u64;
        }
        Ok(events)
    }

    /// The latest block number.
    pub async fn block_number(&self) -> Result<u64> {
        self.provider.get_block_number().await.map_err(TrafficError::rpc("eth_blockNumber"))
    }

    /// The chain id.
    pub async fn chain_id(&self) -> Result<u64> {
        self.provider.get_chain_id().await.map_err(TrafficError::rpc("eth_chainId"))
    }

    /// Mines `n` empty blocks at once (`anvil_mine`).
    pub async fn mine(&self, n: u64) -> Result<()> {
        let _: serde_json::Value = self
            .provider
            .raw_request("anvil_mine".into(), (format!("{n:#x}"),))
            .await
            .map_err(TrafficError::rpc("anvil_mine"))?;
        Ok(())
    }

    /// Replaces the last `depth` blocks with empty blocks of new hashes (`anvil_reorg`);
    /// their transactions are dropped.
    pub async fn reorg(&self, depth: u64) -> Result<()> {
        self.reorg_with(depth, &[]).await
    }

    /// Replaces the last `depth` blocks with new ones; `txs` go into the new blocks, each
    /// at its offset from the first replaced block (`0..depth`).
    pub async fn reorg_with(&self, depth: u64, txs: &[(Call, u64)]) -> Result<()> {
        let pairs: Vec<(TransactionRequest, u64)> = txs.iter().map(|(c, at)| (c.request(), *at)).collect();
        let _: serde_json::Value = self
            .provider
            .raw_request("anvil_reorg".into(), (depth, pairs))
            .await
            .map_err(TrafficError::rpc("anvil_reorg"))?;
        Ok(())
    }

    /// Takes a snapshot of the chain (`evm_snapshot`); returns its id.
    pub async fn snapshot(&self) -> Result<U256> {
        self.provider.raw_request("evm_snapshot".into(), ()).await.map_err(TrafficError::rpc("evm_snapshot"))
    }

    /// Reverts the chain to snapshot `id` (`evm_revert`): later blocks disappear.
    pub async fn revert(&self, id: U256) -> Result<()> {
        let ok: bool = self
            .provider
            .raw_request("evm_revert".into(), (id,))
            .await
            .map_err(TrafficError::rpc("evm_revert"))?;
        if ok {
            Ok(())
        } else {
            Err(TrafficError::Unexpected { method: "evm_revert", value: "false".into() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_bytecode_is_hex() {
        assert!(hex::decode(TOKEN_BIN.trim()).is_ok_and(|b| !b.is_empty()));
        assert!(hex::decode(REGISTRY_BIN.trim()).is_ok_and(|b| !b.is_empty()));
    }

    #[test]
    fn urls_in_messages_lose_query_and_credentials() {
        assert_eq!(redact("http://u:p@host:1/x?apikey=s"), "http://***@host:1/x");
        assert_eq!(redact("http://host:1/?k=v"), "http://host:1/");
    }

    #[test]
    fn calldata_selectors() {
        let demo = Demo::at("http://127.0.0.1:1", DEFAULT_TOKEN, DEFAULT_REGISTRY).expect("url");
        assert_eq!(&demo.burst_call(3).input[..4], abi::burstCall::SELECTOR.as_slice());
        assert_eq!(demo.batch_transfer_call(&RECIPIENTS[..2], U256::from(1)).to, DEFAULT_TOKEN);
    }
}
