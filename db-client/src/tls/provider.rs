//! The rustls crypto provider and the HTTPS client configuration built on it.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

use super::roots::system_roots;
use super::settings::TlsError;

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
