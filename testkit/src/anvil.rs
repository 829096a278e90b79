//! anvil chains for tests: one per test, on a free port, killed on drop.

use std::io::{Read, Seek};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::free_port;

/// A running anvil. Automine unless started with `--block-time`.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    port: u16,
    url: String,
}

/// Where anvil is: `ANVIL_BIN`, else `anvil` on `PATH`, else the copy that
/// `deploy/lib/common.sh` installs under `.local/tools`.
fn anvil_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ANVIL_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "ANVIL_BIN={} does not exist (`source deploy/lib/common.sh && ensure_anvil` installs anvil)",
            bin.display()
        );
        return bin;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("anvil");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.local/tools/node_modules/.bin/anvil");
    if local.is_file() {
        return local;
    }
    panic!(
        "anvil is not installed: set ANVIL_BIN or put anvil on PATH \
         (`source deploy/lib/common.sh && ensure_anvil` installs it); these tests need a real anvil"
    )
}

impl Anvil {
    /// Starts anvil with its defaults (chain id 31337, automine).
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Starts anvil with extra arguments (e.g. `["--chain-id", "31338"]`, `["--block-time", "1"]`)
    /// and waits until it answers `eth_chainId`.
    ///
    /// # Panics
    /// When anvil is missing or does not come up.
    pub async fn spawn_with(args: &[&str]) -> Self {
        let bin = anvil_binary();
        tidemark_db_client::tls::install_crypto_provider();
        let client = reqwest::Client::new();
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut err_file =
                tempfile::tempfile().unwrap_or_else(|e| panic!("cannot create a temporary file: {e}"));
            let stderr = err_file.try_clone().unwrap_or_else(|e| panic!("cannot clone a file handle: {e}"));
            let child = Command::new(&bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent"])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start anvil ({}): {e}", bin.display()));
            let url = format!("http://127.0.0.1:{port}");
            // Owned by an `Anvil` at once: if this future is dropped (another fixture of the
            // test failed first), the process is still killed.
            let mut anvil = Self { child, port, url: url.clone() };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(status)) = anvil.child.try_wait() {
                    let mut text = String::new();
                    let _ = err_file.rewind();
                    let _ = err_file.read_to_string(&mut text);
                    last_err = format!("anvil exited with {status}: {text}");
                    break;
                }
                let answered = client
                    .post(&url)
                    .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if answered {
                    return anvil;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            drop(anvil);
            if last_err.is_empty() {
                last_err = format!("anvil did not answer on {url} within 20 s");
            }
        }
        panic!("cannot start anvil ({}): {last_err}", bin.display())
    }

    /// The JSON-RPC URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The port anvil listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The OS process id (e.g. to freeze it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
