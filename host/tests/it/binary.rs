//! The `portcullis` binary as users run it: `check`, streaming with bounded memory, SIGTERM, and
//! policies that spin without holding up anything else.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::binary::{RunningProxy, binary};
use support::{echo, get, one_route, raw};

const BODY_SIZE: u64 = 100 * 1000 * 1000;
const CHUNK: usize = 64 * 1024;

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_100_mb_body_streams_both_ways_in_bounded_memory() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &one_route(echo, "max_request_body = \"200MB\""));
    let proxy = RunningProxy::start(&config);

    // Upload: 100 MB generated on the fly, chunked, never held in memory by the test either.
    let chunk = Bytes::from(vec![b'u'; CHUNK]);
    let chunks = BODY_SIZE.div_ceil(CHUNK as u64);
    let stream = futures_util::stream::iter((0..chunks).map(move |i| {
        let len = (BODY_SIZE - i * CHUNK as u64).min(CHUNK as u64) as usize;
        Ok::<_, std::io::Error>(Frame::data(chunk.slice(..len)))
    }));
    let client = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::post(format!("http://{}/upload", proxy.addr))
        .body(StreamBody::new(stream))
        .unwrap();
    let response = client
        .request(request)
        .await
        .expect("upload through the proxy");
    assert_eq!(response.status(), 200);
    let report: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(report["body_bytes"], BODY_SIZE);

    // Download: 100 MB from the upstream, counted frame by frame.
    let response = Client::builder(TokioExecutor::new())
        .build_http()
        .request(
            Request::get(format!("http://{}/download?bytes={BODY_SIZE}", proxy.addr))
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(received, BODY_SIZE);

    let peak = proxy.peak_rss();
    assert!(
        peak < 64 * 1024 * 1024,
        "peak RSS {} MiB: the body was buffered",
        peak / (1024 * 1024)
    );
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_cleanly() {
    let (echo, arrivals) = echo::spawn_counting().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &one_route(echo, "drain_timeout = \"10s\""));
    let proxy = RunningProxy::start(&config);
    let url = format!("http://{}/?sleep_ms=1000", proxy.addr);
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    arrivals.wait_for(1).await;
    proxy.terminate();
    let answer = in_flight.await.unwrap();
    assert_eq!(
        answer.status, 200,
        "the in-flight request completes after SIGTERM"
    );
    let status = proxy.exited().await;
    assert!(
        status.success(),
        "exit status after a clean drain: {status}"
    );
    let log = std::fs::read_to_string(dir.path().join("portcullis.log")).unwrap();
    assert!(
        log.contains("SIGTERM received") && log.contains("all connections closed"),
        "{log}"
    );
}

/// The access log (written by a log thread of its own, in batches): one line per request, each
/// with its status; the query and the cookies never appear; every line is written by the time the
/// process has exited after SIGTERM, none lost.
#[tokio::test]
async fn the_access_log_has_one_line_per_request_and_never_the_query_or_a_cookie() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!("{}\n[log]\nlevel = \"info\"\n", one_route(echo, "")),
    );
    let proxy = RunningProxy::start(&config);
    const REQUESTS: usize = 300;
    for i in 0..REQUESTS {
        let answer = get(
            &format!("http://{}/page/{i}?code=QUERYSECRET{i}", proxy.addr),
            &[("cookie", "other=COOKIESECRET")],
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    proxy.terminate();
    let status = proxy.exited().await;
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(dir.path().join("portcullis.log")).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("portcullis::access"))
        .collect();
    assert_eq!(lines.len(), REQUESTS, "{log}");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.contains(&format!("path=\"/page/{i}\""))
                || line.contains(&format!("path=/page/{i} ")),
            "in order: {line}"
        );
        assert!(line.contains("status=200"), "{line}");
    }
    assert!(
        !log.contains("QUERYSECRET") && !log.contains("COOKIESECRET"),
        "{log}"
    );
}

