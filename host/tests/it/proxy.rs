//! The proxy over real sockets on loopback: routing, canonical paths, header hygiene, upgrades,
//! TLS with HTTP/2, limits, upstream failures and graceful shutdown.

use crate::support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::echo::{self, received_header, received_headers};
use support::tls::{TestCert, h2_get, h2_get_with};
use support::{closed_port, get, one_route, raw, start_proxy, start_proxy_in};
use tokio_tungstenite::tungstenite::Message;

/// Routes whose upstream base paths (`/to-<name>`) show which route served a request.
fn routes_config(echo: std::net::SocketAddr) -> String {
    let route = |name: &str, host: Option<&str>, path: &str| {
        let host = host
            .map(|h| format!("host = \"{h}\"\n"))
            .unwrap_or_default();
        format!(
            "[[routes]]\nname = \"{name}\"\n{host}path = \"{path}\"\nupstream = \"http://{echo}/to-{name}\"\nauth = \"none\"\n\n"
        )
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n{}{}{}{}{}",
        route("public", None, "/public"),
        route("admin", None, "/admin"),
        route("api-v2", None, "/api/v2"),
        route("api", None, "/api"),
        route("app-host", Some("app.example.com"), "/public"),
    )
}

#[tokio::test]
async fn longest_prefix_and_host_specific_routes_win() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&routes_config(echo)).await;
    let cases = [
        ("/public/x", "localhost", "/to-public/public/x"),
        ("/api/v1/users", "localhost", "/to-api/api/v1/users"),
        (
            "/api/v2/users?id=7",
            "localhost",
            "/to-api-v2/api/v2/users?id=7",
        ),
        ("/public/x", "APP.Example.com", "/to-app-host/public/x"),
        ("/public/x", "app.example.com:8080", "/to-app-host/public/x"),
    ];
    for (path, host, expected) in cases {
        let answer = get(&proxy.url(path), &[("host", host)]).await;
        assert_eq!(answer.status, 200, "{path} on {host}");
        assert_eq!(answer.json()["uri"], expected, "{path} on {host}");
    }
    let answer = get(&proxy.url("/apix"), &[]).await;
    assert_eq!(answer.status, 404, "/apix is not under /api");
    assert!(
        answer.text().contains("nothing is served at this address"),
        "{}",
        answer.text()
    );
}

#[tokio::test]
async fn canonicalisation_attacks_never_reach_the_wrong_route() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&routes_config(echo)).await;
    // (raw target, expected status, the exact upstream URI when forwarded)
    let cases: [(&str, u16, Option<&str>); 12] = [
        ("/public/..%2fadmin", 400, None),
        ("/public/..%2Fadmin", 400, None),
        ("/public/%2e%2e%2fadmin", 400, None),
        ("/%2e%2e/admin", 400, None),
        ("/public/../../admin", 400, None),
        ("/public/%00", 400, None),
        ("//admin", 200, Some("/to-admin/admin")),
        ("/public/%2E%2e/admin", 200, Some("/to-admin/admin")),
        ("/public/..;/admin", 200, Some("/to-admin/admin")),
        ("/admin;x", 200, Some("/to-admin/admin;x")),
        ("/%61dmin/./x", 200, Some("/to-admin/admin/x")),
        ("/Admin", 404, None),
    ];
    for (target, status, upstream_uri) in cases {
        let (got, text) = raw(
            proxy.addr,
            &format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(got, status, "{target}: {text}");
        if let Some(uri) = upstream_uri {
            assert!(
                text.contains(&format!("\"uri\":\"{uri}\"")),
                "{target} must reach exactly {uri}: {text}"
            );
        }
    }
}

/// Sends `target` as the raw request line (bytes as they are, no client-side encoding).
async fn raw_target(proxy: &support::TestProxy, target: &str) -> (u16, String) {
    raw(
        proxy.addr,
        &format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
    .await
}

#[tokio::test]
async fn a_raw_backslash_in_the_path_is_refused_like_an_encoded_one() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&routes_config(echo)).await;
    // A backend that reads `\` as `/` would serve /admin for a request routed as /public.
    for target in ["/public/..\\..\\admin", "/public\\..\\admin", "/admin\\"] {
        let (status, text) = raw_target(&proxy, target).await;
        assert_eq!(status, 400, "{target}: {text}");
        assert!(
            !text.contains("\"uri\""),
            "{target} reached an upstream: {text}"
        );
    }
}

#[tokio::test]
async fn a_raw_backslash_passes_encoded_when_the_config_allows_encoded_slashes() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "allow_encoded_slashes = true")).await;
    let (status, text) = raw_target(&proxy, "/public/..\\..\\admin").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("\"uri\":\"/public/..%5C..%5Cadmin\""),
        "the upstream must get the decided path, not a raw backslash: {text}"
    );
}

