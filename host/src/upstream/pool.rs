//! Keep-alive HTTP/1.1 connections to upstreams: one request at a time on each, handed back to
//! the pool by the response body the moment it has been read to its end, and kept by the thread
//! that made them.
//!
//! Why not hyper-util's pooled client: it hands a connection back through a task spawned for every
//! request (its response is returned before the body is read) and finds connections by a hashed
//! (scheme, authority) key; both showed up on a request path that costs ~55,000 instructions in
//! all (`docs/performance.md`). Here the body gives its connection back itself, and the few
//! idle connections are found by a scan.
//!
//! Each thread has its own idle list ([`ThreadLocal`]): with one runtime per worker thread
//! (`server::worker`), a connection is made, driven (by a task on that runtime) and reused by
//! one thread only, and no request waits for another thread. Driving the connection inside the
//! request's own task instead of a task of its own was tried and measured slower
//! (`docs/performance.md`).

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use thread_local::ThreadLocal;
use tower_service::Service;

use super::error::{SendError, UpstreamError, classify_send};
use crate::response::ProxyBody;

/// How long an idle connection may wait for its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per pool and thread; past it, the longest idle is closed.
const MAX_IDLE: usize = 128;

/// Which upstream a request goes to, and a connection is for: made once per route.
#[derive(Debug, Clone)]
pub struct Target {
    https: bool,
    authority: Authority,
}

/// The authority as configured, byte for byte: `Authority`'s own `==` ignores case, which costs
/// more in the pool's scan, and two spellings of one host in the config may well keep two sets
/// of connections.
impl PartialEq for Target {
    fn eq(&self, other: &Self) -> bool {
        self.https == other.https && self.authority.as_str() == other.authority.as_str()
    }
}
impl Eq for Target {}

impl Target {
    /// The upstream at `authority`, over TLS when `https`.
    pub fn new(https: bool, authority: Authority) -> Self {
        Target { https, authority }
    }

    /// `host:port` as configured, for messages.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }
}

struct Idle {
    target: Target,
    sender: SendRequest<ProxyBody>,
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

    /// Sends `request` to `target` on an idle connection of this thread, or a new one; its URI
    /// is the request target, path and query (HTTP/1.1 to an origin server). A request that a
    /// reused connection closed before it was sent is sent again on another: the upstream never
    /// saw it.
    pub async fn send(
        self: &Arc<Self>,
        target: &Target,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        loop {
            let (mut sender, reused) = match self.checkout(target) {
                Some(sender) => (sender, true),
                None => (self.connect(target).await?, false),
            };
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(protocol(
                    target,
                    "the connection closed before the request was sent",
                ));
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    // An upgraded connection belongs to its tunnel from now on.
                    let home =
                        (response.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Home {
                            pool: Arc::downgrade(self),
                            target: target.clone(),
                            sender,
                        });
                    return Ok(response.map(|body| PooledBody { body, home }));
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

    /// This thread's most recently used idle connection to `target` that is still open and fresh.
    fn checkout(&self, target: &Target) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.get_or_default().borrow_mut();
        while let Some(index) = idle.iter().rposition(|entry| entry.target == *target) {
            let entry = idle.remove(index);
            if !entry.sender.is_closed() && entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.sender);
            }
        }
        None
    }

    fn give_back(self: Arc<Self>, target: Target, mut sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        if !sender.is_ready() {
            // Still busy: the upstream answered before the request body was all sent (an early
            // 401 or 413 to an upload). A request that took it now would wait for that upload;
            // it joins the pool once free instead (the idle list of the thread that waited). (Rare: normally it is ready when the response
            // body ends.)
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let pool = Arc::downgrade(&self);
            runtime.spawn(async move {
                if let Ok(Ok(())) = tokio::time::timeout(IDLE_TIMEOUT, sender.ready()).await
                    && let Some(pool) = pool.upgrade()
                {
                    pool.put(target, sender);
                }
            });
            return;
        }
        self.put(target, sender);
    }

    fn put(&self, target: Target, sender: SendRequest<ProxyBody>) {
        let now = Instant::now();
        let mut idle = self.idle.get_or_default().borrow_mut();
        // Connections the upstream closed, or idle too long, go now (one clock read for all).
        idle.retain(|entry| {
            !entry.sender.is_closed() && now.duration_since(entry.since) < IDLE_TIMEOUT
        });
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push(Idle {
            target,
            sender,
            since: now,
        });
    }

    async fn connect(&self, target: &Target) -> Result<SendRequest<ProxyBody>, SendError> {
        let authority = || target.authority.to_string();
        let uri = Uri::builder()
            .scheme(if target.https { "https" } else { "http" })
            .authority(target.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|err| protocol(target, &err.to_string()))?;
        let mut connector = self.connector.clone();
        let connected = async {
            std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
            connector.call(uri).await
        };
        let io = connected
            .await
            .map_err(|err| SendError::Upstream(connect_error(&*err, authority())))?;
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|err| classify_send(err, authority()))?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(error = %err, "upstream connection ended with an error");
            }
        });
        Ok(sender)
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

/// Where a response's connection goes once its body has been read.
struct Home {
    pool: Weak<ConnectionPool>,
    target: Target,
    sender: SendRequest<ProxyBody>,
}

impl Home {
    fn go(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.give_back(self.target, self.sender);
        }
    }
}

/// An upstream response body. Read to its end, it returns its connection to the pool; dropped
/// before that, the connection is closed (hyper cannot reuse a half-read one).
pub struct PooledBody {
    body: Incoming,
    home: Option<Home>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
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
