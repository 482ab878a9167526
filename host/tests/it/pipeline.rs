//! The pipeline driven in-process: `Proxy::handle` called directly with in-memory requests, no
//! listener. (Requests that reach an upstream still go to the echo upstream over loopback.)

use crate::support;

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
    ConnInfo::new(peer.parse::<SocketAddr>().unwrap(), false)
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
            Request::get("/api/x")
                .header("host", "x")
                .header("host", "admin.example.com"),
            StatusCode::BAD_REQUEST,
        ), // two Host fields: which one a backend believes is anyone's guess
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

/// Property tests of the trust boundary: random request targets, header sets and cookie strings
/// from an untrusted peer, through the whole pipeline. `cargo test` runs a modest number of cases;
/// `scripts/fuzz` runs the same properties for minutes (`PROPTEST_CASES`).
mod trust_boundary {
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

    use super::*;
    use support::hostile_idp::{HostileIdp, Script};

    /// The peer every generated request comes from: not a trusted proxy.
    const PEER: &str = "192.0.2.7:40000";

    struct World {
        runtime: tokio::runtime::Runtime,
        proxy: Proxy,
        /// Portcullis's own cookie names, lower-case, without `__Host-`/`__Secure-`.
        own_cookies: Vec<String>,
    }

    /// One proxy (with a provider, so login and own cookies are real) for every case.
    fn world() -> &'static World {
        static WORLD: OnceLock<World> = OnceLock::new();
        WORLD.get_or_init(|| {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let proxy = runtime.block_on(async {
                let idp = HostileIdp::start(Script::default()).await;
                let echo = echo::spawn().await;
                let config = format!(
                    r#"
[server]
trusted_proxies = ["10.0.0.0/8"]

[oidc]
discovery = "{discovery}"
client_id = "portcullis"
client_secret = "hostile:test%secret+"
redirect_uri = "https://app.example.com/auth"

[session]
store = "memory"

[headers]
"X-Auth-Subject" = "sub"
"X-Remote-User" = "preferred_username"

[[routes]]
name = "private"
path = "/private"
auth = "required"
upstream = "http://{echo}/to-private"

[[routes]]
name = "public"
path = "/public"
auth = "none"
upstream = "http://{echo}/to-public"

[[routes]]
name = "root"
path = "/"
auth = "none"
upstream = "http://{echo}/to-root"
"#,
                    discovery = idp.discovery_url()
                );
                let config = portcullis::config::parse(&config, Path::new(".")).unwrap();
                let proxy = support::start_in_process(config).await.proxy().clone();
                let auth = proxy.auth().expect("[oidc] is configured");
                for _ in 0..400 {
                    if auth.oidc.provider().is_some() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                }
                assert!(auth.oidc.provider().is_some(), "discovery did not complete");
                // Kept alive for the whole binary: the provider answers discovery only once.
                std::mem::forget(idp);
                proxy
            });
            let sessions = &proxy.auth().unwrap().sessions;
            let own_cookies = [
                sessions.config().cookie_name.clone(),
                sessions.binding_cookie_name().to_owned(),
            ]
            .iter()
            .map(|name| unprefixed(name))
            .collect();
            World {
                runtime,
                proxy,
                own_cookies,
            }
        })
    }

    /// A cookie name as a backend compares it: lower-case, without the browser's name prefixes.
    fn unprefixed(name: &str) -> String {
        let lower = name.trim().to_ascii_lowercase();
        ["__host-", "__secure-"]
            .iter()
            .find_map(|prefix| lower.strip_prefix(prefix))
            .unwrap_or(&lower)
            .to_owned()
    }

    /// Path segments an attacker likes: dots, encoded dots and slashes, backslashes, case, params.
    fn segment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "private",
            "PRIVATE",
            "Private",
            "public",
            "admin",
            "x",
            "",
            ".",
            "..",
            "%2e",
            "%2e%2e",
            "%2E%2e",
            ".%2e",
            "%2f",
            "%2F",
            "%5c",
            "%5C",
            "\\",
            "..\\..",
            "%00",
            ";",
            "..;",
            "x;y=1",
            "%70rivate",
            "donn%C3%A9es",
            "%C3%A9",
            "%ff",
            "%",
            "%zz",
            "~",
            "a%20b",
            "+",
        ])
    }

    fn target() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(segment(), 1..6),
            prop::option::of(prop::sample::select(vec![
                "a=1",
                "next=/private",
                "x=%2e%2e/",
            ])),
        )
            .prop_map(|(segments, query)| {
                let mut target = format!("/{}", segments.join("/"));
                if let Some(query) = query {
                    target.push('?');
                    target.push_str(query);
                }
                target
            })
    }

    /// Headers a client must not be able to slip past the proxy, in several spellings.
    fn header_name() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "x-auth-subject",
            "X-Auth-Groups",
            "x_auth_groups",
            "X_AUTH_SUBJECT",
            "x-auth-anything",
            "x-remote-user",
            "X_Remote_User",
            "x-forwarded-for",
            "X-Forwarded-Host",
            "x_forwarded_proto",
            "forwarded",
            "x-real-ip",
            "true-client-ip",
            "x-original-url",
            "x-rewrite-url",
            "x-client-ip",
            "cf-connecting-ip",
            "X-HTTP-Method-Override",
            "x_arr_clientcert",
            "script-name",
            "http2-settings",
            "accept",
            "x-custom",
        ])
    }

    /// Header values, including bytes a `to_str()` refuses.
    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        prop::sample::select(vec![
            b"admins".to_vec(),
            b"6.6.6.6".to_vec(),
            b"/private".to_vec(),
            b"evil.example".to_vec(),
            "fran\u{e7}ais".as_bytes().to_vec(),
            vec![b'x', 0xff, b'y'],
        ])
    }

    /// One `Cookie` field: own cookies in many spellings mixed with others, some with non-UTF-8 bytes.
    fn cookie_field() -> impl Strategy<Value = Vec<u8>> {
        let name = prop::sample::select(vec![
            "portcullis_session",
            "__Host-portcullis_session",
            "__host-PORTCULLIS_SESSION",
            "__Secure-portcullis_session",
            "portcullis_session_login",
            "__Host-portcullis_session_login",
            " portcullis_session",
            "portcullis_session ",
            "l",
            "theme",
        ]);
        let value = prop::sample::select(vec![
            b"x".to_vec(),
            b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_vec(),
            "fran\u{e7}ais".as_bytes().to_vec(),
            vec![0xc3, 0x28],
            Vec::new(),
        ]);
        prop::collection::vec((name, value), 1..5).prop_map(|pairs| {
            let mut field = Vec::new();
            for (i, (name, value)) in pairs.into_iter().enumerate() {
                if i > 0 {
                    field.extend_from_slice(if i % 2 == 0 { b"; " } else { b";" });
                }
                field.extend_from_slice(name.as_bytes());
                field.push(b'=');
                field.extend_from_slice(&value);
            }
            field
        })
    }

    #[derive(Debug, Clone)]
    struct Attempt {
        target: String,
        host: &'static str,
        headers: Vec<(&'static str, Vec<u8>)>,
        cookies: Vec<Vec<u8>>,
    }

    fn attempt() -> impl Strategy<Value = Attempt> {
        (
            target(),
            prop::sample::select(vec!["app.example.com", "APP.example.com:443", "x"]),
            prop::collection::vec((header_name(), header_value()), 0..6),
            prop::collection::vec(cookie_field(), 0..3),
        )
            .prop_map(|(target, host, headers, cookies)| Attempt {
                target,
                host,
                headers,
                cookies,
            })
    }

    /// The route a canonical path selects in [`world`]'s table.
    fn route_of(decision_path: &str) -> &'static str {
        let under = |prefix: &str| {
            decision_path == prefix || decision_path.starts_with(&format!("{prefix}/"))
        };
        if under("/private") {
            "private"
        } else if under("/public") {
            "public"
        } else {
            "root"
        }
    }

    fn check(world: &World, attempt: &Attempt) -> Result<(), TestCaseError> {
        let mut request = Request::get(attempt.target.as_str()).header("host", attempt.host);
        for (name, value) in &attempt.headers {
            let Ok(value) = http::HeaderValue::from_bytes(value) else {
                continue;
            };
            request = request.header(*name, value);
        }
        for cookie in &attempt.cookies {
            let Ok(value) = http::HeaderValue::from_bytes(cookie) else {
                continue;
            };
            request = request.header("cookie", value);
        }
        // Targets the HTTP library itself refuses never reach the proxy.
        let Ok(request) = request.body(Full::new(Bytes::new())) else {
            return Ok(());
        };
        let response = world
            .runtime
            .block_on(async { answer(world.proxy.handle(request, conn(PEER)).await).await });
        if response.status != StatusCode::OK {
            return Ok(()); // answered by the proxy itself: nothing reached the upstream
        }
        FORWARDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let report = response.json();
        let uri = report["uri"].as_str().unwrap_or_default().to_owned();
        let (route, forwarded) = uri
            .strip_prefix("/to-")
            .and_then(|rest| rest.split_once('/'))
            .map(|(route, path)| (route.to_owned(), format!("/{path}")))
            .ok_or_else(|| TestCaseError::fail(format!("unexpected upstream URI {uri}")))?;
        let forwarded_path = forwarded.split('?').next().unwrap_or_default();

        // A request that needs a login never reaches the upstream without one.
        prop_assert_ne!(
            route.as_str(),
            "private",
            "reached the login route without a session: {}",
            uri
        );
        // The path forwarded denotes what the route was chosen on: parsed again, it selects the
        // same route, and it carries nothing a backend could read as another separator.
        let reparsed =
            portcullis::canonical::CanonicalPath::parse(forwarded_path, false).map_err(|err| {
                TestCaseError::fail(format!(
                    "forwarded path {forwarded_path} does not parse: {err}"
                ))
            })?;
        prop_assert_eq!(
            route_of(reparsed.decision()),
            route.as_str(),
            "forwarded {}",
            forwarded_path
        );
        for separator in ["\\", "%5c", "%5C", "%2f", "%2F", "/../", "/./"] {
            prop_assert!(
                !forwarded_path.contains(separator),
                "forwarded {}",
                forwarded_path
            );
        }

        // Identity headers only ever come from a session (there is none here).
        for (name, value) in report["headers"].as_array().unwrap().iter().map(|pair| {
            (
                pair[0]
                    .as_str()
                    .unwrap()
                    .to_ascii_lowercase()
                    .replace('_', "-"),
                pair[1].as_str().unwrap_or_default().to_owned(),
            )
        }) {
            prop_assert!(
                !name.starts_with("x-auth-") && name != "x-remote-user",
                "client-sent identity header reached the upstream: {}: {}",
                name,
                value
            );
            for forged in [
                "true-client-ip",
                "x-original-url",
                "x-rewrite-url",
                "x-client-ip",
                "cf-connecting-ip",
                "forwarded",
                "x-http-method-override",
                "x-arr-clientcert",
                "script-name",
                "http2-settings",
            ] {
                prop_assert_ne!(
                    name.as_str(),
                    forged,
                    "client-sent forwarding header reached the upstream"
                );
            }
            let peer_ip = PEER.split(':').next().unwrap();
            if name == "x-forwarded-for" || name == "x-real-ip" {
                prop_assert_eq!(value.as_str(), peer_ip, "{} is the peer", name);
            }
            if name == "x-forwarded-proto" {
                prop_assert_eq!(value.as_str(), "http");
            }
            if name == "cookie" {
                for pair in value.split(';') {
                    let cookie_name = pair.split('=').next().unwrap_or_default();
                    prop_assert!(
                        !world.own_cookies.contains(&unprefixed(cookie_name)),
                        "Portcullis's cookie reached the upstream: {}",
                        value
                    );
                }
            }
        }
        Ok(())
    }

    /// Cases that reached the upstream: the properties on what it receives must be exercised.
    static FORWARDED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// Cases per run: modest under `cargo test`, raised by `PROPTEST_CASES` (scripts/fuzz).
    fn runner() -> TestRunner {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(256);
        TestRunner::new(RunnerConfig {
            cases,
            failure_persistence: None,
            ..RunnerConfig::default()
        })
    }

    #[test]
    fn untrusted_requests_never_carry_forged_identity_cookies_or_paths_upstream() {
        let world = world();
        let mut runner = runner();
        let cases = runner.config().cases as usize;
        runner
            .run(&attempt(), |attempt| check(world, &attempt))
            .unwrap();
        let forwarded = FORWARDED.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            forwarded * 5 >= cases,
            "only {forwarded} of {cases} generated requests reached the upstream: the generator no longer exercises what the upstream receives"
        );
    }
}
