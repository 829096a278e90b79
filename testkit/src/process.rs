//! Child processes with captured output: the binaries under test.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use tidemark_db_client::test_utils::free_port;

/// How to start a [`Process`].
#[derive(Debug, Clone)]
pub struct ProcessBuilder {
    name: String,
    bin: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    env_removes: Vec<OsString>,
    log_dir: Option<PathBuf>,
}

impl ProcessBuilder {
    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Removes an inherited environment variable.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env_removes.push(key.as_ref().to_owned());
        self
    }

    /// Writes `<name>.stdout.log` and `<name>.stderr.log` into `dir` (default: a
    /// temporary directory removed with the process).
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = Some(dir.into());
        self
    }

    /// Starts the process.
    ///
    /// # Panics
    /// When the binary cannot be started.
    pub fn spawn(self) -> Process {
        let (dir, temp) = match self.log_dir {
            Some(d) => (d, None),
            None => {
                let t = tempfile::tempdir()
                    .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
                (t.path().to_path_buf(), Some(t))
            }
        };
        let stdout_path = unique_path(&dir, &self.name, "stdout.log");
        let stderr_path = unique_path(&dir, &self.name, "stderr.log");
        let create = |p: &Path| {
            std::fs::File::create(p).unwrap_or_else(|e| panic!("cannot create log file {}: {e}", p.display()))
        };
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args).stdin(Stdio::null()).stdout(create(&stdout_path)).stderr(create(&stderr_path));
        for k in &self.env_removes {
            cmd.env_remove(k);
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {} ({}): {e}", self.name, PathBuf::from(&self.bin).display())
        });
        Process { name: self.name, child, stdout_path, stderr_path, status: None, _temp: temp }
    }
}

fn unique_path(dir: &Path, name: &str, suffix: &str) -> PathBuf {
    let mut i = 0;
    loop {
        let p = if i == 0 {
            dir.join(format!("{name}.{suffix}"))
        } else {
            dir.join(format!("{name}-{i}.{suffix}"))
        };
        if !p.exists() {
            return p;
        }
        i += 1;
    }
}

/// A running (or finished) child process whose stdout and stderr go to files. Killed
/// with SIGKILL on drop; when the test is failing, the tail of its output is printed.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
    _temp: Option<tempfile::TempDir>,
}

impl Process {
    /// A builder for `bin`, called `name` in messages and log file names.
    pub fn builder(name: impl Into<String>, bin: impl AsRef<OsStr>) -> ProcessBuilder {
        ProcessBuilder {
            name: name.into(),
            bin: bin.as_ref().to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            env_removes: Vec::new(),
            log_dir: None,
        }
    }

    /// The name given to the builder.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: libc::c_int) {
        if self.status.is_some() {
            return;
        }
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else { return };
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child,
        // not yet reaped (status is None), so it cannot name another process.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// Sends SIGKILL (`kill -9`) and reaps the process.
    pub fn kill9(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            if let Ok(s) = self.child.wait() {
                self.status = Some(s);
            }
        }
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends SIGINT.
    pub fn sigint(&self) {
        self.signal(libc::SIGINT);
    }

    /// Sends SIGSTOP (the process freezes until [`Process::sigcont`]).
    pub fn sigstop(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Sends SIGCONT.
    pub fn sigcont(&self) {
        self.signal(libc::SIGCONT);
    }

    /// The exit status, if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(s)) = self.child.try_wait()
        {
            self.status = Some(s);
        }
        self.status
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub async fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if started.elapsed() >= timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `timeout` and returns the exit code.
    ///
    /// # Panics
    /// When the process is still running after `timeout` or was killed by a signal.
    pub async fn exit_code(&mut self, timeout: Duration) -> i32 {
        let status = self.wait_timeout(timeout).await.unwrap_or_else(|| {
            panic!("{} still runs after {timeout:?}; output:\n{}", self.name, self.logs())
        });
        status
            .code()
            .unwrap_or_else(|| panic!("{} ended by a signal ({status}); output:\n{}", self.name, self.logs()))
    }

    /// What the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// stdout followed by stderr.
    pub fn logs(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    /// Paths of the stdout and stderr files.
    pub fn log_paths(&self) -> (&Path, &Path) {
        (&self.stdout_path, &self.stderr_path)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "---- last {} lines of {} (pid {}) ----\n{}",
                tail.len(),
                self.name,
                self.pid(),
                tail.join("\n")
            );
        }
    }
}
