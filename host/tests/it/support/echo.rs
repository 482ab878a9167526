//! The echo upstream: answers every request with JSON describing what it received.
//!
//! - any path: `{"method", "uri", "headers": [[name, value]...], "body_bytes", "peer"}`; the body
//!   is read as a stream and only counted; `peer` is the connection's remote address (the proxy's
//!   side of a pooled connection);
//! - `?empty=1`: answers with an empty body (`Content-Length: 0`);
//! - `?sleep_ms=N`: waits N ms before answering (slow upstreams);
//! - `?bytes=N`: answers with N bytes of body instead, streamed (large downloads);
//! - `?hop=1`: adds hop-by-hop response headers (and `X-Resp-Kept`, which must survive);
//! - `?set_cookie=V` (percent-encoded, repeatable): answers with `Set-Cookie: V` for each;
//! - `Upgrade: websocket`: completes the handshake and echoes every message back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

type EchoBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Starts the echo upstream on a loopback port; it runs until the test's runtime ends.
pub async fn spawn() -> SocketAddr {
    spawn_counting().await.0
}

/// The requests an echo has received (before any `sleep_ms`): a test waits for its request to be
/// in flight upstream instead of sleeping and hoping it got there.
#[derive(Clone, Default)]
pub struct Arrivals(Arc<AtomicUsize>);

impl Arrivals {
    /// Waits until `count` requests have arrived; panics after 30 s.
    pub async fn wait_for(&self, count: usize) {
        let give_up = Instant::now() + Duration::from_secs(30);
        while self.0.load(Ordering::SeqCst) < count {
            assert!(
                Instant::now() < give_up,
                "the echo received {} of {count} requests",
                self.0.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// [`spawn`], and the count of requests it receives.
pub async fn spawn_counting() -> (SocketAddr, Arrivals) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrivals = Arrivals::default();
    let counter = arrivals.0.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(echo(request, peer).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, arrivals)
}

fn query_number(request: &Request<Incoming>, key: &str) -> Option<u64> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

async fn echo(mut request: Request<Incoming>, peer: SocketAddr) -> Response<EchoBody> {
    if let Some(ms) = query_number(&request, "sleep_ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if request
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
    {
        return websocket(&mut request);
    }
    if query_number(&request, "empty") == Some(1) {
        return Response::new(
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
    }
    if let Some(size) = query_number(&request, "bytes") {
        let chunk = Bytes::from(vec![b'z'; 64 * 1024]);
        let chunks = size.div_ceil(chunk.len() as u64);
        let stream = futures_util::stream::iter((0..chunks).map(move |i| {
            let len = (size - i * chunk.len() as u64).min(chunk.len() as u64) as usize;
            Ok::<_, std::io::Error>(Frame::data(chunk.slice(..len)))
        }));
        return Response::new(StreamBody::new(stream).boxed_unsync());
    }
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = request.into_body();
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => body_bytes += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    let report = serde_json::json!({ "method": method, "uri": uri, "headers": headers, "body_bytes": body_bytes, "peer": peer.to_string() });
    let mut response = Response::new(
        Full::new(Bytes::from(report.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    for (key, value) in url::form_urlencoded::parse(
        uri.split_once('?')
            .map_or("", |(_, query)| query)
            .as_bytes(),
    ) {
        if key == "set_cookie" {
            response.headers_mut().append(
                header::SET_COOKIE,
                http::HeaderValue::from_str(&value).unwrap(),
            );
        }
    }
    if uri.contains("hop=1") {
        // Hop-by-hop headers a proxy must not pass back to the client.
        let headers = response.headers_mut();
        headers.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("x-resp-hop"),
        );
        headers.insert("x-resp-hop", http::HeaderValue::from_static("1"));
        headers.insert("keep-alive", http::HeaderValue::from_static("timeout=5"));
        headers.insert("x-resp-kept", http::HeaderValue::from_static("1"));
    }
    response
}

fn websocket(request: &mut Request<Incoming>) -> Response<EchoBody> {
    let key = request
        .headers()
        .get("sec-websocket-key")
        .cloned()
        .unwrap_or(http::HeaderValue::from_static(""));
    let on_upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() {
                // Answers the client's Close (the handshake's second half), then ends.
                let _ = socket.close(None).await;
                break;
            }
            if socket.send(message).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
        .body(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .unwrap()
}

/// The value of header `name` the echo upstream received (first one), from its JSON report.
pub fn received_header(report: &serde_json::Value, name: &str) -> Option<String> {
    received_headers(report, name).into_iter().next()
}

/// Every value of header `name` the echo upstream received.
pub fn received_headers(report: &serde_json::Value, name: &str) -> Vec<String> {
    report["headers"]
        .as_array()
        .expect("headers array")
        .iter()
        .filter(|pair| pair[0].as_str() == Some(name))
        .map(|pair| pair[1].as_str().unwrap().to_owned())
        .collect()
}