/// Found against the release binary: `X-Real-IP`, `True-Client-IP`, `X-Original-URL` and
/// `X-Rewrite-URL` from an untrusted client reached the backend as sent.
#[tokio::test]
async fn forged_client_address_and_rewrite_headers_never_reach_the_upstream_through_the_binary() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &one_route(echo, ""));
    let proxy = RunningProxy::start(&config);
    let answer = get(
        &format!("http://{}/", proxy.addr),
        &[
            ("x-real-ip", "6.6.6.6"),
            ("true-client-ip", "6.6.6.6"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    let report = answer.json();
    for name in ["true-client-ip", "x-original-url", "x-rewrite-url"] {
        assert_eq!(echo::received_header(&report, name), None, "{name} passed");
    }
    assert_eq!(
        echo::received_headers(&report, "x-real-ip"),
        ["127.0.0.1"],
        "X-Real-IP is the peer"
    );
}

#[test]
fn check_prints_ok_for_a_valid_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &one_route("127.0.0.1:9".parse().unwrap(), ""));
    let output = binary()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ok\n");
}

#[test]
fn check_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[server]\nlisten = \"nowhere\"\n\n[[routes]]\nname = \"a\"\nupstream = \"htp:/x\"\nauth = \"none\"\n\n[[routes]]\nname = \"a\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n",
    );
    let output = binary()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "has 4 problems:",
        "server.listen[0]: not an address like",
        "routes[\"a\"].upstream: not a URL: \"htp:/x\"",
        "routes[1].name: \"a\" is already the name of routes[0]",
        "routes[1]: same host and path as routes[\"a\"]",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn version_and_help_work() {
    let version = binary().arg("--version").output().unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("portcullis "));
    let help = binary().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("run") && text.contains("check"), "{text}");
}

#[test]
fn run_refuses_a_missing_config_with_a_clear_message() {
    let output = binary()
        .args(["run", "--config", "/nonexistent/portcullis.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read config file /nonexistent/portcullis.toml"),
        "{stderr}"
    );
}

/// sled locks its folder per process: a second `portcullis run` on the same session store (a
/// restart while the old process still runs, or a copy-pasted config) must stop at once, saying
/// which folder and why, and leave the first one serving.
#[tokio::test]
async fn a_second_process_on_the_same_session_store_stops_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("sessions");
    let config = |name: &str| {
        let folder = dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        write_config(
            &folder,
            &format!(
                r#"[server]
listen = "127.0.0.1:0"
[oidc]
discovery = "http://{closed}/.well-known/openid-configuration"
client_id = "portcullis"
client_secret = "secret"
redirect_uri = "http://127.0.0.1/auth"
[session]
path = "{store}"
cookie_secure = false
[[routes]]
name = "open"
path = "/"
upstream = "http://{closed}"
auth = "none"
"#,
                closed = support::closed_port(),
                store = store.display(),
            ),
        )
    };
    let first = RunningProxy::start(&config("first"));
    let second = binary()
        .args(["run", "--config"])
        .arg(config("second"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (code, stderr) = exit_code_within_30s(second);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot open the session database at {}",
            store.display()
        )) && stderr.contains("is another Portcullis using it?"),
        "{stderr}"
    );
    // The first one still serves (502: its upstream is a closed port, but it answered).
    let (status, _) = fetch(first.addr, "/", "text/html").await;
    assert_eq!(status, 502);
}

