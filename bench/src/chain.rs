//! The deterministic dataset: the demo Registry contract on a fresh anvil, with blocks of
//! many transactions, each emitting many `Burst` events.

use std::time::Instant;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use anyhow::{Context, bail};

alloy::sol! {
    function burst(uint256 n);
}

/// anvil's first account (unlocked).
const FROM: Address = alloy::primitives::address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");

/// The generated chain.
pub(crate) struct Dataset {
    pub(crate) registry: Address,
    pub(crate) first_block: u64,
    pub(crate) last_block: u64,
    pub(crate) events: u64,
}

/// Deploys Registry and mines `blocks` blocks of `txs_per_block` transactions emitting
/// `events_per_tx` events each. anvil must run with `--no-mining`.
pub(crate) async fn generate(
    url: &str,
    blocks: u64,
    txs_per_block: u64,
    events_per_tx: u64,
) -> anyhow::Result<Dataset> {
    let started = Instant::now();
    tidemark_db_client::tls::install_crypto_provider();
    let provider: RootProvider = RootProvider::new_http(url.parse()?);
    let bytecode = include_str!("../../deploy/demo/out/Registry.bin").trim();
    let code = Bytes::from(alloy::primitives::hex::decode(bytecode).context("Registry.bin is hex")?);
    let deploy =
        TransactionRequest::default().with_from(FROM).with_deploy_code(code).with_gas_limit(5_000_000);
    let hash = *provider.send_transaction(deploy).await?.tx_hash();
    mine(&provider).await?;
    let receipt = provider.get_transaction_receipt(hash).await?.context("deployment receipt")?;
    let registry = receipt.contract_address.context("deployment address")?;
    let data = Bytes::from(burstCall { n: U256::from(events_per_tx) }.abi_encode());
    let first_block = provider.get_block_number().await? + 1;
    let mut nonce = provider.get_transaction_count(FROM).await?;
    for _ in 0..blocks {
        let sends = (0..txs_per_block).map(|i| {
            let tx = TransactionRequest::default()
                .with_from(FROM)
                .with_to(registry)
                .with_input(data.clone())
                .with_nonce(nonce + i)
                .with_gas_limit(30_000 + 3_000 * events_per_tx);
            let p = provider.clone();
            async move { p.send_transaction(tx).await.map(|t| *t.tx_hash()) }
        });
        futures::future::try_join_all(sends).await?;
        nonce += txs_per_block;
        mine(&provider).await?;
    }
    let last_block = provider.get_block_number().await?;
    if last_block - first_block + 1 != blocks {
        bail!("expected {blocks} blocks, anvil mined {}", last_block - first_block + 1);
    }
    eprintln!(
        "dataset: {} events in {blocks} blocks ({txs_per_block} txs × {events_per_tx} events per block) generated in {:.1} s",
        blocks * txs_per_block * events_per_tx,
        started.elapsed().as_secs_f64()
    );
    Ok(Dataset { registry, first_block, last_block, events: blocks * txs_per_block * events_per_tx })
}

async fn mine(provider: &RootProvider) -> anyhow::Result<()> {
    let _: serde_json::Value = provider.raw_request("evm_mine".into(), ()).await?;
    Ok(())
}
