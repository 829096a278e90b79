//! TLS for PostgreSQL and for HTTPS clients, with rustls and its `ring` provider.
//!
//! [`PgConnector`] reads a `postgres://` / `postgresql://` URL (or a keyword/value string)
//! with libpq's TLS parameters — `sslmode` (`disable`, `allow`, `prefer` (default),
//! `require`, `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file or `system`) —
//! and opens `tokio-postgres` clients or diesel-async connections with them. Channel
//! binding (SCRAM-SHA-256-PLUS) works over these connections.
//!
//! [`https_client_config`] is the rustls configuration for HTTPS clients (the indexer's
//! RPC): the platform's roots plus `SSL_CERT_FILE` / `SSL_CERT_DIR`.
//!
//! Nothing here logs or returns a URL or a password: errors name the parameter, the
//! `sslmode` and what failed.

mod connect;
mod params;
mod roots;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use connect::{PgConnector, SocketTimeouts, TlsStream, connect, establish};
pub use params::{RootCert, SslMode};
pub use roots::{pem_roots, system_roots};

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

/// The crypto provider every TLS configuration here is built with: rustls' `ring`.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(ring_provider())
}

// rustls 0.23.48 deprecates `ring` for lacking post-quantum key exchange; the alternative,
// aws-lc-rs, costs minutes of build time on our machines. Revisit when ring gains ML-KEM.
#[allow(deprecated)]
fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Installs [`crypto_provider`] as the process-wide default, unless one is installed
/// already. The workspace builds reqwest without a provider of its own, so a process
/// must call this before it builds any reqwest client (or an alloy HTTP provider) that
/// is not given a preconfigured TLS setup; it is cheap and idempotent.
pub fn install_crypto_provider() {
    // An error means a provider is installed already, which serves as well.
    let _ = ring_provider().install_default();
}

/// The rustls client configuration for HTTPS: certificates chained to
/// [`system_roots`] (the platform's roots plus `SSL_CERT_FILE` / `SSL_CERT_DIR`),
/// hostnames verified, HTTP/1.1 offered through ALPN.
pub fn https_client_config() -> Result<rustls::ClientConfig, TlsError> {
    let roots = system_roots()?;
    let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
