//! Keep-alive HTTP/1.1 connections to upstreams, owned by the thread that uses them and driven
//! by the request that uses them.
//!
//! A connection is a [`SendRequest`] and the [`Connection`] future that does its I/O. hyper's
//! usual way, and hyper-util's pooled client, spawn that future as a task of its own and talk to it
//! through a channel: every request then wakes another task, and on a multi-threaded runtime
//! often another thread. Here the future is lent *with* the connection: the request's task polls
//! it while it waits for the response head ([`Lent::send`]) and the response body polls it while
//! it is read ([`PooledBody`]); when the body ends, the connection goes back to the idle list of
//! the thread it ran on (one list per thread and pool, [`ThreadLocal`]), undriven until its next
//! request. With one runtime per worker thread (`server::worker`), an upstream connection is
//! created, used and reused by one thread only.
//!
//! A connection the upstream closed while idle is found out when it is next taken: driving it
//! reads the close, and the request goes to another. A request that a reused connection closed
//! before it was sent is sent again on another: the upstream never saw it. Upgrade requests
//! (WebSocket) get a fresh connection of their own, driven by a task as a tunnel needs.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response, Uri, header};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use thread_local::ThreadLocal;
use tower_service::Service;

use super::error::{SendError, UpstreamError, classify_send};
use crate::response::ProxyBody;

/// How long an idle connection may wait for its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per pool and thread; past it, the longest idle is closed.
const MAX_IDLE: usize = 128;

/// The transport of an upstream connection: TCP, or TLS over it for https upstreams.
type Io = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

/// Which upstream a connection goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    authority: Authority,
}

/// An upstream connection as the pool lends it: the handle requests are sent on and the future
/// that drives its I/O, polled by whoever holds the connection.
struct Lent {
    sender: SendRequest<ProxyBody>,
    /// `None` once the connection has ended (closed by either side, or failed).
    driver: Option<Connection<Io, ProxyBody>>,
}

impl Lent {
    /// Drives the connection's I/O as far as it goes now. `false` once it has ended; the driver
    /// is then dropped, which fails a request still waiting on it.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(driver) = &mut self.driver else {
            return false;
        };
        match Pin::new(driver).poll(cx) {
            Poll::Pending => true,
            Poll::Ready(ended) => {
                if let Err(err) = ended {
                    tracing::debug!(error = %err, "upstream connection ended with an error");
                }
                self.driver = None;
                false
            }
        }
    }

    /// Drives the connection once without anyone to wake: for a connection about to rest in the
    /// idle list, so that it takes in what it has already received (the end of its response)
    /// and is ready for the next request. Its next holder polls it with a real waker.
    fn settle(&mut self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.drive(&mut cx);
    }

    /// Waits until the connection can take a request: `false` if it ended first.
    async fn ready(&mut self) -> bool {
        std::future::poll_fn(|cx| {
            let running = self.drive(cx);
            match self.sender.poll_ready(cx) {
                Poll::Ready(ready) => Poll::Ready(ready.is_ok() && running),
                Poll::Pending if running => Poll::Pending,
                Poll::Pending => Poll::Ready(false),
            }
        })
        .await
    }

    /// Sends `request` and waits for the response head, driving the connection meanwhile.
    async fn send(
        &mut self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<ProxyBody>>> {
        let mut response = std::pin::pin!(self.sender.try_send_request(request));
        std::future::poll_fn(|cx| {
            if let Poll::Ready(response) = response.as_mut().poll(cx) {
                return Poll::Ready(response);
            }
            // Either the connection made progress or it ended (its end fails the request):
            // both can complete the response now.
            self.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

/// An idle connection in a thread's list.
struct Idle {
    target: Target,
    connection: Lent,
    since: Instant,
}

/// The connections of one trust configuration (routes sharing it share them), each thread's
/// apart.
pub struct ConnectionPool {
    connector: HttpsConnector<HttpConnector>,
    idle: ThreadLocal<RefCell<Vec<Idle>>>,
}

impl ConnectionPool {
    /// A pool connecting through `connector` (TCP, and TLS for https upstreams).
    pub fn new(connector: HttpsConnector<HttpConnector>) -> Arc<Self> {
        Arc::new(ConnectionPool {
            connector,
            idle: ThreadLocal::new(),
        })
    }

    /// Sends `request` (its URI absolute: scheme and authority pick the upstream) on an idle
    /// connection of this thread, or a new one.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        let uri = request.uri().clone();
        let target = Target {
            https: uri.scheme() == Some(&http::uri::Scheme::HTTPS),
            authority: uri.authority().cloned().ok_or_else(|| {
                SendError::Upstream(UpstreamError::Protocol {
                    authority: String::new(),
                    detail: "the upstream URI has no authority".into(),
                })
            })?,
        };
        // HTTP/1.1 to an origin server: the request target is the path and query alone.
        *request.uri_mut() = origin_form(&uri);
        if request.headers().contains_key(header::UPGRADE) {
            return self.send_upgrade(&target, &uri, request).await;
        }
        loop {
            let (mut connection, reused) = match self.checkout(&target) {
                Some(connection) => (connection, true),
                None => (self.connect(&target, &uri).await?, false),
            };
            if !connection.ready().await {
                if reused {
                    continue;
                }
                return Err(protocol(
                    &target,
                    "the connection closed before the request was sent",
                ));
            }
            match connection.send(request).await {
                Ok(response) => {
                    let home = Home {
                        pool: Arc::downgrade(self),
                        target,
                        connection,
                    };
                    return Ok(response.map(|body| PooledBody {
                        body,
                        home: Some(home),
                    }));
                }
                Err(mut err) => match err.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => {
                        return Err(classify_send(
                            err.into_error(),
                            target.authority.to_string(),
                        ));
                    }
                },
            }
        }
    }

    /// An upgrade request (WebSocket) on a connection of its own, driven by a task: if the
    /// upstream switches protocols, the connection becomes the tunnel's and outlives this request.
    async fn send_upgrade(
        &self,
        target: &Target,
        uri: &Uri,
        request: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        let Lent {
            mut sender,
            driver,
        } = self.connect(target, uri).await?;
        if let Some(driver) = driver {
            tokio::spawn(async move {
                if let Err(err) = driver.with_upgrades().await {
                    tracing::debug!(error = %err, "upstream connection ended with an error");
                }
            });
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| classify_send(err, target.authority.to_string()))?;
        Ok(response.map(|body| PooledBody { body, home: None }))
    }

    /// This thread's most recently used idle connection to `target` that is fresh. Whether it is
    /// still open is seen when it is driven next ([`Lent::ready`]).
    fn checkout(&self, target: &Target) -> Option<Lent> {
        let mut idle = self.idle.get_or_default().borrow_mut();
        while let Some(index) = idle.iter().rposition(|entry| entry.target == *target) {
            let entry = idle.remove(index);
            if entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.connection);
            }
        }
        None
    }

    /// Takes back a connection whose response has been read.
    fn give_back(self: Arc<Self>, target: Target, mut connection: Lent) {
        connection.settle();
        if connection.driver.is_none() || connection.sender.is_closed() {
            return;
        }
        if !connection.sender.is_ready() {
            // Still busy: the upstream answered before the request body was all sent (an early
            // 401 or 413 to an upload). A request that took it now would wait for that upload;
            // a task finishes it and the connection joins this thread's list once free.
            let pool = Arc::downgrade(&self);
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            runtime.spawn(async move {
                let freed = tokio::time::timeout(IDLE_TIMEOUT, connection.ready()).await;
                if let (Ok(true), Some(pool)) = (freed, pool.upgrade()) {
                    connection.settle();
                    pool.put(target, connection);
                }
            });
            return;
        }
        self.put(target, connection);
    }

    fn put(&self, target: Target, connection: Lent) {
        let now = Instant::now();
        let mut idle = self.idle.get_or_default().borrow_mut();
        // Connections idle too long go now (one clock read for all).
        idle.retain(|entry| now.duration_since(entry.since) < IDLE_TIMEOUT);
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push(Idle {
            target,
            connection,
            since: now,
        });
    }

    async fn connect(&self, target: &Target, uri: &Uri) -> Result<Lent, SendError> {
        let authority = || target.authority.to_string();
        let mut connector = self.connector.clone();
        let connected = async {
            std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
            connector.call(uri.clone()).await
        };
        let io = connected
            .await
            .map_err(|err| SendError::Upstream(connect_error(&*err, authority())))?;
        let (sender, driver) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|err| classify_send(err, authority()))?;
        Ok(Lent {
            sender,
            driver: Some(driver),
        })
    }
}

