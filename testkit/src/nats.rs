//! [`NatsServer`]: a private `nats-server` with JetStream on a free port, its data in a
//! temporary directory, restartable on the same port and data (a server restart).

use std::path::PathBuf;
use std::time::Duration;

use crate::process::{Process, free_port};

/// Where nats-server is: `NATS_SERVER_BIN`, else `nats-server` on `PATH` or in
/// `/usr/sbin` (Debian's package).
fn nats_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server is not installed: install Debian's nats-server package (deploy/test.sh does) \
                 or set NATS_SERVER_BIN"
            )
        })
}

/// A running nats-server with JetStream; killed on drop.
pub struct NatsServer {
    port: u16,
    dir: tempfile::TempDir,
    process: Option<Process>,
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    ///
    /// # Panics
    /// When nats-server is missing or does not start within 10 s.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let mut server = Self { port: free_port(), dir, process: None };
        server.restart().await;
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL): clients see the connection drop.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill9();
        }
    }

    /// Starts the server again (after [`NatsServer::kill`]) on the same port and data.
    ///
    /// # Panics
    /// When it does not accept connections within 10 s.
    pub async fn restart(&mut self) {
        self.kill();
        let store = self.dir.path().join("jetstream");
        let process = Process::builder("nats-server", nats_binary())
            .args(["-js", "-sd"])
            .args([store.as_os_str()])
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .log_dir(self.dir.path())
            .spawn();
        self.process = Some(process);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let logs = self.process.as_ref().map(Process::logs).unwrap_or_default();
        panic!("nats-server did not listen on port {} within 10 s:\n{logs}", self.port);
    }

    /// A JetStream context of a new connection to this server.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.url())
            .await
            .unwrap_or_else(|e| panic!("connecting to nats-server: {e}"));
        async_nats::jetstream::new(client)
    }
}
