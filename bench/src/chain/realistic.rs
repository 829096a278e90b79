//! The `realistic` dataset: what a busy chain's blocks hold for an indexer of a few
//! popular contracts.
//!
//! - ~70 % ERC-20 `Transfer(address indexed from, address indexed to, uint256 value)` from
//!   four `Fungible` contracts (declared as two config contracts, a stablecoin and three
//!   tokens), between addresses drawn from a million holders with a heavy head (a
//!   log-uniform index: a few addresses — exchanges, routers — appear in many transfers,
//!   most in one or two), a few of them mints from the zero address;
//! - ~20 % ERC-721 `Transfer(address indexed from, address indexed to, uint256 indexed
//!   tokenId)` from two `Collectible` contracts: the same topic0 as the ERC-20 event with
//!   the token id indexed, told apart by contract in the config;
//! - ~10 % `Market` `Order` events with a string, a dynamic `uint256[]` and a tuple holding
//!   a string.
//!
//! Per transaction: half emit one log, most of the rest 2–8; one in sixteen is a batch of
//! 9–30 (mints, payouts) and one in a hundred an airdrop of 31–150. One in ten calls
//! several contracts through `Multicall` (a trade: payment, item and order; a swap: two
//! tokens). Per block: 60–140 transactions, some blocks up to 220, a few only 1–20 — about
//! 360 logs per block on average, so a range of 25 blocks holds about 9,000 logs.
//!
//! Everything is drawn from a fixed-seed generator: the same `--events` and `--seed` give
//! the same chain, event for event (only the block hashes and timestamps differ).

use std::collections::HashSet;
use std::time::Instant;

use alloy::primitives::{Address, Bytes, U256, keccak256};
use alloy::providers::Provider;
use alloy::sol_types::SolCall;

use super::{Call, Dataset, FROM, check_blocks, deploy, provider, send_block};

alloy::sol! {
    function transfers(address[] from, address[] to, uint256[] value);

    struct Terms {
        address taker;
        uint128 price;
        bool filled;
        string note;
    }

    struct Listing {
        uint256 id;
        address maker;
        string memo;
        uint256[] amounts;
        Terms terms;
    }

    function orders(Listing[] listings);

    function aggregate(address[] targets, bytes[] data);
}

/// The ERC-20 event, as a user declares it.
const ERC20_TRANSFER: &str = "event Transfer(address indexed from, address indexed to, uint256 value)";
/// The ERC-721 event (same topic0, the token id indexed).
const ERC721_TRANSFER: &str =
    "event Transfer(address indexed from, address indexed to, uint256 indexed tokenId)";
/// The event with dynamic types, tuple written inline as users copy it from Solidity.
const ORDER: &str = "event Order(uint256 indexed id, address indexed maker, string memo, uint256[] amounts, \
     (address taker, uint128 price, bool filled, string note) terms)";

/// Addresses transfers are drawn from.
const HOLDERS: f64 = 1_000_000.0;
/// Share of transfer volume of each `Fungible` (the stablecoin first) and its decimals.
const FUNGIBLES: [(f64, u32); 4] = [(0.45, 6), (0.25, 18), (0.18, 18), (0.12, 18)];
/// Share of each `Collectible` and the range of its existing token ids.
const COLLECTIBLES: [(f64, u64); 2] = [(0.6, 10_000), (0.4, 1_000_000)];
/// Transactions that call one contract: the share of each kind (before the trades and
/// swaps below, which add ERC-20, ERC-721 and order logs in their own proportions).
const SINGLE_KINDS: [(Kind, f64); 3] = [(Kind::Erc20, 0.63), (Kind::Erc721, 0.20), (Kind::Order, 0.17)];
/// Share of transactions that are trades (ERC-20 + ERC-721 + order through Multicall).
const TRADES: f64 = 0.04;
/// Share of transactions that are swaps (two ERC-20 transfers of two tokens, Multicall).
const SWAPS: f64 = 0.06;
/// Logs of a one-contract transaction: (probability, min, max).
const LOGS_PER_TX: [(f64, u64, u64); 5] =
    [(0.50, 1, 1), (0.28, 2, 3), (0.15, 4, 8), (0.06, 9, 30), (0.01, 31, 150)];