/// `GET path` with `accept` on `addr`: the status and the body.
async fn fetch(addr: std::net::SocketAddr, path: &str, accept: &str) -> (u16, String) {
    let (status, text) = support::raw(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}

/// Waits up to 30 s for `portcullis` to exit on its own (killed and `None` if it does not).
fn exit_code_within_30s(mut child: std::process::Child) -> (Option<i32>, String) {
    use std::io::Read;
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < give_up {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            return (status.code(), stderr);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    (None, "still running after 30 s".to_owned())
}

/// The live edit that used to open every route: `[oidc]` removed from a running config. Routes
/// without an `auth` key need a login, so the reload is refused naming them, the running config
/// keeps protecting them, and `check` and `run` refuse the edited file the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_oidc_from_a_running_config_is_refused_and_opens_nothing() {
    use support::hostile_idp::{HostileIdp, Script};
    let idp = HostileIdp::start(Script::default()).await;
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let oidc = format!(
        "[oidc]\ndiscovery = \"{}\"\nclient_id = \"portcullis\"\nclient_secret = \"hostile:test%secret+\"\nredirect_uri = \"http://127.0.0.1/auth\"\n\n",
        idp.discovery_url()
    );
    let text = |oidc: &str| {
        format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

{oidc}[session]
store = "memory"
cookie_secure = false

[[routes]]
name = "app"
path = "/"
upstream = "http://{echo}"

[[routes]]
name = "api"
path = "/api"
upstream = "http://{echo}"
auth = "required"

[[routes]]
name = "public"
path = "/public"
upstream = "http://{echo}"
auth = "none"
"#
        )
    };
    let config = write_config(dir.path(), &text(&oidc));
    let started = config.clone();
    let proxy = tokio::task::spawn_blocking(move || RunningProxy::start(&started))
        .await
        .unwrap();
    let admin = proxy.admin.expect("the binary prints its admin address");
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    // 503 until the provider is discovered, then 401 for a client without a session.
    while fetch(proxy.addr, "/", "application/json").await.0 != 401 {
        assert!(std::time::Instant::now() < give_up, "no discovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The edit, saved as editors do (a new file renamed over the old one).
    let edited = dir.path().join("portcullis.toml.new");
    std::fs::write(&edited, text("")).unwrap();
    std::fs::rename(&edited, &config).unwrap();
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let (_, body) = fetch(admin, "/reload", "application/json").await;
        let status: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|err| panic!("{err}: {body}"));
        if status["failed_reloads"].as_u64() >= Some(1)
            && status["last_attempt"]["error"]
                .as_str()
                .is_some_and(|error| error.contains("routes[\"app\"].auth"))
        {
            break status;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "the edit was not refused: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["generation"], 1, "nothing was applied: {status}");
    assert_eq!(status["last_attempt"]["result"], "failed", "{status}");
    let error = status["last_attempt"]["error"].as_str().unwrap();
    for expected in [
        "routes[\"app\"].auth: route \"app\" needs a login (it has no auth key, and \"required\" is the default), but there is no [oidc] section",
        "routes[\"api\"].auth: route \"api\" has auth = \"required\", but there is no [oidc] section",
        "write auth = \"none\" if the route is meant to be open to everyone",
    ] {
        assert!(error.contains(expected), "missing {expected:?} in {error}");
    }
    assert!(!error.contains("routes[\"public\"]"), "{error}");

    // Still protected by the running config; the open route still open.
    assert_eq!(fetch(proxy.addr, "/", "application/json").await.0, 401);
    assert_eq!(
        fetch(proxy.addr, "/", "text/html").await.0,
        302,
        "sent to log in"
    );
    assert_eq!(fetch(proxy.addr, "/api/x", "application/json").await.0, 401);
    assert_eq!(
        fetch(proxy.addr, "/public/x", "application/json").await.0,
        200
    );

    // At start, the same file is refused with the same problems.
    let check = binary()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&check.stderr).trim_end(), error);
    let run = binary()
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (code, stderr) = tokio::task::spawn_blocking(move || exit_code_within_30s(run))
        .await
        .unwrap();
    assert_eq!(code, Some(1), "run must refuse the config: {stderr}");
    assert!(
        stderr.contains("routes[\"app\"].auth: route \"app\""),
        "{stderr}"
    );
    drop(proxy);
}

#[tokio::test]
async fn own_session_cookie_never_reaches_upstream_with_non_utf8_cookie_through_the_binary() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"open\"\npath = \"/\"\nupstream = \"http://{echo}\"\nauth = \"none\"\n"
        ),
    );
    let proxy = RunningProxy::start(&config);
    let (status, response) = support::raw_bytes(
        proxy.addr,
        b"GET /page?set_cookie=__Host-portcullis_session_login%3DX%3B%20Secure%3B%20Path%3D%2F&set_cookie=theme%3Ddark HTTP/1.1\r\n\
          Host: localhost\r\n\
          Cookie: portcullis_session=AAAA; l=fran\xc3\xa7ais\r\n\
          Cookie: __Host-portcullis_session=BBBB\r\n\
          Connection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{response}");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let report: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        support::echo::received_headers(&report, "cookie"),
        ["l=fran\u{e7}ais"],
        "the upstream got Portcullis's session cookie"
    );
    let set_cookies: Vec<&str> = head
        .lines()
        .filter_map(|line| line.strip_prefix("set-cookie: "))
        .collect();
    assert_eq!(set_cookies, ["theme=dark"], "{head}");
}

