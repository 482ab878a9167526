//! The public listeners' connections: the `server.max_connections` limit (a `503` past it), the
//! TLS handshake, and HTTP/1.1 (with upgrades) or HTTP/2 on each connection through the [`Proxy`],
//! watched for graceful shutdown and closed when idle. Runs on a worker's runtime ([`super::worker`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};

use super::unstarted::{FirstRequest, Unstarted};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::accept::{HEADER_READ_TIMEOUT, next_connection};
use super::idle;
use crate::proxy::{ConnInfo, Proxy};

/// A client that opened a TCP connection has this long to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Open client connections of the public listeners, against `server.max_connections`.
#[derive(Clone, Default)]
pub(super) struct OpenConnections {
    open: Arc<AtomicUsize>,
    refused: Arc<AtomicU64>,
    /// Refused connections still being answered `503`: bounded too, or a flood past the limit
    /// would hold sockets beyond it while each is answered.
    answering: Arc<AtomicUsize>,
}

/// Refused connections answered `503` at once; past this they are closed without an answer.
const MAX_ANSWERING_REFUSALS: usize = 64;

/// One open connection's place in [`OpenConnections`], given back when dropped.
struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ConnectionSlot {
    /// A place counted in `count`, unless `max` are taken.
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<ConnectionSlot> {
        if count.fetch_add(1, Ordering::SeqCst) >= max {
            count.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(ConnectionSlot(count.clone()))
    }
}

impl OpenConnections {
    /// A place for one more connection, unless `max` are open.
    fn try_open(&self, max: usize) -> Option<ConnectionSlot> {
        ConnectionSlot::take(&self.open, max)
    }

    /// Counts a refused connection and logs the 1st, 2nd, 4th, 8th… so a flood cannot flood the
    /// log as well.
    fn note_refused(&self, peer: SocketAddr, max: usize) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        if refused.is_power_of_two() {
            tracing::warn!(%peer, max_connections = max, refused_so_far = refused, "connection refused: server.max_connections reached");
        }
    }
}

/// What a plain-HTTP connection over the limit gets: a `503` with `Retry-After`, so the client
/// learns why. (A TLS connection is closed: answering would cost a handshake, which is what is
/// short; so is any connection past [`MAX_ANSWERING_REFUSALS`].)
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 37\r\n\r\ntoo many connections; try again soon\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(BUSY).await;
        let _ = stream.shutdown().await;
        // Read what the client sends until it closes (a lingering close): closing with its
        // request unread would reset the connection and could discard the answer.
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Accepts connections until told to stop. Each connection is served in its own task.
pub(super) async fn accept_loop(
    listener: TcpListener,
    proxy: Proxy,
    graceful: &GracefulShutdown,
    unstarted: &Unstarted,
    open: OpenConnections,
    mut stop: watch::Receiver<bool>,
) {
    let mut stopped = std::pin::pin!(async move {
        let _ = stop.changed().await;
    });
    while let Some((stream, peer)) = next_connection(&listener, &mut stopped).await {
        let _ = stream.set_nodelay(true);
        // Read the TLS config and the limit per connection: a reload can change them.
        let snapshot = proxy.snapshot();
        let tls = snapshot.server.tls.clone();
        let max_connections = snapshot.server.max_connections;
        let idle_timeout = snapshot.server.connection_idle_timeout;
        drop(snapshot);
        let Some(slot) = open.try_open(max_connections) else {
            open.note_refused(peer, max_connections);
            if tls.is_none()
                && let Some(answering) =
                    ConnectionSlot::take(&open.answering, MAX_ANSWERING_REFUSALS)
            {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(answering);
                });
            }
            continue;
        };
        let proxy = proxy.clone();
        let watcher = graceful.watcher();
        let first_request = unstarted.enter();
        tokio::spawn(async move {
            let serving = Serving {
                // Shared with a tunnel the connection may become (see `ConnectionHold`).
                slot: Arc::new(slot),
                proxy,
                watcher,
                first_request,
            };
            match tls {
                None => {
                    let conn = ConnInfo::new(peer, false);
                    serve_connection(stream, conn, idle_timeout, serving).await
                }
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => {
                            let conn = ConnInfo::new(peer, true);
                            serve_connection(tls_stream, conn, idle_timeout, serving).await
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// What a connection is served with besides its socket.
struct Serving {
    /// Its place among `server.max_connections`.
    slot: Arc<ConnectionSlot>,
    proxy: Proxy,
    /// Tells it to close at shutdown (and counts it for the drain).
    watcher: Watcher,
    /// Counted as waiting for its first request until one begins.
    first_request: FirstRequest,
}

/// Serves HTTP/1.1 (with upgrades) or HTTP/2 on one connection until it closes, or until it has
/// been idle (no request in flight, none started or ended) for `idle_timeout`.
async fn serve_connection<IO>(io: IO, conn: ConnInfo, idle_timeout: Duration, serving: Serving)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Serving {
        slot,
        proxy,
        watcher: graceful,
        first_request,
    } = serving;
    let activity = idle::Activity::new();
    let requests = activity.clone();
    let peer = conn.peer;
    let service = service_fn(move |mut request: Request<Incoming>| {
        first_request.began();
        let proxy = proxy.clone();
        let conn = conn.clone();
        let in_flight = requests.request();
        if request.headers().contains_key(http::header::UPGRADE) {
            // A tunnel outlives this connection's HTTP part: it keeps the connection's place.
            request
                .extensions_mut()
                .insert(crate::upstream::ConnectionHold::new(slot.clone()));
        }
        async move {
            let response = proxy.handle(request, conn).await;
            // In flight until the response body is done with (sent, or dropped).
            let response = response.map(|body| idle::CountedBody::new(body, in_flight));
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::select! {
        result = graceful.watch(connection.into_owned()) => {
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        }
        () = activity.idle_for(idle_timeout) => {
            tracing::debug!(%peer, ?idle_timeout, "idle connection closed");
        }
    }
}
