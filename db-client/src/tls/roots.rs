//! Trusted root certificates: PEM files, the platform's store, `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::TlsError;

/// Bundle files of the common Linux distributions (Debian/Ubuntu, RHEL/Fedora, SUSE,
/// Alpine), tried in order when `SSL_CERT_FILE` hides the platform's store from
/// `rustls-native-certs`.
const PLATFORM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The certificates of a PEM file (it may hold several); an error when the file cannot
/// be read or holds none.
pub fn pem_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    add_pem_file(&mut store, path)?;
    Ok(store)
}

fn add_pem_file(store: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    let err = |message: String| TlsError::RootCert { path: path.to_owned(), message };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(err("no usable certificate in the file".into()));
    }
    Ok(())
}

/// The platform's trusted roots plus those of `SSL_CERT_FILE` and `SSL_CERT_DIR`.
///
/// `rustls-native-certs` reads the environment variables *instead of* the platform's
/// store; this merges both, so a private CA can be added without losing the public ones.
/// A file named by `SSL_CERT_FILE` that cannot be read is an error.
pub fn system_roots() -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let env_file = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    if native.certs.is_empty()
        && let (Some(path), Some(first)) = (&env_file, native.errors.first())
    {
        return Err(TlsError::RootCert { path: path.clone(), message: first.to_string() });
    }
    for e in &native.errors {
        tracing::warn!(target: "tidemark_db_client::tls", error = %e, "some trusted certificates could not be loaded");
    }
    store.add_parsable_certificates(native.certs);
    let env_set = env_file.is_some() || std::env::var_os("SSL_CERT_DIR").is_some();
    if env_set && let Some(bundle) = PLATFORM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
        // The platform's bundle is best effort: a private CA alone may be all there is.
        if let Err(e) = add_pem_file(&mut store, bundle) {
            tracing::warn!(target: "tidemark_db_client::tls", error = %e, "platform certificates not loaded");
        }
    }
    Ok(store)
}

/// `~/.postgresql/root.crt`, libpq's default `sslrootcert`, when it exists.
pub(super) fn libpq_default_root() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".postgresql").join("root.crt");
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::pem_roots;
    use crate::tls::TlsError;

    #[test]
    fn a_file_without_certificates_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("tidemark-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let err = pem_roots(&path).expect_err("no certificate");
        assert!(matches!(err, TlsError::RootCert { .. }), "{err:?}");
        assert!(err.to_string().contains("empty.pem"), "{err}");
        let err = pem_roots(&dir.join("missing.pem")).expect_err("missing");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