/// A config with `/spin` (a policy that loops until `[policy_limits]` stops it) and `/open` (no
/// policy, no login), both on `upstream`.
fn spinning_policy_config(
    dir: &std::path::Path,
    upstream: std::net::SocketAddr,
    limits: &str,
) -> std::path::PathBuf {
    std::fs::write(
        dir.join("spin.rhai"),
        "if request.path.starts_with(\"/spin\") { loop {} }\nallow()\n",
    )
    .unwrap();
    write_config(
        dir,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[policy_limits]\n{limits}\n\n\
             [[routes]]\nname = \"spin\"\npath = \"/spin\"\nauth = \"none\"\npolicy = \"spin.rhai\"\nupstream = \"http://{upstream}\"\n\n\
             [[routes]]\nname = \"open\"\npath = \"/open\"\nauth = \"none\"\nupstream = \"http://{upstream}\"\n"
        ),
    )
}

/// Sends `GET path` on a connection of its own; the status and how long the answer took.
async fn timed_get(addr: std::net::SocketAddr, path: String) -> (u16, Duration) {
    let started = std::time::Instant::now();
    let (status, _) = raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"),
    )
    .await;
    (status, started.elapsed())
}

/// Issue 13: a policy that spins (or, before `sleep` was removed, sleeps) must not hold up other
/// routes. More spinning decisions are in flight than the runtime has workers (twice over) and
/// than there are policy threads; a request on a route without a policy is still answered at once.
#[tokio::test]
async fn spinning_policies_never_hold_up_requests_on_other_routes() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = spinning_policy_config(
        dir.path(),
        echo,
        "timeout = \"3s\"\nmax_operations = 1000000000000",
    );
    let proxy = RunningProxy::start(&config);
    // The binary's runtime has one worker per core; the policy threads are one per core too.
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let spinners: Vec<_> = (0..2 * cores + 2)
        .map(|i| tokio::spawn(timed_get(proxy.addr, format!("/spin/{i}"))))
        .collect();
    // Let them reach their policy (the bound below holds whether or not they all did).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, took) = timed_get(proxy.addr, "/open".into()).await;
    assert_eq!(status, 200);
    assert!(
        took < Duration::from_secs(1),
        "/open took {took:?} while policies on /spin were spinning"
    );
    for spinner in spinners {
        let (status, took) = spinner.await.unwrap();
        assert_eq!(status, 500, "a spinning policy fails closed");
        assert!(took >= Duration::from_secs(1), "{took:?}");
    }
}

/// A policy runs on the worker serving its request until it needs more than the inline budget
/// (1 ms): it is then stopped and decided again on a policy thread with the route's own limits;
/// after three such stops in a row it runs there from then on. The move is logged once; each
/// decision still fails closed.
#[tokio::test]
async fn a_policy_past_its_budget_on_the_worker_moves_to_the_policy_threads_once() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = spinning_policy_config(
        dir.path(),
        echo,
        "timeout = \"300ms\"\nmax_operations = 1000000000000",
    );
    let proxy = RunningProxy::start(&config);
    for i in 0..3 {
        let (status, took) = timed_get(proxy.addr, format!("/spin/{i}")).await;
        assert_eq!(status, 500, "a spinning policy fails closed");
        // Stopped by the route's own timeout on the policy thread, not by the 1 ms budget.
        assert!(took >= Duration::from_millis(300), "{took:?}");
    }
    let (status, _) = timed_get(proxy.addr, "/open".into()).await;
    assert_eq!(status, 200);
    let log = std::fs::read_to_string(dir.path().join("portcullis.log")).unwrap();
    let moves = log
        .lines()
        .filter(|line| line.contains("runs on the policy threads from now on"))
        .collect::<Vec<_>>();
    assert_eq!(moves.len(), 1, "{log}");
    assert!(
        moves[0].contains("route=\"spin\"") && moves[0].contains("spin.rhai"),
        "{}",
        moves[0]
    );
}

