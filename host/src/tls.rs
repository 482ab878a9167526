//! TLS material: the server config for our listeners and the client configs for https upstreams.
//!
//! Always the `ring` provider, chosen explicitly (no process-wide default to forget to install).
//! Listeners offer ALPN `h2` then `http/1.1`; upstream connections speak HTTP/1.1 (`http/1.1` ALPN),
//! the protocol WebSocket upgrades need.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the listener's certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsLoadError {
    /// The certificate file is missing, unreadable or holds no certificate.
    #[error("{0}")]
    Cert(String),
    /// The key file is missing, unreadable or holds no private key.
    #[error("{0}")]
    Key(String),
    /// The key does not belong to the certificate, or rustls refused the pair.
    #[error("{0}")]
    Mismatch(String),
}

/// The crypto provider every TLS config here is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and key and builds the listeners' TLS config (ALPN h2, http/1.1).
pub fn load_server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<rustls::ServerConfig>, TlsLoadError> {
    let certs = read_certs(cert_path).map_err(TlsLoadError::Cert)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|err| {
        TlsLoadError::Key(format!("no usable private key in {}: {err}", key_path.display()))
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsLoadError::Mismatch(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| {
            TlsLoadError::Mismatch(format!(
                "cannot be used with the certificate {}: {err}",
                cert_path.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reads a PEM bundle of CA certificates for verifying an upstream. `shown` is the path as written
/// in the config, used in messages.
pub fn load_ca_bundle(path: &Path, shown: &str) -> Result<rustls::RootCertStore, String> {
    let certs = read_certs(path).map_err(|_| format!("cannot read CA certificates from {shown:?}"))?;
    let mut roots = rustls::RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(certs);
    if roots.is_empty() || ignored > 0 {
        return Err(format!("{shown:?} holds {ignored} certificate(s) that are not usable CA certificates"));
    }
    Ok(roots)
}

/// The public web roots (webpki-roots), for https upstreams without `upstream_ca`.
pub fn web_roots() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// A client config for upstream connections that trusts `roots`. The connector sets ALPN
/// (`http/1.1`) itself.
pub fn upstream_client_config(roots: Arc<rustls::RootCertStore>) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("cannot read certificates from {}: {err}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no PEM certificate in {}", path.display()));
    }
    Ok(certs)
}
