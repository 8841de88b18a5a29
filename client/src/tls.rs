//! The rustls configuration of the async client: ring (the crypto the rest
//! of the workspace uses), and either the certificates of `--ca-cert` or
//! the public CAs (webpki-roots, as the blocking client's ureq has them).

use std::sync::Arc;

use crate::error::Error;

pub(crate) fn client_config(ca_certs_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_certs_pem {
        Some(pem) => {
            for cert in crate::config::parse_ca_pem(pem)? {
                roots
                    .add(cert)
                    .map_err(|e| Error::Config(format!("the CA certificates: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