/// The request's own deadline: with one policy thread held by a spinning decision, decisions
/// queued behind it are answered 500 when `policy_limits.timeout` plus the grace (100 ms) has
/// passed, not after the spinners before them have run: 40 spinners queued for one thread would
/// keep the last ones waiting 6 s and more. The bound, 3.5 s, is ten times what each needs.
#[tokio::test]
async fn a_decision_waiting_past_its_deadline_fails_closed_with_500() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = spinning_policy_config(
        dir.path(),
        echo,
        "timeout = \"250ms\"\nmax_operations = 1000000000000\nthreads = 1",
    );
    let proxy = RunningProxy::start(&config);
    let spinners: Vec<_> = (0..40)
        .map(|i| tokio::spawn(timed_get(proxy.addr, format!("/spin/{i}"))))
        .collect();
    for spinner in spinners {
        let (status, took) = spinner.await.unwrap();
        assert_eq!(status, 500);
        assert!(
            took < Duration::from_millis(3500),
            "answered after {took:?}: the caller waited for the policy thread"
        );
    }
    // Each refusal is logged with route and file. Whether a queued decision ends by the caller's
    // deadline ("plus grace") or by the script's own cap given that same deadline is a race of
    // equal instants; the unit tests of `policy::pool` pin the caller's side with a job that
    // cannot stop.
    let log = std::fs::read_to_string(dir.path().join("portcullis.log")).unwrap();
    let refusals = log
        .lines()
        .filter(|line| {
            line.contains("policy failed; request refused")
                && line.contains("route=spin")
                && line.contains("spin.rhai")
        })
        .count();
    assert_eq!(
        refusals, 40,
        "each refusal logged with route and file:\n{log}"
    );
    // Once each (issue 17: a second, generic "request failed" line followed every one).
    assert!(!log.contains("request failed"), "{log}");
}

/// A config whose sessions live in sled at `<dir>/sessions` (the provider is never reached: the
/// store opens at start all the same), with `session_extra` in `[session]`.
fn sled_session_config(dir: &std::path::Path, session_extra: &str) -> std::path::PathBuf {
    let provider = support::closed_port();
    write_config(
        dir,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[oidc]\ndiscovery = \"http://{provider}/.well-known/openid-configuration\"\nclient_id = \"p\"\nclient_secret = \"s\"\nredirect_uri = \"http://127.0.0.1/auth\"\n\n[session]\nstore = \"sled\"\npath = \"sessions\"\ncookie_secure = false\n{session_extra}\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n"
        ),
    )
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Issue 17: a session folder left open to group or others (as an earlier version made it) is
/// refused at start, with the `chmod` to run; after it, the same folder opens.
#[test]
fn a_session_folder_others_can_enter_is_refused_at_start_with_the_chmod_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = sled_session_config(dir.path(), "");
    let folder = dir.path().join("sessions");
    std::fs::create_dir(&folder).unwrap();
    chmod(&folder, 0o755);
    let run = binary()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("run `chmod 700 {}`", folder.display())),
        "{stderr}"
    );
    chmod(&folder, 0o700);
    let proxy = RunningProxy::start(&config);
    drop(proxy);
}

/// The session secret is checked by `check` as by `run` (oidc.md, "At rest"): a secret file that
/// group or others can read, a short one, a missing previous one, and a short
/// `PORTCULLIS_SESSION_SECRET` are each refused with what to do.
#[test]
fn check_refuses_a_session_secret_others_can_read_or_too_short() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("session.key");
    let check = |config: &std::path::Path, env: Option<&str>| {
        let mut command = binary();
        command.args(["check", "--offline", "--config"]).arg(config);
        command.env_remove("PORTCULLIS_SESSION_SECRET");
        if let Some(value) = env {
            command.env("PORTCULLIS_SESSION_SECRET", value);
        }
        let output = command.output().unwrap();
        (
            output.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let config = sled_session_config(dir.path(), "");
    assert_eq!(
        check(&config, None),
        (Some(0), "ok\n".to_owned()),
        "missing: made at start"
    );

    std::fs::write(&key, "a secret that is long enough, surely\n").unwrap();
    chmod(&key, 0o644);
    let (code, out) = check(&config, None);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("session.secret_file")
            && out.contains(&format!("run `chmod 600 {}`", key.display())),
        "{out}"
    );

    std::fs::write(&key, "short\n").unwrap();
    chmod(&key, 0o600);
    let (code, out) = check(&config, None);
    assert_eq!(code, Some(1));
    assert!(out.contains("needs at least 32"), "{out}");

    let (code, out) = check(&config, Some("too short"));
    assert_eq!(code, Some(1));
    assert!(
        out.contains("PORTCULLIS_SESSION_SECRET") && out.contains("needs at least 32"),
        "{out}"
    );
    assert_eq!(
        check(&config, Some("an environment secret of 32 bytes or more")).0,
        Some(0),
        "the variable wins over the short file"
    );

    let config = sled_session_config(dir.path(), "previous_secret_files = [\"gone.key\"]");
    let (code, out) = check(&config, Some("an environment secret of 32 bytes or more"));
    assert_eq!(code, Some(1));
    assert!(
        out.contains("session.previous_secret_files[0]") && out.contains("gone.key"),
        "{out}"
    );
}

