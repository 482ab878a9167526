//! Hot reload with real files, a real watcher (inotify) and real connections on loopback: what is
//! edited is served, what is broken is not, and no request is dropped meanwhile.

use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::echo::{self, received_header};
use support::{TestProxy, get, start_watching};

/// How long any test waits for a reload it expects (a debug build compiling Wasm takes seconds).
const PATIENCE: Duration = Duration::from_secs(30);

/// A policy that lets everything through and tells the upstream which version decided.
fn version_policy(version: u32) -> String {
    format!("allow(#{{ \"X-Version\": \"{version}\" }})\n")
}

/// `[server]` with an admin listener, and one route `/` to `echo` decided by `policy.rhai`.
fn config_text(echo: SocketAddr) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[[routes]]
name = "app"
path = "/"
upstream = "http://{echo}"
auth = "none"
policy = "policy.rhai"
"#
    )
}

/// A folder with `portcullis.toml` (from `config`) and `policy.rhai` at version 1.
fn setup(config: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("portcullis.toml");
    std::fs::write(&config_path, config).unwrap();
    std::fs::write(dir.path().join("policy.rhai"), version_policy(1)).unwrap();
    (dir, config_path)
}

/// The policy version that decided a `GET /` (`None` for anything but a 200 from the echo).
async fn served_version(proxy: &TestProxy) -> Option<String> {
    let answer = get(&proxy.url("/"), &[]).await;
    if answer.status != 200 {
        return None;
    }
    received_header(&answer.json(), "x-version")
}

/// Polls `check` every 20 ms until it holds; panics with `what` after [`PATIENCE`].
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let give_up = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < give_up, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_version(proxy: &TestProxy, version: u32) {
    let wanted = version.to_string();
    wait_for(&format!("policy version {version}"), || async {
        served_version(proxy).await.as_deref() == Some(wanted.as_str())
    })
    .await;
}

/// `GET /reload` on the admin listener.
async fn reload_status(proxy: &TestProxy) -> serde_json::Value {
    let admin = proxy.admin.expect("the config has an admin listener");
    get(&format!("http://{admin}/reload"), &[]).await.json()
}

/// Waits until `failed_reloads` reaches `count` and returns the status.
async fn wait_for_failures(proxy: &TestProxy, count: u64) -> serde_json::Value {
    wait_for(&format!("{count} failed reload(s)"), || async {
        reload_status(proxy).await["failed_reloads"] == count
    })
    .await;
    reload_status(proxy).await
}

/// Replaces `path` the way editors that save atomically do: a new file renamed over the old one.
fn write_by_rename(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp~");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_edited_under_load_drops_nothing_and_is_served_at_once() {
    let echo = echo::spawn().await;
    let (dir, config) = setup(&config_text(echo));
    let proxy = start_watching(&config).await;
    assert_eq!(served_version(&proxy).await.as_deref(), Some("1"));

    // Two clients, each on its own keep-alive connection, for 10 s.
    let url = proxy.url("/");
    let stop_at = Instant::now() + Duration::from_secs(10);
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = support::client();
                let (mut requests, mut failures) = (0u64, Vec::new());
                let mut first_v2: Option<Instant> = None;
                while Instant::now() < stop_at {
                    let request = http::Request::get(&url)
                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                        .unwrap();
                    requests += 1;
                    let version = match client.request(request).await {
                        Ok(response) if response.status() == 200 => {
                            let report = support::answer(response).await.json();
                            received_header(&report, "x-version")
                        }
                        Ok(response) => {
                            failures.push(format!("status {}", response.status()));
                            continue;
                        }
                        Err(err) => {
                            failures.push(format!("{err}"));
                            continue;
                        }
                    };
                    match version.as_deref() {
                        Some("2") => {
                            first_v2.get_or_insert_with(Instant::now);
                        }
                        Some("1") if first_v2.is_some() => {
                            failures.push("version 1 served after version 2".to_owned())
                        }
                        Some("1") => {}
                        other => failures.push(format!("unexpected version {other:?}")),
                    }
                }
                (requests, failures, first_v2)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::write(dir.path().join("policy.rhai"), version_policy(2)).unwrap();

    // How soon after the write is the reload bench's to measure (`benches/README.md`), not a
    // wall-clock bound here: what is asserted is that no request failed and that no client saw
    // version 1 again once it had seen version 2.
    for client in clients {
        let (requests, failures, first_v2) = client.await.unwrap();
        assert!(requests > 100, "only {requests} requests in 10 s");
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        assert!(first_v2.is_some(), "version 2 was served");
    }
    let status = reload_status(&proxy).await;
    assert_eq!(status["generation"], 2, "{status}");
    assert_eq!(status["last_attempt"]["trigger"], "file-change");
}