#[tokio::test]
async fn raw_and_percent_encoded_non_ascii_paths_reach_the_same_route() {
    let echo = echo::spawn().await;
    let route = |name: &str, path: &str, auth: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"http://{echo}/to-{name}\"\nauth = \"{auth}\"\n\n"
        )
    };
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n{}{}",
        route("donnees", "/données", "none"),
        route("rest", "/", "none"),
    );
    let proxy = start_proxy(&config).await;
    // hyper hands raw UTF-8 in the request line through as it is; both spellings must meet.
    for target in [
        "/données/x",
        "/donn%C3%A9es/x",
        "/donn%c3%a9es/x",
        "/donn%C3%a9es/./x",
    ] {
        let (status, text) = raw_target(&proxy, target).await;
        assert_eq!(status, 200, "{target}: {text}");
        assert!(
            text.contains("\"uri\":\"/to-donnees/donn%C3%A9es/x\""),
            "{target} must be served by the /données route: {text}"
        );
    }
    let (_, text) = raw_target(&proxy, "/donnees/x").await;
    assert!(text.contains("\"uri\":\"/to-rest/donnees/x\""), "{text}");
}

/// A `/admin` route whose policy refuses everyone, and an open catch-all route.
fn admin_policy_config(
    echo: std::net::SocketAddr,
    server_extra: &str,
) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deny.rhai"), "deny(403, \"admins only\")\n").unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n\n\
         [[routes]]\nname = \"admin\"\npath = \"/Admin\"\nupstream = \"http://{echo}/to-admin\"\nauth = \"none\"\npolicy = \"deny.rhai\"\n\n\
         [[routes]]\nname = \"rest\"\npath = \"/\"\nupstream = \"http://{echo}/to-rest\"\nauth = \"none\"\n"
    );
    (dir, config)
}

#[tokio::test]
async fn with_case_insensitive_routes_no_spelling_skips_the_routes_policy() {
    let echo = echo::spawn().await;
    let (dir, config) = admin_policy_config(echo, "case_insensitive_routes = true");
    let proxy = start_proxy_in(&config, dir.path()).await;
    for target in [
        "/admin",
        "/ADMIN/users",
        "/aDmIn/",
        "/%41DMIN",
        "/x/../ADMIN;p",
    ] {
        let (status, text) = raw_target(&proxy, target).await;
        assert_eq!(status, 403, "{target} skipped the /admin policy: {text}");
    }
    // Names Windows reads as `admin` are refused, not routed elsewhere.
    for target in [
        "/admin.",
        "/ADMIN..",
        "/admin%20",
        "/admin%09",
        "/admin::$DATA",
        "/admin:stream",
        "/admin%3A%3A%24DATA",
        "/ADMINI~1",
        "/admin*",
        "/adm%C4%B1n",
    ] {
        let (status, text) = raw_target(&proxy, target).await;
        assert_eq!(status, 400, "{target} reached a route: {text}");
    }
    // What is forwarded is the path that was decided: lower-cased, the query as it was.
    let (status, text) = raw_target(&proxy, "/Docs/ReadMe.TXT?Q=A").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("\"uri\":\"/to-rest/docs/readme.txt?Q=A\""),
        "{text}"
    );
}

#[tokio::test]
async fn paths_are_case_sensitive_by_default() {
    let echo = echo::spawn().await;
    let (dir, config) = admin_policy_config(echo, "");
    let proxy = start_proxy_in(&config, dir.path()).await;
    let (status, _) = raw_target(&proxy, "/Admin/x").await;
    assert_eq!(status, 403);
    // Another spelling is another path: served, as written, by the catch-all route.
    let (status, text) = raw_target(&proxy, "/ADMIN/x").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"uri\":\"/to-rest/ADMIN/x\""), "{text}");
}

#[tokio::test]
async fn encoded_slashes_pass_encoded_when_the_config_allows_them() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "allow_encoded_slashes = true")).await;
    let (status, text) = raw(
        proxy.addr,
        "GET /files/a%2fb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(text.contains("\"uri\":\"/files/a%2Fb\""), "{text}");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "")).await;
    let answer = get(
        &proxy.url("/x?hop=1"),
        &[
            ("connection", "keep-alive, x-hop-secret"),
            ("x-hop-secret", "must not pass"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-end-to-end", "kept"),
        ],
    )
    .await;
    let report = answer.json();
    for name in ["x-hop-secret", "keep-alive", "te", "proxy-authorization"] {
        assert_eq!(
            received_header(&report, name),
            None,
            "{name} reached the upstream"
        );
    }
    assert_eq!(
        received_header(&report, "x-end-to-end").as_deref(),
        Some("kept")
    );
    assert_eq!(
        answer.headers.get("x-resp-hop"),
        None,
        "a hop-by-hop response header reached the client"
    );
    assert_eq!(answer.headers.get("keep-alive"), None);
    assert_eq!(answer.headers["x-resp-kept"], "1");
}