/// Issue 17, traps at start: a `[dev_idp]` (a demo provider with public passwords) left beside
/// a real `[oidc] discovery` is refused by `check` and `run` unless `--dev` is given; and
/// `cookie_secure` with a plain-HTTP `redirect_uri` passes `check` with a warning that says
/// the fix.
#[test]
fn check_refuses_a_demo_provider_beside_a_real_one_and_warns_of_secure_cookies_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let output = |args: &[&str]| {
        let output = binary().args(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let config = write_config(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[dev_idp]\nlisten = \"127.0.0.1:18581\"\n\n[oidc]\ndiscovery = \"https://login.example.com/.well-known/openid-configuration\"\nclient_id = \"p\"\nclient_secret = \"s\"\nredirect_uri = \"https://app.example.com/auth\"\n\n[session]\nstore = \"memory\"\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n",
    );
    let config = config.to_str().unwrap();
    let (code, stderr) = output(&["check", "--offline", "--config", config]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("dev_idp: [dev_idp] starts a demo identity provider with public passwords")
            && stderr.contains("remove [dev_idp] from a real config, or give --dev"),
        "{stderr}"
    );
    assert_eq!(
        output(&["check", "--offline", "--dev", "--config", config]).0,
        Some(0)
    );
    let (code, stderr) = output(&["run", "--config", config]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("give --dev"), "{stderr}");

    let plain_http = write_config(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[oidc]\ndiscovery = \"http://127.0.0.1:9/.well-known/openid-configuration\"\nclient_id = \"p\"\nclient_secret = \"s\"\nredirect_uri = \"http://app.example.com/auth\"\n\n[session]\nstore = \"memory\"\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n",
    );
    let plain_http = plain_http.to_str().unwrap();
    let (code, stderr) = output(&["check", "--offline", "--config", plain_http]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: session.cookie_secure is true")
            && stderr.contains("set [session] cookie_secure = false for plain-HTTP local use"),
        "{stderr}"
    );
}

/// Issue 17, logs an operator can read: the access log names the user (`-` without a session)
/// and, when Portcullis refused the request itself, the decision and its reason; durations are
/// rounded; dependencies' internals stay out of an `info` log.
#[tokio::test]
async fn the_access_log_says_who_and_why_a_request_was_refused() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("deny.rhai"),
        "if request.path == \"/private\" { deny(403, \"staff only\") } else { allow() }",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{}\npolicy = \"deny.rhai\"\n\n[log]\nlevel = \"info\"\n",
            one_route(echo, "")
        ),
    );
    let proxy = RunningProxy::start(&config);
    assert_eq!(
        get(&format!("http://{}/private", proxy.addr), &[])
            .await
            .status,
        403
    );
    assert_eq!(
        get(&format!("http://{}/open", proxy.addr), &[])
            .await
            .status,
        200
    );
    proxy.terminate();
    assert!(proxy.exited().await.success());
    let log = std::fs::read_to_string(dir.path().join("portcullis.log")).unwrap();
    let line = |path: &str| {
        log.lines()
            .find(|line| line.contains("portcullis::access") && line.contains(path))
            .unwrap_or_else(|| panic!("no access line for {path}: {log}"))
            .to_owned()
    };
    let refused = line("/private");
    assert!(
        refused.contains("user=\"-\"")
            && refused.contains("decision=\"deny\"")
            && refused.contains("reason=\"staff only\""),
        "{refused}"
    );
    let served = line("/open");
    assert!(!served.contains("decision="), "{served}");
    let duration = served
        .split("duration_ms=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    assert!(
        duration
            .split('.')
            .nth(1)
            .is_none_or(|decimals| decimals.len() <= 2),
        "rounded: {duration}"
    );
    assert!(
        !log.contains(" sled::") && !log.contains(" hyper::"),
        "{log}"
    );
}
