//! `tidemark-traffic`: deploys the demo contracts and sends a steady mix of transactions
//! to an anvil chain, optionally provoking reorgs, until SIGINT/SIGTERM or `--duration`.
//!
//! ```text
//! tidemark-traffic --rpc-url http://127.0.0.1:8545 deploy            # prints {"token": …, "registry": …}
//! tidemark-traffic --rpc-url … run --token 0x… --registry 0x… --tx-per-second 5
//! tidemark-traffic --rpc-url … --deploy --mix transfer=5,burst=2 --reorg-every 30 --reorg-max-depth 3
//! tidemark-traffic receive --listen 127.0.0.1:4010 --secret whsec_…   # a webhook sink's receiver
//! tidemark-traffic --rpc-url … webhook-sim --endpoint http://127.0.0.1:4001/v1/webhooks/alchemy/31337 \
//!     --provider alchemy --secret … --shuffle-window 10 --duplicate 0.2 --drop 0.05
//! ```

mod receive;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use clap::{Args, Parser, Subcommand};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tidemark_service_kit::{Exit, LogFormat, cancel_on_signal, init_logging};
use tidemark_traffic::webhook_sim::{self, SimOptions, WebhookFormat};
use tidemark_traffic::{Call, Demo, RECIPIENTS, TrafficError};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Demo traffic for Tidemark on an anvil chain.
#[derive(Debug, Parser)]
#[command(name = "tidemark-traffic", version, about)]
struct Cli {
    /// JSON-RPC endpoint of the (anvil) chain.
    #[arg(long, env = "RPC_URL", default_value = "http://127.0.0.1:8545", global = true)]
    rpc_url: String,
    /// What to do (default: run, with the flags given here).
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Deploy Token and Registry and print their addresses as JSON.
    Deploy,
    /// Send traffic (the default).
    Run(RunArgs),
    /// Receive a webhook sink's deliveries: verify each signature (Standard Webhooks) and
    /// log it.
    Receive {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4010")]
        listen: std::net::SocketAddr,
        /// The sink's secret (`whsec_…`).
        #[arg(long, env = "WEBHOOK_SECRET")]
        secret: String,
    },
    /// Play a hosted provider's webhooks: POST every new block (and its logs) to an
    /// endpoint, signed, with retries and optional faults; print a JSON summary at exit.
    WebhookSim(WebhookSimArgs),
}

#[derive(Debug, Clone, Args)]
struct WebhookSimArgs {
    /// Full URL the deliveries are POSTed to.
    #[arg(long)]
    endpoint: String,
    /// Wire format: `alchemy` (Notify custom webhook) or `standard` (Standard Webhooks).
    #[arg(long, value_name = "alchemy|standard")]
    provider: WebhookFormat,
    /// Signing secret: the Alchemy signing key, or a Standard Webhooks `whsec_…` secret.
    #[arg(long, env = "WEBHOOK_SIGNING_KEY", hide_env_values = true)]
    secret: String,
    /// First block delivered (default: the head at start + 1).
    #[arg(long, value_name = "N")]
    from_block: Option<u64>,
    /// Stop once every block up to N was delivered, dropped or given up.
    #[arg(long, value_name = "N")]
    until_block: Option<u64>,
    /// Only logs of this contract (repeatable; default: all logs).
    #[arg(long = "address", value_name = "0x…")]
    addresses: Vec<Address>,
    /// Buffer K deliveries and release them in random order (0 or 1: in order).
    #[arg(long, value_name = "K", default_value_t = 0)]
    shuffle_window: usize,
    /// Fraction of deliveries sent a second time, later, with the same id and body.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    duplicate: f64,
    /// Fraction of deliveries never sent.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    drop: f64,
    /// Wait D milliseconds before every request.
    #[arg(long, value_name = "D", default_value_t = 0)]
    delay_ms: u64,
    /// After A blocks, treat the receiver as down for --down-secs: deliveries fail and are
    /// retried later.
    #[arg(long, value_name = "A", requires = "down_secs")]
    down_after_blocks: Option<u64>,
    /// Length of the down window, in seconds.
    #[arg(long, value_name = "S", requires = "down_after_blocks")]
    down_secs: Option<u64>,
    /// Fraction of deliveries also sent once with a corrupted signature (expected: 401).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    forge: f64,
    /// Seed of the random choices (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Head polling interval, in milliseconds.
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// Attempts per delivery before it is given up.
    #[arg(long, default_value_t = 20)]
    max_attempts: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

impl WebhookSimArgs {
    fn options(self, rpc_url: &str) -> SimOptions {
        SimOptions {
            from_block: self.from_block,
            until_block: self.until_block,
            addresses: self.addresses,
            shuffle_window: self.shuffle_window,
            duplicate: self.duplicate,
            drop: self.drop,
            forge: self.forge,
            delay: Duration::from_millis(self.delay_ms),
            down_after_blocks: self.down_after_blocks,
            down_for: Duration::from_secs(self.down_secs.unwrap_or(0)),
            seed: self.seed,
            poll: Duration::from_millis(self.poll_ms),
            max_attempts: self.max_attempts,
            concurrency: self.concurrency,
            ..SimOptions::new(rpc_url, self.endpoint, self.provider, self.secret)
        }
    }
}

#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// Deploy the contracts first and print their addresses as JSON.
    #[arg(long, conflicts_with_all = ["token", "registry", "deploy_if_missing"])]
    deploy: bool,
    /// Use the contracts at anvil's default deployment addresses when they have code, else deploy.
    #[arg(long)]
    deploy_if_missing: bool,
    /// Token address (with --registry, instead of deploying).
    #[arg(long, requires = "registry")]
    token: Option<Address>,
    /// Registry address (with --token).
    #[arg(long, requires = "token")]
    registry: Option<Address>,
    /// Transactions sent per second.
    #[arg(long, default_value_t = 2.0)]
    tx_per_second: f64,
    /// Weighted mix of calls: transfer, approve, batch, burst, register, update, tag.
    #[arg(long, default_value = "transfer=5,burst=2,register=1,update=1,tag=1,approve=1,batch=1")]
    mix: Mix,
    /// Events per `burst` call.
    #[arg(long, default_value_t = 20)]
    burst_size: u64,
    /// Recipients per `batch` call (one Transfer each).
    #[arg(long, default_value_t = 5)]
    batch_size: usize,
    /// Provoke an `anvil_reorg` every SECS seconds.
    #[arg(long, value_name = "SECS")]
    reorg_every: Option<u64>,
    /// Largest reorg depth; each reorg picks a depth in 1..=N.
    #[arg(long, default_value_t = 3)]
    reorg_max_depth: u64,
    /// Stop after SECS seconds (default: run until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Seed of the random choices (default: random).
    #[arg(long)]
    seed: Option<u64>,
}

