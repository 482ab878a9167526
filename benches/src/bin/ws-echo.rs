//! The backend of the WebSocket tunnel load test (`benches/load/websocket.sh`): a WebSocket echo
//! server. It answers an HTTP/1.1 `Upgrade: websocket` request with `101 Switching Protocols` (and
//! the right `Sec-WebSocket-Accept`, so a proxy or client that checks the handshake accepts it),
//! then sends every data frame back unmasked, as a server must, and answers a close with a close.
//! Any other request gets `426 Upgrade Required` (the script's readiness probe). One thread: it
//! shares the load generator's core, as nginx's backend does in `run.sh`.
//!
//! ```sh
//! ws-echo 127.0.0.1:8080
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use portcullis_benches::websocket::{self, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG};
use tokio::io::{AsyncWriteExt, BufReader};

/// Larger than any message `ws-load --check` sends; a bound so that a garbled length is an error,
/// not an allocation of exabytes.
const MAX_MESSAGE: u64 = 16 << 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(listen) = std::env::args().nth(1) else {
        return Err("usage: ws-echo LISTEN_ADDR".into());
    };
    let listen: SocketAddr = listen.parse()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(listen))
}

async fn serve(listen: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handshake))
                .with_upgrades()
                .await;
        });
    }
}

/// The opening handshake (RFC 6455 §4.2): `101` with the accept key, the echo started on the
/// upgraded connection once hyper has sent the response.
async fn handshake(mut request: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let asks_websocket = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    let key = request.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let mut response = Response::new(Empty::new());
    let (true, Some(key)) = (asks_websocket, key) else {
        *response.status_mut() = StatusCode::UPGRADE_REQUIRED;
        return Ok(response);
    };
    let accept = websocket::accept_key(key.as_bytes());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Err(err) = echo(upgrade).await {
            eprintln!("ws-echo: tunnel ended with an error: {err}");
        }
    });
    Ok(response)
}

/// Echoes frames until the client's close (answered with a close, then the connection is shut) or
/// the end of the stream. Frames are read through a buffer, so a small message costs one `read`
/// and one `write` as with any real server; the buffers are reused, nothing is allocated per
/// message.
async fn echo(upgrade: OnUpgrade) -> std::io::Result<()> {
    let upgraded = upgrade.await.map_err(std::io::Error::other)?;
    let mut io = BufReader::with_capacity(64 << 10, TokioIo::new(upgraded));
    let (mut payload, mut out) = (Vec::new(), Vec::new());
    loop {
        let head = match websocket::read_frame(&mut io, &mut payload, MAX_MESSAGE).await {
            Ok(head) => head,
            // The client went away without a close: the end of a tunnel all the same.
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(err) => return Err(err),
        };
        if !head.masked || !head.fin {
            let what = if head.masked {
                "fragmented"
            } else {
                "unmasked"
            };
            return Err(std::io::Error::other(format!(
                "a {what} frame from the client"
            )));
        }
        let opcode = if head.opcode == OPCODE_PING {
            OPCODE_PONG
        } else {
            head.opcode
        };
        out.clear();
        websocket::encode_frame(&mut out, opcode, &payload, None);
        io.get_mut().write_all(&out).await?;
        if head.opcode == OPCODE_CLOSE {
            return io.get_mut().shutdown().await;
        }
    }
}
