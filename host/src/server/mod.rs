//! Listeners: accept connections (plain or TLS), serve HTTP/1.1 and HTTP/2 on them through the
//! [`Proxy`], and shut down gracefully.
//!
//! Shutdown: stop accepting, tell every open connection to finish (HTTP/1.1 closes after its
//! in-flight response, HTTP/2 sends GOAWAY), and wait up to `server.drain_timeout` for them.
//! `/readyz` on the admin listener answers 503 from the moment draining starts; the admin listener
//! keeps accepting until the drain is over.

pub mod accept;
mod idle;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::{ConnInfo, Proxy};
use crate::reload::Reloader;
use crate::response::{ProxyBody, full_body};
use accept::{HEADER_READ_TIMEOUT, next_connection};

/// A client that opened a TCP connection has this long to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    /// The address that could not be bound.
    pub addr: SocketAddr,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// Bound listeners, ready to serve. Binding and serving are separate so callers (tests, `run`)
/// learn the actual addresses (port 0) before traffic starts.
pub struct Server {
    proxy: Proxy,
    reloader: Arc<Reloader>,
    public: Vec<TcpListener>,
    admin: Option<TcpListener>,
}

impl Server {
    /// Serves `proxy` on the `public` listeners and the admin endpoints (with `reloader`'s status)
    /// on `admin`. Must run inside a tokio runtime.
    pub fn new(
        proxy: Proxy,
        reloader: Arc<Reloader>,
        public: Vec<std::net::TcpListener>,
        admin: Option<std::net::TcpListener>,
    ) -> std::io::Result<Self> {
        let into_tokio = |listener: std::net::TcpListener| {
            listener.set_nonblocking(true)?;
            TcpListener::from_std(listener)
        };
        Ok(Server {
            proxy,
            reloader,
            public: public
                .into_iter()
                .map(into_tokio)
                .collect::<std::io::Result<_>>()?,
            admin: admin.map(into_tokio).transpose()?,
        })
    }

    /// The bound public addresses, in config order.
    pub fn public_addrs(&self) -> Vec<SocketAddr> {
        self.public
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Whether the public listeners terminate TLS.
    pub fn uses_tls(&self) -> bool {
        self.proxy.snapshot().server.tls.is_some()
    }

    /// The bound admin address, if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then drains in-flight requests for up to the configured
    /// drain timeout.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let ready = Arc::new(AtomicBool::new(true));
        let graceful = GracefulShutdown::new();
        // The admin listener outlives the public ones: probes opening a new connection while
        // the requests in flight drain must still reach `/healthz` (200) and `/readyz` (503).
        let (drained, admin_stop) = tokio::sync::oneshot::channel::<()>();
        if let Some(listener) = self.admin {
            let (reloader, ready) = (self.reloader.clone(), ready.clone());
            let stopped = async move {
                let _ = admin_stop.await;
            };
            tokio::spawn(accept::serve_http1(
                listener,
                move |request: Request<Incoming>| {
                    let response = admin_response(request.uri().path(), &reloader, &ready);
                    async move { response }
                },
                stopped,
            ));
        }
        // The accept loops run inside this future (they borrow `graceful` to watch each
        // connection); connections themselves run in their own tasks. One count of open
        // connections for all public listeners.
        let open = OpenConnections::default();
        let accepting = futures_util::future::join_all(self.public.into_iter().map(|listener| {
            accept_loop(
                listener,
                self.proxy.clone(),
                &graceful,
                open.clone(),
                stop_rx.clone(),
            )
        }));
        let stopping = async {
            shutdown.await;
            ready.store(false, Ordering::SeqCst);
            let _ = stop_tx.send(true);
        };
        tokio::join!(accepting, stopping);
        let drain_timeout = self.proxy.snapshot().server.drain_timeout;
        tracing::info!(
            ?drain_timeout,
            "stopped accepting; draining in-flight requests"
        );
        match tokio::time::timeout(drain_timeout, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!(
                ?drain_timeout,
                "drain timeout passed; closing remaining connections"
            ),
        }
        drop(drained);
    }
}