#[tokio::test]
async fn a_broken_policy_is_refused_with_its_line_and_the_old_one_keeps_serving() {
    support::logs::capture();
    let echo = echo::spawn().await;
    let (dir, config) = setup(&config_text(echo));
    let proxy = start_watching(&config).await;

    std::fs::write(dir.path().join("policy.rhai"), "let x = ;\nallow(#{})\n").unwrap();
    let status = wait_for_failures(&proxy, 1).await;
    let attempt = &status["last_attempt"];
    assert_eq!(attempt["result"], "failed", "{status}");
    let error = attempt["error"].as_str().unwrap();
    assert!(error.contains("policy.rhai:1:"), "no file:line in {error}");
    assert_eq!(status["generation"], 1);
    assert_eq!(served_version(&proxy).await.as_deref(), Some("1"));
    // Logged on the reload thread; it names the config file, in this test's own folder.
    assert!(
        support::logs::events_with(&config.display().to_string())
            .iter()
            .any(|event| event.contains("reload refused, still serving generation 1")),
        "the refusal is logged: {:#?}",
        support::logs::events_with("reload refused")
    );

    // Fixing the file is the retry.
    std::fs::write(dir.path().join("policy.rhai"), version_policy(2)).unwrap();
    wait_for_version(&proxy, 2).await;
    assert_eq!(
        reload_status(&proxy).await["last_attempt"]["result"],
        "applied"
    );
}

/// Issue 17: a misspelt function (`hsa_group`) passed `check`, went live at a reload, and every
/// request of the route got 500. `check` and the reload now both refuse it, at its line and
/// column, with the name meant; the old version keeps serving.
#[tokio::test]
async fn a_misspelt_function_is_refused_by_check_and_by_the_reload_with_the_name_meant() {
    let echo = echo::spawn().await;
    let (dir, config) = setup(&config_text(echo));
    let proxy = start_watching(&config).await;
    let misspelt = "let staff = hsa_group(\"staff\");\nallow(#{})\n";
    std::fs::write(dir.path().join("policy.rhai"), misspelt).unwrap();
    let expected = "policy.rhai:1:13: there is no function `hsa_group`; did you mean `has_group`?";

    let check = support::binary::binary()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");

    let status = wait_for_failures(&proxy, 1).await;
    let error = status["last_attempt"]["error"].as_str().unwrap();
    assert!(error.contains(expected), "{error}");
    assert_eq!(served_version(&proxy).await.as_deref(), Some("1"));
}

#[tokio::test]
async fn a_deleted_policy_keeps_the_old_version_until_it_is_back() {
    let echo = echo::spawn().await;
    let (dir, config) = setup(&config_text(echo));
    let proxy = start_watching(&config).await;

    std::fs::remove_file(dir.path().join("policy.rhai")).unwrap();
    let status = wait_for_failures(&proxy, 1).await;
    assert!(
        status["last_attempt"]["error"]
            .as_str()
            .unwrap()
            .contains("policy.rhai"),
        "{status}"
    );
    for _ in 0..3 {
        assert_eq!(served_version(&proxy).await.as_deref(), Some("1"));
    }

    std::fs::write(dir.path().join("policy.rhai"), version_policy(2)).unwrap();
    wait_for_version(&proxy, 2).await;
}

