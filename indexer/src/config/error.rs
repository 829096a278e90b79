//! The one error type of configuration loading.

/// A configuration problem; the message names the key path. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {path}: {message}")]
pub struct ConfigError {
    /// TOML key path, or the file name for file-level errors.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }

    /// No configuration file was given.
    pub fn new_missing() -> Self {
        Self::new("--config", "a configuration file is required (--config FILE or TIDEMARK_CONFIG)")
    }

    /// A command-line flag problem.
    pub fn new_flag(message: &str) -> Self {
        Self::new("arguments", message)
    }
}