/// Transactions per block: (probability, min, max).
const TXS_PER_BLOCK: [(f64, u64, u64); 3] = [(0.90, 60, 140), (0.07, 141, 220), (0.03, 1, 20)];
/// Words of the strings (a few of several UTF-8 bytes).
const WORDS: [&str; 24] = [
    "buy", "sell", "limit", "market", "order", "fill", "partial", "cancel", "gm", "wagmi", "floor", "bid",
    "ask", "rare", "mint", "drop", "café", "naïve", "東京", "🚀", "vault", "swap", "lp", "airdrop",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Erc20,
    Erc721,
    Order,
}

/// SplitMix64: a small, fixed generator, so the dataset never changes with a library.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi]`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An index into `weights` (which sum to about 1), drawn by weight.
    fn pick(&mut self, weights: impl IntoIterator<Item = f64>) -> usize {
        let u = self.unit();
        let mut acc = 0.0;
        let mut last = 0;
        for (i, w) in weights.into_iter().enumerate() {
            acc += w;
            last = i;
            if u < acc {
                return i;
            }
        }
        last
    }

    /// A count from a table of (probability, min, max).
    fn count(&mut self, table: &[(f64, u64, u64)]) -> u64 {
        let (_, lo, hi) = table[self.pick(table.iter().map(|t| t.0))];
        self.range(lo, hi)
    }

    /// A holder: index log-uniform in [0, HOLDERS), so small indexes recur often.
    fn holder(&mut self, seen: &mut HashSet<u64>) -> Address {
        let index = (HOLDERS.powf(self.unit()) as u64).saturating_sub(1);
        seen.insert(index);
        let hash = keccak256([b"holder".as_slice(), &index.to_be_bytes()].concat());
        Address::from_slice(&hash[12..])
    }

    /// `1..=9999` times a power of ten up to `10^max_exp`.
    fn amount(&mut self, max_exp: u32) -> U256 {
        let exp = self.range(0, u64::from(max_exp));
        U256::from(self.range(1, 9_999)) * U256::from(10).pow(U256::from(exp))
    }

    /// `0..=max` words.
    fn text(&mut self, max: u64) -> String {
        let n = self.range(0, max);
        (0..n).map(|_| WORDS[self.range(0, WORDS.len() as u64 - 1) as usize]).collect::<Vec<_>>().join(" ")
    }
}

/// The deployed contracts and the generator's state.
struct Gen {
    rng: Rng,
    fungibles: Vec<Address>,
    collectibles: Vec<Address>,
    market: Address,
    multicall: Address,
    /// Next id minted by each collectible.
    minted: Vec<u64>,
    next_order: u64,
    holders: HashSet<u64>,
}

/// One transaction's call and the logs it emits by kind.
struct Tx {
    call: Call,
    logs: [u64; 3],
    contracts: usize,
}

/// A part of a transaction: one contract's calldata, its logs and the gas they need.
struct Part {
    to: Address,
    input: Bytes,
    logs: [u64; 3],
    gas: u64,
}

impl Gen {
    fn erc20(&mut self, token: usize, n: u64) -> Part {
        let (_, decimals) = FUNGIBLES[token];
        let mut from = Vec::new();
        let mut to = Vec::new();
        let mut value = Vec::new();
        // A batch pays out from one address (payroll, airdrop); single transfers are
        // between two holders, a few minted.
        let payer = self.rng.holder(&mut self.holders);
        for _ in 0..n {
            let f = if n > 8 {
                payer
            } else if self.rng.chance(0.03) {
                Address::ZERO
            } else {
                self.rng.holder(&mut self.holders)
            };
            from.push(f);
            to.push(self.rng.holder(&mut self.holders));
            value.push(self.rng.amount(decimals + 4));
        }
        let input = Bytes::from(transfersCall { from, to, value }.abi_encode());
        let gas = 40_000 + 8_000 * n + 20 * input.len() as u64;
        Part { to: self.fungibles[token], input, logs: [n, 0, 0], gas }
    }

