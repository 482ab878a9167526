//! The pipeline driven in-process: `Proxy::handle` called directly with in-memory requests, no
//! listener. (Requests that reach an upstream still go to the echo upstream over loopback.)

mod support;

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use portcullis::proxy::ConnInfo;
use portcullis::{Proxy, Snapshot};
use support::echo::{self, received_header, received_headers};
use support::{Answer, answer};

fn proxy(config: &str) -> Proxy {
    Proxy::new(Snapshot::new(
        portcullis::config::parse(config, Path::new(".")).unwrap(),
    ))
}

fn conn(peer: &str) -> ConnInfo {
    ConnInfo {
        peer: peer.parse::<SocketAddr>().unwrap(),
        tls: false,
    }
}

async fn call(proxy: &Proxy, request: http::request::Builder, peer: &str) -> Answer {
    let response = proxy
        .handle(request.body(Full::new(Bytes::new())).unwrap(), conn(peer))
        .await;
    answer(response).await
}

fn routes(upstream: &str) -> String {
    format!(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n\n[[routes]]\nname = \"api\"\npath = \"/api\"\nupstream = \"{upstream}\"\nauth = \"none\"\n\n[[routes]]\nname = \"admin\"\nhost = \"admin.example.com\"\npath = \"/\"\nupstream = \"{upstream}\"\nauth = \"none\"\n"
    )
}

#[tokio::test]
async fn refusals_are_decided_before_any_upstream_is_contacted() {
    // The upstream is a closed port: every case below must be answered without it.
    let proxy = proxy(&routes(&format!("http://{}", support::closed_port())));
    let cases = [
        (
            Request::get("/api/%2e%2e/%2e%2e/etc").header("host", "x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/api/a%2fb").header("host", "x"),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/api/x").header("host", "bad host"),
            StatusCode::BAD_REQUEST,
        ),
        (Request::get("/api/x"), StatusCode::BAD_REQUEST), // no Host at all
        (
            Request::get("/other").header("host", "x"),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::get("/").header("host", "x.admin.example.com"),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::post("/api/upload")
                .header("host", "x")
                .header("content-length", "99999999999"),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (request, status) in cases {
        let description = format!("{:?} {:?}", request.uri_ref(), request.headers_ref());
        let answer = call(&proxy, request, "192.0.2.1:5000").await;
        assert_eq!(answer.status, status, "{description}: {}", answer.text());
        assert!(
            answer.headers.contains_key("x-request-id"),
            "every answer carries a request id"
        );
    }
}

#[tokio::test]
async fn http2_style_requests_get_a_host_header_and_one_cookie_header() {
    let echo = echo::spawn().await;
    let proxy = proxy(&routes(&format!("http://{echo}")));
    // HTTP/2 puts the host in the URI (:authority) and may split cookies.
    let request = Request::get("https://admin.example.com/dash")
        .version(http::Version::HTTP_2)
        .header("cookie", "a=1")
        .header("cookie", "b=2");
    let answer = call(&proxy, request, "192.0.2.1:5000").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let report = answer.json();
    assert_eq!(
        received_header(&report, "host").as_deref(),
        Some("admin.example.com")
    );
    assert_eq!(received_headers(&report, "cookie"), ["a=1; b=2"]);
    assert_eq!(report["uri"], "/dash");
}

#[tokio::test]
async fn trusted_proxies_are_matched_by_cidr_including_ipv4_mapped_peers() {
    let echo = echo::spawn().await;
    let proxy = proxy(&routes(&format!("http://{echo}")));
    let request = || {
        Request::get("/api/x")
            .header("host", "x")
            .header("x-forwarded-for", "198.51.100.7")
    };
    let trusted = call(&proxy, request(), "[::ffff:10.1.2.3]:4000")
        .await
        .json();
    assert_eq!(
        received_header(&trusted, "x-forwarded-for").as_deref(),
        Some("198.51.100.7, 10.1.2.3")
    );
    let untrusted = call(&proxy, request(), "192.0.2.1:4000").await.json();
    assert_eq!(
        received_header(&untrusted, "x-forwarded-for").as_deref(),
        Some("192.0.2.1")
    );
}

/// A snapshot built without login (as `Snapshot::new` builds one, whatever the config says) has no
/// way to check a session: a route that requires one must answer 401, never pass the request on.
#[tokio::test]
async fn a_required_route_never_reaches_the_upstream_when_no_login_is_configured() {
    let echo = echo::spawn().await;
    let proxy = proxy(&format!(
        r#"
[oidc]
discovery = "http://127.0.0.1:9/.well-known/openid-configuration"
client_id = "portcullis"
client_secret = "secret"
redirect_uri = "http://app.example.com/auth"

[[routes]]
name = "required"
path = "/"
upstream = "http://{echo}"

[[routes]]
name = "optional"
path = "/optional"
upstream = "http://{echo}"
auth = "optional"

[[routes]]
name = "open"
path = "/open"
upstream = "http://{echo}"
auth = "none"
"#
    ));
    assert!(proxy.auth().is_none(), "the snapshot has no login");
    for accept in ["application/json", "text/html"] {
        let request = Request::get("/private")
            .header("host", "x")
            .header("accept", accept);
        let answer = call(&proxy, request, "192.0.2.1:5000").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
        assert!(
            !answer.text().contains("\"uri\""),
            "the upstream was reached: {}",
            answer.text()
        );
    }
    // Routes that do not need a session still work: anonymous.
    for path in ["/optional/x", "/open/x"] {
        let answer = call(
            &proxy,
            Request::get(path).header("host", "x"),
            "192.0.2.1:5000",
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
    }
}