#[tokio::test]
async fn client_identity_headers_never_reach_the_upstream() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "trusted_proxies = [\"127.0.0.1\"]")).await;
    let (status, text) = raw(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: x\r\nX-Auth-Groups: admins\r\nx_auth_subject: root\r\nX-AUTH-USERNAME: a\r\nX-Auth-Groups: b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !text.to_ascii_lowercase().contains("x-auth") && !text.contains("x_auth"),
        "{text}"
    );
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_peers_are_replaced() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "")).await;
    let sent = [
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "for=6.6.6.6"),
        ("host", "app.example.com"),
    ];
    let report = get(&proxy.url("/"), &sent).await.json();
    assert_eq!(received_headers(&report, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(
        received_header(&report, "x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        received_header(&report, "x-forwarded-host").as_deref(),
        Some("app.example.com")
    );
    assert_eq!(received_header(&report, "forwarded"), None);
}

#[tokio::test]
async fn client_address_and_url_headers_from_untrusted_peers_never_reach_the_upstream() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "")).await;
    // Raw bytes: the `_` spellings exactly as a client would send them.
    let (status, text) = raw(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: x\r\nX-Real-IP: 6.6.6.6\r\nX_Real_IP: 6.6.6.7\r\n\
         True-Client-IP: 6.6.6.6\r\nX-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\n\
         X_Rewrite_URL: /admin\r\nX-Forwarded-Prefix: /evil\r\nX-Forwarded-Port: 443\r\n\
         CF-Connecting-IP: 6.6.6.6\r\nX-Client-IP: 6.6.6.6\r\nX-Original-Host: evil.example\r\n\
         Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let body = &text[text.find("\r\n\r\n").expect("a body") + 4..];
    let report: serde_json::Value = serde_json::from_str(body).expect("the echo's report");
    assert!(!body.contains("6.6.6"), "a forged address passed: {body}");
    assert!(
        !body.contains("/admin") && !body.contains("/evil") && !body.contains("evil.example"),
        "a forged URL or host passed: {body}"
    );
    for name in [
        "true-client-ip",
        "x-original-url",
        "x-rewrite-url",
        "x_rewrite_url",
        "x_real_ip",
        "x-forwarded-prefix",
        "x-forwarded-port",
        "cf-connecting-ip",
        "x-client-ip",
        "x-original-host",
    ] {
        assert_eq!(received_header(&report, name), None, "{name} passed");
    }
    assert_eq!(
        received_headers(&report, "x-real-ip"),
        ["127.0.0.1"],
        "X-Real-IP is the peer, as nginx users expect"
    );
}

#[tokio::test]
async fn a_trusted_proxy_keeps_its_x_real_ip_and_its_rewrite_headers() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "trusted_proxies = [\"127.0.0.0/8\"]")).await;
    let report = get(
        &proxy.url("/"),
        &[
            ("x-real-ip", "203.0.113.9"),
            ("x-original-url", "/shop/cart"),
        ],
    )
    .await
    .json();
    assert_eq!(received_headers(&report, "x-real-ip"), ["203.0.113.9"]);
    assert_eq!(
        received_header(&report, "x-original-url").as_deref(),
        Some("/shop/cart")
    );
    let report = get(&proxy.url("/"), &[("x-forwarded-for", "203.0.113.7")])
        .await
        .json();
    assert_eq!(
        received_headers(&report, "x-real-ip"),
        ["203.0.113.7"],
        "without one, the client the trusted chain names"
    );
}

#[tokio::test]
async fn configured_identity_headers_with_underscores_are_stripped_in_both_spellings() {
    let echo = echo::spawn().await;
    for (configured, sent) in [
        ("X_Remote_User", "X-Remote-User"),
        ("X_Remote_User", "X_Remote_User"),
        ("X-Remote-User", "X_Remote_User"),
    ] {
        let config = format!(
            "{}\n[headers]\n\"{configured}\" = \"preferred_username\"\n",
            one_route(echo, "")
        );
        let proxy = start_proxy(&config).await;
        let (status, text) = raw(
            proxy.addr,
            &format!("GET / HTTP/1.1\r\nHost: x\r\n{sent}: admin\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 200);
        let body = &text[text.find("\r\n\r\n").expect("a body") + 4..];
        assert!(
            !body.to_ascii_lowercase().contains("remote"),
            "{sent} reached the upstream with {configured} configured: {body}"
        );
    }
}

#[tokio::test]
async fn forwarding_headers_from_trusted_proxies_are_extended() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "trusted_proxies = [\"127.0.0.0/8\"]")).await;
    let sent = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "for=203.0.113.9"),
    ];
    let report = get(&proxy.url("/"), &sent).await.json();
    assert_eq!(
        received_headers(&report, "x-forwarded-for"),
        ["203.0.113.9, 127.0.0.1"]
    );
    assert_eq!(
        received_header(&report, "x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        received_header(&report, "forwarded").as_deref(),
        Some("for=203.0.113.9")
    );
}

