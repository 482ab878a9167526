//! The one accept loop: taking connections off a listener until told to stop, and serving small
//! HTTP/1.1 listeners (the admin listener, the development provider, the demo backend) with it.
//! The public listeners add connection limits, TLS and HTTP/2 on top (see [`super::Server`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

/// A client has this long to send a request's headers (slowloris guard).
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The next connection on `listener`, or `None` once `stop` completes. Failures to accept (out of
/// file descriptors and the like) are logged and retried after a pause instead of spinning.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut *stop => return None,
        };
        match accepted {
            Ok(pair) => return Some(pair),
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves HTTP/1.1 on `listener` until `stop` completes, each connection in its own task, every
/// request answered by `handle`.
pub async fn serve_http1<H, Fut, B>(
    listener: TcpListener,
    handle: H,
    stop: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handle = Arc::new(handle);
    let mut stop = std::pin::pin!(stop);
    while let Some((stream, _)) = next_connection(&listener, &mut stop).await {
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let answer = handle(request);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// [`serve_http1`] on a listener bound outside the runtime, in a task of its own, for as long as
/// the runtime runs.
pub fn spawn_http1<H, Fut, B>(listener: std::net::TcpListener, handle: H) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    tokio::spawn(serve_http1(listener, handle, std::future::pending()));
    Ok(())
}
