//! The upstream side: pooled clients, sending a request with a deadline, and upgrade tunnels.
//!
//! One keep-alive pool per trust configuration (public web roots, or a route's `upstream_ca`);
//! routes sharing it share connections ([`pool`]). Upstreams are spoken to in HTTP/1.1, which every
//! backend understands and which WebSocket upgrades need.

mod error;
pub mod limited_body;
mod pool;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

pub use error::{SendError, UpstreamError};
use http::{Request, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
pub use pool::{PooledBody, Target};

use crate::response::ProxyBody;

/// A pooled HTTP(S) client for upstream requests. Cheap to clone (shares the pool).
pub type UpstreamClient = Arc<pool::ConnectionPool>;

/// Builds a pooled client trusting `roots` for https upstreams.
fn client(
    roots: std::sync::Arc<rustls::RootCertStore>,
    connect_timeout: Duration,
) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(crate::tls::upstream_client_config(roots))
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    pool::ConnectionPool::new(https)
}

/// The upstream clients of the process, one per trust configuration and connect timeout. They
/// outlive snapshots, so a reload keeps the warm connections of every upstream it still uses.
#[derive(Default)]
pub struct UpstreamPools {
    clients: HashMap<PoolKey, UpstreamClient>,
    /// Keys handed out since the last [`UpstreamPools::keep_only_used`].
    used: HashSet<PoolKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PoolKey {
    /// SHA-256 of the trust anchors; `None` for the public web roots.
    roots: Option<[u8; 32]>,
    connect_timeout: Duration,
}

impl UpstreamPools {
    /// The client trusting `roots` (the public web roots when `None`), created on first use.
    pub fn client(
        &mut self,
        roots: Option<&Arc<rustls::RootCertStore>>,
        connect_timeout: Duration,
    ) -> UpstreamClient {
        let key = PoolKey {
            roots: roots.map(|roots| fingerprint(roots)),
            connect_timeout,
        };
        self.used.insert(key);
        self.clients
            .entry(key)
            .or_insert_with(|| {
                let roots = roots
                    .cloned()
                    .unwrap_or_else(|| Arc::new(crate::tls::web_roots()));
                client(roots, connect_timeout)
            })
            .clone()
    }

    /// Drops the clients no one asked for since the last call (a reload removed their routes;
    /// requests still holding one finish on it).
    pub fn keep_only_used(&mut self) {
        let used = std::mem::take(&mut self.used);
        self.clients.retain(|key, _| used.contains(key));
    }
}

fn fingerprint(roots: &rustls::RootCertStore) -> [u8; 32] {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for anchor in &roots.roots {
        for part in [
            anchor.subject.as_ref(),
            anchor.subject_public_key_info.as_ref(),
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
    }
    hash.finalize().into()
}

/// Sends `request` (its URI the path and query) to `target` and waits up to `timeout` for the
/// response headers.
pub async fn send(
    client: &UpstreamClient,
    target: &Target,
    request: Request<ProxyBody>,
    timeout: Duration,
) -> Result<Response<PooledBody>, SendError> {
    match tokio::time::timeout(timeout, client.send(target, request)).await {
        Ok(sent) => sent,
        Err(_) => Err(SendError::Upstream(UpstreamError::ResponseTimeout {
            authority: target.authority().to_string(),
            timeout,
        })),
    }
}

/// Something the listener keeps alive for as long as the client connection is in use (its place in
/// `server.max_connections`). Put in the extensions of a request that asks for an upgrade, so the
/// tunnel that outlives the HTTP exchange keeps holding it.
#[derive(Clone)]
pub struct ConnectionHold {
    /// Never read: dropping the last copy is what gives the place back.
    _held: Arc<dyn std::any::Any + Send + Sync>,
}

impl ConnectionHold {
    /// Holds `token` until every copy of this hold is dropped.
    pub fn new(token: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        ConnectionHold { _held: token }
    }
}

/// Joins the client's and the upstream's upgraded connections and copies bytes both ways until
/// either side closes. Runs in its own task after the 101 response went to the client.
pub fn spawn_tunnel(
    client_side: OnUpgrade,
    upstream_side: OnUpgrade,
    request_id: String,
    hold: Option<ConnectionHold>,
) {
    tokio::spawn(async move {
        // The client connection's place in `max_connections` is held until the tunnel ends.
        let _hold = hold;
        let (client_io, upstream_io) = match tokio::try_join!(client_side, upstream_side) {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(request_id, error = %err, "upgrade failed");
                return;
            }
        };
        let mut client_io = TokioIo::new(client_io);
        let mut upstream_io = TokioIo::new(upstream_io);
        match tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io).await {
            Ok((up, down)) => tracing::debug!(
                request_id,
                bytes_up = up,
                bytes_down = down,
                "tunnel closed"
            ),
            Err(err) => tracing::debug!(request_id, error = %err, "tunnel ended with an error"),
        }
    });
}
