//! The stack every test builds: a fresh database, an anvil with the demo contracts, and
//! the real `tidemark-indexer` binary.

use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::Address;
use serde_json::Value;
use tidemark_testkit::{
    Anvil, ChainSpec, ContractSpec, IndexerConfigBuilder, InstanceDb, Process, StoredEvent, TestDb,
    canonical_logs, eventually,
};
use tidemark_traffic::{Demo, REGISTRY_ABI, REGISTRY_EVENT_NAMES, TOKEN_ABI, TOKEN_EVENTS};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_tidemark-indexer");

/// Instance schema of every test (each test has its own database).
pub(crate) const SCHEMA: &str = "tidemark_it";

/// Generous deadline for anything the indexer should do in a second or two.
pub(crate) const SOON: Duration = Duration::from_secs(30);

/// A database, a chain with the demo contracts, and a directory for configs and logs.
pub(crate) struct Stack {
    pub(crate) demo: Demo,
    pub(crate) anvil: Anvil,
    pub(crate) db: TestDb,
    pub(crate) dir: tidemark_testkit::TempDir,
    pub(crate) chain_id: u64,
    configs: std::sync::atomic::AtomicU32,
}

impl Stack {
    /// A default anvil (chain id 31337).
    pub(crate) async fn new() -> Self {
        Self::with_anvil_args(&[]).await
    }

    /// An anvil started with `args`.
    pub(crate) async fn with_anvil_args(args: &[&str]) -> Self {
        let (db, anvil) = tokio::join!(TestDb::new(), Anvil::spawn_with(args));
        let demo = Demo::deploy(anvil.url()).await.expect("deploying the demo contracts");
        let chain_id = demo.chain_id().await.expect("eth_chainId");
        let dir = tidemark_testkit::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join("Token.abi.json"), TOKEN_ABI).expect("writing Token.abi.json");
        std::fs::write(dir.path().join("Registry.abi.json"), REGISTRY_ABI)
            .expect("writing Registry.abi.json");
        Self { demo, anvil, db, dir, chain_id, configs: Default::default() }
    }

    /// Both demo contracts with every event, from block 0.
    pub(crate) fn contracts(&self) -> Vec<ContractSpec> {
        demo_contracts(&self.demo)
    }

    /// The chain entry for this stack's anvil.
    pub(crate) fn chain_spec(&self) -> ChainSpec {
        let mut spec = ChainSpec::new(self.chain_id, self.anvil.url());
        spec.contracts = self.contracts();
        spec
    }

    /// A config for this stack's database and chain.
    pub(crate) fn config(&self) -> IndexerConfigBuilder {
        IndexerConfigBuilder::new(SCHEMA, self.db.url.clone()).chain(self.chain_spec())
    }

    /// Writes `config` to a new file of the stack's directory.
    pub(crate) fn write_config(&self, config: &IndexerConfigBuilder) -> PathBuf {
        let n = self.configs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        config.write(self.dir.path().join(format!("config-{n}.toml")))
    }

    /// Starts `tidemark-indexer --config <config>` (logs in the stack's directory).
    pub(crate) fn spawn(&self, config: &IndexerConfigBuilder) -> Indexer {
        let path = self.write_config(config);
        let proc = indexer_process(&path, &[]).log_dir(self.dir.path()).spawn();
        Indexer { proc, http: config.http_url() }
    }

    /// Runs a subcommand (`check-config`, `reset --yes`) to completion.
    pub(crate) async fn run_command(&self, config: &IndexerConfigBuilder, args: &[&str]) -> (i32, Process) {
        let path = self.write_config(config);
        let mut proc = indexer_process(&path, args).log_dir(self.dir.path()).spawn();
        let code = proc.exit_code(SOON).await;
        (code, proc)
    }

    /// A connection looking at the instance.
    pub(crate) async fn instance(&self) -> InstanceDb {
        InstanceDb::connect(&self.db.url, SCHEMA).await.expect("connecting to the test database")
    }

    /// Waits until the checkpoint is the chain's head (number and hash).
    pub(crate) async fn wait_synced(&self, db: &mut InstanceDb) {
        wait_synced(db, self.chain_id, self.anvil.url()).await;
    }

    /// Asserts that the stored events of this chain equal `eth_getLogs` up to the checkpoint.
    pub(crate) async fn assert_matches_chain(&self, db: &mut InstanceDb) -> Vec<StoredEvent> {
        assert_matches_chain(db, self.chain_id, self.anvil.url(), &[self.demo.token, self.demo.registry])
            .await
    }
}

/// Token and Registry of `demo`, every event, from block 0: Token's by signature,
/// Registry's through its ABI (`Registry.abi.json` next to the config), as deployments do.
pub(crate) fn demo_contracts(demo: &Demo) -> Vec<ContractSpec> {
    vec![
        ContractSpec::new("Token", format!("{:#x}", demo.token), &TOKEN_EVENTS),
        ContractSpec::with_abi(
            "Registry",
            format!("{:#x}", demo.registry),
            "Registry.abi.json",
            &REGISTRY_EVENT_NAMES,
        ),
    ]
}

