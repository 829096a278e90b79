//! What every scenario builds: a database (a fresh one on the shared server, or one on a
//! private cluster the scenario may stop), an anvil with the demo contracts, the real
//! binaries, and ways to look at all of them from the outside.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use rand::Rng;
use serde_json::Value;
use tidemark_reliability::compare::{self, Comparison};
use tidemark_reliability::{PrivatePg, bins};
use tidemark_testkit::{
    Anvil, ChainSpec, ContractSpec, IndexerConfigBuilder, InstanceDb, Process, ProcessBuilder, TestDb,
    free_port,
};
use tidemark_traffic::{Demo, REGISTRY_ABI, REGISTRY_EVENT_NAMES, TOKEN_ABI, TOKEN_EVENTS};

/// Deadline for what should take a second or two (generous: two busy cores).
pub(crate) const SOON: Duration = Duration::from_secs(45);

/// Where the instance's data lives.
pub(crate) enum Database {
    /// A fresh database on the shared server (`DATABASE_URL`), dropped at the end.
    Shared {
        /// Kept for its drop, which drops the database.
        _db: TestDb,
    },
    /// A database on a private cluster the scenario controls.
    Private(PrivatePg),
}

/// A database, a chain with the demo contracts, and a directory for configs and logs.
pub(crate) struct Stack {
    pub(crate) demo: Demo,
    pub(crate) anvil: Anvil,
    pub(crate) db: Database,
    pub(crate) db_url: String,
    pub(crate) dir: tidemark_testkit::TempDir,
    pub(crate) chain_id: u64,
    pub(crate) schema: String,
    files: AtomicU32,
}

impl Stack {
    /// A fresh database on the shared server and a default anvil (chain 31337).
    pub(crate) async fn shared(schema: &str) -> Self {
        let (db, anvil) = tokio::join!(TestDb::new(), Anvil::spawn());
        let url = db.url.clone();
        Self::build(Database::Shared { _db: db }, url, anvil, schema).await
    }

    /// A private cluster (which the scenario may stop and start) and a default anvil.
    pub(crate) async fn private(schema: &str) -> Self {
        let (pg, anvil) = tokio::join!(PrivatePg::start(), Anvil::spawn());
        let url = pg.create_database("reliability").await;
        Self::build(Database::Private(pg), url, anvil, schema).await
    }

    /// A private cluster with a first stretch of chain indexed, and both services up: the
    /// indexer (the writer) synced to the head, the API healthy.
    pub(crate) async fn private_with_services(schema: &str) -> (Self, Indexer, Api) {
        let stack = Self::private(schema).await;
        traffic(&stack.demo, 10, 4).await;
        let indexer = stack.spawn_indexer(&stack.config());
        let api = stack.spawn_api(&[]);
        {
            let mut db = stack.instance().await;
            stack.wait_synced(&mut db, SOON).await;
        }
        api.wait_healthy(SOON).await;
        indexer.wait_role("writer", SOON).await;
        (stack, indexer, api)
    }

