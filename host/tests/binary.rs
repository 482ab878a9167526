//! The `portcullis` binary as users run it: `check`, streaming with bounded memory, SIGTERM, and
//! policies that spin without holding up anything else.

mod support;

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
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &one_route(echo, "drain_timeout = \"10s\""));
    let mut proxy = RunningProxy::start(&config);
    let url = format!("http://{}/?sleep_ms=1000", proxy.addr);
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.terminate();
    let answer = in_flight.await.unwrap();
    assert_eq!(
        answer.status, 200,
        "the in-flight request completes after SIGTERM"
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = proxy.child.wait().unwrap();
        drop(proxy);
        status
    })
    .await
    .unwrap();
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
        "[server]\nlisten = \"nowhere\"\n\n[[routes]]\nname = \"a\"\nupstream = \"htp:/x\"\n\n[[routes]]\nname = \"a\"\nupstream = \"http://127.0.0.1:9\"\n",
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
        "routes[0].upstream: not a URL: \"htp:/x\"",
        "routes[1].name: \"a\" is already the name of routes[0]",
        "routes[1]: same host and path as routes[0]",
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

/// The request's own deadline: with one policy thread held by a spinning decision, decisions
/// queued behind it are answered 500 when `policy_limits.timeout` plus the grace has passed,
/// not after the spinners before them have run (which would take three timeouts).
#[tokio::test]
async fn a_decision_waiting_past_its_deadline_fails_closed_with_500() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = spinning_policy_config(
        dir.path(),
        echo,
        "timeout = \"1500ms\"\nmax_operations = 1000000000000\nthreads = 1",
    );
    let proxy = RunningProxy::start(&config);
    let spinners: Vec<_> = (0..3)
        .map(|i| tokio::spawn(timed_get(proxy.addr, format!("/spin/{i}"))))
        .collect();
    for spinner in spinners {
        let (status, took) = spinner.await.unwrap();
        assert_eq!(status, 500);
        assert!(
            took < Duration::from_millis(2500),
            "answered after {took:?}: the caller waited for the policy thread"
        );
    }
    let log = std::fs::read_to_string(dir.path().join("portcullis.log")).unwrap();
    assert!(
        log.contains("policy_limits.timeout plus grace")
            && log.contains("route=spin")
            && log.contains("spin.rhai"),
        "the caller-side deadline is logged with route and file:\n{log}"
    );
}