/// `/path?query` of an absolute URI.
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(path) if path.as_str() != "/" => Uri::from(path.clone()),
        _ => Uri::from_static("/"),
    }
}

fn protocol(target: &Target, detail: &str) -> SendError {
    SendError::Upstream(UpstreamError::Protocol {
        authority: target.authority.to_string(),
        detail: detail.to_owned(),
    })
}

/// A failed connect: timed out (504) or refused, unresolvable, bad TLS (502).
fn connect_error(err: &(dyn std::error::Error + 'static), authority: String) -> UpstreamError {
    let chain = std::iter::successors(Some(err), |err| err.source());
    let timed_out = chain.clone().any(|err| {
        err.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    });
    if timed_out {
        return UpstreamError::ConnectTimeout { authority };
    }
    let detail = chain
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    UpstreamError::Connect { authority, detail }
}

/// The connection a response came on, and where it goes once the body has been read.
struct Home {
    pool: Weak<ConnectionPool>,
    target: Target,
    connection: Lent,
}

impl Home {
    fn go(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give_back(self.target, self.connection);
        }
    }
}

/// An upstream response body. Reading it drives its connection; read to its end, it returns the
/// connection to the pool; dropped before that, the connection is closed (hyper cannot reuse a
/// half-read one).
pub struct PooledBody {
    body: Incoming,
    /// `None` for a connection that is not pooled (an upgrade's), or once given back.
    home: Option<Home>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let mut frame = Pin::new(&mut this.body).poll_frame(cx);
        if frame.is_pending()
            && let Some(home) = &mut this.home
        {
            // Nothing buffered: read from the upstream now (this also finishes sending the
            // request body of an upload the upstream answered early), then look again.
            home.connection.drive(cx);
            frame = Pin::new(&mut this.body).poll_frame(cx);
        }
        let frame = std::task::ready!(frame);
        if (frame.is_none() || self.body.is_end_stream())
            && let Some(home) = self.home.take()
        {
            home.go();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body with nothing to read (a 204, `Content-Length: 0`) is never polled.
        if self.body.is_end_stream()
            && let Some(home) = self.home.take()
        {
            home.go();
        }
    }
}
