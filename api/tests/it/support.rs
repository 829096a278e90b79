//! Helpers: the API in-process on an ephemeral port, the real binary as a child process,
//! polling. Built so that a test with a real indexer only has to point both at one
//! database: `TestApi::start(fast_config(&db.url))` or `ApiProcess::spawn(&db.url, ...)`.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tidemark_api::AppState;
use tidemark_api::clock::Clock;
use tidemark_db_client::{DbClient, DbClientConfig};
use tidemark_shared_types::SchemaName;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// The instance schema every test serves.
pub(crate) const SCHEMA: &str = "tidemark_demo";

pub(crate) fn schema() -> SchemaName {
    SchemaName::new(SCHEMA).expect("valid")
}

/// Client settings for [`SCHEMA`] with intervals short enough for tests.
pub(crate) fn fast_config(url: &str) -> DbClientConfig {
    fast_config_for(url, SCHEMA)
}

/// Client settings for `schema` with intervals short enough for tests.
pub(crate) fn fast_config_for(url: &str, schema: &str) -> DbClientConfig {
    let mut c = DbClientConfig::new(url, schema);
    c.config_refresh = Duration::from_millis(200);
    c.config_refresh_while_missing = Duration::from_millis(100);
    c.status_refresh = Duration::from_millis(100);
    c.retry_max = Duration::from_millis(200);
    c.unreachable_after = Duration::from_secs(1);
    c.pool.connect_timeout = Duration::from_secs(1);
    c.pool.checkout_timeout = Duration::from_secs(1);
    c
}

/// A response: status, headers, JSON body (`Value::Null` when not JSON).
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn get(http: &reqwest::Client, url: String) -> Reply {
    let resp = http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_else(|e| panic!("body of {url}: {e}"));
    Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

/// The API served in-process on 127.0.0.1 (ephemeral port) until dropped.
pub(crate) struct TestApi {
    pub(crate) base: String,
    pub(crate) db: DbClient,
    pub(crate) http: reqwest::Client,
    shutdown: CancellationToken,
}

impl TestApi {
    pub(crate) async fn start(config: DbClientConfig) -> Self {
        Self::start_with_clock(config, Clock::default()).await
    }

    /// As [`TestApi::start`], with the handlers' "now" read from `clock`.
    pub(crate) async fn start_with_clock(config: DbClientConfig, clock: Clock) -> Self {
        Self::start_with(config, clock, tidemark_api::settings::HttpSettings::default()).await
    }

    /// As [`TestApi::start`], with the limits `http`.
    pub(crate) async fn start_with_http(
        config: DbClientConfig,
        http: tidemark_api::settings::HttpSettings,
    ) -> Self {
        Self::start_with(config, Clock::default(), http).await
    }

    async fn start_with(
        config: DbClientConfig,
        clock: Clock,
        http: tidemark_api::settings::HttpSettings,
    ) -> Self {
        let db = DbClient::new(config).expect("client");
        tidemark_db_client::tls::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        tokio::spawn(tidemark_api::run(
            listener,
            AppState::with_http(db.clone(), http).with_clock(clock),
            shutdown.clone(),
        ));
        Self { base, db, http: reqwest::Client::new(), shutdown }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        get(&self.http, format!("{}{path}", self.base)).await
    }

    /// The health reasons (empty when healthy).
    pub(crate) async fn reasons(&self) -> Vec<String> {
        let r = self.get("/health").await;
        r.body["reasons"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The real `tidemark-api` binary, listening on an ephemeral port, logging JSON to a
/// buffer. Killed when dropped.
pub(crate) struct ApiProcess {
    pub(crate) base: String,
    child: Child,
    log: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl ApiProcess {
    /// Starts the binary serving [`SCHEMA`] of `database_url` with `args` added, and waits
    /// until it listens.
    pub(crate) async fn spawn(database_url: &str, args: &[&str]) -> Self {
        Self::spawn_for(database_url, SCHEMA, args).await
    }

    /// Starts the binary with `DATABASE_URL` and `TIDEMARK_SCHEMA` set and `args` added,
    /// and waits until it listens.
    pub(crate) async fn spawn_for(database_url: &str, schema: &str, args: &[&str]) -> Self {
        Self::spawn_env(&[("DATABASE_URL", database_url), ("TIDEMARK_SCHEMA", schema)], args).await
    }

    /// Starts the binary with exactly `env` and `args` added, and waits until it listens.
    pub(crate) async fn spawn_env(env: &[(&str, &str)], args: &[&str]) -> Self {
        let (mut child, log, addr) =
            spawn_raw(env, &[&["--listen", "127.0.0.1:0", "--log-format", "json"], args].concat());
        let addr = tokio::select! {
            addr = addr => addr.unwrap_or_else(|_| panic!("the API exited before listening: {}", log_text(&log))),
            status = child.wait() => panic!("the API exited with {status:?}: {}", log_text(&log)),
            () = tokio::time::sleep(Duration::from_secs(20)) => panic!("the API did not listen within 20 s"),
        };
        tidemark_db_client::tls::install_crypto_provider();
        Self { base: format!("http://{addr}"), child, log, http: reqwest::Client::new() }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        get(&self.http, format!("{}{path}", self.base)).await
    }

    /// Everything logged so far.
    pub(crate) fn logs(&self) -> String {
        log_text(&self.log)
    }

    /// The exit code, waiting at most `timeout`; `None` while still running.
    pub(crate) async fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let status = tokio::time::timeout(timeout, self.child.wait()).await.ok()?;
        Some(status.expect("wait").code().unwrap_or(-1))
    }

    /// Whether the process is still running.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }
}

fn log_text(log: &Mutex<String>) -> String {
    log.lock().map(|l| l.clone()).unwrap_or_default()
}

/// Starts the binary with exactly `env` (the test's own `DATABASE_URL` etc. removed) and
/// `args`; returns the child, its log and the address it reports listening on.
pub(crate) fn spawn_raw(
    env: &[(&str, &str)],
    args: &[&str],
) -> (Child, Arc<Mutex<String>>, oneshot::Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark-api"));
    for var in [
        "DATABASE_URL",
        "TIDEMARK_SCHEMA",
        "TIDEMARK_API_LISTEN",
        "TIDEMARK_LOG_FORMAT",
        "TIDEMARK_CONFIG_REFRESH_MS",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied()).args(args).env("RUST_LOG", "info");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn tidemark-api");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = oneshot::channel();
    let sink = log.clone();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "listening"
                && let (Some(addr), Some(tx)) = (v["addr"].as_str(), tx.take())
            {
                let _ = tx.send(addr.to_owned());
            }
            if let Ok(mut l) = sink.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
    (child, log, rx)
}
