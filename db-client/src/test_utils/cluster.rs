//! A private PostgreSQL cluster that a test may stop and start, or configure as the
//! shared server must not be (TLS certificates, `ssl = off`): `initdb` into a temporary
//! directory, `pg_ctl start` on a free loopback port, `pg_ctl stop -m fast`, and `start`
//! again on the same port.
//!
//! The server binaries come from `PG_BIN` or the newest `/usr/lib/postgresql/<v>/bin`.
//! As root, `initdb` and `pg_ctl` run as user `postgres` (through `runuser`), which owns
//! the directory. A missing installation fails the test with a message; nothing skips.

use super::wait::free_port;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;

/// A throwaway cluster; stopped and removed on drop.
#[derive(Debug)]
pub struct PrivatePg {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    running: bool,
    settings: Vec<(String, String)>,
}

/// Server settings and files of a [`PrivatePg`] beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    settings: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
}

impl PgOptions {
    /// No extra settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a server parameter (`-c name=value`).
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Writes `contents` to `name` in the data directory before the server starts, owned
    /// by the server's user with mode 0600 (as PostgreSQL demands of a key file); a
    /// setting may name it relative to the data directory (`ssl_key_file=server.key`).
    pub fn file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.to_owned(), contents.into()));
        self
    }
}

fn pg_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("PG_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(b);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("pg_ctl").is_file().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries not found (set PG_BIN or install Debian's `postgresql` package): \
             the database outage scenarios need a private cluster they can stop and start"
        )
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl PrivatePg {
    /// Creates and starts a cluster (trust authentication, user `postgres`).
    ///
    /// # Panics
    /// When the binaries are missing or the cluster cannot start.
    pub async fn start() -> Self {
        Self::start_with(PgOptions::new()).await
    }

    /// Creates and starts a cluster with `options`.
    ///
    /// # Panics
    /// When the binaries are missing or the cluster cannot start.
    pub async fn start_with(options: PgOptions) -> Self {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("tidemark-rel-pg-")
            .tempdir_in("/tmp")
            .expect("a temporary directory for PostgreSQL")
            .keep();
        if is_root() {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown postgres {} failed (is there a `postgres` user?)", dir.display());
        }
        let settings = options.settings;
        let mut pg = Self { bin, dir, port: free_port(), running: false, settings };
        let initdb = pg.bin.join("initdb");
        let data = pg.data();
        let out = pg
            .run(
                &initdb,
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-U".as_ref(),
                    "postgres".as_ref(),
                    "--auth=trust".as_ref(),
                    "-E".as_ref(),
                    "UTF8".as_ref(),
                    "--locale=C.UTF-8".as_ref(),
                ],
            )
            .await;
        assert!(out.0, "initdb failed:\n{}", out.1);
        for (name, contents) in &options.files {
            pg.write_private_file(&pg.data().join(name), contents);
        }
        let mut last = String::new();
        for _ in 0..3 {
            match pg.try_start().await {
                Ok(()) => return pg,
                Err(e) => last = e,
            }
            pg.port = free_port();
        }
        panic!("the private PostgreSQL did not start: {last}")
    }

    fn write_private_file(&self, path: &Path, contents: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        if is_root() {
            let ok = std::process::Command::new("chown")
                .arg("postgres:")
                .arg(path)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown postgres {} failed", path.display());
        }
    }

    /// `pg_ctl -D <data> -w -t 60 <args>`.
    async fn pg_ctl(&self, args: &[&std::ffi::OsStr]) -> (bool, String) {
        let data = self.data();
        let mut all: Vec<&std::ffi::OsStr> =
            vec!["-D".as_ref(), data.as_os_str(), "-w".as_ref(), "-t".as_ref(), "60".as_ref()];
        all.extend_from_slice(args);
        self.run(&self.bin.join("pg_ctl"), &all).await
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    async fn run(&self, program: &Path, args: &[&std::ffi::OsStr]) -> (bool, String) {
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
        match cmd.output().await {
            Ok(o) => (
                o.status.success(),
                format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            ),
            Err(e) => (false, format!("cannot run {}: {e}", program.display())),
        }
    }

    async fn try_start(&mut self) -> Result<(), String> {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        for (name, value) in &self.settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        let log = self.dir.join("server.log");
        let (ok, text) = self
            .pg_ctl(&["-l".as_ref(), log.as_os_str(), "-o".as_ref(), options.as_ref(), "start".as_ref()])
            .await;
        if !ok {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(15).collect();
            return Err(format!("{text}\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
        }
        self.running = true;
        // pg_ctl -w returns once the server accepts connections; check over TCP as well.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("port {} does not answer after pg_ctl start", self.port))
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates database `name`; returns its URL.
    ///
    /// # Panics
    /// When the statement fails.
    pub async fn create_database(&self, name: &str) -> String {
        use diesel_async::RunQueryDsl;
        let mut conn =
            crate::tls::establish(&self.url("postgres")).await.expect("connecting to the private cluster");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.url(name)
    }

    /// `pg_ctl stop -m fast`: active transactions are rolled back, clients disconnected.
    ///
    /// # Panics
    /// When pg_ctl fails.
    pub async fn stop(&mut self) {
        self.stop_mode("fast").await;
    }

    /// `pg_ctl stop -m <mode>` (`smart`, `fast`, `immediate`).
    ///
    /// # Panics
    /// When pg_ctl fails.
    pub async fn stop_mode(&mut self, mode: &str) {
        let (ok, text) = self.pg_ctl(&["-m".as_ref(), mode.as_ref(), "stop".as_ref()]).await;
        assert!(ok, "pg_ctl stop -m {mode} failed: {text}");
        self.running = false;
    }

    /// Starts the stopped cluster again on the same port.
    ///
    /// # Panics
    /// When it does not come back.
    pub async fn restart(&mut self) {
        let mut last = String::new();
        for _ in 0..3 {
            match self.try_start().await {
                Ok(()) => return,
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("the private PostgreSQL did not come back on port {}: {last}", self.port)
    }

    /// Whether the server is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.running
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        if self.running {
            let pg_ctl = self.bin.join("pg_ctl");
            let mut cmd = if is_root() {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
                c
            } else {
                std::process::Command::new(&pg_ctl)
            };
            let _ = cmd
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "-t", "30", "stop"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
