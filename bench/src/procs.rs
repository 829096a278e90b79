//! Child processes (anvil, the release binaries), fresh databases and memory sampling.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use diesel_async::RunQueryDsl;

/// A child killed on drop.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) name: &'static str,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size so far (`VmHWM`), in bytes.
    pub(crate) fn peak_rss(&self) -> Option<u64> {
        status_kib(self.pid(), "VmHWM:").map(|k| k * 1024)
    }

    /// Current resident set size, in bytes.
    pub(crate) fn rss(&self) -> Option<u64> {
        status_kib(self.pid(), "VmRSS:").map(|k| k * 1024)
    }

    /// Its exit status, if it has exited.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then wait up to 10 s.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) that process `pid` has used so far, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (`state`);
    // `utime` and `stime` are fields 14 and 15, in USER_HZ ticks (100 per second on Linux).
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// The 1-minute load average (`/proc/loadavg`), to tell a busy machine from a quiet one.
pub(crate) fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next().map(str::to_owned)
}

/// Prints the machine's load when the bench started (`before`) and now.
pub(crate) fn print_machine_load(before: Option<&str>) {
    println!(
        "\nmachine load (1-minute load average, {} cores): {} when the bench started, {} when it ended",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        before.unwrap_or("-"),
        load_average().as_deref().unwrap_or("-")
    );
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A TCP port nothing listens on.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts anvil (from `ANVIL_BIN` or PATH) with `args` on a free port; waits until it answers.
pub(crate) async fn anvil(args: &[&str]) -> anyhow::Result<(Proc, String)> {
    let bin = std::env::var("ANVIL_BIN").unwrap_or_else(|_| "anvil".into());
    let port = free_port()?;
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!("starting anvil ({bin}); `source deploy/lib/common.sh && ensure_anvil` installs it")
        })?;
    let proc = Proc { child, name: "anvil" };
    let url = format!("http://127.0.0.1:{port}");
    tidemark_db_client::tls::install_crypto_provider();
    let client = reqwest::Client::new();
    for _ in 0..100 {
        let ok = client
            .post(&url)
            .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}))
            .send()
            .await
            .is_ok();
        if ok {
            return Ok((proc, url));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("anvil did not answer on {url}")
}

/// The binary `name` of the same profile as this one (release, normally), built on
/// demand next to it.
pub(crate) fn release_binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::current_exe()?.parent().context("binary directory")?.to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", name]);
    if !dir.ends_with("debug") {
        cmd.arg("--release");
    }
    let status = cmd.status().context("building the binaries")?;
    if !status.success() {
        bail!("cargo build -p {name} failed");
    }
    let path = dir.join(name);
    if !path.exists() {
        bail!("{} is missing; run the bench with `cargo run --release -p tidemark-bench`", path.display());
    }
    Ok(path)
}

/// Spawns `bin` with `args` and `env`, output to `log`.
pub(crate) fn spawn(
    name: &'static str,
    bin: &PathBuf,
    args: &[&str],
    env: &[(&str, String)],
    log: &PathBuf,
) -> anyhow::Result<Proc> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    let child = Command::new(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Proc { child, name })
}

/// A database created for the bench and dropped at the end.
pub(crate) struct BenchDb {
    pub(crate) url: String,
    admin: String,
    name: String,
}

impl BenchDb {
    pub(crate) async fn create(server: &str, tag: &str) -> anyhow::Result<Self> {
        let name = format!("tidemark_bench_{tag}_{}", std::process::id());
        let mut conn =
            tidemark_db_client::tls::establish(server).await.context("connecting to PostgreSQL")?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut conn)
            .await?;
        diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await?;
        let mut url = url::Url::parse(server).context("DATABASE_URL is not a URL")?;
        url.set_path(&name);
        let url = url.to_string();
        Ok(Self { url, admin: server.to_owned(), name })
    }

    pub(crate) async fn drop_now(self) -> anyhow::Result<()> {
        let mut conn = tidemark_db_client::tls::establish(&self.admin).await?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}