#[tokio::test]
async fn a_policy_saved_by_rename_is_picked_up() {
    let echo = echo::spawn().await;
    let (dir, config) = setup(&config_text(echo));
    let proxy = start_watching(&config).await;
    write_by_rename(&dir.path().join("policy.rhai"), &version_policy(2));
    wait_for_version(&proxy, 2).await;
    // And again: the watch survives the first rename.
    write_by_rename(&dir.path().join("policy.rhai"), &version_policy(3));
    wait_for_version(&proxy, 3).await;
}

#[tokio::test]
async fn of_ten_writes_within_100_ms_the_last_one_wins() {
    let echo = echo::spawn().await;
    let (dir, config) = setup(&config_text(echo));
    let proxy = start_watching(&config).await;
    for version in 2..=11 {
        std::fs::write(dir.path().join("policy.rhai"), version_policy(version)).unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_for_version(&proxy, 11).await;
    // The burst was read as one change, not one reload per write (twice at most: the debounce
    // reads a burst that runs past its 500 ms cap, as a slow machine may make this one).
    let generation = reload_status(&proxy).await["generation"].as_u64().unwrap();
    assert!(
        (2..=3).contains(&generation),
        "ten writes, generation {generation}"
    );
    // It stays the last one: no late reload of an intermediate version.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(served_version(&proxy).await.as_deref(), Some("11"));
    assert_eq!(
        reload_status(&proxy).await["generation"].as_u64().unwrap(),
        generation,
        "no reload after the last version was served"
    );
}

#[tokio::test]
async fn a_kubernetes_configmap_symlink_swap_is_picked_up() {
    // The layout kubelet's atomic writer makes: real files in a timestamped folder, `..data`
    // pointing at it, and the visible names pointing into `..data`.
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let version_dir = |name: &str, version: u32| {
        let folder = dir.path().join(name);
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("portcullis.toml"), config_text(echo)).unwrap();
        std::fs::write(folder.join("policy.rhai"), version_policy(version)).unwrap();
    };
    version_dir("..2026_11_28_a", 1);
    std::os::unix::fs::symlink("..2026_11_28_a", dir.path().join("..data")).unwrap();
    for name in ["portcullis.toml", "policy.rhai"] {
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.path().join(name)).unwrap();
    }
    let proxy = start_watching(&dir.path().join("portcullis.toml")).await;
    assert_eq!(served_version(&proxy).await.as_deref(), Some("1"));

    version_dir("..2026_11_28_b", 2);
    std::os::unix::fs::symlink("..2026_11_28_b", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    std::fs::remove_dir_all(dir.path().join("..2026_11_28_a")).unwrap();
    wait_for_version(&proxy, 2).await;
}

#[tokio::test]
async fn a_replaced_wasm_policy_is_compiled_and_served() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let wasm = |name: &str| std::fs::read(support::wasm::policy(name)).unwrap();
    std::fs::write(dir.path().join("policy.wasm"), wasm("require_group")).unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:0"

[wasm]
cache = false

[[routes]]
name = "app"
path = "/"
upstream = "http://{echo}"
auth = "none"
policy = "policy.wasm"
[routes.policy_config]
group = "admins"
mode = "log"
"#
        ),
    )
    .unwrap();
    let proxy = start_watching(&config).await;
    assert_eq!(get(&proxy.url("/"), &[]).await.status, 403, "not an admin");

    // The hostile sample in `log` mode logs a line and lets everything through.
    std::fs::write(dir.path().join("policy.wasm.new"), wasm("hostile")).unwrap();
    std::fs::rename(
        dir.path().join("policy.wasm.new"),
        dir.path().join("policy.wasm"),
    )
    .unwrap();
    wait_for("the new Wasm policy", || async {
        get(&proxy.url("/"), &[]).await.status == 200
    })
    .await;
}

