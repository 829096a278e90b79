//! The binaries under test.
//!
//! `TIDEMARK_INDEXER_BIN`, `TIDEMARK_API_BIN` and `TIDEMARK_TRAFFIC_BIN` name the binaries
//! to run (e.g. an indexer with a fault patched in); nothing is built for a binary given
//! that way. Otherwise a crate's own integration tests run the binary cargo built for them
//! (`CARGO_BIN_EXE_<name>`, set while cargo runs them). The other suites find
//! `tidemark-indexer`, `tidemark-api` and `tidemark-traffic` next to their own test
//! executable (`target/<profile>/deps/it-…` → `target/<profile>/`); when one is missing, or
//! older than the sources it is built from, `cargo build -p tidemark-indexer -p
//! tidemark-api -p tidemark-traffic` runs once per process (same profile, same target
//! directory).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// The profile directory the test executable was built into (`target/debug`).
///
/// # Panics
/// When the test executable's path cannot be read.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the test executable");
    let deps = exe.parent().expect("the test executable's directory");
    // target/<profile>/deps/it-… (or target/<profile>/it-… when run otherwise).
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("target/<profile>").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// The target directory (`$CARGO_TARGET_DIR`, else the parent of [`profile_dir`]).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            let profile = profile_dir();
            profile.parent().map_or(profile.clone(), Path::to_path_buf)
        }
    }
}

/// `tidemark-indexer`: `TIDEMARK_INDEXER_BIN`, else the workspace's (built when needed).
pub fn indexer() -> PathBuf {
    resolve("TIDEMARK_INDEXER_BIN", "tidemark-indexer")
}

/// `tidemark-api`: `TIDEMARK_API_BIN`, else the workspace's (built when needed).
pub fn api() -> PathBuf {
    resolve("TIDEMARK_API_BIN", "tidemark-api")
}

/// `tidemark-traffic`, the demo traffic generator: `TIDEMARK_TRAFFIC_BIN`, else the
/// workspace's (built when needed).
pub fn traffic() -> PathBuf {
    resolve("TIDEMARK_TRAFFIC_BIN", "tidemark-traffic")
}

/// Whether the indexer comes from `TIDEMARK_INDEXER_BIN` (e.g. a fault-injected build).
pub fn indexer_overridden() -> bool {
    std::env::var_os("TIDEMARK_INDEXER_BIN").is_some_and(|v| !v.is_empty())
}

fn resolve(var: &str, name: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(var).filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "{var}={} is not a file", bin.display());
        return bin;
    }
    if let Some(bin) = std::env::var_os(format!("CARGO_BIN_EXE_{name}")).filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let bin = profile_dir().join(name);
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if needs_build(&bin) {
        BUILT.get_or_init(build).as_ref().unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(bin.is_file(), "{} is missing after `cargo build`", bin.display());
    bin
}

/// Sources whose change makes the binaries stale.
const SOURCES: [&str; 12] = [
    "Cargo.lock",
    "indexer/src",
    "indexer/Cargo.toml",
    "api/src",
    "api/Cargo.toml",
    "db-client/src",
    "db-client/Cargo.toml",
    "shared-types/src",
    "shared-types/Cargo.toml",
    "migrations",
    "deploy/traffic/src",
    "deploy/traffic/Cargo.toml",
];

fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_dir() {
        std::fs::read_dir(path).ok()?.filter_map(|e| e.ok()).filter_map(|e| newest(&e.path())).max()
    } else {
        meta.modified().ok()
    }
}

fn needs_build(bin: &Path) -> bool {
    let Some(built) = std::fs::metadata(bin).and_then(|m| m.modified()).ok() else { return true };
    let root = workspace_root();
    SOURCES.iter().filter_map(|s| newest(&root.join(s))).any(|t| t > built)
}

fn build() -> Result<(), String> {
    let cargo = std::env::var_os("CARGO")
        .filter(|c| !c.is_empty())
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let profile = profile_dir();
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "-p", "tidemark-indexer", "-p", "tidemark-api", "-p", "tidemark-traffic"])
        .env("CARGO_TARGET_DIR", target_dir());
    if profile.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    // Straight to standard error: the test harness does not capture it.
    let _ = writeln!(
        std::io::stderr().lock(),
        "[testkit] building tidemark-indexer, tidemark-api and tidemark-traffic ({} profile) for the tests",
        profile.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    );
    let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", PathBuf::from(&cargo).display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo build -p tidemark-indexer -p tidemark-api -p tidemark-traffic` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
