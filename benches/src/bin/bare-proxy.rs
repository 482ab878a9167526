//! The floor of the stack: a hyper server that forwards every request to one upstream through
//! hyper-util's pooled client, and does nothing else — no routing, header hygiene, sessions or
//! policies. The load comparison runs it beside nginx and Portcullis (row g) to show how much of
//! Portcullis's cost per request is hyper and tokio themselves. Built like Portcullis: tokio's
//! multi-threaded runtime, hyper-util's HTTP/1+2 server and pooled HTTP/1.1 client.
//!
//! ```sh
//! bare-proxy 127.0.0.1:8081 127.0.0.1:8080
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use http::{Request, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err("usage: bare-proxy LISTEN_ADDR UPSTREAM_HOST:PORT".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream: http::uri::Authority = upstream.parse()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(listen, upstream))
}

async fn serve(
    listen: SocketAddr,
    upstream: http::uri::Authority,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build(connector);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move {
                    let (mut parts, body) = request.into_parts();
                    let mut uri = Uri::builder().scheme("http").authority(upstream);
                    if let Some(path) = parts.uri.path_and_query() {
                        uri = uri.path_and_query(path.clone());
                    }
                    parts.uri = uri.build().expect("a valid upstream URI");
                    parts.version = http::Version::HTTP_11;
                    let request = Request::from_parts(parts, body.boxed_unsync());
                    let response = match client.request(request).await {
                        Ok(response) => response.map(|body| body.boxed_unsync()),
                        Err(_) => {
                            let mut response = http::Response::new(
                                http_body_util::Empty::new()
                                    .map_err(|never| match never {})
                                    .boxed_unsync(),
                            );
                            *response.status_mut() = http::StatusCode::BAD_GATEWAY;
                            response
                        }
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
