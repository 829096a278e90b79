//! Trusted root certificates: PEM files, the platform's store, `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::settings::TlsError;

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
    let file = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty()).map(PathBuf::from);
    let dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
        .map(|d| std::env::split_paths(&d).filter(|p| !p.as_os_str().is_empty()).collect())
        .unwrap_or_default();
    roots_with(file.as_deref(), &dirs)
}

/// The platform's roots plus the certificates of `file` and of the files in `dirs`.
fn roots_with(file: Option<&Path>, dirs: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    if let Some(file) = file {
        add_pem_file(&mut store, file)?;
    }
    for dir in dirs {
        let loaded = rustls_native_certs::load_certs_from_paths(None, Some(dir));
        warn_about(&loaded.errors);
        store.add_parsable_certificates(loaded.certs);
    }
    if file.is_none() && dirs.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        warn_about(&native.errors);
        store.add_parsable_certificates(native.certs);
    } else if let Some(bundle) = PLATFORM_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
        // The platform's bundle is best effort: a private CA alone may be all there is.
        if let Err(e) = add_pem_file(&mut store, bundle) {
            tracing::warn!(target: "tidemark_db_client::tls", error = %e, "platform certificates not loaded");
        }
    }
    Ok(store)
}

fn warn_about(errors: &[rustls_native_certs::Error]) {
    for e in errors {
        tracing::warn!(target: "tidemark_db_client::tls", error = %e, "some trusted certificates could not be loaded");
    }
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

    /// `SSL_CERT_FILE` / `SSL_CERT_DIR` add to the platform's roots, not replace them.
    #[cfg(feature = "test-utils")]
    #[test]
    fn a_private_ca_adds_to_the_platform_roots() {
        let ca = crate::test_utils::TestCa::new();
        let alone = pem_roots(&ca.ca_path()).expect("the CA").len();
        assert_eq!(alone, 1);
        let platform = super::PLATFORM_BUNDLES.iter().map(std::path::Path::new).find(|p| p.is_file());
        let platform = platform.map_or(0, |p| pem_roots(p).expect("the platform bundle").len());
        let merged = super::roots_with(Some(&ca.ca_path()), &[]).expect("roots");
        assert_eq!(merged.len(), platform + 1);
        let dir = super::roots_with(None, &[ca.dir().to_owned()]).expect("roots");
        assert!(dir.len() > platform, "the directory's CA is added");
    }

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