    fn erc721(&mut self, collection: usize, n: u64) -> Part {
        let (_, ids) = COLLECTIBLES[collection];
        let mut from = Vec::new();
        let mut to = Vec::new();
        let mut token = Vec::new();
        // A batch is a mint to one holder; single transfers move existing tokens.
        let minter = self.rng.holder(&mut self.holders);
        for _ in 0..n {
            if n > 8 {
                from.push(Address::ZERO);
                to.push(minter);
                self.minted[collection] += 1;
                token.push(U256::from(ids + self.minted[collection]));
            } else {
                from.push(self.rng.holder(&mut self.holders));
                to.push(self.rng.holder(&mut self.holders));
                token.push(U256::from(self.rng.range(0, ids - 1)));
            }
        }
        let input = Bytes::from(transfersCall { from, to, value: token }.abi_encode());
        let gas = 40_000 + 8_000 * n + 20 * input.len() as u64;
        Part { to: self.collectibles[collection], input, logs: [0, n, 0], gas }
    }

    fn listing(&mut self, maker: Address, taker: Option<Address>) -> Listing {
        self.next_order += 1;
        let small = self.rng.range(0, 5);
        let len = if self.rng.chance(0.1) { small + self.rng.range(0, 20) } else { small };
        let amounts = (0..len).map(|_| U256::from(self.rng.next() >> self.rng.range(0, 63))).collect();
        let filled = taker.is_some() || self.rng.chance(0.3);
        let taker =
            taker.unwrap_or_else(|| if filled { self.rng.holder(&mut self.holders) } else { Address::ZERO });
        let price: u128 = u128::from(self.rng.range(1, 9_999)) * 10u128.pow(self.rng.range(12, 20) as u32);
        Listing {
            id: U256::from(self.next_order),
            maker,
            memo: self.rng.text(8),
            amounts,
            terms: Terms { taker, price, filled, note: self.rng.text(4) },
        }
    }

    fn orders(&mut self, n: u64) -> Part {
        let listings: Vec<Listing> = (0..n)
            .map(|_| {
                let maker = self.rng.holder(&mut self.holders);
                self.listing(maker, None)
            })
            .collect();
        let input = Bytes::from(ordersCall { listings }.abi_encode());
        let gas = 40_000 + 30_000 * n + 40 * input.len() as u64;
        Part { to: self.market, input, logs: [0, 0, n], gas }
    }

    fn single(&mut self, kind: Kind, n: u64) -> Part {
        match kind {
            Kind::Erc20 => {
                let token = self.rng.pick(FUNGIBLES.iter().map(|f| f.0));
                self.erc20(token, n)
            }
            Kind::Erc721 => {
                let collection = self.rng.pick(COLLECTIBLES.iter().map(|c| c.0));
                self.erc721(collection, n.min(50))
            }
            Kind::Order => self.orders(n.min(4)),
        }
    }

    /// A trade: the buyer pays the seller, the seller's item goes to the buyer, the market
    /// records the filled order.
    fn trade(&mut self) -> Vec<Part> {
        let buyer = self.rng.holder(&mut self.holders);
        let seller = self.rng.holder(&mut self.holders);
        let token = self.rng.pick(FUNGIBLES.iter().map(|f| f.0));
        let collection = self.rng.pick(COLLECTIBLES.iter().map(|c| c.0));
        let (_, decimals) = FUNGIBLES[token];
        let (_, ids) = COLLECTIBLES[collection];
        let pay =
            transfersCall { from: vec![buyer], to: vec![seller], value: vec![self.rng.amount(decimals + 3)] };
        let item = transfersCall {
            from: vec![seller],
            to: vec![buyer],
            value: vec![U256::from(self.rng.range(0, ids - 1))],
        };
        let listing = self.listing(seller, Some(buyer));
        let order = ordersCall { listings: vec![listing] };
        vec![
            Part { to: self.fungibles[token], input: pay.abi_encode().into(), logs: [1, 0, 0], gas: 30_000 },
            Part {
                to: self.collectibles[collection],
                input: item.abi_encode().into(),
                logs: [0, 1, 0],
                gas: 30_000,
            },
            Part { to: self.market, input: order.abi_encode().into(), logs: [0, 0, 1], gas: 80_000 },
        ]
    }

