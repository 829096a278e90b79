//! Server certificate checks for the `sslmode`s that do not verify everything:
//! `prefer`/`require` (encryption only) and `verify-ca` (chain without hostname).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::provider::crypto_provider;
use super::settings::TlsError;

/// The server certificate check of `prefer`/`require` (`roots: None`: any certificate,
/// as libpq without a root certificate) and of `verify-ca` (`Some`: the chain up to a
/// trusted root, whatever the hostname). Both still check that the server holds the
/// certificate's key.
#[derive(Debug)]
struct PartialCheck {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PartialCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// How much of the server's certificate a connection checks.
pub(super) enum Check {
    /// Nothing but possession of the key.
    EncryptOnly,
    /// The chain up to `roots`.
    Chain(RootCertStore),
    /// The chain up to `roots` and the hostname or IP address.
    Full(RootCertStore),
}

/// A rustls client configuration checking what `check` says.
pub(super) fn client_config(check: Check) -> Result<rustls::ClientConfig, TlsError> {
    let provider: Arc<CryptoProvider> = crypto_provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let config = match check {
        Check::EncryptOnly => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PartialCheck { roots: None, algorithms }))
            .with_no_client_auth(),
        Check::Chain(roots) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PartialCheck {
                roots: Some(Arc::new(roots)),
                algorithms,
            }))
            .with_no_client_auth(),
        Check::Full(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
    };
    Ok(config)
}
