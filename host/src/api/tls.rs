//! TLS for the API (rustls, with the ring provider iroh uses too).
//!
//! `raft-host --api-tls-cert CERT.pem --api-tls-key KEY.pem` serves https:
//! the certificate file holds the server's certificate first, then any
//! intermediates; the key file a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private
//! key, private to its owner (see [`super::secret`]). TLS 1.2 and 1.3,
//! HTTP/1.1 (ALPN `http/1.1`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::secret::{CredentialError, read_bounded, read_private};

/// A server certificate and its key, ready to serve.
#[derive(Debug, Clone)]
pub struct ApiTls {
    pub(super) config: Arc<rustls::ServerConfig>,
}

impl ApiTls {
    /// Load a PEM certificate chain and private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, CredentialError> {
        let cert_pem = read_bounded(cert)?;
        let key_pem = read_private(key)?;
        let pem_error = |path: &Path, reason: String| CredentialError::Pem {
            path: path.to_path_buf(),
            reason,
        };
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(cert, format!("not a PEM certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(pem_error(
                cert,
                "holds no `BEGIN CERTIFICATE` block".to_string(),
            ));
        }
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| pem_error(key, format!("not a PEM private key: {e}")))?;
        Self::from_der(chain, key_der)
    }

    /// From a DER certificate chain and key.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, CredentialError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CredentialError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| CredentialError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ApiTls {
            config: Arc::new(config),
        })
    }
}