/// `tidemark-indexer --config <path> <args>` with plain-text info logs.
pub(crate) fn indexer_process(path: &std::path::Path, args: &[&str]) -> tidemark_testkit::ProcessBuilder {
    Process::builder("indexer", BIN)
        .args([std::ffi::OsStr::new("--config"), path.as_os_str()])
        .args(args)
        .env("RUST_LOG", "info")
        .env("TIDEMARK_LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .env_remove("TIDEMARK_CONFIG")
}

/// A running indexer and its HTTP base URL.
pub(crate) struct Indexer {
    pub(crate) proc: Process,
    pub(crate) http: String,
}

/// An indexer run in-process: only its HTTP base URL.
pub(crate) struct InProcess {
    pub(crate) http: String,
}

impl Indexer {
    /// The HTTP side of an indexer run in this process.
    pub(crate) fn in_process(http: String) -> InProcess {
        InProcess { http }
    }
}

impl InProcess {
    /// `GET path` on its HTTP server: status code and body text.
    pub(crate) async fn get_text(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.http, path).await
    }
}

/// `GET path` on an indexer's HTTP server at `base`: status code and body text.
async fn http_get(base: &str, path: &str) -> Option<(u16, String)> {
    tidemark_db_client::tls::install_crypto_provider();
    let r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

impl Indexer {
    /// `GET path` on the indexer's HTTP server: status code and body text.
    pub(crate) async fn get_text(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.http, path).await
    }

    /// `GET path` as JSON.
    pub(crate) async fn get_json(&self, path: &str) -> Option<(u16, Value)> {
        let (status, text) = self.get_text(path).await?;
        Some((status, serde_json::from_str(&text).ok()?))
    }

    /// The `role` its `/health` reports.
    pub(crate) async fn role(&self) -> Option<String> {
        let (_, body) = self.get_json("/health").await?;
        body.get("role").and_then(Value::as_str).map(str::to_owned)
    }

    /// Waits until `/health` reports `role`.
    pub(crate) async fn wait_role(&self, role: &str, timeout: Duration) {
        eventually(timeout, format!("indexer role {role}"), async || {
            (self.role().await.as_deref() == Some(role)).then_some(())
        })
        .await;
    }

    /// SIGTERM, then the exit code (within `timeout`).
    pub(crate) async fn stop(&mut self, timeout: Duration) -> i32 {
        self.proc.sigterm();
        self.proc.exit_code(timeout).await
    }
}

/// Waits until the checkpoint of `chain_id` is the head of the chain at `rpc_url`.
pub(crate) async fn wait_synced(db: &mut InstanceDb, chain_id: u64, rpc_url: &str) {
    eventually(SOON, format!("chain {chain_id} indexed up to its head"), async || {
        let (number, hash) = tidemark_testkit::head(rpc_url).await.ok()?;
        let cp = db.checkpoint(chain_id).await.ok()??;
        (cp.block_number as u64 == number && cp.block_hash == hash).then_some(())
    })
    .await;
}

/// Asserts that the stored events of `chain_id` equal the chain's logs of `addresses` up
/// to the checkpoint, row for row, and that the checkpoint is canonical. Returns the
/// chain's stored events (by block and log index).
pub(crate) async fn assert_matches_chain(
    db: &mut InstanceDb,
    chain_id: u64,
    rpc_url: &str,
    addresses: &[Address],
) -> Vec<StoredEvent> {
    // One snapshot: a commit landing between two separate reads would look like a torn batch.
    let (checkpoints, events) = db.snapshot().await.expect("reading checkpoints and events");
    let cp = checkpoints.into_iter().find(|c| c.chain_id as u64 == chain_id).expect("a checkpoint");
    let canonical_hash =
        tidemark_testkit::block_hash(rpc_url, cp.block_number as u64).await.expect("block hash");
    assert_eq!(
        Some(cp.block_hash.clone()),
        canonical_hash,
        "checkpoint hash is canonical at {}",
        cp.block_number
    );
    let canonical = canonical_logs(rpc_url, addresses, 0, cp.block_number as u64).await.expect("eth_getLogs");
    let stored: Vec<StoredEvent> = events.into_iter().filter(|e| e.chain_id as u64 == chain_id).collect();
    let rows: Vec<_> = stored.iter().map(StoredEvent::log_row).collect();
    if rows != canonical {
        let first = rows.iter().zip(&canonical).position(|(a, b)| a != b);
        panic!(
            "chain {chain_id}: {} stored events vs {} canonical logs up to block {}; first difference at {first:?}: stored {:?} vs canonical {:?}",
            rows.len(),
            canonical.len(),
            cp.block_number,
            first.and_then(|i| rows.get(i)),
            first.and_then(|i| canonical.get(i)),
        );
    }
    stored
}

/// Sends `blocks` transactions (one block each) with a varied mix of events, mostly
/// `Burst`s of `burst` events; returns the number of events emitted.
pub(crate) async fn traffic(demo: &Demo, blocks: u64, burst: u64) -> u64 {
    demo.mixed(blocks, |_| burst).await.expect("sending traffic")
}
