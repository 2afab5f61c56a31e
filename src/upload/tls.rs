//! TLS trust for the Proxmox API: the rustls client configuration for each [`Trust`] mode,
//! including certificate pinning by SHA-256 fingerprint.
//!
//! Pinning is a rustls [`ServerCertVerifier`]: the leaf's fingerprint is compared *during the
//! handshake*, so a wrong server is refused before any HTTP byte — and so before the token —
//! is written. The handshake signatures are still checked with the provider's algorithms, so a
//! pinned certificate must also be *held* by the server. This module never sends anything.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use super::UploadError;
use super::config::{Fingerprint, Trust};

/// The server's leaf certificate is not the pinned one (carried inside the rustls error, so
/// the client can name both fingerprints).
#[derive(Debug, thiserror::Error)]
#[error("the server's certificate has fingerprint {actual}, not the expected {expected}")]
pub struct FingerprintMismatch {
    /// What `--fingerprint` asked for.
    pub expected: Fingerprint,
    /// What the server presented.
    pub actual: Fingerprint,
}

/// The SHA-256 fingerprint of a DER certificate, as Proxmox computes it.
pub fn fingerprint_of(der: &[u8]) -> Fingerprint {
    Fingerprint(Sha256::digest(der).into())
}

/// The rustls client configuration for `trust`.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, UploadError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UploadError::Config {
            message: format!("TLS set-up: {e}"),
        })?;
    let config = match trust {
        Trust::WebPki => {
            let roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::CaFile(path) => {
            let certs = crate::net::read_ca_file(path).map_err(|e| UploadError::Config {
                message: format!("--ca-file {}: {}", path.display(), e.reason),
            })?;
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(certs);
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Fingerprint(expected) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LeafVerifier {
                pinned: Some(*expected),
                algorithms,
            }))
            .with_no_client_auth(),
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LeafVerifier {
                pinned: None,
                algorithms,
            }))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Accepts the leaf whose SHA-256 is `pinned` (any leaf when `None`: `--insecure`), ignoring
/// chain and name, but still checking the handshake signatures.
#[derive(Debug)]
struct LeafVerifier {
    pinned: Option<Fingerprint>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for LeafVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = fingerprint_of(end_entity);
        match self.pinned {
            Some(expected) if expected != actual => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                    FingerprintMismatch { expected, actual },
                ))),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