/// Kinds of calls the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Transfer,
    Approve,
    Batch,
    Burst,
    Register,
    Update,
    Tag,
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "transfer" => Self::Transfer,
            "approve" => Self::Approve,
            "batch" | "batch_transfer" | "batchTransfer" => Self::Batch,
            "burst" => Self::Burst,
            "register" => Self::Register,
            "update" => Self::Update,
            "tag" => Self::Tag,
            other => return Err(format!("unknown call kind {other:?}")),
        })
    }
}

/// Weights per kind, parsed from `kind=weight,…`.
#[derive(Debug, Clone, PartialEq)]
struct Mix(Vec<(Kind, u32)>);

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut weights = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, w) = part.split_once('=').ok_or_else(|| format!("{part:?} is not kind=weight"))?;
            let w: u32 = w.trim().parse().map_err(|_| format!("weight of {k} is not a number"))?;
            weights.insert(k.trim().parse::<Kind>()?, w);
        }
        let mix: Vec<(Kind, u32)> = weights.into_iter().filter(|(_, w)| *w > 0).collect();
        if mix.is_empty() {
            return Err("the mix needs at least one positive weight".into());
        }
        Ok(Self(mix))
    }
}

impl Mix {
    fn pick(&self, rng: &mut impl Rng) -> Kind {
        let total: u32 = self.0.iter().map(|(_, w)| w).sum();
        let mut x = rng.random_range(0..total);
        for (k, w) in &self.0 {
            if x < *w {
                return *k;
            }
            x -= w;
        }
        self.0[0].0
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(LogFormat::Text);
    tidemark_service_kit::block_on(Some(2), main_async(cli), |_| Exit::Runtime)
}

async fn main_async(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Deploy) => {
            let demo = Demo::deploy(&cli.rpc_url).await?;
            print_addresses(&demo);
            Ok(())
        }
        Some(Command::Run(args)) => run(&cli.rpc_url, args).await,
        Some(Command::Receive { listen, secret }) => {
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            receive::receive(listen, secret, shutdown).await
        }
        Some(Command::WebhookSim(args)) => {
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            let summary = webhook_sim::run(args.options(&cli.rpc_url), shutdown).await?;
            println!("{}", summary.to_json_line());
            Ok(())
        }
        None => run(&cli.rpc_url, cli.run).await,
    }
}

fn print_addresses(demo: &Demo) {
    println!(
        "{}",
        serde_json::json!({"token": demo.token.to_string(), "registry": demo.registry.to_string()})
    );
}