#[tokio::test]
async fn host_is_preserved_unless_the_route_says_otherwise() {
    let echo = echo::spawn().await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"kept\"\npath = \"/kept\"\nupstream = \"http://{echo}\"\nauth = \"none\"\n\n[[routes]]\nname = \"rewritten\"\npath = \"/rewritten\"\nupstream = \"http://{echo}\"\nauth = \"none\"\npreserve_host = false\nstrip_prefix = true\n"
    );
    let proxy = start_proxy(&config).await;
    let kept = get(&proxy.url("/kept"), &[("host", "app.example.com")])
        .await
        .json();
    assert_eq!(
        received_header(&kept, "host").as_deref(),
        Some("app.example.com")
    );
    let rewritten = get(&proxy.url("/rewritten/x"), &[("host", "app.example.com")])
        .await
        .json();
    assert_eq!(received_header(&rewritten, "host"), Some(echo.to_string()));
    assert_eq!(
        rewritten["uri"], "/x",
        "strip_prefix removes the route's path"
    );
}

#[tokio::test]
async fn request_ids_are_kept_or_generated_and_sent_both_ways() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "")).await;
    let answer = get(&proxy.url("/"), &[("x-request-id", "trace-42")]).await;
    assert_eq!(
        received_header(&answer.json(), "x-request-id").as_deref(),
        Some("trace-42")
    );
    assert_eq!(answer.headers["x-request-id"], "trace-42");
    let answer = get(&proxy.url("/"), &[]).await;
    let generated =
        received_header(&answer.json(), "x-request-id").expect("generated id sent upstream");
    assert_eq!(generated.len(), 32);
    assert_eq!(answer.headers["x-request-id"], generated.as_str());
}

#[tokio::test]
async fn websocket_connections_are_tunnelled() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "")).await;
    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", proxy.addr))
            .await
            .expect("WebSocket handshake through the proxy");
    assert_eq!(response.status(), 101);
    for text in ["hello", "second message"] {
        socket.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    // The close handshake goes through the tunnel both ways: the upstream's Close (or the end of
    // the connection) comes back, in good time.
    socket.close(None).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
    if let Ok(Some(Ok(message))) = &ended {
        assert!(message.is_close(), "after our Close: {message:?}");
    }
    assert!(
        ended.is_ok(),
        "the upstream's Close or the end of the tunnel within 5 s"
    );
}

#[tokio::test]
async fn http2_over_tls_is_negotiated_with_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "server");
    let echo = echo::spawn().await;
    let config = one_route(
        echo,
        "[server.tls]\ncert = \"server.pem\"\nkey = \"server.key\"",
    );
    let proxy = start_proxy_in(&config, dir.path()).await;
    let (version, answer) = h2_get(proxy.addr, cert.roots(), "/over-h2").await;
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(answer.status, 200);
    let report = answer.json();
    assert_eq!(report["uri"], "/over-h2");
    assert_eq!(
        received_header(&report, "x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(
        received_header(&report, "host"),
        Some(format!("localhost:{}", proxy.addr.port()))
    );
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_configured_ca() {
    // Proxy B terminates TLS in front of the echo; proxy A forwards to B over https.
    let dir = tempfile::tempdir().unwrap();
    TestCert::generate(dir.path(), "upstream");
    let echo = echo::spawn().await;
    let tls_upstream = start_proxy_in(
        &one_route(
            echo,
            "[server.tls]\ncert = \"upstream.pem\"\nkey = \"upstream.key\"",
        ),
        dir.path(),
    )
    .await;
    let port = tls_upstream.addr.port();
    let with_ca = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"trusted\"\npath = \"/trusted\"\nupstream = \"https://localhost:{port}\"\nupstream_ca = \"upstream.pem\"\nauth = \"none\"\n\n[[routes]]\nname = \"web-roots\"\npath = \"/web-roots\"\nupstream = \"https://localhost:{port}\"\nauth = \"none\"\n"
    );
    let proxy = start_proxy_in(&with_ca, dir.path()).await;
    let answer = get(&proxy.url("/trusted/x"), &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["uri"], "/trusted/x");
    let answer = get(&proxy.url("/web-roots/x"), &[]).await;
    assert_eq!(
        answer.status, 502,
        "a certificate outside the public roots must be refused"
    );
}

#[tokio::test]
async fn an_unreachable_upstream_answers_502() {
    let proxy = start_proxy(&one_route(closed_port(), "")).await;
    let answer = get(&proxy.url("/"), &[]).await;
    assert_eq!(answer.status, 502);
    assert_eq!(
        answer.json(),
        serde_json::json!({ "status": 502, "error": "Bad Gateway", "message": "the service is not reachable" })
    );
    let as_text = get(&proxy.url("/"), &[("accept", "text/plain")]).await;
    assert_eq!(
        as_text.text(),
        "502 Bad Gateway: the service is not reachable\n"
    );
}

