//! The real `tidemark-indexer` and `tidemark-api` as child processes ([`Indexer`],
//! [`Api`]), and their HTTP side as an outside observer sees it.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tidemark_db_client::test_utils::{eventually, free_port};

use crate::{Process, ProcessBuilder, bins};

/// `tidemark-indexer --config <path> <args>` with plain-text info logs.
pub fn indexer_process(path: &Path, args: &[&str]) -> ProcessBuilder {
    Process::builder("indexer", bins::indexer())
        .args([std::ffi::OsStr::new("--config"), path.as_os_str()])
        .args(args)
        .env("RUST_LOG", "info")
        .env("TIDEMARK_LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .env_remove("TIDEMARK_CONFIG")
}

/// `tidemark-api --schema <schema> <extra>` on a free port with plain-text info logs and
/// none of its settings from the environment, and its base URL.
pub(crate) fn api_process(schema: &str, extra: &[&str]) -> (ProcessBuilder, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let b = Process::builder("api", bins::api())
        .args(["--schema", schema, "--listen", &listen])
        .args(extra)
        .env("RUST_LOG", "info")
        .env("TIDEMARK_LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .env_remove("DATABASE_URL")
        .env_remove("TIDEMARK_SCHEMA")
        .env_remove("TIDEMARK_API_LISTEN")
        .env_remove("TIDEMARK_CONFIG_REFRESH_MS");
    (b, format!("http://{listen}"))
}

/// `GET url`: status and body text.
pub async fn get_text(url: &str) -> Option<(u16, String)> {
    tidemark_db_client::tls::install_crypto_provider();
    let r = reqwest::Client::new().get(url).timeout(Duration::from_secs(5)).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

/// `GET url`: status and JSON body (`Value::Null` when the body is not JSON).
pub async fn get_json(url: &str) -> Option<(u16, Value)> {
    let (status, text) = get_text(url).await?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A `/health` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthView {
    /// HTTP status.
    pub code: u16,
    /// `reasons`.
    pub reasons: Vec<String>,
    /// `warnings`.
    pub warnings: Vec<String>,
    /// `role` (the indexer's).
    pub role: Option<String>,
}

async fn health_of(base: &str) -> Option<HealthView> {
    let strings = |v: &Value, key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let (code, body) = get_json(&format!("{base}/health")).await?;
    Some(HealthView {
        code,
        reasons: strings(&body, "reasons"),
        warnings: strings(&body, "warnings"),
        role: body.get("role").and_then(Value::as_str).map(str::to_owned),
    })
}

/// A running indexer and its HTTP base URL.
#[derive(Debug)]
pub struct Indexer {
    /// The process.
    pub proc: Process,
    /// Base URL of its HTTP server.
    pub http: String,
}

impl Indexer {
    /// `GET path`: status and body text.
    pub async fn get_text(&self, path: &str) -> Option<(u16, String)> {
        get_text(&format!("{}{path}", self.http)).await
    }

    /// `GET path`: status and JSON body ([`get_json`]).
    pub async fn get_json(&self, path: &str) -> Option<(u16, Value)> {
        get_json(&format!("{}{path}", self.http)).await
    }

    /// Its `/health`.
    pub async fn health(&self) -> Option<HealthView> {
        health_of(&self.http).await
    }

    /// The `role` its `/health` reports.
    pub async fn role(&self) -> Option<String> {
        self.health().await?.role
    }

    /// Waits until `/health` reports `role`.
    ///
    /// # Panics
    /// When `timeout` passes first.
    pub async fn wait_role(&self, role: &str, timeout: Duration) {
        eventually(timeout, format!("indexer role {role}"), async || {
            self.role().await.as_deref() == Some(role)
        })
        .await;
    }

    /// The state of sink `name` in its `/status` (`None` while it has none).
    pub async fn sink_status(&self, name: &str) -> Option<Value> {
        let (code, body) = self.get_json("/status").await?;
        (code == 200).then(|| body["sinks"][name].clone()).filter(|s| !s.is_null())
    }

    /// Waits until sink `name` is caught up at or beyond `head`, the journal's head cursor
    /// (read by `head` at each poll).
    ///
    /// # Panics
    /// When `timeout` passes first.
    pub async fn wait_sink_caught_up(
        &self,
        name: &str,
        timeout: Duration,
        mut head: impl AsyncFnMut() -> Option<i64>,
    ) {
        eventually(timeout, format!("sink {name} caught up"), async || {
            let head = head().await?;
            let s = self.sink_status(name).await?;
            let cursor: i64 = s["cursor"].as_str()?.parse().ok()?;
            (s["state"] == "caught-up" && cursor >= head).then_some(())
        })
        .await;
    }

    /// SIGTERM, then the exit code (within `timeout`).
    pub async fn stop(&mut self, timeout: Duration) -> i32 {
        self.proc.sigterm();
        self.proc.exit_code(timeout).await
    }
}

/// A running API and its base URL.
#[derive(Debug)]
pub struct Api {
    /// The process.
    pub proc: Process,
    /// Its base URL.
    pub http: String,
}

impl Api {
    /// Its `/health`.
    pub async fn health(&self) -> Option<HealthView> {
        health_of(&self.http).await
    }

    /// `GET path`: status and JSON body ([`get_json`]).
    pub async fn get(&self, path: &str) -> Option<(u16, Value)> {
        get_json(&format!("{}{path}", self.http)).await
    }

    /// Waits until `/health` is 200; returns how long that took.
    ///
    /// # Panics
    /// When `timeout` passes first.
    pub async fn wait_healthy(&self, timeout: Duration) -> Duration {
        let started = std::time::Instant::now();
        eventually(timeout, "the API healthy", async || self.health().await.is_some_and(|h| h.code == 200))
            .await;
        started.elapsed()
    }
}
