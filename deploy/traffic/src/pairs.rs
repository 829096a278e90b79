//! A UniswapV2-shaped factory and its pairs (`deploy/demo/PairFactory.sol`, `Pair.sol`):
//! the fixture of factory-contract indexing. The factory creates pairs (children) by
//! CREATE2 and announces each with `PairCreated(token0 indexed, token1 indexed, pair,
//! count)`; pairs emit `Mint`, `Swap` and `Sync`. Batch calls create or trade on many pairs
//! in one transaction.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, U256};
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::{SolCall, SolEvent};

use crate::{Call, Demo, Result, TrafficError};

/// The factory's bytecode.
pub const FACTORY_BIN: &str = include_str!("../../demo/out/PairFactory.bin");
/// The factory's JSON ABI.
pub const FACTORY_ABI: &str = include_str!("../../demo/out/PairFactory.abi.json");
/// The pair's JSON ABI.
pub const PAIR_ABI: &str = include_str!("../../demo/out/Pair.abi.json");

/// Gas of a batch call: anvil's blocks hold 30 M; a pair costs about 0.45 M to create.
const BATCH_GAS: u64 = 28_000_000;

/// Pairs created per transaction by [`Pairs::create`].
pub const PAIRS_PER_TX: u64 = 40;

alloy::sol! {
    function createPairs(uint256 n);
    function createAndSwap(address tokenA, address tokenB) returns (address pair);
    function list(address pair);
    function trade(address[] pairs, uint256 rounds);

    event PairCreated(address indexed token0, address indexed token1, address pair, uint256 count);
    event PairListed(address indexed pair);
    event Mint(address indexed sender, uint256 amount0, uint256 amount1);
    event Swap(address indexed sender, uint256 amount0In, uint256 amount1In, uint256 amount0Out, uint256 amount1Out, address indexed to);
    event Sync(uint112 reserve0, uint112 reserve1);
}

/// A deployed factory, sending from the demo sender.
#[derive(Debug, Clone)]
pub struct Pairs {
    sender: Demo,
    /// The factory's address.
    pub factory: Address,
}

/// The pairs a receipt's `PairCreated` logs announce, in log order.
pub fn created_pairs(receipt: &TransactionReceipt) -> Vec<Address> {
    receipt
        .inner
        .logs()
        .iter()
        .filter_map(|l| PairCreated::decode_log_data(l.data()).ok())
        .map(|e| e.pair)
        .collect()
}

impl Pairs {
    /// Deploys a factory on the chain at `rpc_url`.
    pub async fn deploy(rpc_url: &str) -> Result<Self> {
        let sender = Demo::at(rpc_url, Address::ZERO, Address::ZERO)?;
        let factory = sender.deploy_code("PairFactory", FACTORY_BIN).await?;
        Ok(Self { sender, factory })
    }

    /// The sender (mining, reorgs, snapshots).
    pub fn chain(&self) -> &Demo {
        &self.sender
    }

    async fn send_batch(&self, input: Vec<u8>, what: &'static str) -> Result<TransactionReceipt> {
        let call = Call { to: self.factory, input: input.into(), what };
        let hash = self.sender.submit_request(call.request().with_gas_limit(BATCH_GAS)).await?;
        self.sender.wait(hash, what).await
    }

    /// Creates `n` pairs, [`PAIRS_PER_TX`] per transaction (one block each); returns them.
    pub async fn create(&self, n: u64) -> Result<Vec<Address>> {
        let mut out = Vec::new();
        let mut left = n;
        while left > 0 {
            let k = left.min(PAIRS_PER_TX);
            let receipt =
                self.send_batch(createPairsCall { n: U256::from(k) }.abi_encode(), "createPairs").await?;
            let pairs = created_pairs(&receipt);
            if pairs.len() as u64 != k {
                return Err(TrafficError::Unexpected {
                    method: "createPairs",
                    value: format!("{} pairs", pairs.len()),
                });
            }
            out.extend(pairs);
            left -= k;
        }
        Ok(out)
    }

    /// The call creating `n` pairs (small `n`: it runs with the default gas, e.g. inside
    /// an `anvil_reorg`).
    pub fn create_call(&self, n: u64) -> Call {
        Call {
            to: self.factory,
            input: createPairsCall { n: U256::from(n) }.abi_encode().into(),
            what: "createPairs",
        }
    }

    /// Creates a pair that emits `Mint` and `Sync` before `PairCreated` and `Swap` and
    /// `Sync` after it, all in its creation transaction; returns it.
    pub async fn create_and_swap(&self, salt: u64) -> Result<Address> {
        let (a, b) = (Address::with_last_byte(0xa0).create(salt), Address::with_last_byte(0xb0).create(salt));
        let receipt =
            self.send_batch(createAndSwapCall { tokenA: a, tokenB: b }.abi_encode(), "createAndSwap").await?;
        created_pairs(&receipt)
            .first()
            .copied()
            .ok_or(TrafficError::Unexpected { method: "createAndSwap", value: "no PairCreated".into() })
    }

    /// `PairListed(pair)`: a second announcement of an address.
    pub async fn list(&self, pair: Address) -> Result<TransactionReceipt> {
        self.send_batch(listCall { pair }.abi_encode(), "list").await
    }

    /// Mints on each of `pairs` and swaps `rounds` times on each, in one transaction
    /// (`2 + 2 × rounds` events per pair).
    pub async fn trade(&self, pairs: &[Address], rounds: u64) -> Result<TransactionReceipt> {
        self.send_batch(tradeCall { pairs: pairs.to_vec(), rounds: U256::from(rounds) }.abi_encode(), "trade")
            .await
    }

    /// [`Self::trade`] in batches of `per_tx` pairs.
    pub async fn trade_all(&self, pairs: &[Address], rounds: u64, per_tx: usize) -> Result<()> {
        for chunk in pairs.chunks(per_tx.max(1)) {
            self.trade(chunk, rounds).await?;
        }
        Ok(())
    }
}