#[tokio::test]
async fn an_upstream_change_and_added_and_removed_routes_apply() {
    let (first, second) = (echo::spawn().await, echo::spawn().await);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    let routes = |upstream: String, extra_route: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"app\"\npath = \"/app\"\nupstream = \"{upstream}\"\nauth = \"none\"\n{extra_route}"
        )
    };
    let old_route = "\n[[routes]]\nname = \"old\"\npath = \"/old\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n";
    let new_route = format!(
        "\n[[routes]]\nname = \"new\"\npath = \"/new\"\nupstream = \"http://{first}\"\nauth = \"none\"\n"
    );
    std::fs::write(&config, routes(format!("http://{first}/one"), old_route)).unwrap();
    let proxy = start_watching(&config).await;
    let upstream_uri = |answer: support::Answer| answer.json()["uri"].as_str().unwrap().to_owned();
    assert_eq!(
        upstream_uri(get(&proxy.url("/app/x"), &[]).await),
        "/one/app/x"
    );
    assert_eq!(get(&proxy.url("/new"), &[]).await.status, 404);

    std::fs::write(&config, routes(format!("http://{second}/two"), &new_route)).unwrap();
    wait_for("the new upstream", || async {
        let answer = get(&proxy.url("/app/x"), &[]).await;
        answer.status == 200 && upstream_uri(answer) == "/two/app/x"
    })
    .await;
    assert_eq!(
        get(&proxy.url("/new"), &[]).await.status,
        200,
        "route added"
    );
    assert_eq!(
        get(&proxy.url("/old"), &[]).await.status,
        404,
        "route removed"
    );
}

#[tokio::test]
async fn a_rotated_certificate_is_presented_to_new_connections() {
    use support::tls::TestCert;
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let first = TestCert::generate(dir.path(), "server");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://{echo}\"\nauth = \"none\"\n"
        ),
    )
    .unwrap();
    let proxy = start_watching(&config).await;
    let (_, answer) = support::tls::h2_get(proxy.addr, first.roots(), "/").await;
    assert_eq!(answer.status, 200);

    // Rotate: a new certificate and key under the same names (generated elsewhere, then moved in).
    let staging = tempfile::tempdir().unwrap();
    let second = TestCert::generate(staging.path(), "server");
    std::fs::rename(&second.key_path, dir.path().join("server.key")).unwrap();
    std::fs::rename(&second.cert_path, dir.path().join("server.pem")).unwrap();
    wait_for("the new certificate", || async {
        support::tls::handshake_succeeds(proxy.addr, second.roots()).await
    })
    .await;
    assert!(
        !support::tls::handshake_succeeds(proxy.addr, first.roots()).await,
        "the old certificate is no longer presented"
    );
    let (_, answer) = support::tls::h2_get(proxy.addr, second.roots(), "/").await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn a_listen_change_is_reported_as_needing_a_restart_and_the_rest_applies() {
    let echo = echo::spawn().await;
    let (dir, config) = setup(&config_text(echo));
    let proxy = start_watching(&config).await;
    let moved = config_text(echo).replace(
        "listen = \"127.0.0.1:0\"\nadmin",
        &format!("listen = \"{}\"\nadmin", support::closed_port()),
    );
    std::fs::write(&config, moved).unwrap();
    std::fs::write(dir.path().join("policy.rhai"), version_policy(2)).unwrap();
    wait_for_version(&proxy, 2).await;
    let status = reload_status(&proxy).await;
    assert_eq!(
        status["last_attempt"]["restart_required"],
        serde_json::json!(["server.listen"]),
        "{status}"
    );
}

/// The session store and the cookies it issued were made with the `[session]` the process started
/// with: a change there is applied at the next restart, and the reload says so, key by key,
/// while the rest of the config applies.
#[tokio::test]
async fn a_session_change_is_reported_as_needing_a_restart_and_the_rest_applies() {
    let echo = echo::spawn().await;
    // The provider is never reached (open routes are served without it); the same address in
    // both versions, so that `[oidc]` is unchanged.
    let provider = support::closed_port();
    let with_session = |lifetime: &str| {
        format!(
            "{}\n[oidc]\ndiscovery = \"http://{}/.well-known/openid-configuration\"\nclient_id = \"p\"\nclient_secret = \"s\"\nredirect_uri = \"http://127.0.0.1/auth\"\n\n[session]\nstore = \"memory\"\ncookie_secure = false\nlifetime = \"{lifetime}\"\n",
            config_text(echo),
            provider
        )
    };
    let (dir, config) = setup(&with_session("8h"));
    let proxy = start_watching(&config).await;
    std::fs::write(&config, with_session("1h")).unwrap();
    std::fs::write(dir.path().join("policy.rhai"), version_policy(2)).unwrap();
    wait_for_version(&proxy, 2).await;
    let status = reload_status(&proxy).await;
    assert_eq!(
        status["last_attempt"]["restart_required"],
        serde_json::json!(["session.lifetime"]),
        "{status}"
    );
}