    /// A swap: token A from the trader to a pool, token B from the pool to the trader.
    fn swap(&mut self) -> Vec<Part> {
        let trader = self.rng.holder(&mut self.holders);
        let pool = self.rng.holder(&mut self.holders);
        let a = self.rng.pick(FUNGIBLES.iter().map(|f| f.0));
        let b = (a + 1 + self.rng.range(0, FUNGIBLES.len() as u64 - 2) as usize) % FUNGIBLES.len();
        let leg = |g: &mut Self, token: usize, from: Address, to: Address| {
            let value = g.rng.amount(FUNGIBLES[token].1 + 3);
            let input = transfersCall { from: vec![from], to: vec![to], value: vec![value] }.abi_encode();
            Part { to: g.fungibles[token], input: input.into(), logs: [1, 0, 0], gas: 30_000 }
        };
        vec![leg(self, a, trader, pool), leg(self, b, pool, trader)]
    }

    /// The next transaction, emitting at most `left` logs.
    fn tx(&mut self, left: u64) -> Tx {
        let u = self.rng.unit();
        let parts = if u < TRADES && left >= 3 {
            self.trade()
        } else if u < TRADES + SWAPS && left >= 2 {
            self.swap()
        } else {
            let kind = SINGLE_KINDS[self.rng.pick(SINGLE_KINDS.iter().map(|k| k.1))].0;
            let n = self.rng.count(&LOGS_PER_TX).min(left);
            vec![self.single(kind, n)]
        };
        let mut logs = [0; 3];
        for p in &parts {
            for (l, n) in logs.iter_mut().zip(p.logs) {
                *l += n;
            }
        }
        let contracts = parts.len();
        let call = if let [part] = &parts[..] {
            Call { to: part.to, input: part.input.clone(), gas: part.gas }
        } else {
            let gas = 40_000 + parts.iter().map(|p| p.gas + 20_000).sum::<u64>();
            let (targets, data) = parts.into_iter().map(|p| (p.to, p.input)).unzip();
            Call { to: self.multicall, input: aggregateCall { targets, data }.abi_encode().into(), gas }
        };
        Tx { call, logs, contracts }
    }
}

