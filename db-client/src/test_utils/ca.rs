//! A certificate authority of the test's own, and server certificates it signs, as PEM
//! files in a temporary directory: what a TLS test needs without trusting any certificate
//! of the machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA (`ca.pem`) and one server certificate it signed (`server.crt`, `server.key`) for
/// given names, in a temporary directory removed on drop.
pub struct TestCa {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    server_cert: String,
    server_key: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("dir", &self.dir.path()).finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA and a server certificate for `127.0.0.1` and `localhost`.
    ///
    /// # Panics
    /// When a key cannot be generated or a file written.
    pub fn new() -> Self {
        Self::for_names(&["127.0.0.1", "localhost"])
    }

    /// A new CA and a server certificate for `names` (IP addresses or DNS names).
    ///
    /// # Panics
    /// When a key cannot be generated or a file written.
    pub fn for_names(names: &[&str]) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Tidemark test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(params, ca_key).expect("CA certificate");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("valid server names");
        params.distinguished_name.push(DnType::CommonName, names.first().map_or("server", String::as_str));
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        let dir = tempfile::Builder::new().prefix("tidemark-ca-").tempdir().expect("a temporary directory");
        let this = Self { dir, server_cert: cert.pem(), server_key: key.serialize_pem(), ca };
        for (name, contents) in [
            ("ca.pem", this.ca.pem()),
            ("server.crt", this.server_cert.clone()),
            ("server.key", this.server_key.clone()),
        ] {
            std::fs::write(this.dir.path().join(name), contents).expect("writing a PEM file");
        }
        this
    }

    /// The directory holding the PEM files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM): what clients trust (`sslrootcert`, `SSL_CERT_FILE`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM).
    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert
    }

    /// The server's private key (PEM, PKCS#8).
    pub fn server_key_pem(&self) -> &str {
        &self.server_key
    }

    /// Settings for a [`PrivatePg`](super::cluster::PrivatePg) that serves TLS with the server
    /// certificate (`ssl = on`, certificate and key in its data directory).
    pub fn pg_options(&self) -> super::cluster::PgOptions {
        super::cluster::PgOptions::new()
            .file("server.crt", self.server_cert.clone())
            .file("server.key", self.server_key.clone())
            .setting("ssl", "on")
            .setting("ssl_cert_file", "server.crt")
            .setting("ssl_key_file", "server.key")
    }

    /// A rustls server configuration presenting the server certificate (ALPN
    /// `http/1.1`).
    ///
    /// # Panics
    /// When rustls rejects the certificate or key.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let cert =
            CertificateDer::from_pem_slice(self.server_cert.as_bytes()).expect("server certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(self.server_key.as_bytes()).expect("server key PEM");
        let mut config = rustls::ServerConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server certificate and key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}