/// Saving a file without changing it (an editor's save, `touch`, a deploy that rewrites the same
/// bytes) reloads nothing: the watcher compares contents, not times.
#[tokio::test]
async fn rewriting_the_same_content_does_not_reload() {
    let echo = echo::spawn().await;
    let text = config_text(echo);
    let (dir, config) = setup(&text);
    let proxy = start_watching(&config).await;
    assert_eq!(reload_status(&proxy).await["generation"], 1);
    std::fs::write(&config, &text).unwrap();
    std::fs::write(dir.path().join("policy.rhai"), version_policy(1)).unwrap();
    // Past the watcher's debounce (at most 500 ms), so that the change below is a burst of its own.
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(dir.path().join("policy.rhai"), version_policy(2)).unwrap();
    wait_for_version(&proxy, 2).await;
    let status = reload_status(&proxy).await;
    assert_eq!(
        status["generation"], 2,
        "only the real change reloaded: {status}"
    );
}

#[tokio::test]
async fn a_reload_refuses_exactly_what_check_refuses() {
    let echo = echo::spawn().await;
    let (dir, config) = setup(&config_text(echo));
    let proxy = start_watching(&config).await;
    let broken = format!(
        "{}\n[[routes]]\nname = \"app\"\npath = \"/other\"\nupstream = \"ftp://x\"\nauth = \"none\"\n",
        config_text(echo)
    );
    std::fs::write(&config, broken).unwrap();
    let status = wait_for_failures(&proxy, 1).await;
    let check = support::binary::binary()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(
        status["last_attempt"]["error"].as_str().unwrap(),
        String::from_utf8_lossy(&check.stderr).trim_end()
    );
    assert_eq!(served_version(&proxy).await.as_deref(), Some("1"));
    drop(dir);
}

#[test]
fn sighup_reloads_the_running_binary() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n",
    )
    .unwrap();
    let proxy = support::binary::RunningProxy::start(&config);
    let admin = proxy.admin.expect("the binary prints its admin address");
    let status = || -> serde_json::Value {
        let body = support::binary::http_get(admin, "/reload");
        serde_json::from_str(&body).unwrap_or_else(|err| panic!("{err}: {body}"))
    };
    assert_eq!(status()["generation"], 1);
    proxy.signal("-HUP");
    let give_up = Instant::now() + PATIENCE;
    while status()["generation"] != 2 {
        assert!(
            Instant::now() < give_up,
            "no reload after SIGHUP: {}",
            status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(status()["last_attempt"]["trigger"], "signal");
    // The log spells it as /reload does (issue 17: it said `trigger=Signal`).
    let log = support::binary::read_log(&config);
    assert!(
        log.contains("config reloaded") && log.contains("trigger=\"signal\""),
        "{log}"
    );
}

/// An `upstream_ca` bundle is watched (operations.md): the CA an upstream's certificate chains to,
/// written into the bundle, is trusted from the reload on, and taken out again it is no longer
/// trusted — connections made under the old roots are not reused.
#[tokio::test]
async fn a_changed_upstream_ca_bundle_applies_at_the_reload() {
    use support::tls::TestCert;
    let dir = tempfile::tempdir().unwrap();
    let upstream_cert = TestCert::generate(dir.path(), "upstream");
    let unrelated = TestCert::generate(dir.path(), "unrelated");
    let echo = echo::spawn().await;
    let tls_upstream = support::start_proxy_in(
        &support::one_route(
            echo,
            "[server.tls]\ncert = \"upstream.pem\"\nkey = \"upstream.key\"",
        ),
        dir.path(),
    )
    .await;
    let bundle = dir.path().join("upstream-ca.pem");
    std::fs::write(&bundle, &unrelated.cert_pem).unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"https://localhost:{}\"\nupstream_ca = \"upstream-ca.pem\"\nauth = \"none\"\n",
            tls_upstream.addr.port()
        ),
    )
    .unwrap();
    let proxy = start_watching(&config).await;
    let status = || async { get(&proxy.url("/"), &[]).await.status };
    assert_eq!(status().await, 502, "not signed by the bundle's CA");

    std::fs::write(&bundle, &upstream_cert.cert_pem).unwrap();
    wait_for("the bundle with the upstream's CA", || async {
        reload_status(&proxy).await["generation"] == 2
    })
    .await;
    assert_eq!(status().await, 200);
    assert_eq!(status().await, 200, "a kept-alive connection");

    std::fs::write(&bundle, &unrelated.cert_pem).unwrap();
    wait_for("the bundle without it", || async {
        reload_status(&proxy).await["generation"] == 3
    })
    .await;
    assert_eq!(status().await, 502, "the CA taken out is no longer trusted");
}