/// How many connections the kernel queues before they are accepted (tokio's default).
const LISTEN_BACKLOG: i32 = 1024;

/// Binds `addr` (before the runtime starts, or inside it). An IPv6 address listens for IPv6 only
/// (`IPV6_V6ONLY`, as nginx does): Linux would otherwise make `[::]:443` take IPv4's port 443 as
/// well, and `listen = ["0.0.0.0:443", "[::]:443"]` could not start.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, BindError> {
    let bound = || -> std::io::Result<std::net::TcpListener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(socket.into())
    };
    bound().map_err(|source| BindError { addr, source })
}

/// Open client connections of the public listeners, against `server.max_connections`.
#[derive(Clone, Default)]
struct OpenConnections {
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
async fn accept_loop(
    listener: TcpListener,
    proxy: Proxy,
    graceful: &GracefulShutdown,
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
        tokio::spawn(async move {
            // Shared with a tunnel the connection may become (see `ConnectionHold`).
            let slot: Arc<ConnectionSlot> = Arc::new(slot);
            match tls {
                None => {
                    let conn = ConnInfo { peer, tls: false };
                    serve_connection(stream, conn, idle_timeout, slot, proxy, watcher).await
                }
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => {
                            let conn = ConnInfo { peer, tls: true };
                            serve_connection(tls_stream, conn, idle_timeout, slot, proxy, watcher)
                                .await
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

/// Serves HTTP/1.1 (with upgrades) or HTTP/2 on one connection until it closes, or until it has
/// been idle (no request in flight, none started or ended) for `idle_timeout`.
async fn serve_connection<IO>(
    io: IO,
    conn: ConnInfo,
    idle_timeout: Duration,
    slot: Arc<ConnectionSlot>,
    proxy: Proxy,
    graceful: Watcher,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = idle::Activity::new();
    let requests = activity.clone();
    let service = service_fn(move |mut request: Request<Incoming>| {
        let proxy = proxy.clone();
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
            let response = response.map(|body| {
                body.map_frame(move |frame| {
                    let _in_flight = &in_flight;
                    frame
                })
                .boxed_unsync()
            });
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
                tracing::debug!(peer = %conn.peer, error = %err, "connection ended with an error");
            }
        }
        () = activity.idle_for(idle_timeout) => {
            tracing::debug!(peer = %conn.peer, ?idle_timeout, "idle connection closed");
        }
    }
}

/// The admin listener's answers: `/healthz` (the process is up), `/readyz` (accepting traffic) and
/// `/reload` (generation and last reload attempt, JSON).
fn admin_response(path: &str, reloader: &Reloader, ready: &AtomicBool) -> Response<ProxyBody> {
    let ready = ready.load(Ordering::SeqCst);
    let (status, text) = match path {
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if ready => (StatusCode::OK, "ready\n".to_owned()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_owned()),
        "/reload" => {
            let status = serde_json::to_string_pretty(&reloader.status())
                .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"));
            let mut response = Response::new(full_body(status + "\n"));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            return response;
        }
        _ => (
            StatusCode::NOT_FOUND,
            "not found: the admin listener serves /healthz, /readyz and /reload\n".to_owned(),
        ),
    };
    let mut response = Response::new(full_body(text));
    *response.status_mut() = status;
    response
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

#[cfg(test)]
mod bind_tests {
    use super::*;

    /// Regression: `listen = ["0.0.0.0:443", "[::]:443"]` (the documented example) did not start,
    /// because an IPv6 socket on Linux also takes the IPv4 port unless told not to.
    #[test]
    fn an_ipv6_listener_leaves_the_ipv4_port_free() {
        let listener = bind("[::1]:0".parse().unwrap()).unwrap();
        // On loopback the test cannot show the clash itself (only wildcards take both
        // families); the option that prevents it is what is checked.
        assert!(socket2::SockRef::from(&listener).only_v6().unwrap());
    }
}