/// Portcullis's own answers are worded for the client (architecture.md): HTML when `text/html`
/// is anywhere in `Accept` (browsers list several types), plain text when `text/plain` is asked
/// for and JSON is not, JSON otherwise — with no `Accept`, `*/*`, or the types split over
/// several `Accept` fields alike.
#[tokio::test]
async fn error_answers_follow_the_accept_header_however_it_is_mixed() {
    let proxy = start_proxy(&one_route(closed_port(), "")).await;
    let cases: &[(&[&str], &str)] = &[
        (&[], "application/json"),
        (&["*/*"], "application/json"),
        (&["application/json, text/html;q=0.9"], "text/html"),
        (&["text/html,application/xhtml+xml,*/*;q=0.8"], "text/html"),
        (&["application/json", "text/html"], "text/html"),
        (&["text/plain"], "text/plain"),
        (&["text/plain, application/json"], "application/json"),
        (&["text/plain", "application/json"], "application/json"),
        (&["application/xml"], "application/json"),
    ];
    for (accept, content_type) in cases {
        let headers: Vec<(&str, &str)> = accept.iter().map(|value| ("accept", *value)).collect();
        let answer = get(&proxy.url("/"), &headers).await;
        assert_eq!(answer.status, 502, "{accept:?}");
        let got = answer.headers["content-type"].to_str().unwrap();
        assert!(got.starts_with(content_type), "{accept:?}: {got}");
    }
}

#[tokio::test]
async fn a_slow_upstream_answers_504() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "upstream_response_timeout = \"300ms\"")).await;
    let answer = get(&proxy.url("/?sleep_ms=3000"), &[]).await;
    assert_eq!(answer.status, 504);
    assert_eq!(
        answer.json()["message"],
        "the service did not answer in time"
    );
    let answer = get(&proxy.url("/?sleep_ms=10"), &[]).await;
    assert_eq!(
        answer.status, 200,
        "a fast answer within the timeout still passes"
    );
}

/// A route's own `response_timeout` and `max_request_body` apply to it alone; the server's
/// defaults (60 s, 10 MiB) to the others.
#[tokio::test]
async fn a_routes_own_response_timeout_and_body_limit_apply_to_it_alone() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&format!(
        r#"[server]
listen = "127.0.0.1:0"

[[routes]]
name = "strict"
path = "/strict"
upstream = "http://{echo}"
auth = "none"
response_timeout = "300ms"
max_request_body = "1KiB"

[[routes]]
name = "default"
path = "/"
upstream = "http://{echo}"
auth = "none"
"#
    ))
    .await;
    let slow = get(&proxy.url("/strict?sleep_ms=3000"), &[]).await;
    assert_eq!(slow.status, 504, "the route's 300 ms");
    let slow_elsewhere = get(&proxy.url("/other?sleep_ms=1000"), &[]).await;
    assert_eq!(slow_elsewhere.status, 200, "the server's 60 s");
    let upload = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{}",
            "y".repeat(2000)
        )
    };
    let (status, _) = raw(proxy.addr, &upload("/strict")).await;
    assert_eq!(status, 413, "the route's 1 KiB");
    let (status, text) = raw(proxy.addr, &upload("/other")).await;
    assert_eq!(status, 200, "the server's 10 MiB");
    assert!(text.contains("\"body_bytes\":2000"), "{text}");
}

/// An upstream that does not complete the TCP handshake in `upstream_connect_timeout` is a 504
/// (too slow), not a 502 (refused), and not a wait of the response timeout.
#[tokio::test]
async fn an_upstream_that_does_not_accept_in_time_answers_504() {
    // A listener that is never accepted from, with the smallest backlog, filled: the kernel
    // drops further handshakes, so a connect hangs as to a host behind a firewall.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let full = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let filler =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        filler.set_nonblocking(true).unwrap();
        let _ = filler.connect(&full.into());
        fillers.push(filler);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let proxy = start_proxy(&one_route(full, "upstream_connect_timeout = \"300ms\"")).await;
    let started = std::time::Instant::now();
    let answer = get(&proxy.url("/"), &[]).await;
    assert_eq!(answer.status, 504, "{}", answer.text());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the connect timeout, not the 60 s response timeout"
    );
    drop(socket);
}

#[tokio::test]
async fn bodies_over_the_limit_answer_413() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "max_request_body = \"1KiB\"")).await;
    // Declared length over the limit: refused before the upstream is asked.
    let (status, _) = raw(
        proxy.addr,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 413);
    // Chunked, no declared length: cut off once it passes the limit.
    let chunk = "x".repeat(600);
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (status, _) = raw(proxy.addr, &chunked).await;
    assert_eq!(status, 413);
    // Exactly at the limit: passes.
    let at_limit = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n{}",
        "y".repeat(1024)
    );
    let (status, text) = raw(proxy.addr, &at_limit).await;
    assert_eq!(status, 200);
    assert!(text.contains("\"body_bytes\":1024"), "{text}");
}

#[tokio::test]
async fn admin_endpoints_live_only_on_the_admin_listener() {
    let echo = echo::spawn().await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"app\"\npath = \"/app\"\nupstream = \"http://{echo}\"\nauth = \"none\"\n"
    );
    let proxy = start_proxy(&config).await;
    let admin = proxy.admin.expect("admin listener");
    assert_eq!(
        get(&format!("http://{admin}/healthz"), &[]).await.status,
        200
    );
    assert_eq!(
        get(&format!("http://{admin}/readyz"), &[]).await.status,
        200
    );
    assert_eq!(get(&proxy.url("/healthz"), &[]).await.status, 404);
}