/// `[log] level` applies at a reload (operations.md), unless `RUST_LOG` is set, which wins at
/// start and at every reload (config.md). Watched through the access log, at `info`: a request
/// served at `warn` leaves no line, and the log is in order, so a later request's line proves the
/// earlier one was not merely still queued.
#[test]
fn a_log_level_change_applies_at_a_reload_unless_rust_log_is_set() {
    use support::binary::{RunningProxy, http_get, read_log};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    let write = |level: &str| {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[log]\nlevel = \"{level}\"\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n"
        );
        std::fs::write(&config, text).unwrap();
    };
    let wait_for_log = |text: &str| {
        let give_up = Instant::now() + PATIENCE;
        while !read_log(&config).contains(text) {
            assert!(Instant::now() < give_up, "never logged {text:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    write("warn");
    let proxy = RunningProxy::start(&config);
    let reload_to = |proxy: &RunningProxy, level: &str, generation: u64| {
        write(level);
        let admin = proxy.admin.unwrap();
        let give_up = Instant::now() + PATIENCE;
        loop {
            let status: serde_json::Value =
                serde_json::from_str(&http_get(admin, "/reload")).unwrap();
            if status["generation"] == generation {
                break;
            }
            assert!(Instant::now() < give_up, "no reload to {level}: {status}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    http_get(proxy.addr, "/at-warn-1");
    reload_to(&proxy, "info", 2);
    http_get(proxy.addr, "/at-info-2");
    wait_for_log("/at-info-2");
    reload_to(&proxy, "warn", 3);
    http_get(proxy.addr, "/at-warn-3");
    reload_to(&proxy, "info", 4);
    http_get(proxy.addr, "/at-info-4");
    wait_for_log("/at-info-4");
    let log = read_log(&config);
    assert!(!log.contains("/at-warn-1"), "logged at warn: {log}");
    assert!(
        !log.contains("/at-warn-3"),
        "logged after the reload to warn: {log}"
    );
    drop(proxy);

    write("warn");
    let proxy = RunningProxy::start_with_env(&config, &[("RUST_LOG", "info")]);
    http_get(proxy.addr, "/rust-log-at-start");
    wait_for_log("/rust-log-at-start");
    // A reload to another level leaves RUST_LOG's filter in place.
    reload_to(&proxy, "error", 2);
    http_get(proxy.addr, "/rust-log-after-reload");
    wait_for_log("/rust-log-after-reload");
}

/// Sessions live in the process, not in a snapshot: a reload keeps everyone logged in. The relying
/// party is rebuilt — with discovery before the swap — only when `[oidc]` changed, and a changed
/// `[oidc]` whose provider cannot be discovered is refused.
mod login {
    use super::*;
    use support::browser::{Browser, location};
    use support::hostile_idp::{HostileIdp, Script};

    fn config(discovery: &str, proxy: SocketAddr, echo: SocketAddr, leeway: &str) -> String {
        format!(
            r#"[server]
listen = "{proxy}"

[oidc]
discovery = "{discovery}"
client_id = "portcullis"
client_secret = "hostile:test%secret+"
redirect_uri = "http://{proxy}/auth"
access_token_expires_leeway = "{leeway}"

[session]
store = "memory"
cookie_name = "sess_auth"
cookie_secure = false

[[routes]]
name = "app"
path = "/"
upstream = "http://{echo}"
policy = "policy.rhai"
"#
        )
    }

    /// A secret rotated in `client_secret_file` (config.md, operations.md: the file is watched)
    /// is the one the next login sends: with the stale secret the provider refuses the code
    /// exchange; after the file changes, the same login goes through.
    #[tokio::test]
    async fn a_changed_client_secret_file_is_used_from_the_reload_on() {
        let idp = HostileIdp::start(Script::default()).await;
        let echo = echo::spawn().await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let text = config(&idp.discovery_url(), addr, echo, "60s").replace(
            "client_secret = \"hostile:test%secret+\"",
            "client_secret_file = \"client-secret\"",
        );
        let (dir, config_path) = setup(&text);
        let secret_file = dir.path().join("client-secret");
        std::fs::write(&secret_file, "the-secret-before-rotation\n").unwrap();
        let proxy = support::start_watching_with(&config_path, Some(listener)).await;
        let browser = Browser::new();
        wait_for("discovery", || async {
            browser.get(&proxy.url("/")).await.status() == reqwest::StatusCode::FOUND
        })
        .await;
        let log_in = || async {
            let authorize = location(&browser.get(&proxy.url("/")).await);
            let callback = location(&browser.get(&authorize).await);
            browser.get(&callback).await;
            browser.get_api(&proxy.url("/")).await.status()
        };
        assert_eq!(
            log_in().await,
            reqwest::StatusCode::UNAUTHORIZED,
            "the provider refuses the stale secret"
        );

        std::fs::write(&secret_file, "hostile:test%secret+\n").unwrap();
        wait_for("the reload with the new secret", || async {
            proxy.handle.as_ref().unwrap().reload_status().generation == 2
        })
        .await;
        assert_eq!(log_in().await, reqwest::StatusCode::OK, "logged in");
    }

    #[tokio::test]
    async fn reloads_keep_sessions_and_rediscover_only_a_changed_provider() {
        let idp = HostileIdp::start(Script::default()).await;
        let echo = echo::spawn().await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (dir, config_path) = setup(&config(&idp.discovery_url(), addr, echo, "60s"));
        let proxy = support::start_watching_with(&config_path, Some(listener)).await;
        let browser = Browser::new();
        wait_for("discovery", || async {
            browser.get(&proxy.url("/")).await.status() == reqwest::StatusCode::FOUND
        })
        .await;
        let authorize = location(&browser.get(&proxy.url("/")).await);
        let callback = location(&browser.get(&authorize).await);
        browser.get(&callback).await;
        let version_for_browser = || async {
            let answer = browser.get(&proxy.url("/")).await;
            assert_eq!(answer.status(), reqwest::StatusCode::OK, "still logged in");
            let report = support::browser::json(answer).await;
            assert!(received_header(&report, "x-auth-subject").is_some());
            received_header(&report, "x-version").unwrap()
        };
        assert_eq!(version_for_browser().await, "1");
        let discoveries = idp.discovery_calls();

        // A policy edit: same session, no new discovery.
        std::fs::write(dir.path().join("policy.rhai"), version_policy(2)).unwrap();
        wait_for("version 2 for the logged-in browser", || async {
            version_for_browser().await == "2"
        })
        .await;
        assert_eq!(idp.discovery_calls(), discoveries, "[oidc] did not change");

        // A changed [oidc]: discovered again before the swap; the session goes on.
        std::fs::write(
            &config_path,
            config(&idp.discovery_url(), addr, echo, "30s"),
        )
        .unwrap();
        wait_for("the changed [oidc]", || async {
            proxy.handle.as_ref().unwrap().reload_status().generation == 3
        })
        .await;
        assert_eq!(idp.discovery_calls(), discoveries + 1);
        assert_eq!(version_for_browser().await, "2");

        // A provider that cannot be discovered is refused; the working one stays.
        let nowhere = format!(
            "http://{}/.well-known/openid-configuration",
            support::closed_port()
        );
        std::fs::write(&config_path, config(&nowhere, addr, echo, "30s")).unwrap();
        wait_for("the refused [oidc]", || async {
            proxy
                .handle
                .as_ref()
                .unwrap()
                .reload_status()
                .failed_reloads
                == 1
        })
        .await;
        let status = proxy.handle.as_ref().unwrap().reload_status();
        let error = status.last_attempt.unwrap().error.unwrap();
        assert!(error.contains("[oidc] changed, but discovery"), "{error}");
        assert_eq!(version_for_browser().await, "2");
    }
}

#[tokio::test]
async fn a_policy_folder_replaced_by_another_is_watched_again() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        config_text(echo).replace("policy.rhai", "policies/policy.rhai"),
    )
    .unwrap();
    let policies = |name: &str, version: u32| {
        let folder = dir.path().join(name);
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("policy.rhai"), version_policy(version)).unwrap();
    };
    policies("policies", 1);
    let proxy = start_watching(&config).await;
    assert_eq!(served_version(&proxy).await.as_deref(), Some("1"));

    // A deploy that swaps the whole folder.
    policies("policies.new", 2);
    std::fs::rename(dir.path().join("policies"), dir.path().join("policies.old")).unwrap();
    std::fs::rename(dir.path().join("policies.new"), dir.path().join("policies")).unwrap();
    wait_for_version(&proxy, 2).await;
    // Edits inside the new folder are seen: it is watched, not the old one.
    std::fs::write(dir.path().join("policies/policy.rhai"), version_policy(3)).unwrap();
    wait_for_version(&proxy, 3).await;
}

#[tokio::test]
async fn turning_tls_off_waits_for_a_restart() {
    use support::tls::TestCert;
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCert::generate(dir.path(), "server");
    let config = dir.path().join("portcullis.toml");
    let text = |tls: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{tls}\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://{echo}\"\nauth = \"none\"\n"
        )
    };
    let tls = "[server.tls]\ncert = \"server.pem\"\nkey = \"server.key\"\n";
    std::fs::write(&config, text(tls)).unwrap();
    let proxy = start_watching(&config).await;
    std::fs::write(&config, text("")).unwrap();
    let handle = proxy.handle.clone().unwrap();
    wait_for("the reload", || async {
        handle.reload_status().generation == 2
    })
    .await;
    assert_eq!(
        handle.reload_status().restart_required,
        vec!["server.tls (on/off)".to_owned()]
    );
    let (_, answer) = support::tls::h2_get(proxy.addr, cert.roots(), "/").await;
    assert_eq!(answer.status, 200, "still TLS");
}

/// A reload accepts exactly what a start accepts (issue 17: a `[dev_idp]` left beside another
/// provider's `discovery` was refused by `check` and `run`, but a reload applied it).
#[tokio::test]
async fn a_reload_refuses_a_demo_provider_beside_another_provider_as_check_does() {
    let port = support::closed_port().port();
    let text = |discovery: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[dev_idp]\nlisten = \"127.0.0.1:{port}\"\n\n[oidc]\n{discovery}\nclient_id = \"p\"\nclient_secret = \"s\"\nredirect_uri = \"http://127.0.0.1:1/auth\"\n\n[session]\nstore = \"memory\"\ncookie_secure = false\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n"
        )
    };
    let proxy = support::start_proxy(&text("")).await;
    let changed = portcullis::config::parse(
        &text("discovery = \"https://login.example.com/.well-known/openid-configuration\""),
        Path::new("."),
    )
    .unwrap_or_else(|err| panic!("{err:?}"));
    let attempt = proxy.handle.as_ref().unwrap().apply(changed).await;
    assert_eq!(attempt.result, "failed");
    let error = attempt.error.unwrap();
    assert!(
        error.contains("dev_idp: [dev_idp] starts a demo identity provider with public passwords"),
        "{error}"
    );
}
