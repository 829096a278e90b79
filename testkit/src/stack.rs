//! [`Stack`]: what the indexer and reliability suites build for a test: a database (a
//! fresh one on the shared server, or one on a private cluster the test may stop), an
//! anvil with the demo contracts, a directory for configs and logs, and the real binaries
//! (indexer, API, traffic generator) started on them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use tidemark_db_client::test_utils::{PrivatePg, TestDb, eventually};
use tidemark_traffic::{Demo, REGISTRY_ABI, REGISTRY_EVENT_NAMES, TOKEN_ABI, TOKEN_EVENTS};

use crate::compare::{Comparison, assert_matches_chain, compare_with_chain};
use crate::services::{Api, Indexer, api_process, indexer_process};
use crate::{
    Anvil, ChainSpec, ContractSpec, IndexerConfigBuilder, InstanceDb, Process, StoredEvent, TempDir,
};

/// Deadline for what should take a second or two (generous: two busy cores).
pub const SOON: Duration = Duration::from_secs(45);

/// Where the instance's data lives.
#[derive(Debug)]
pub enum Database {
    /// A fresh database on the shared server (`DATABASE_URL`), dropped with the stack.
    Shared(TestDb),
    /// A database on a private cluster the test controls.
    Private(PrivatePg),
}

/// A database, a chain with the demo contracts, and a directory for configs and logs.
pub struct Stack {
    /// The demo contracts, on [`Stack::anvil`].
    pub demo: Demo,
    /// The chain.
    pub anvil: Anvil,
    /// The database.
    pub db: Database,
    /// URL of the database.
    pub db_url: String,
    /// Configs, ABI files and logs.
    pub dir: TempDir,
    /// The chain's id.
    pub chain_id: u64,
    /// The instance schema of [`Stack::config`].
    pub schema: String,
    files: AtomicU32,
}

impl Stack {
    /// A fresh database on the shared server and a default anvil (chain 31337).
    pub async fn shared(schema: &str) -> Self {
        let (db, anvil) = tokio::join!(TestDb::new(), Anvil::spawn());
        let url = db.url.clone();
        Self::build(Database::Shared(db), url, anvil, schema).await
    }

    /// A private cluster (which the test may stop and start) and a default anvil.
    pub async fn private(schema: &str) -> Self {
        let (pg, anvil) = tokio::join!(PrivatePg::start(), Anvil::spawn());
        let url = pg.create_database("stack").await;
        Self::build(Database::Private(pg), url, anvil, schema).await
    }