/// Regression: the admin listener stopped with the public ones, so a probe opening a new
/// connection during the drain was refused instead of reading `/readyz` 503 and `/healthz` 200.
#[tokio::test]
async fn probes_on_new_connections_see_the_drain() {
    let (echo, arrivals) = echo::spawn_counting().await;
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndrain_timeout = \"10s\"\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://{echo}\"\nauth = \"none\"\n"
    );
    let mut proxy = start_proxy(&config).await;
    let admin = proxy.admin.expect("admin listener");
    let url = proxy.url("/?sleep_ms=1500");
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    arrivals.wait_for(1).await;
    // `raw` opens a fresh connection each time.
    let ready = || {
        raw(
            admin,
            "GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
        )
    };
    assert_eq!(ready().await.0, 200, "before the drain");
    proxy.begin_shutdown();
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while ready().await.0 != 503 {
        assert!(std::time::Instant::now() < give_up, "never unready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (healthy, _) = raw(
        admin,
        "GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(healthy, 200, "alive during the drain");
    assert_eq!(in_flight.await.unwrap().status, 200);
    tokio::time::timeout(Duration::from_secs(5), proxy.done.take().unwrap())
        .await
        .expect("the drain ends")
        .unwrap();
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight() {
    let (echo, arrivals) = echo::spawn_counting().await;
    let mut proxy = start_proxy(&one_route(echo, "drain_timeout = \"10s\"")).await;
    let url = proxy.url("/?sleep_ms=800");
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    arrivals.wait_for(1).await;
    proxy.begin_shutdown();
    let answer = in_flight.await.unwrap();
    assert_eq!(
        answer.status, 200,
        "the in-flight request completes during the drain"
    );
    tokio::time::timeout(Duration::from_secs(5), proxy.done.take().unwrap())
        .await
        .expect("drain ends once the last request is done")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(proxy.addr).await.is_err(),
        "no new connections after shutdown"
    );
}

/// A request still running when `drain_timeout` ends is cut, so a stuck upstream cannot hold a
/// shutdown (or a restart) for ever: the drain ends soon after the timeout, and the client's
/// request ends without an answer.
#[tokio::test]
async fn a_request_still_running_at_drain_timeout_is_cut() {
    let (echo, arrivals) = echo::spawn_counting().await;
    let mut proxy = start_proxy(&one_route(echo, "drain_timeout = \"500ms\"")).await;
    let url: hyper::Uri = proxy.url("/?sleep_ms=20000").parse().unwrap();
    let in_flight = tokio::spawn(async move {
        use http_body_util::BodyExt;
        let request = http::Request::get(url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        match support::client().request(request).await {
            Ok(response) => response.into_body().collect().await.is_ok(),
            Err(_) => false,
        }
    });
    arrivals.wait_for(1).await;
    let started = std::time::Instant::now();
    proxy.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(10), proxy.done.take().unwrap())
        .await
        .expect("the drain ends soon after drain_timeout, not when the upstream answers")
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the drain waited"
    );
    let completed = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the cut request ends")
        .unwrap();
    assert!(!completed, "the request was cut, not answered");
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let echo = echo::spawn().await;
    // One worker: each worker keeps its own upstream connections.
    let proxy = start_proxy(&one_route(echo, "workers = 1")).await;
    let mut peers = std::collections::HashSet::new();
    // Sequential requests, some with an empty answer (a body that is never read gives its
    // connection back too): one upstream connection serves them all.
    for path in ["/a", "/b?empty=1", "/c", "/d?empty=1", "/e"] {
        let answer = get(&proxy.url(path), &[]).await;
        assert_eq!(answer.status, 200, "{path}");
        if !path.contains("empty") {
            peers.insert(answer.json()["peer"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(peers.len(), 1, "{peers:?}");
}

/// Each worker accepts its own share of new connections (its own `SO_REUSEPORT` socket) and keeps
/// its own upstream connections: twenty sequential requests, each on a new client connection,
/// reach the upstream over exactly one connection per worker.
#[tokio::test]
async fn each_worker_serves_its_share_of_connections_with_upstream_connections_of_its_own() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "workers = 2")).await;
    let mut peers = std::collections::HashSet::new();
    for i in 0..20 {
        let answer = get(&proxy.url(&format!("/{i}")), &[]).await;
        assert_eq!(answer.status, 200);
        peers.insert(answer.json()["peer"].as_str().unwrap().to_owned());
    }
    // The kernel picks a worker by the connection's ports: all twenty on one worker would
    // happen once in 2^19 runs.
    assert_eq!(peers.len(), 2, "{peers:?}");
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_not_used_again() {
    // An upstream that closes each connection the moment it has answered, without saying so (no
    // `Connection: close`: a keep-alive timeout of zero). Requests follow each other at once, so
    // the proxy often takes the connection back before it has seen the close, sends on it, and
    // must send the request again on a new one: the upstream never saw it. None may fail.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                // Dropped here: closed at once.
            });
        }
    });
    let proxy = start_proxy(&one_route(upstream, "")).await;
    let client = reqwest::Client::new();
    const REQUESTS: usize = 50;
    for i in 0..REQUESTS {
        let answer = client.get(proxy.url("/")).send().await.unwrap();
        let status = answer.status();
        assert_eq!(
            (status.as_u16(), answer.text().await.unwrap()),
            (200, "ok".to_owned()),
            "request {i}"
        );
    }
    // One connection per request: none was used twice.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), REQUESTS);
}

