//! End-to-end tests: the deployment files and the local stack as a user starts it.

mod compose;
mod dashboard;
mod grafana;
mod stack;

/// The repository root.
pub(crate) fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("e2e/ has a parent").to_path_buf()
}
