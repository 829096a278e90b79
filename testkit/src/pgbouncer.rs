//! A private PgBouncer in front of the test server, in a given pool mode.
//!
//! The binary is `PGBOUNCER_BIN`, else `pgbouncer` on `PATH` or in `/usr/sbin` (Debian's
//! `pgbouncer` package). Missing, it is a failure with a message saying what to install.
//! Authentication is left to the server (`auth_type = any`, logging in as the user of the
//! server URL), which suits the trust-authenticated test server.

use std::path::PathBuf;
use std::time::Duration;

use tidemark_db_client::test_utils::{authority, with_authority};

use crate::process::{Process, free_port};

/// A running PgBouncer, stopped when dropped.
#[derive(Debug)]
pub struct PgBouncer {
    proc: Process,
    listen: String,
    _dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("PGBOUNCER_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| {
            panic!("pgbouncer is missing: install it (`apt-get install pgbouncer`) or set PGBOUNCER_BIN")
        })
}

/// The user name of `url` (`postgres` when it names none).
fn user_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..host_end].rsplit_once('@') {
        Some((userinfo, _)) => userinfo.split_once(':').map_or(userinfo, |(u, _)| u),
        None => "postgres",
    }
}

impl PgBouncer {
    /// Starts PgBouncer in `pool_mode` (`session`, `transaction` or `statement`) in front
    /// of the server of `server_url`, and waits until it accepts connections.
    ///
    /// # Panics
    /// When pgbouncer is missing or does not start.
    pub async fn start(server_url: &str, pool_mode: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let upstream = authority(server_url);
        let (host, upstream_port) = upstream.rsplit_once(':').unwrap_or((upstream.as_str(), "5432"));
        let ini = format!(
            "[databases]\n* = host={host} port={upstream_port} user={user}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = any\n\
             pool_mode = {pool_mode}\nmax_client_conn = 200\ndefault_pool_size = 20\n\
             ignore_startup_parameters = extra_float_digits,options\n",
            user = user_of(server_url),
        );
        let path = dir.path().join("pgbouncer.ini");
        std::fs::write(&path, ini).expect("writing pgbouncer.ini");
        let mut builder = Process::builder("pgbouncer", binary()).log_dir(dir.path());
        // PgBouncer refuses to run as root; it can switch to another user itself.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            builder = builder.args(["-u", "postgres"]);
        }
        let mut proc = builder.args([path.as_os_str()]).spawn();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(&listen).await.is_err() {
            assert!(proc.is_running(), "pgbouncer exited:\n{}", proc.logs());
            assert!(
                std::time::Instant::now() < deadline,
                "pgbouncer not listening within 10 s:\n{}",
                proc.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { proc, listen, _dir: dir }
    }

    /// `database_url` (of the server behind this PgBouncer) rewritten to go through it.
    pub fn url(&self, database_url: &str) -> String {
        with_authority(database_url, &self.listen)
    }

    /// PgBouncer's output so far.
    pub fn logs(&self) -> String {
        self.proc.logs()
    }
}
