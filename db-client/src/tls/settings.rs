//! The TLS settings a connection string carries (`sslmode`, `sslrootcert`) and what can
//! go wrong with them or with a connection made under them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// libpq's `sslmode`: whether to encrypt and how much of the server's certificate to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// libpq tries plain first; here treated like [`SslMode::Prefer`] (TLS first, plain
    /// when the server refuses TLS), which is never less private.
    Allow,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked.
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is not checked unless `sslrootcert` is given (then
    /// as [`SslMode::VerifyCa`], like libpq).
    Require,
    /// TLS with the certificate chained to a trusted root; the hostname is not checked.
    VerifyCa,
    /// TLS with the certificate chained to a trusted root and issued for the host name or
    /// IP address connected to.
    VerifyFull,
}

impl SslMode {
    /// The name used in connection strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => {
                return Err(TlsError::InvalidUrl(format!(
                    "sslmode must be disable, allow, prefer, require, verify-ca or verify-full, not `{s}`"
                )));
            }
        })
    }
}

/// Where the trusted roots of a verifying connection come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RootCert {
    /// Not given: `~/.postgresql/root.crt` when it exists, else the platform's roots plus
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR`.
    #[default]
    Default,
    /// A PEM file of one or more certificates.
    File(PathBuf),
    /// `sslrootcert=system`: the platform's roots plus `SSL_CERT_FILE` / `SSL_CERT_DIR`.
    System,
}

/// What went wrong reading TLS settings or connecting with them.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The connection string does not parse (the message never includes the URL).
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The connection string uses a libpq parameter Tidemark does not support.
    #[error("database URL parameter `{parameter}` is not supported: {hint}")]
    Unsupported {
        /// The parameter, e.g. `sslcert`.
        parameter: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// A certificate file could not be read or holds no certificate.
    #[error("cannot load root certificates from {}: {message}", path.display())]
    RootCert {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// No trusted root certificate was found for a verifying mode.
    #[error("no trusted root certificates found for sslmode={sslmode} (set sslrootcert or SSL_CERT_FILE)")]
    NoRoots {
        /// The mode that needed them.
        sslmode: SslMode,
    },
    /// The TLS handshake with PostgreSQL failed, or the server refused TLS where it is
    /// required.
    #[error("TLS with PostgreSQL failed (sslmode={sslmode}): {message}")]
    Handshake {
        /// The mode in force.
        sslmode: SslMode,
        /// rustls' or the server's reason.
        message: String,
    },
    /// rustls refused the configuration (should not happen with the `ring` provider).
    #[error("TLS setup failed: {0}")]
    Setup(String),
    /// Connecting failed for another reason (refused, authentication, timeout).
    #[error("connecting to PostgreSQL failed: {0}")]
    Connect(String),
}

impl TlsError {
    /// True for errors of the settings themselves, which retrying cannot fix.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::InvalidUrl(_)
                | Self::Unsupported { .. }
                | Self::RootCert { .. }
                | Self::NoRoots { .. }
                | Self::Setup(_)
        )
    }
}
