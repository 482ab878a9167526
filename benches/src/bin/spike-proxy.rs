//! The issue #15 spike, kept so the load run can measure it beside nginx: the cheapest proxy hyper
//! allows. A current-thread runtime; per client connection one upstream HTTP/1.1 connection, made
//! when the client connects, both connections polled in the client connection's own task (no
//! pool, no spawned connection task, no channel between tasks beyond hyper's own). It does
//! nothing but forward: no routing, no header hygiene, no timeouts, no error pages.
//!
//! ```sh
//! spike-proxy 127.0.0.1:8081 127.0.0.1:8080
//! ```

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err("usage: spike-proxy LISTEN_ADDR UPSTREAM_ADDR".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream: SocketAddr = upstream.parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&runtime, serve(listen, upstream))
}

async fn serve(listen: SocketAddr, upstream: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (client, _) = listener.accept().await?;
        client.set_nodelay(true)?;
        tokio::task::spawn_local(async move {
            let Ok(upstream) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = upstream.set_nodelay(true);
            let Ok((sender, upstream_connection)) =
                hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(upstream)).await
            else {
                return;
            };
            // HTTP/1.1 serves one request at a time per client connection, so the sender is
            // never borrowed twice; `send_request`'s future does not borrow it.
            let sender = Rc::new(RefCell::new(sender));
            let service = service_fn(move |request: Request<Incoming>| {
                let response = sender.borrow_mut().send_request(request);
                async move {
                    Ok::<_, Infallible>(match response.await {
                        Ok(response) => response.map(|body| body.boxed_unsync()),
                        Err(_) => bad_gateway(),
                    })
                }
            });
            let client_connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(client), service);
            tokio::select! {
                _ = client_connection => {}
                _ = upstream_connection => {}
            }
        });
    }
}

fn bad_gateway() -> Response<Body> {
    let mut response = Response::new(
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
