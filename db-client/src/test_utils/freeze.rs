//! A black-holed PostgreSQL: every process of a [`PrivatePg`] stopped with `SIGSTOP`.
//! The kernel still accepts connections and acknowledges packets, but nothing answers,
//! as with a hung host or a server stuck on its storage. Only client-side time limits
//! notice it; TCP keepalives and `TCP_USER_TIMEOUT` do not.

use std::process::Command;

use super::PrivatePg;

/// The stopped processes of a frozen cluster; they continue (`SIGCONT`) when this is
/// dropped or [`Frozen::thaw`]ed.
#[derive(Debug)]
pub struct Frozen {
    pids: Vec<u32>,
}

impl PrivatePg {
    /// Stops (`SIGSTOP`) the postmaster, then every one of its children (backends and
    /// auxiliary processes).
    ///
    /// # Panics
    /// When the cluster is not running or a signal cannot be sent.
    pub fn freeze(&self) -> Frozen {
        let pid_file = self.data().join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", pid_file.display()));
        let postmaster: u32 = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {}", pid_file.display()));
        // Stopped first, the postmaster forks no new backend while the others are stopped.
        signal("-STOP", &[postmaster]);
        let children = children_of(postmaster);
        signal("-STOP", &children);
        let mut pids = vec![postmaster];
        pids.extend(children);
        Frozen { pids }
    }
}

impl Frozen {
    /// Lets every stopped process continue.
    pub fn thaw(self) {}

    /// How many processes are stopped.
    pub fn processes(&self) -> usize {
        self.pids.len()
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("-CONT", &self.pids);
    }
}

fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `/proc/<pid>/stat`: "pid (comm) state ppid …"; comm may hold spaces.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

fn signal(sig: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let status = Command::new("kill")
        .arg(sig)
        .args(pids.iter().map(u32::to_string))
        .status()
        .unwrap_or_else(|e| panic!("kill {sig}: {e}"));
    assert!(status.success() || sig == "-CONT", "kill {sig} {pids:?} failed");
}
