//! Test certificates (rcgen, made in the test) and an HTTP/2-over-TLS client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;

use super::{Answer, answer};

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as PEM files.
pub struct TestCert {
    pub cert_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl TestCert {
    /// Generates a certificate and writes `<name>.pem` and `<name>.key` into `dir`.
    pub fn generate(dir: &Path, name: &str) -> Self {
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("rcgen certificate");
        let cert_pem = certified.cert.pem();
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, &cert_pem).unwrap();
        std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
        TestCert {
            cert_pem,
            cert_path,
            key_path,
        }
    }

    /// A root store trusting only this certificate.
    pub fn roots(&self) -> rustls::RootCertStore {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let der =
            rustls_pki_types::CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap();
        roots.add(der).unwrap();
        roots
    }
}

/// Whether a TLS handshake with `addr`, trusting only `roots`, succeeds.
pub async fn handshake_succeeds(addr: SocketAddr, roots: rustls::RootCertStore) -> bool {
    let config = rustls::ClientConfig::builder_with_provider(portcullis::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .is_ok()
}

/// Opens a TLS connection to `addr` offering only `alpn`; returns the stream and the negotiated
/// protocol.
pub async fn connect(
    addr: SocketAddr,
    roots: rustls::RootCertStore,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut config = rustls::ClientConfig::builder_with_provider(portcullis::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// GET `path` over HTTP/2 on a fresh TLS connection; returns the response's HTTP version too.
pub async fn h2_get(
    addr: SocketAddr,
    roots: rustls::RootCertStore,
    path: &str,
) -> (http::Version, Answer) {
    h2_get_with(addr, roots, path, &[]).await
}

/// [`h2_get`] with extra headers, each sent as its own field (a name given twice is two fields,
/// as browsers send cookies over HTTP/2).
pub async fn h2_get_with(
    addr: SocketAddr,
    roots: rustls::RootCertStore,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::Version, Answer) {
    let tls = connect(addr, roots, &[b"h2"]).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN must pick h2"
    );
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let mut request = Request::get(format!("https://localhost:{}{path}", addr.port()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    let response = sender.send_request(request).await.expect("h2 request");
    let version = response.version();
    (version, answer(response).await)
}
