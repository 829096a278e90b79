//! The deterministic datasets, generated on a fresh anvil started with `--no-mining`:
//! each block's transactions are sent, then the block is mined with `evm_mine`.
//!
//! - `realistic` ([`realistic`]): ERC-20-style and ERC-721-style transfers between many
//!   addresses and events with dynamic types, from several contracts, in blocks of varying
//!   size holding many transactions of one to a hundred and fifty logs;
//! - `burst` ([`burst`]): the demo Registry's `burst(n)`, the same number of `Burst` events
//!   in every transaction and of transactions in every block.

use std::time::Instant;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use anyhow::{Context, bail};

mod realistic;

pub(crate) use realistic::realistic;

alloy::sol! {
    function burst(uint256 n);
}

/// anvil's first account (unlocked).
const FROM: Address = alloy::primitives::address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");

/// Which dataset `backfill` generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Transfers (ERC-20 ~70 %, ERC-721 ~20 %) and events with dynamic types (~10 %)
    /// from several contracts, in blocks and transactions of varying size.
    Realistic,
    /// The demo Registry's `Burst` events, a fixed number per transaction and per block.
    Burst,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Realistic => "realistic",
            Self::Burst => "burst",
        }
    }
}

/// The generated chain.
pub(crate) struct Dataset {
    pub(crate) first_block: u64,
    pub(crate) last_block: u64,
    pub(crate) events: u64,
    /// The `[[chains.contracts]]` tables of the indexer config, as a user writes them
    /// (names, addresses, start block, ABI signatures of the events).
    pub(crate) contracts_toml: String,
    /// How the dataset is made up, for the report (Markdown lines).
    pub(crate) description: Vec<String>,
}

impl Dataset {
    pub(crate) fn blocks(&self) -> u64 {
        self.last_block - self.first_block + 1
    }
}

/// A provider of `url` (plain HTTP).
pub(crate) fn provider(url: &str) -> anyhow::Result<RootProvider> {
    tidemark_db_client::tls::install_crypto_provider();
    Ok(RootProvider::new_http(url.parse()?))
}

/// Deploys the hex bytecode `bin` from [`FROM`] in a block of its own.
async fn deploy(provider: &RootProvider, bin: &str) -> anyhow::Result<Address> {
    let code = Bytes::from(alloy::primitives::hex::decode(bin.trim()).context("bytecode is hex")?);
    let deploy =
        TransactionRequest::default().with_from(FROM).with_deploy_code(code).with_gas_limit(5_000_000);
    let hash = *provider.send_transaction(deploy).await?.tx_hash();
    mine(provider).await?;
    let receipt = provider.get_transaction_receipt(hash).await?.context("deployment receipt")?;
    if !receipt.status() {
        bail!("deployment reverted");
    }
    receipt.contract_address.context("deployment address")
}

/// A transaction of the dataset: a call of `to` with `input`.
struct Call {
    to: Address,
    input: Bytes,
    gas: u64,
}

/// Sends `calls` from [`FROM`] with consecutive nonces starting at `nonce`, all at once
/// (anvil queues them), then mines one block holding them.
async fn send_block(provider: &RootProvider, nonce: u64, calls: Vec<Call>) -> anyhow::Result<()> {
    let sends = calls.into_iter().enumerate().map(|(i, c)| {
        let tx = TransactionRequest::default()
            .with_from(FROM)
            .with_to(c.to)
            .with_input(c.input)
            .with_nonce(nonce + i as u64)
            .with_gas_limit(c.gas);
        let p = provider.clone();
        async move { p.send_transaction(tx).await.map(|t| *t.tx_hash()) }
    });
    futures::future::try_join_all(sends).await?;
    mine(provider).await
}

async fn mine(provider: &RootProvider) -> anyhow::Result<()> {
    let _: serde_json::Value = provider.raw_request("evm_mine".into(), ()).await?;
    Ok(())
}

/// Checks that anvil mined exactly `blocks` blocks from `first_block` on (each `evm_mine`
/// must have taken every transaction sent before it).
async fn check_blocks(provider: &RootProvider, first_block: u64, blocks: u64) -> anyhow::Result<u64> {
    let last_block = provider.get_block_number().await?;
    if last_block + 1 - first_block != blocks {
        bail!("expected {blocks} blocks, anvil mined {}", last_block + 1 - first_block);
    }
    Ok(last_block)
}

/// Deploys Registry and mines `blocks` blocks of `txs_per_block` transactions emitting
/// `events_per_tx` `Burst` events each.
pub(crate) async fn burst(
    url: &str,
    blocks: u64,
    txs_per_block: u64,
    events_per_tx: u64,
) -> anyhow::Result<Dataset> {
    let started = Instant::now();
    let provider = provider(url)?;
    let registry = deploy(&provider, include_str!("../../deploy/demo/out/Registry.bin")).await?;
    let input = Bytes::from(burstCall { n: U256::from(events_per_tx) }.abi_encode());
    let first_block = provider.get_block_number().await? + 1;
    let mut nonce = provider.get_transaction_count(FROM).await?;
    for _ in 0..blocks {
        let calls = (0..txs_per_block)
            .map(|_| Call { to: registry, input: input.clone(), gas: 30_000 + 3_000 * events_per_tx })
            .collect();
        send_block(&provider, nonce, calls).await?;
        nonce += txs_per_block;
    }
    let last_block = check_blocks(&provider, first_block, blocks).await?;
    let events = blocks * txs_per_block * events_per_tx;
    let took = started.elapsed().as_secs_f64();
    eprintln!(
        "dataset burst: {events} events in {blocks} blocks ({txs_per_block} txs × {events_per_tx} events per block) generated in {took:.1} s"
    );
    let contracts_toml = format!(
        r#"[[chains.contracts]]
name = "Registry"
addresses = ["{registry:#x}"]
start_block = {first_block}
events = ["event Burst(uint256 indexed seq, uint256 value)"]
"#
    );
    let description = vec![format!(
        "`burst`: {events} `Burst(uint256 indexed seq, uint256 value)` events of one contract in {blocks} blocks, \
         {txs_per_block} transactions × {events_per_tx} events per block (generated in {took:.0} s)"
    )];
    Ok(Dataset { first_block, last_block, events, contracts_toml, description })
}