    async fn build(db: Database, db_url: String, anvil: Anvil, schema: &str) -> Self {
        let demo = Demo::deploy(anvil.url()).await.expect("deploying the demo contracts");
        let chain_id = demo.chain_id().await.expect("eth_chainId");
        let dir = tidemark_testkit::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join("Token.abi.json"), TOKEN_ABI).expect("writing Token.abi.json");
        std::fs::write(dir.path().join("Registry.abi.json"), REGISTRY_ABI)
            .expect("writing Registry.abi.json");
        Self { demo, anvil, db, db_url, dir, chain_id, schema: schema.to_owned(), files: AtomicU32::new(0) }
    }

    /// The private cluster.
    ///
    /// # Panics
    /// When the stack uses the shared server.
    pub(crate) fn pg(&mut self) -> &mut PrivatePg {
        match &mut self.db {
            Database::Private(pg) => pg,
            Database::Shared { .. } => panic!("this stack uses the shared server"),
        }
    }

    /// Both demo contracts with every event, from block 0: Token's by signature,
    /// Registry's through its ABI file.
    pub(crate) fn contracts(&self) -> Vec<ContractSpec> {
        vec![
            ContractSpec::new("Token", format!("{:#x}", self.demo.token), &TOKEN_EVENTS),
            ContractSpec::with_abi(
                "Registry",
                format!("{:#x}", self.demo.registry),
                "Registry.abi.json",
                &REGISTRY_EVENT_NAMES,
            ),
        ]
    }

    /// The demo contracts' addresses.
    pub(crate) fn addresses(&self) -> [Address; 2] {
        [self.demo.token, self.demo.registry]
    }

    /// The chain entry for this stack's anvil.
    pub(crate) fn chain_spec(&self) -> ChainSpec {
        let mut spec = ChainSpec::new(self.chain_id, self.anvil.url());
        spec.contracts = self.contracts();
        spec
    }

    /// A config for this stack's database, schema and chain (HTTP on a free port).
    pub(crate) fn config(&self) -> IndexerConfigBuilder {
        let mut cfg =
            IndexerConfigBuilder::new(self.schema.clone(), self.db_url.clone()).chain(self.chain_spec());
        cfg.namespace = "reliability".into();
        cfg
    }

    /// A new file name in the stack's directory.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("{n:03}-{name}"))
    }

    /// Writes `config` to a new file.
    pub(crate) fn write_config(&self, config: &IndexerConfigBuilder) -> PathBuf {
        config.write(self.file("config.toml"))
    }

    /// Starts `tidemark-indexer --config <config>`.
    pub(crate) fn spawn_indexer(&self, config: &IndexerConfigBuilder) -> Indexer {
        self.spawn_indexer_env(config, &[])
    }

    /// Starts the indexer with extra environment variables.
    pub(crate) fn spawn_indexer_env(&self, config: &IndexerConfigBuilder, env: &[(&str, &str)]) -> Indexer {
        let path = self.write_config(config);
        let mut b = indexer_process(&path, &[]).log_dir(self.dir.path());
        for (k, v) in env {
            b = b.env(k, v);
        }
        Indexer { proc: b.spawn(), http: config.http_url() }
    }

    /// Runs an indexer subcommand (`check-config`, `reset --yes`) to completion.
    pub(crate) async fn indexer_command(
        &self,
        config: &IndexerConfigBuilder,
        args: &[&str],
    ) -> (i32, Process) {
        self.indexer_command_env(config, args, &[]).await
    }

    /// Runs an indexer subcommand with extra environment variables.
    pub(crate) async fn indexer_command_env(
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
    pub(crate) fn spawn_api(&self, extra: &[&str]) -> Api {
        self.spawn_api_as(&self.db_url, &self.schema, extra)
    }

    /// Starts `tidemark-api` on a free port for `database_url` (e.g. another role) and
    /// `schema`.
    pub(crate) fn spawn_api_as(&self, database_url: &str, schema: &str, extra: &[&str]) -> Api {
        self.spawn_api_env(schema, &[("DATABASE_URL", database_url)], extra)
    }

    /// Starts `tidemark-api` on a free port for `schema`, with `env` added to its
    /// environment (`DATABASE_URL` among them; `RUST_LOG` to change the default `info`).
    pub(crate) fn spawn_api_env(&self, schema: &str, env: &[(&str, &str)], extra: &[&str]) -> Api {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut b = Process::builder("api", bins::api())
            .args(["--schema", schema, "--listen", &listen])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("TIDEMARK_LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .env_remove("DATABASE_URL")
            .env_remove("TIDEMARK_SCHEMA")
            .env_remove("TIDEMARK_API_LISTEN")
            .env_remove("TIDEMARK_CONFIG_REFRESH_MS")
            .log_dir(self.dir.path());
        for (k, v) in env {
            b = b.env(k, v);
        }
        Api { proc: b.spawn(), http: format!("http://{listen}") }
    }

    /// A connection looking at the instance.
    /// Some traffic, an indexer that became the writer and caught up, and the writer
    /// audit installed on its schema (scenarios 4 and 4b).
    pub(crate) async fn audited_writer(&self) -> (IndexerConfigBuilder, Indexer) {
        traffic(&self.demo, 10, 4).await;
        let cfg = self.config();
        let a = self.spawn_indexer(&cfg);
        a.wait_role("writer", SOON).await;
        let mut db = self.instance().await;
        self.wait_synced(&mut db, SOON).await;
        let mut admin = tidemark_db_client::tls::establish(&self.db_url).await.expect("connect");
        tidemark_reliability::audit::install(&mut admin, &self.schema)
            .await
            .expect("installing the writer audit");
        (cfg, a)
    }

    pub(crate) async fn instance(&self) -> InstanceDb {
        InstanceDb::connect(&self.db_url, &self.schema).await.expect("connecting to the test database")
    }

    /// Waits until the checkpoint is the chain's head (number and hash); returns how long
    /// that took.
    pub(crate) async fn wait_synced(&self, db: &mut InstanceDb, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if let (Ok((number, hash)), Ok(Some(cp))) =
                (tidemark_testkit::head(self.anvil.url()).await, db.checkpoint(self.chain_id).await)
                && cp.block_number as u64 == number
                && cp.block_hash == hash
            {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "chain {} not indexed up to its head within {timeout:?}",
                self.chain_id
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stored events against the chain, up to the checkpoint.
    pub(crate) async fn compare(&self, db: &mut InstanceDb) -> Comparison {
        compare::compare_with_chain(db, self.chain_id, self.anvil.url(), &self.addresses())
            .await
            .unwrap_or_else(|e| panic!("comparing with the chain: {e}"))
    }
}

/// `tidemark-indexer --config <path> <args>` with plain-text info logs.
pub(crate) fn indexer_process(path: &std::path::Path, args: &[&str]) -> ProcessBuilder {
    Process::builder("indexer", bins::indexer())
        .args([std::ffi::OsStr::new("--config"), path.as_os_str()])
        .args(args)
        .env("RUST_LOG", "info")
        .env("TIDEMARK_LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .env_remove("TIDEMARK_CONFIG")
}

/// `GET url`: status and JSON body (`Value::Null` when the body is not JSON).
pub(crate) async fn get_json(url: &str) -> Option<(u16, Value)> {
    tidemark_db_client::tls::install_crypto_provider();
    let r = reqwest::Client::new().get(url).timeout(Duration::from_secs(5)).send().await.ok()?;
    let status = r.status().as_u16();
    let text = r.text().await.ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A `/health` answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HealthView {
    pub(crate) code: u16,
    pub(crate) reasons: Vec<String>,
    pub(crate) warnings: Vec<String>,
    pub(crate) role: Option<String>,
}

async fn health_of(base: &str) -> Option<HealthView> {
    let (code, body) = get_json(&format!("{base}/health")).await?;
    Some(HealthView {
        code,
        reasons: strings(&body, "reasons"),
        warnings: strings(&body, "warnings"),
        role: body.get("role").and_then(Value::as_str).map(str::to_owned),
    })
}

/// A running indexer and its HTTP base URL.
pub(crate) struct Indexer {
    pub(crate) proc: Process,
    pub(crate) http: String,
}

impl Indexer {
    /// Its `/health`.
    pub(crate) async fn health(&self) -> Option<HealthView> {
        health_of(&self.http).await
    }

    /// The `role` its `/health` reports.
    pub(crate) async fn role(&self) -> Option<String> {
        self.health().await?.role
    }

    /// Waits until `/health` reports `role`.
    pub(crate) async fn wait_role(&self, role: &str, timeout: Duration) {
        let started = Instant::now();
        while self.role().await.as_deref() != Some(role) {
            assert!(started.elapsed() < timeout, "indexer role {role} not reached within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then the exit code.
    pub(crate) async fn stop(&mut self) -> i32 {
        self.proc.sigterm();
        self.proc.exit_code(Duration::from_secs(10)).await
    }
}

/// A running API and its base URL.
pub(crate) struct Api {
    pub(crate) proc: Process,
    pub(crate) http: String,
}

impl Api {
    /// Its `/health`.
    pub(crate) async fn health(&self) -> Option<HealthView> {
        health_of(&self.http).await
    }

    /// `GET path` as JSON.
    pub(crate) async fn get(&self, path: &str) -> Option<(u16, Value)> {
        get_json(&format!("{}{path}", self.http)).await
    }

    /// Waits until `/health` is 200.
    pub(crate) async fn wait_healthy(&self, timeout: Duration) -> Duration {
        let started = Instant::now();
        while self.health().await.is_none_or(|h| h.code != 200) {
            assert!(
                started.elapsed() < timeout,
                "API not healthy within {timeout:?}: {:?}",
                self.health().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        started.elapsed()
    }
}

/// Sends `blocks` transactions (one block each) with a varied mix of events, mostly
/// `Burst`s of up to `burst` events; returns the number of events emitted.
pub(crate) async fn traffic(demo: &Demo, blocks: u64, burst: u64) -> u64 {
    demo.mixed(blocks, |i| 1 + i % burst.max(1)).await.expect("sending traffic")
}

/// A background task sending a burst every few tens of milliseconds until stopped.
pub(crate) struct Traffic {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<u64>>,
}

impl Traffic {
    /// Starts sending bursts of 1..=`max_burst` events, pausing `pause_ms` between them.
    pub(crate) fn start(demo: &Demo, max_burst: u64, pause_ms: std::ops::Range<u64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (demo, flag) = (demo.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut sent = 0;
            while !flag.load(Ordering::Relaxed) {
                let (n, pause) = {
                    let mut rng = rand::rng();
                    (rng.random_range(1..=max_burst), rng.random_range(pause_ms.clone()))
                };
                // A failed send (e.g. the node is frozen) is simply not counted.
                if demo.burst(n).await.is_ok() {
                    sent += n;
                }
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            sent
        });
        Self { stop, task: Some(task) }
    }

    /// Stops and returns the number of events sent.
    pub(crate) async fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        match self.task.take() {
            Some(t) => t.await.unwrap_or(0),
            None => 0,
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Freezes a process with SIGSTOP; SIGCONT on [`Frozen::thaw`] or drop.
pub(crate) struct Frozen {
    pid: libc::pid_t,
    thawed: bool,
}

impl Frozen {
    /// SIGSTOP `pid`.
    pub(crate) fn freeze(pid: u32) -> Self {
        let pid = libc::pid_t::try_from(pid).expect("pid");
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is a child of this
        // test (anvil), alive while its handle is.
        let rc = unsafe { libc::kill(pid, libc::SIGSTOP) };
        assert_eq!(rc, 0, "SIGSTOP failed");
        Self { pid, thawed: false }
    }

    /// SIGCONT.
    pub(crate) fn thaw(mut self) {
        self.cont();
    }

    fn cont(&mut self) {
        if !self.thawed {
            // SAFETY: as in `freeze`.
            unsafe {
                libc::kill(self.pid, libc::SIGCONT);
            }
            self.thawed = true;
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.cont();
    }
}

/// Lines of `text` containing `needle`.
pub(crate) fn count_lines(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// Seconds with one decimal.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

/// After a database outage: waits until the chain is indexed again, compares the stored
/// events with it, replays the journal, and records one row saying how both services
/// recovered (`synced_since`: also how long indexing took from that instant).
pub(crate) async fn record_recovery(
    rec: &tidemark_reliability::summary::Recorder,
    stack: &Stack,
    tried: &str,
    (idx_back, api_back): (Option<Duration>, Option<Duration>),
    sent: u64,
    synced_since: Option<Instant>,
) {
    let mut db = stack.instance().await;
    stack.wait_synced(&mut db, Duration::from_secs(60)).await;
    let synced = synced_since.map(|t| format!(", synced {} s", secs(t.elapsed()))).unwrap_or_default();
    let c = stack.compare(&mut db).await;
    let replay = compare::replay_journal(&mut db).await;
    rec.record(
        tried,
        format!(
            "indexer recovered: {}, API recovered: {}; missing {}, duplicated {}; journal replays: {}",
            idx_back.is_some(),
            api_back.is_some(),
            c.missing,
            c.duplicated,
            replay.is_ok()
        ),
        idx_back.is_some() && api_back.is_some() && c.is_exact() && replay.is_ok(),
        format!(
            "recovery: indexer {} s, API {} s{synced}; {sent} events sent meanwhile, {} stored",
            idx_back.map_or("-".into(), secs),
            api_back.map_or("-".into(), secs),
            c.stored
        ),
    );
}