async fn run(rpc_url: &str, args: RunArgs) -> anyhow::Result<()> {
    if !(args.tx_per_second > 0.0 && args.tx_per_second <= 1000.0) {
        anyhow::bail!("--tx-per-second must be in (0, 1000]");
    }
    if args.reorg_every.is_some() && args.reorg_max_depth == 0 {
        anyhow::bail!("--reorg-max-depth must be at least 1");
    }
    let demo = match (args.token, args.registry) {
        (Some(t), Some(r)) => Demo::at(rpc_url, t, r)?,
        _ if args.deploy => {
            let demo = Demo::deploy(rpc_url).await?;
            print_addresses(&demo);
            demo
        }
        _ => {
            let demo = Demo::deploy_if_missing(rpc_url).await?;
            print_addresses(&demo);
            demo
        }
    };
    tracing::info!(token = %demo.token, registry = %demo.registry, tx_per_second = args.tx_per_second, mix = ?args.mix.0, reorg_every = ?args.reorg_every, "sending traffic");

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    if let Some(secs) = args.duration {
        let token = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            token.cancel();
        });
    }
    Generator::new(demo, args).run(shutdown).await
}

/// Most receipts awaited at once; beyond that the sender waits for the oldest.
const MAX_IN_FLIGHT: usize = 256;
/// Consecutive send failures after which the generator gives up.
const MAX_CONSECUTIVE_FAILURES: u32 = 30;

struct Generator {
    demo: Demo,
    args: RunArgs,
    rng: StdRng,
    counter: u64,
    sent: u64,
    mined: u64,
    failed: u64,
    reorgs: u64,
}

impl Generator {
    fn new(demo: Demo, args: RunArgs) -> Self {
        let rng = match args.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Self { demo, args, rng, counter: 0, sent: 0, mined: 0, failed: 0, reorgs: 0 }
    }

    fn next_call(&mut self) -> Call {
        self.counter += 1;
        let n = self.counter;
        let who = RECIPIENTS[self.rng.random_range(0..RECIPIENTS.len())];
        match self.args.mix.pick(&mut self.rng) {
            Kind::Transfer => self.demo.transfer_call(who, U256::from(self.rng.random_range(1..1_000u64))),
            Kind::Approve => self.demo.approve_call(who, U256::from(n)),
            Kind::Batch => {
                let k = self.args.batch_size.max(1);
                let to: Vec<Address> =
                    (0..k).map(|i| RECIPIENTS[(n as usize + i) % RECIPIENTS.len()]).collect();
                self.demo.batch_transfer_call(&to, U256::from(1))
            }
            Kind::Burst => self.demo.burst_call(self.args.burst_size.max(1)),
            Kind::Register => {
                let ids = [U256::from(n), U256::from(n + 1), U256::from(n * 1000)];
                self.demo.register_call(&format!("name-{n}"), &ids, &format!("label {n}"))
            }
            Kind::Update => self.demo.update_call(
                n,
                who,
                u128::from(n) * 1_000,
                n.is_multiple_of(2),
                &format!("note {n}"),
            ),
            Kind::Tag => {
                let key = B256::left_padding_from(&n.to_be_bytes());
                self.demo.tag_call(key, &["red", "green"], &n.to_be_bytes())
            }
        }
    }