#[tokio::test]
async fn a_connection_still_sending_an_upload_is_not_handed_to_the_next_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The upstream refuses a POST at once (before reading its body, as servers do for an upload
    // they will not take) and keeps reading it; a GET gets "ok".
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let upload = seen.starts_with(b"POST");
                    let answer: &[u8] = if upload {
                        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    };
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                    seen.clear();
                    if upload {
                        // Drain the chunked body to its end, then serve the next request.
                        while !seen.windows(5).any(|w| w == b"0\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        seen.clear();
                    }
                }
            });
        }
    });
    let proxy = start_proxy(&one_route(upstream, "")).await;
    // A client starts an upload, gets its 401, and stalls before the end of its body.
    let mut uploader = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    uploader
        .write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = uploader.read(&mut head).await.unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 401"),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );
    // Another request meanwhile must not wait for that upload's connection.
    let answer = tokio::time::timeout(Duration::from_secs(5), get(&proxy.url("/"), &[]))
        .await
        .expect("the next request was not held up by the stalled upload");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "ok");
    uploader.write_all(b"0\r\n\r\n").await.unwrap();
}

#[tokio::test]
async fn connections_beyond_max_connections_get_503_until_one_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = echo::spawn().await;
    // One worker, so that connections are accepted in the order they were made (two workers
    // each accept from their own queue). The limit counts every worker's connections alike.
    let proxy = start_proxy(&one_route(echo, "max_connections = 2\nworkers = 1")).await;
    // Two idle connections take both places (accepted in order, before the third).
    let first = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (status, text) = raw(proxy.addr, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("Retry-After: 1"), "{text}");
    assert!(text.contains("too many connections"), "{text}");
    // A place frees when a connection closes.
    drop(first);
    let mut served = None;
    for _ in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        if text.starts_with("HTTP/1.1 200") {
            served = Some(text);
            break;
        }
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        served.is_some(),
        "a freed place is given to a new connection"
    );
}

/// One route `auth = "none"` to `echo`, no `[oidc]`: Portcullis's cookies are still its own.
fn open_route(echo: std::net::SocketAddr, route_extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"open\"\npath = \"/\"\nupstream = \"http://{echo}\"\nauth = \"none\"\n{route_extra}\n"
    )
}

/// The echo upstream's report from a raw response.
fn raw_report(response: &str) -> serde_json::Value {
    let body = response.split_once("\r\n\r\n").expect("a body").1;
    serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {response}"))
}

#[tokio::test]
async fn own_session_cookie_never_reaches_upstream_with_non_utf8_cookie() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&open_route(echo, "")).await;
    let (status, response) = support::raw_bytes(
        proxy.addr,
        b"GET /page HTTP/1.1\r\nHost: localhost\r\n\
          Cookie: portcullis_session=AAAA; l=fran\xc3\xa7ais\r\n\
          Cookie: __Host-portcullis_session=BBBB; raw=\xff\xfe\r\n\
          Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{response}");
    let cookies = received_headers(&raw_report(&response), "cookie");
    assert_eq!(cookies, ["l=fran\u{e7}ais; raw=\u{fffd}\u{fffd}"]);
}

#[tokio::test]
async fn own_cookies_are_removed_in_every_spelling_from_every_cookie_field() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&open_route(echo, "")).await;
    let long = "v".repeat(16 * 1024);
    let request = format!(
        "GET /page HTTP/1.1\r\nHost: localhost\r\n\
         Cookie:   __Host-portcullis_session=AAAA  ;a=1;; __host-PORTCULLIS_SESSION = BBBB\r\n\
         Cookie: b=2, portcullis_session=CCCC\r\n\
         Cookie: __Secure-portcullis_session_login=DDDD; c={long}; portcullis_session=EEEE\r\n\
         Cookie: __Host-portcullis_session=AAAA; d=4\r\n\
         Connection: close\r\n\r\n"
    );
    let (status, response) = support::raw(proxy.addr, &request).await;
    assert_eq!(status, 200, "{response}");
    let cookies = received_headers(&raw_report(&response), "cookie");
    assert_eq!(cookies, [format!("a=1; c={long}; d=4")]);
}