    async fn build(db: Database, db_url: String, anvil: Anvil, schema: &str) -> Self {
        let demo = Demo::deploy(anvil.url()).await.expect("deploying the demo contracts");
        let chain_id = demo.chain_id().await.expect("eth_chainId");
        let dir = crate::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join("Token.abi.json"), TOKEN_ABI).expect("writing Token.abi.json");
        std::fs::write(dir.path().join("Registry.abi.json"), REGISTRY_ABI)
            .expect("writing Registry.abi.json");
        Self { demo, anvil, db, db_url, dir, chain_id, schema: schema.to_owned(), files: AtomicU32::new(0) }
    }

    /// The private cluster.
    ///
    /// # Panics
    /// When the stack uses the shared server.
    pub fn pg(&mut self) -> &mut PrivatePg {
        match &mut self.db {
            Database::Private(pg) => pg,
            Database::Shared(_) => panic!("this stack uses the shared server"),
        }
    }

    /// Both demo contracts with every event, from block 0 ([`demo_contracts`]).
    pub fn contracts(&self) -> Vec<ContractSpec> {
        demo_contracts(&self.demo)
    }

    /// The demo contracts' addresses.
    pub fn addresses(&self) -> [Address; 2] {
        [self.demo.token, self.demo.registry]
    }

    /// The chain entry for this stack's anvil.
    pub fn chain_spec(&self) -> ChainSpec {
        let mut spec = ChainSpec::new(self.chain_id, self.anvil.url());
        spec.contracts = self.contracts();
        spec
    }

    /// A config for this stack's database, schema and chain (HTTP on a free port).
    pub fn config(&self) -> IndexerConfigBuilder {
        IndexerConfigBuilder::new(self.schema.clone(), self.db_url.clone()).chain(self.chain_spec())
    }

    /// A new file name in the stack's directory.
    pub fn file(&self, name: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("{n:03}-{name}"))
    }

    /// Writes `config` to a new file.
    pub fn write_config(&self, config: &IndexerConfigBuilder) -> PathBuf {
        config.write(self.file("config.toml"))
    }

    /// Starts `tidemark-indexer --config <config>` (logs in the stack's directory).
    pub fn spawn(&self, config: &IndexerConfigBuilder) -> Indexer {
        self.spawn_env(config, &[])
    }

    /// Starts the indexer with extra environment variables.
    pub fn spawn_env(&self, config: &IndexerConfigBuilder, env: &[(&str, &str)]) -> Indexer {
        let path = self.write_config(config);
        let mut b = indexer_process(&path, &[]).log_dir(self.dir.path());
        for (k, v) in env {
            b = b.env(k, v);
        }
        Indexer { proc: b.spawn(), http: config.http_url() }
    }

    /// Runs an indexer subcommand (`check-config`, `reset --yes`) to completion.
    pub async fn run_command(&self, config: &IndexerConfigBuilder, args: &[&str]) -> (i32, Process) {
        self.run_command_env(config, args, &[]).await
    }

    /// Runs an indexer subcommand with extra environment variables.
    pub async fn run_command_env(
        &self,
        config: &IndexerConfigBuilder,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (i32, Process) {
        let path = self.write_config(config);
        let mut b = indexer_process(&path, args).log_dir(self.dir.path());
        for (k, v) in env {
            b = b.env(k, v);
        }
        let mut proc = b.spawn();
        let code = proc.exit_code(SOON).await;
        (code, proc)
    }

    /// Starts `tidemark-api` on a free port for this stack's database and schema.
    pub fn spawn_api(&self, extra: &[&str]) -> Api {
        self.spawn_api_as(&self.db_url, &self.schema, extra)
    }

    /// Starts `tidemark-api` on a free port for `database_url` (e.g. another role) and
    /// `schema`.
    pub fn spawn_api_as(&self, database_url: &str, schema: &str, extra: &[&str]) -> Api {
        self.spawn_api_env(schema, &[("DATABASE_URL", database_url)], extra)
    }

    /// Starts `tidemark-api` on a free port for `schema`, with `env` added to its
    /// environment (`DATABASE_URL` among them; `RUST_LOG` to change the default `info`).
    pub fn spawn_api_env(&self, schema: &str, env: &[(&str, &str)], extra: &[&str]) -> Api {
        let (mut b, http) = api_process(schema, extra);
        b = b.log_dir(self.dir.path());
        for (k, v) in env {
            b = b.env(k, v);
        }
        Api { proc: b.spawn(), http }
    }

    /// Starts `tidemark-traffic run` on this stack's chain and demo contracts, with `args`
    /// added (`--tx-per-second`, `--mix`, `--burst-size`, `--seed`, ...); logs in the
    /// stack's directory. SIGTERM stops it (exit 0).
    pub fn spawn_traffic(&self, args: &[&str]) -> Process {
        let (token, registry) = (format!("{:#x}", self.demo.token), format!("{:#x}", self.demo.registry));
        Process::builder("traffic", crate::bins::traffic())
            .args(["--rpc-url", self.anvil.url(), "run", "--token", &token, "--registry", &registry])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("RPC_URL")
            .log_dir(self.dir.path())
            .spawn()
    }

    /// A connection looking at the instance.
    pub async fn instance(&self) -> InstanceDb {
        InstanceDb::connect(&self.db_url, &self.schema).await.expect("connecting to the test database")
    }

    /// Waits until the checkpoint is the chain's head (number and hash); returns how long
    /// that took.
    pub async fn wait_synced(&self, db: &mut InstanceDb, timeout: Duration) -> Duration {
        wait_synced(db, self.chain_id, self.anvil.url(), timeout).await
    }

    /// Asserts that the stored events equal the chain's logs up to the checkpoint
    /// ([`assert_matches_chain`]); returns them.
    pub async fn assert_matches_chain(&self, db: &mut InstanceDb) -> Vec<StoredEvent> {
        assert_matches_chain(db, self.chain_id, self.anvil.url(), &self.addresses()).await
    }

    /// Stored events against the chain, up to the checkpoint, counted.
    pub async fn compare(&self, db: &mut InstanceDb) -> Comparison {
        compare_with_chain(db, self.chain_id, self.anvil.url(), &self.addresses())
            .await
            .unwrap_or_else(|e| panic!("comparing with the chain: {e}"))
    }
}

/// Token and Registry of `demo`, every event, from block 0: Token's by signature,
/// Registry's through its ABI (`Registry.abi.json` next to the config), as deployments do.
pub fn demo_contracts(demo: &Demo) -> Vec<ContractSpec> {
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

/// Waits until the checkpoint of `chain_id` is the head (number and hash) of the chain at
/// `rpc_url`; returns how long that took.
///
/// # Panics
/// When `timeout` passes first.
pub async fn wait_synced(db: &mut InstanceDb, chain_id: u64, rpc_url: &str, timeout: Duration) -> Duration {
    let started = Instant::now();
    eventually(timeout, format!("chain {chain_id} indexed up to its head"), async || {
        let (number, hash) = crate::head(rpc_url).await.ok()?;
        let cp = db.checkpoint(chain_id).await.ok()??;
        (cp.block_number as u64 == number && cp.block_hash == hash).then_some(())
    })
    .await;
    started.elapsed()
}