    async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut send_tick = tokio::time::interval(Duration::from_secs_f64(1.0 / self.args.tx_per_second));
        send_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let reorg_period = Duration::from_secs(self.args.reorg_every.unwrap_or(u64::MAX / 4).max(1));
        let mut reorg_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + reorg_period, reorg_period);
        reorg_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut report_tick = tokio::time::interval(Duration::from_secs(10));
        report_tick.tick().await;
        let mut in_flight: JoinSet<Result<(), TrafficError>> = JoinSet::new();
        let mut consecutive_failures = 0u32;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(done) = in_flight.join_next() => self.account(done),
                _ = send_tick.tick() => {
                    while in_flight.len() >= MAX_IN_FLIGHT {
                        if let Some(done) = in_flight.join_next().await {
                            self.account(done);
                        }
                    }
                    let call = self.next_call();
                    match self.demo.submit(&call).await {
                        Ok(hash) => {
                            consecutive_failures = 0;
                            self.sent += 1;
                            let demo = self.demo.clone();
                            in_flight.spawn(async move { demo.wait(hash, call.what).await.map(|_| ()) });
                        }
                        Err(e) => {
                            self.failed += 1;
                            consecutive_failures += 1;
                            tracing::warn!(call = call.what, error = %e, "send failed");
                            if consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
                                anyhow::bail!("{consecutive_failures} sends failed in a row; giving up");
                            }
                        }
                    }
                }
                _ = reorg_tick.tick(), if self.args.reorg_every.is_some() => {
                    let depth = self.rng.random_range(1..=self.args.reorg_max_depth);
                    match self.demo.reorg(depth).await {
                        Ok(()) => {
                            self.reorgs += 1;
                            tracing::info!(depth, "reorg provoked");
                        }
                        Err(e) => tracing::warn!(depth, error = %e, "reorg failed"),
                    }
                }
                _ = report_tick.tick() => self.report("progress"),
            }
        }
        // Bounded drain: receipts of transactions already sent (a reorg drops some for good).
        let drain = async {
            while let Some(done) = in_flight.join_next().await {
                self.account(done);
            }
        };
        if tokio::time::timeout(Duration::from_secs(2), drain).await.is_err() {
            tracing::warn!("some receipts did not arrive before shutdown");
        }
        self.report("stopped");
        Ok(())
    }

    fn account(&mut self, done: Result<Result<(), TrafficError>, tokio::task::JoinError>) {
        match done {
            Ok(Ok(())) => self.mined += 1,
            Ok(Err(e)) => {
                self.failed += 1;
                // Reorgs drop transactions: their receipts never come. Expected, not fatal.
                tracing::debug!(error = %e, "transaction not confirmed");
            }
            Err(e) => {
                self.failed += 1;
                tracing::warn!(error = %e, "receipt task failed");
            }
        }
    }

    fn report(&self, msg: &'static str) {
        tracing::info!(
            sent = self.sent,
            mined = self.mined,
            failed = self.failed,
            reorgs = self.reorgs,
            "{msg}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_rejects() {
        let m: Mix = "transfer=5, burst=2,tag=0".parse().expect("mix");
        assert_eq!(m.0, vec![(Kind::Transfer, 5), (Kind::Burst, 2)]);
        assert!("nope=1".parse::<Mix>().is_err());
        assert!("transfer=0".parse::<Mix>().is_err());
        assert!("transfer".parse::<Mix>().is_err());
        let mut rng = StdRng::seed_from_u64(1);
        let picks: Vec<Kind> = (0..100).map(|_| m.pick(&mut rng)).collect();
        assert!(picks.contains(&Kind::Transfer) && picks.contains(&Kind::Burst));
    }

    #[test]
    fn cli_accepts_flags_with_and_without_the_run_subcommand() {
        let a = Cli::try_parse_from(["t", "--rpc-url", "http://x", "--deploy", "--tx-per-second", "5"])
            .expect("flags");
        assert!(a.run.deploy && a.command.is_none());
        let b =
            Cli::try_parse_from(["t", "--rpc-url", "http://x", "run", "--deploy-if-missing"]).expect("run");
        assert!(matches!(b.command, Some(Command::Run(r)) if r.deploy_if_missing));
        assert!(Cli::try_parse_from(["t", "--token", "0x5FbDB2315678afecb367f032d93F642f64180aa3"]).is_err());
    }

    #[test]
    fn webhook_sim_flags() {
        let cli = Cli::try_parse_from([
            "t",
            "--rpc-url",
            "http://x:8545",
            "webhook-sim",
            "--endpoint",
            "http://127.0.0.1:4001/v1/webhooks/alchemy/31337",
            "--provider",
            "alchemy",
            "--secret",
            "s",
            "--address",
            "0x5FbDB2315678afecb367f032d93F642f64180aa3",
            "--address",
            "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
            "--shuffle-window",
            "10",
            "--duplicate",
            "0.5",
            "--drop",
            "0.1",
            "--down-after-blocks",
            "5",
            "--down-secs",
            "3",
            "--until-block",
            "40",
        ])
        .expect("flags");
        let Some(Command::WebhookSim(args)) = cli.command else { panic!("not webhook-sim") };
        let opts = args.options(&cli.rpc_url);
        assert_eq!(opts.format, WebhookFormat::Alchemy);
        assert_eq!(opts.addresses.len(), 2);
        assert_eq!((opts.shuffle_window, opts.until_block), (10, Some(40)));
        assert_eq!((opts.down_after_blocks, opts.down_for), (Some(5), Duration::from_secs(3)));
        assert_eq!((opts.max_attempts, opts.concurrency, opts.poll), (20, 4, Duration::from_millis(100)));
        let base = ["t", "webhook-sim", "--endpoint", "http://e", "--secret", "s", "--provider"];
        assert!(Cli::try_parse_from(base.iter().copied().chain(["svix"])).is_err());
        let down_without_secs = base.iter().copied().chain(["standard", "--down-after-blocks", "3"]);
        assert!(Cli::try_parse_from(down_without_secs).is_err());
    }
}
