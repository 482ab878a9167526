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

/// Reads the listener's PEM certificate chain (leaf first).
pub fn read_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    read_certs(path)
        .map_err(|cause| format!("cannot read certificates from {}: {cause}", path.display()))
}

/// Reads the listener's PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|err| format!("no usable private key in {}: {err}", path.display()))
}

/// The crypto provider every TLS config here is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the listeners' TLS config (ALPN `h2`, then `http/1.1`). Fails when the key does not
/// belong to the certificate.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| format!("cannot be used with the certificate: {err}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reads a PEM bundle of CA certificates for verifying an upstream. `shown` is the path as written
/// in the config, used in messages.
pub fn load_ca_bundle(path: &Path, shown: &str) -> Result<rustls::RootCertStore, String> {
    let certs = read_certs(path)
        .map_err(|err| format!("cannot read CA certificates from {shown:?}: {err}"))?;
    let mut roots = rustls::RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(certs);
    if roots.is_empty() || ignored > 0 {
        return Err(format!(
            "{shown:?} holds {ignored} certificate(s) that are not usable CA certificates"
        ));
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
        .map_err(|err| err.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".to_owned());
    }
    Ok(certs)
}