/// Minimum, median and maximum.
fn spread(mut v: Vec<u64>) -> (u64, u64, u64) {
    v.sort_unstable();
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Deploys the contracts and mines blocks until `events` logs are on chain.
pub(crate) async fn realistic(url: &str, events: u64, seed: u64) -> anyhow::Result<Dataset> {
    let started = Instant::now();
    let provider = provider(url)?;
    let mut fungibles = Vec::new();
    for _ in FUNGIBLES {
        fungibles.push(deploy(&provider, include_str!("../../../deploy/demo/out/Fungible.bin")).await?);
    }
    let mut collectibles = Vec::new();
    for _ in COLLECTIBLES {
        collectibles.push(deploy(&provider, include_str!("../../../deploy/demo/out/Collectible.bin")).await?);
    }
    let market = deploy(&provider, include_str!("../../../deploy/demo/out/Market.bin")).await?;
    let multicall = deploy(&provider, include_str!("../../../deploy/demo/out/Multicall.bin")).await?;
    let mut g = Gen {
        rng: Rng(seed),
        fungibles,
        collectibles,
        market,
        multicall,
        minted: vec![0; COLLECTIBLES.len()],
        next_order: 0,
        holders: HashSet::new(),
    };

    let first_block = provider.get_block_number().await? + 1;
    let mut nonce = provider.get_transaction_count(FROM).await?;
    let mut left = events;
    let mut by_kind = [0u64; 3];
    let (mut logs_per_block, mut txs_per_block, mut logs_per_tx) = (Vec::new(), Vec::new(), Vec::new());
    let mut multi_contract = 0u64;
    while left > 0 {
        let txs = g.rng.count(&TXS_PER_BLOCK);
        let mut calls = Vec::new();
        let mut block_logs = 0;
        while (calls.len() as u64) < txs && left > 0 {
            let tx = g.tx(left);
            let n: u64 = tx.logs.iter().sum();
            for (k, l) in by_kind.iter_mut().zip(tx.logs) {
                *k += l;
            }
            multi_contract += u64::from(tx.contracts > 1);
            logs_per_tx.push(n);
            block_logs += n;
            left -= n;
            calls.push(tx.call);
        }
        logs_per_block.push(block_logs);
        txs_per_block.push(calls.len() as u64);
        let sent = calls.len() as u64;
        send_block(&provider, nonce, calls).await?;
        nonce += sent;
    }
    let blocks = logs_per_block.len() as u64;
    let last_block = check_blocks(&provider, first_block, blocks).await?;
    let took = started.elapsed().as_secs_f64();
    let txs = logs_per_tx.len() as u64;

    let pct = |n: u64, of: u64| 100.0 * n as f64 / of.max(1) as f64;
    let tx_share =
        |lo: u64, hi: u64| pct(logs_per_tx.iter().filter(|&&n| n >= lo && n <= hi).count() as u64, txs);
    let (bmin, bmed, bmax) = spread(logs_per_block);
    let (tmin, tmed, tmax) = spread(txs_per_block);
    eprintln!(
        "dataset realistic: {events} events in {blocks} blocks, {txs} transactions, generated in {took:.1} s"
    );
    let description = vec![
        format!(
            "`realistic` (seed {seed}): {events} events in {blocks} blocks and {txs} transactions (generated in {took:.0} s)"
        ),
        format!(
            "- by kind: ERC-20 `Transfer` {:.1} %, ERC-721 `Transfer` {:.1} %, `Order` (string, uint256[], tuple with a string) {:.1} %; \
             {} distinct holder addresses",
            pct(by_kind[0], events),
            pct(by_kind[1], events),
            pct(by_kind[2], events),
            g.holders.len()
        ),
        format!(
            "- logs per block: min {bmin}, median {bmed}, max {bmax}, mean {:.0}; transactions per block: min {tmin}, median {tmed}, max {tmax}",
            events as f64 / blocks as f64
        ),
        format!(
            "- logs per transaction: 1 in {:.0} % of them, 2–3 in {:.0} %, 4–8 in {:.0} %, 9–30 in {:.0} %, 31–150 in {:.1} %; \
             mean {:.2}; {:.1} % call several contracts (trades, swaps)",
            tx_share(1, 1),
            tx_share(2, 3),
            tx_share(4, 8),
            tx_share(9, 30),
            tx_share(31, u64::MAX),
            events as f64 / txs as f64,
            pct(multi_contract, txs)
        ),
    ];
    let list = |a: &[Address]| a.iter().map(|a| format!("\"{a:#x}\"")).collect::<Vec<_>>().join(", ");
    let contracts_toml = format!(
        r#"[[chains.contracts]]
name = "Stablecoin"
addresses = [{stable}]
start_block = {first_block}
events = ["{ERC20_TRANSFER}"]

[[chains.contracts]]
name = "Tokens"
addresses = [{tokens}]
start_block = {first_block}
events = ["{ERC20_TRANSFER}"]

[[chains.contracts]]
name = "Collectibles"
addresses = [{nfts}]
start_block = {first_block}
events = ["{ERC721_TRANSFER}"]

[[chains.contracts]]
name = "Market"
addresses = [{market}]
start_block = {first_block}
events = ["{ORDER}"]
"#,
        stable = list(&g.fungibles[..1]),
        tokens = list(&g.fungibles[1..]),
        nfts = list(&g.collectibles),
        market = list(&[g.market]),
    );
    Ok(Dataset { first_block, last_block, events, contracts_toml, description })
}