#[tokio::test]
async fn own_cookies_in_split_http2_cookie_fields_never_reach_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "server");
    let echo = echo::spawn().await;
    let config = open_route(echo, "").replace(
        "[server]\n",
        "[server]\ntls = { cert = \"server.pem\", key = \"server.key\" }\n",
    );
    let proxy = start_proxy_in(&config, dir.path()).await;
    let (version, answer) = h2_get_with(
        proxy.addr,
        cert.roots(),
        "/over-h2",
        &[
            ("cookie", "a=1"),
            ("cookie", "__Host-portcullis_session=AAAA"),
            ("cookie", "b=fran\u{e7}ais"),
            ("cookie", "__Host-portcullis_session_login=BBBB"),
        ],
    )
    .await;
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(answer.status, 200);
    let cookies = received_headers(&answer.json(), "cookie");
    assert_eq!(cookies, ["a=1; b=fran\u{e7}ais"]);
}

#[tokio::test]
async fn a_policy_never_sees_the_session_cookie() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cookies.rhai"),
        r#"
let cookies = header("cookie");
if cookies == () { deny(400, "no cookie header at all") }
else if cookies.contains("portcullis_session") { deny(403, "the policy saw the session cookie") }
else if cookies.contains("theme=dark") { allow() }
else { deny(400, "the other cookies are gone") }
"#,
    )
    .unwrap();
    let proxy = start_proxy_in(&open_route(echo, "policy = \"cookies.rhai\""), dir.path()).await;
    let answer = get(
        &proxy.url("/page"),
        &[(
            "cookie",
            "__Host-portcullis_session=AAAA; theme=dark; portcullis_session_login=BBBB",
        )],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(received_headers(&answer.json(), "cookie"), ["theme=dark"]);
}

#[tokio::test]
async fn an_upstream_cannot_set_portcullis_cookies() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&open_route(echo, "")).await;
    let planted = [
        "__Host-portcullis_session_login=X; Secure; Path=/",
        "portcullis_session_login=X; Path=/",
        "__HOST-PORTCULLIS_SESSION=X; Secure; Path=/",
        "=portcullis_session=X",
    ];
    let query: String = planted
        .iter()
        .chain(&["theme=dark; Path=/"])
        .map(|cookie| {
            format!(
                "set_cookie={}&",
                url::form_urlencoded::byte_serialize(cookie.as_bytes()).collect::<String>()
            )
        })
        .collect();
    let answer = get(&proxy.url(&format!("/page?{query}")), &[]).await;
    assert_eq!(answer.status, 200);
    let set: Vec<&str> = answer
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(set, ["theme=dark; Path=/"]);
}

#[tokio::test]
async fn silent_connections_are_closed_so_they_cannot_hold_every_place() {
    use tokio::io::AsyncReadExt;
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(
        echo,
        "max_connections = 1\nconnection_idle_timeout = \"300ms\"",
    ))
    .await;
    // Connects and never sends a byte: it takes the only place, until it is found idle.
    let mut silent = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut byte)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection is closed by the proxy: {closed:?}"
    );
    let (status, text) = raw(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        status, 200,
        "the freed place serves the next client: {text}"
    );
}

#[tokio::test]
async fn a_slow_response_is_not_an_idle_connection() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "connection_idle_timeout = \"200ms\"")).await;
    // The upstream takes longer than the idle timeout; the request is in flight all along.
    let answer = get(&proxy.url("/slow?sleep_ms=800"), &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["uri"], "/slow?sleep_ms=800");
}

/// Bytes are not requests: an HTTP/2 client that only sends PINGs after its last request holds a
/// `max_connections` place for nothing, and is closed like any idle connection.
#[tokio::test]
async fn an_http2_connection_kept_busy_with_pings_only_is_still_idle() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "connection_idle_timeout = \"300ms\"")).await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(50))
            .keep_alive_while_idle(true)
            .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(
                stream,
            ))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(
            http::Request::get(format!("http://{}/", proxy.addr))
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(
        ended.is_ok(),
        "the proxy kept an HTTP/2 connection open on PINGs alone"
    );
}

/// An upgraded connection is still a connection: an open WebSocket tunnel keeps its place in
/// `max_connections` until it closes (the HTTP part of the connection ended at the `101`).
#[tokio::test]
async fn an_open_websocket_keeps_its_place_in_max_connections() {
    let echo = echo::spawn().await;
    let proxy = start_proxy(&one_route(echo, "max_connections = 1")).await;
    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/chat", proxy.addr))
            .await
            .expect("WebSocket handshake through the proxy");
    assert_eq!(response.status(), 101);
    socket.send(Message::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("hello"));
    let (status, text) = raw(
        proxy.addr,
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 503, "the tunnel holds the only place: {text}");
    socket.close(None).await.unwrap();
    drop(socket);
    let mut freed = false;
    for _ in 0..200 {
        let (status, _) = raw(
            proxy.addr,
            "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        if status == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(freed, "the place is given back when the tunnel closes");
}
