//! The whole request pipeline in-process (`Proxy::handle`, no client socket) for a logged-in user
//! (10 groups) on a route with `require-group.rhai`: request id, header hygiene, canonical path,
//! route, cookie → session (cache hit), policy, identity headers, upstream request. "allowed" also
//! forwards to a minimal upstream on loopback (keep-alive) and reads its answer; "denied" stops at
//! the policy, so it is the pipeline alone.
//!
//! The script reads only claims and config, so its decision is remembered per session: every
//! request after a session's first is served the remembered decision in the authorize phase, with
//! no run ("decision remembered"). The same routes with remembering turned off time what a
//! session's first request pays instead: the script run, wherever the authorize phase runs it
//! ("script run, remembering off").

use std::convert::Infallible;
use std::path::Path;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis::config::RoutePolicy;
use portcullis::policy::{Policy, RhaiPolicy};
use portcullis::proxy::{ConnInfo, Proxy};
use portcullis_benches::realistic_session;

async fn upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/require-group.rhai");
    let (proxy, cookie) = runtime.block_on(async {
        let upstream = upstream().await;
        // The provider is never asked: the session is valid and its access token far from expiry.
        let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let text = format!(
            r#"
[oidc]
discovery = "http://{nowhere}/.well-known/openid-configuration"
client_id = "bench"
client_secret = "bench"
redirect_uri = "http://bench/auth"
[session]
store = "memory"
cookie_name = "session"
[[routes]]
name = "allowed"
path = "/"
upstream = "http://{upstream}"
policy = "{policy}"
[routes.policy_config]
group = "group-7"
[[routes]]
name = "denied"
path = "/denied"
upstream = "http://{upstream}"
policy = "{policy}"
[routes.policy_config]
group = "nobody"
[[routes]]
name = "run-allowed"
path = "/run"
upstream = "http://{upstream}"
policy = "{policy}"
[routes.policy_config]
group = "group-7"
[[routes]]
name = "run-denied"
path = "/run-denied"
upstream = "http://{upstream}"
policy = "{policy}"
[routes.policy_config]
group = "nobody"
"#,
            policy = policy.display()
        );
        let config = portcullis::config::parse(&text, Path::new(".")).unwrap();
        let app = portcullis::App::start(config, portcullis::Listeners::default())
            .await
            .unwrap();
        let proxy = app.handle().proxy().clone();
        for name in ["run-allowed", "run-denied"] {
            rhai_policy(&proxy, name, RhaiPolicy::never_remember);
        }
        let sessions = proxy.auth().expect("login is configured").sessions.clone();
        let cookie = sessions
            .insert_unflushed(realistic_session())
            .await
            .unwrap();
        (proxy, format!("session={cookie}"))
    });
    let request = |path: &str| {
        http::Request::get(path)
            .header("host", "app.example.com")
            .header("accept", "text/html")
            .header("user-agent", "bench")
            .header("cookie", &cookie)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let conn = ConnInfo::new("10.0.0.7:40000".parse().unwrap(), false);
    let cases = [
        (
            "decision remembered, allowed, forwarded",
            "allowed",
            "/users?page=2",
            200,
        ),
        ("decision remembered, denied", "denied", "/denied/x", 403),
        (
            "script run, remembering off, allowed, forwarded",
            "run-allowed",
            "/run/users?page=2",
            200,
        ),
        (
            "script run, remembering off, denied",
            "run-denied",
            "/run-denied/x",
            403,
        ),
    ];
    // What the names say: two requests each; a remembered decision ran the script once, for the
    // session's first request, the others ran it every time.
    let runs = cases.map(|(_, route, path, _)| {
        for _ in 0..2 {
            runtime.block_on(proxy.handle(request(path), conn.clone()));
        }
        rhai_policy(&proxy, route, RhaiPolicy::runs)
    });
    assert_eq!(runs, [1, 1, 2, 2]);
    for (name, _, path, status) in cases {
        c.bench_function(
            &format!("pipeline/logged in + require-group.rhai ({name})"),
            |b| {
                b.to_async(&runtime).iter(|| async {
                    let response = proxy.handle(request(path), conn.clone()).await;
                    assert_eq!(response.status(), status);
                    response.into_body().collect().await.unwrap()
                })
            },
        );
    }
}

/// `f` of the Rhai policy of route `name`.
fn rhai_policy<T>(proxy: &Proxy, name: &str, f: impl FnOnce(&RhaiPolicy) -> T) -> T {
    let snapshot = proxy.snapshot();
    let route = snapshot
        .routes
        .iter()
        .find(|route| route.config.name == name);
    match route.and_then(|route| route.config.policy.as_ref()) {
        Some(RoutePolicy {
            policy: Policy::Rhai(policy),
            ..
        }) => f(policy),
        _ => panic!("route {name} has no Rhai policy"),
    }
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
