//! Wasm policies built from `policies/wasm/` (real components, real wasmtime): parity with the Rhai
//! sample, the SDK's headers and login, every hostile sample stopped, both isolation modes,
//! `policy test` on `.wasm`, and a failing policy that leaves the proxy and its other routes alone.

use crate::support;

use std::net::IpAddr;
use std::path::Path;

use http::HeaderMap;
use portcullis::config::IdentityHeaders;
use portcullis::policy::wasm::WasmOptions;
use portcullis::policy::{
    Decision, Isolation, OutputRules, Policy, PolicyEngine, PolicyIdentity, PolicyLimits,
    PolicyLoader, PolicyRequest, PolicySource, WasmPolicy,
};
use serde_json::json;
use support::wasm::policy;

fn rules() -> OutputRules {
    OutputRules {
        limits: PolicyLimits::default(),
        identity_headers: IdentityHeaders::seed_default()
            .0
            .iter()
            .map(|(n, _)| n.as_str().to_owned())
            .collect(),
        may_set_identity_headers: false,
    }
}

/// The timeout of decisions whose test is not about the clock: far above what any needs, so a busy
/// machine does not stop them (`policy_limits.timeout` is wall-clock time).
const CALM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn wasm(name: &str, config: serde_json::Value, isolation: Isolation) -> Policy {
    wasm_with_timeout(name, config, isolation, CALM_TIMEOUT)
}

/// [`wasm`] with another `policy_limits.timeout`: a test about another limit must not be stopped
/// by the clock on a busy machine first.
fn wasm_with_timeout(
    name: &str,
    config: serde_json::Value,
    isolation: Isolation,
    timeout: std::time::Duration,
) -> Policy {
    let limits = PolicyLimits {
        wasm_max_memory: 16 * 1024 * 1024,
        timeout,
        ..PolicyLimits::default()
    };
    let config = config.as_object().cloned().unwrap_or_default();
    Policy::Wasm(
        WasmPolicy::compile(
            &policy(name),
            name,
            &config,
            WasmOptions {
                isolation,
                limits,
                cache: None,
            },
        )
        .unwrap_or_else(|err| panic!("{err}")),
    )
}

fn rhai(name: &str, config: serde_json::Value) -> Policy {
    let config = rhai::serde::to_dynamic(config)
        .unwrap()
        .try_cast::<rhai::Map>()
        .unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies")
        .join(name);
    Policy::Rhai(
        PolicyEngine::new(PolicyLimits::default())
            .compile(&file, name, config)
            .unwrap(),
    )
}

fn claims(groups: &[&str]) -> PolicyIdentity {
    let claims = json!({ "sub": "u1", "preferred_username": "user1", "email": "u1@example.com", "groups": groups });
    PolicyIdentity::from_json(claims.as_object().unwrap())
}

fn decide(
    policy: &Policy,
    method: &str,
    claims: Option<&PolicyIdentity>,
) -> Result<Decision, String> {
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", "blue".parse().unwrap());
    let request = PolicyRequest {
        method,
        path: "/admin/users",
        query: "",
        host: "app.example.com",
        headers: &headers,
        client_ip: IpAddr::from([10, 0, 0, 7]),
        route: "admin",
    };
    policy
        .decide(&request, claims, &rules())
        .map_err(|err| err.to_string())
}

#[test]
fn the_wasm_require_group_decides_exactly_like_the_rhai_one() {
    let configs = [
        json!({ "group": "admins" }),
        json!({ "groups": ["admins", "ops"] }),
        json!({}),
    ];
    let users: [Option<&[&str]>; 5] = [
        Some(&["admins"]),
        Some(&["ops", "x"]),
        Some(&["staff"]),
        Some(&[]),
        None,
    ];
    for config in configs {
        let wasm = wasm("require_group", config.clone(), Isolation::Pooled);
        let rhai = rhai("require-group.rhai", config.clone());
        for groups in users {
            let claims = groups.map(claims);
            let (w, r) = (
                decide(&wasm, "GET", claims.as_ref()),
                decide(&rhai, "GET", claims.as_ref()),
            );
            assert_eq!(w, r, "config {config}, groups {groups:?}");
        }
    }
}

#[test]
fn identity_headers_sets_role_and_user_and_asks_anonymous_users_to_log_in() {
    for isolation in [Isolation::Pooled, Isolation::PerRequest] {
        let policy = wasm("identity_headers", json!({}), isolation);
        let Ok(Decision::Allow { headers }) = decide(&policy, "GET", Some(&claims(&["staff"])))
        else {
            panic!()
        };
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            headers,
            [
                ("x-role".to_owned(), "staff".to_owned()),
                ("x-user".to_owned(), "user1".to_owned())
            ]
        );
        assert_eq!(decide(&policy, "GET", None), Ok(Decision::Login));
    }
}

/// The headers an allow decision set, as (name, value) text pairs.
fn allowed_headers(decision: Result<Decision, String>) -> Vec<(String, String)> {
    let Ok(Decision::Allow { headers }) = decision else {
        panic!("expected an allow, got {decision:?}")
    };
    headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn a_policy_reads_every_input_through_its_handles() {
    let user = json!({
        "sub": "u1", "preferred_username": "user1", "email": "u1@example.com",
        "groups": ["ops", "staff"], "level": 3,
    });
    let user = PolicyIdentity::from_json(user.as_object().unwrap());
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", "blue".parse().unwrap());
    headers.append("accept", "text/html".parse().unwrap());
    headers.append("accept", "*/*".parse().unwrap());
    for isolation in [Isolation::Pooled, Isolation::PerRequest] {
        let policy = wasm("echo_inputs", json!({ "note": "hi" }), isolation);
        // Twice on one instance, with different requests: nothing of the first is seen again.
        for (path, query) in [("/a", "page=2"), ("/b/c", "")] {
            let request = PolicyRequest {
                method: "POST",
                path,
                query,
                host: "app.example.com",
                headers: &headers,
                client_ip: IpAddr::from([10, 0, 0, 7]),
                route: "admin",
            };
            let got = allowed_headers(
                policy
                    .decide(&request, Some(&user), &rules())
                    .map_err(|err| err.to_string()),
            );
            let want = |name: &str, value: &str| (name.to_owned(), value.to_owned());
            assert_eq!(
                got,
                [
                    want(
                        "x-echo-request",
                        &format!("POST {path} ?{query} @app.example.com from 10.0.0.7 on admin")
                    ),
                    want("x-echo-tenant", "blue"),
                    want("x-echo-header-names", "x-tenant,accept,accept"),
                    want("x-echo-config", "hi"),
                    want("x-echo-user", "u1 user1 u1@example.com staff=true"),
                    want("x-echo-groups", "ops,staff"),
                    want("x-echo-level", "3"),
                    want("x-echo-claim-count", "5"),
                ],
                "{isolation:?}"
            );
        }
        // Without a user the identity handle is absent.
        let got = allowed_headers(decide(&policy, "GET", None));
        assert!(got.iter().all(|(name, _)| name != "x-echo-user"), "{got:?}");
    }
}

/// One row of the parity table: a request's headers (raw bytes: not all are text), a user, and
/// what `header(name)` must read for some of the names asked.
struct Row {
    what: &'static str,
    headers: &'static [(&'static str, &'static [u8])],
    user: Option<serde_json::Value>,
    reads: &'static [(&'static str, Option<&'static str>)],
}

/// The header names the parity policies ask for.
const ASKED: [&str; 9] = [
    "x-tenant",
    "X-Tenant",
    "X-TENANT",
    "x_tenant",
    "x-empty",
    "x-missing",
    "cookie",
    "x-bytes",
    "accept",
];

/// The rows of the parity table.
fn parity_rows() -> Vec<Row> {
    let every_claim_type = json!({
        "sub": "u1", "groups": ["admins", "staff"], "level": 3, "ratio": 0.25,
        "big": 9007199254740993_u64, "neg": -7, "flag": false, "nested": { "k": [1, { "x": "y" }] },
        "none": null, "name": "Zoë",
    });
    vec![
        Row {
            what: "no headers, no user",
            headers: &[],
            user: None,
            reads: &[("x-tenant", None), ("cookie", None)],
        },
        Row {
            what: "one header, every claim type",
            headers: &[("x-tenant", b"blue")],
            user: Some(every_claim_type),
            reads: &[("X-TENANT", Some("blue")), ("x_tenant", None)],
        },
        Row {
            what: "a repeated header, groups as one string",
            headers: &[("x-tenant", b"blue"), ("x-tenant", b"red")],
            user: Some(json!({ "sub": "u2", "groups": "admins" })),
            reads: &[("X-Tenant", Some("blue, red"))],
        },
        Row {
            what: "empty values, alone and repeated; no groups",
            headers: &[("x-empty", b""), ("x-tenant", b"blue"), ("x-tenant", b"")],
            user: Some(json!({ "sub": "u3" })),
            reads: &[("x-empty", Some("")), ("x-tenant", Some("blue, "))],
        },
        Row {
            what: "an underscore spelling is another header; groups of mixed types",
            headers: &[
                ("x_tenant", b"green"),
                ("accept", b"text/html"),
                ("accept", b"*/*"),
            ],
            user: Some(json!({ "sub": "u4", "groups": ["admins", 1, null, ["x"]] })),
            reads: &[
                ("x-tenant", None),
                ("x_tenant", Some("green")),
                ("accept", Some("text/html, */*")),
            ],
        },
        Row {
            what: "cookies in several fields",
            headers: &[("cookie", b"a=1"), ("cookie", b"b=2; c=3")],
            user: None,
            reads: &[("cookie", Some("a=1; b=2; c=3"))],
        },
        Row {
            what: "values that are not ASCII or not UTF-8",
            headers: &[
                ("x-bytes", b"caf\xc3\xa9"),
                ("x-bytes", b"caf\xe9"),
                ("x-tenant", b"\xff"),
            ],
            user: Some(json!({ "sub": "u5", "groups": [] })),
            reads: &[
                ("x-bytes", Some("café, caf\u{fffd}")),
                ("x-tenant", Some("\u{fffd}")),
            ],
        },
    ]
}

/// Rhai and Wasm agree on every input: `report-inputs` (Wasm) and its Rhai twin report what they
/// read — `header()` in several spellings, the header list, request fields, config values, groups,
/// claims — for each row of [`parity_rows`], and the reports must be equal. Repeated headers are
/// combined as RFC 9110 §5.3 says (`Cookie` with `; `); bytes that are not UTF-8 read as U+FFFD.
#[test]
fn rhai_and_wasm_read_every_input_alike() {
    let config = json!({
        "headers": ASKED,
        "claims": ["sub", "groups", "level", "ratio", "big", "neg", "flag", "nested", "none", "name", "n", "absent"],
        "group": "admins",
        "values": { "int": 3, "float": 1.5, "bool": true, "list": [1, "a", null], "nested": { "a": null } },
    });
    let loader = PolicyLoader::new(PolicyLimits::default(), None);
    let load = |file: &str, path: std::path::PathBuf| {
        let source = PolicySource {
            file,
            path,
            config: config.as_object().unwrap().clone(),
            isolation: None,
        };
        Policy::load(source, &loader).unwrap_or_else(|err| panic!("{err}"))
    };
    let twin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies/wasm/report-inputs/report-inputs.rhai");
    let engines = [
        ("wasm", load("report-inputs.wasm", policy("report_inputs"))),
        ("rhai", load("report-inputs.rhai", twin)),
    ];
    let rules = OutputRules {
        limits: PolicyLimits {
            max_header_value_size: 64 * 1024,
            ..PolicyLimits::default()
        },
        ..rules()
    };
    let reports = |row: &Row| {
        let mut headers = HeaderMap::new();
        for (name, value) in row.headers {
            headers.append(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        let request = PolicyRequest {
            method: "PATCH",
            path: "/données/a b",
            query: "q=1&q=2&x",
            host: "app.example.com",
            headers: &headers,
            client_ip: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]),
            route: "parity",
        };
        let user = row.user.as_ref();
        let user = user.map(|claims| PolicyIdentity::from_json(claims.as_object().unwrap()));
        engines.each_ref().map(|(engine, policy)| {
            let decision = policy
                .decide(&request, user.as_ref(), &rules)
                .unwrap_or_else(|err| panic!("{}, {engine}: {err}", row.what));
            let Decision::Allow { headers } = decision else {
                panic!("{}, {engine}: {decision:?}", row.what)
            };
            let report = String::from_utf8(headers[0].1.as_bytes().to_vec()).unwrap();
            serde_json::from_str::<serde_json::Value>(&report)
                .unwrap_or_else(|err| panic!("{}, {engine}: {err}: {report}", row.what))
        })
    };
    for row in parity_rows() {
        let [wasm, rhai] = reports(&row);
        assert_eq!(wasm, rhai, "{}", row.what);
        for (name, value) in row.reads {
            assert_eq!(wasm["header"][name], json!(value), "{}: {name}", row.what);
        }
    }
    // The one difference is Rhai's numbers: an integer past the 64-bit signed range is a float.
    let [wasm, rhai] = reports(&Row {
        what: "an integer claim past i64",
        headers: &[],
        user: Some(json!({ "sub": "u6", "n": u64::MAX })),
        reads: &[],
    });
    assert_eq!(wasm["user"]["claim"]["n"], json!(u64::MAX));
    assert_eq!(rhai["user"]["claim"]["n"], json!(u64::MAX as f64));
}

#[test]
fn every_hostile_policy_is_stopped_with_a_reason() {
    let cases = [
        ("loop", "policy_limits.timeout"),
        ("memory", "policy_limits.wasm_max_memory"),
        ("recursion", "stack"),
        ("panic", "panicked"),
        ("bad-header", "CR, LF or NUL"),
    ];
    for isolation in [Isolation::PerRequest, Isolation::Pooled] {
        for (mode, reason) in cases {
            // Only the infinite loop is meant to meet the clock.
            let timeout = if mode == "loop" {
                PolicyLimits::default().timeout
            } else {
                CALM_TIMEOUT
            };
            let policy = wasm_with_timeout("hostile", json!({ "mode": mode }), isolation, timeout);
            // Twice: a pooled instance that trapped must be replaced, not entered again.
            for attempt in 0..2 {
                let err = decide(&policy, "GET", None).expect_err(mode);
                assert!(
                    err.starts_with("hostile: ") && err.contains(reason),
                    "{mode} ({isolation:?}, #{attempt}): {err}"
                );
            }
        }
    }
    let fine = wasm(
        "require_group",
        json!({ "group": "admins" }),
        Isolation::Pooled,
    );
    assert_eq!(
        decide(&fine, "GET", Some(&claims(&["admins"]))),
        Ok(Decision::Allow { headers: vec![] })
    );
}

#[test]
fn a_pooled_instance_serves_many_decisions() {
    let policy = wasm(
        "require_group",
        json!({ "group": "admins" }),
        Isolation::Pooled,
    );
    for _ in 0..200 {
        assert!(matches!(
            decide(&policy, "GET", Some(&claims(&["admins"]))),
            Ok(Decision::Allow { .. })
        ));
    }
}

/// `[policy_limits] wasm_pooled_uses`, as written in a config, is what replaces a pooled
/// instance: the counter policy keeps state in its instance (X-Uses counts the decisions of the
/// instance that made this one), so with 3 uses an instance makes 3, then a fresh one takes over.
#[test]
fn a_pooled_instance_is_replaced_after_wasm_pooled_uses_decisions() {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[policy_limits]\nwasm_pooled_uses = 3\n# About reuse, not the clock: a loaded machine must not time a decision out.\ntimeout = \"10s\"\n\n[wasm]\ncache = false\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\npolicy = \"{}\"\nisolation = \"pooled\"\npolicy_config = {{ mode = \"counter\" }}\n",
        policy("hostile").display()
    );
    let config = portcullis::config::parse(&text, std::path::Path::new("."))
        .unwrap_or_else(|err| panic!("{err:?}"));
    let policy = &config.routes[0].policy.as_ref().expect("a policy").policy;
    let uses: Vec<String> = (0..7)
        .map(|_| match decide(policy, "GET", None) {
            Ok(Decision::Allow { headers }) => headers
                .iter()
                .find(|(name, _)| name == "x-uses")
                .map(|(_, value)| value.to_str().unwrap().to_owned())
                .expect("X-Uses set"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(uses, ["1", "2", "3", "1", "2", "3", "1"]);
}

#[test]
fn something_that_is_not_a_component_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fake.wasm");
    std::fs::write(&file, b"not wasm at all").unwrap();
    let err = WasmPolicy::compile(
        &file,
        "fake.wasm",
        &Default::default(),
        WasmOptions {
            isolation: Isolation::Pooled,
            limits: PolicyLimits::default(),
            cache: None,
        },
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("fake.wasm: not a WebAssembly component"),
        "{err}"
    );
}

mod cli {
    use crate::support::binary::binary;
    use crate::support::wasm::policy;

    #[test]
    fn policy_test_runs_wasm_files_like_rhai_ones() {
        let dir = tempfile::tempdir().unwrap();
        let claims = dir.path().join("claims.json");
        std::fs::write(&claims, r#"{"sub": "bob", "groups": ["staff"]}"#).unwrap();
        let run = |file: &std::path::Path, args: &[&str]| {
            binary()
                .args(["policy", "test"])
                .arg(file)
                .arg("--claims")
                .arg(&claims)
                .args(args)
                .output()
                .unwrap()
        };
        // The default timeout is the proxy's 20 ms of wall-clock time, which a busy machine can
        // spend elsewhere; a decision not about the clock gets more.
        let denied = run(
            &policy("require_group"),
            &[
                "--set",
                "group=admins",
                "--expect",
                "deny",
                "--timeout",
                "10s",
            ],
        );
        assert_eq!(denied.status.code(), Some(0));
        assert_eq!(
            String::from_utf8_lossy(&denied.stdout).trim(),
            r#"{"decision":"deny","reason":"members of admins only","status":403}"#
        );
        let looping = run(&policy("hostile"), &["--set", "mode=loop"]);
        assert_eq!(looping.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&looping.stderr).contains("policy_limits.timeout"));
        // `--timeout` is the one the loop meets.
        let started = std::time::Instant::now();
        let looping = run(
            &policy("hostile"),
            &["--set", "mode=loop", "--timeout", "400ms"],
        );
        assert_eq!(looping.status.code(), Some(2));
        assert!(started.elapsed() >= std::time::Duration::from_millis(400));
        let bad = run(&policy("hostile"), &["--timeout", "soon"]);
        assert_eq!(bad.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains("not a duration like"),
            "{}",
            String::from_utf8_lossy(&bad.stderr)
        );
    }
}

/// Compiled code is kept on disk (`[wasm] cache_dir`): a restarted proxy loads it instead of
/// compiling, and a cache folder other users could write to is refused.
mod disk_cache {
    use crate::support::binary::RunningProxy;
    use crate::support::wasm::policy;
    use std::os::unix::fs::PermissionsExt;

    fn config_with_cache(dir: &std::path::Path, cache: &str) -> std::path::PathBuf {
        let config = dir.join("portcullis.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[server]
listen = "127.0.0.1:0"

[wasm]
cache_dir = "{cache}"

[[routes]]
name = "guarded"
path = "/"
upstream = "http://127.0.0.1:9"
auth = "none"
policy = "{}"
[routes.policy_config]
group = "admins"
"#,
                policy("require_group").display()
            ),
        )
        .unwrap();
        config
    }

    fn cache_entries(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
                    .count()
            })
            .unwrap_or(0)
    }

    fn run_once(config: &std::path::Path) -> String {
        let proxy = RunningProxy::start(config);
        drop(proxy);
        std::fs::read_to_string(config.with_file_name("portcullis.log")).unwrap()
    }

    #[test]
    fn a_restarted_proxy_loads_its_policy_from_the_disk_cache() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_with_cache(dir.path(), "compiled");
        let first = run_once(&config);
        assert!(first.contains(r#"code="compiled""#), "{first}");
        assert_eq!(cache_entries(&dir.path().join("compiled")), 1);
        let second = run_once(&config);
        assert!(second.contains(r#"code="disk cache""#), "{second}");
        assert_eq!(cache_entries(&dir.path().join("compiled")), 1);
    }

    #[test]
    fn a_cache_folder_others_can_write_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("shared");
        std::fs::create_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let config = config_with_cache(dir.path(), "shared");
        let err = portcullis::config::load(&config).unwrap_err().to_string();
        assert!(err.contains("routes[\"guarded\"].policy"), "{err}");
        assert!(err.contains("chmod go-w"), "{err}");
        assert_eq!(cache_entries(&cache), 0, "nothing written there");
    }
}

mod proxy {
    use crate::support::wasm::policy;
    use crate::support::{echo, get, start_proxy_in};

    #[tokio::test]
    async fn a_failing_wasm_policy_costs_its_request_and_nothing_else() {
        let echo = echo::spawn().await;
        let dir = policy("hostile").parent().unwrap().to_owned();
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "guarded"
path = "/guarded"
upstream = "http://{echo}"
auth = "none"
policy = "require_group.wasm"
[routes.policy_config]
group = "admins"

[[routes]]
name = "logged"
path = "/logged"
upstream = "http://{echo}"
auth = "none"
policy = "hostile.wasm"
isolation = "per-request"
[routes.policy_config]
mode = "log"

[[routes]]
name = "stuck"
path = "/stuck"
upstream = "http://{echo}"
auth = "none"
policy = "hostile.wasm"
[routes.policy_config]
mode = "loop"
"#
        );
        let proxy = start_proxy_in(&config, &dir).await;
        assert_eq!(
            get(&proxy.url("/guarded"), &[]).await.status,
            403,
            "no user: not an admin"
        );
        assert_eq!(get(&proxy.url("/logged"), &[]).await.status, 200);
        for _ in 0..2 {
            assert_eq!(get(&proxy.url("/stuck"), &[]).await.status, 500);
            assert_eq!(
                get(&proxy.url("/logged"), &[]).await.status,
                200,
                "other routes keep answering"
            );
        }
    }
}

/// The sample policies' own unit tests run natively through the SDK's `testing` feature, as an
/// author's would.
#[test]
fn the_samples_unit_tests_pass_natively() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/wasm/Cargo.toml");
    let output =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["test", "--locked", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-policies-native"))
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("members_pass_and_others_are_refused ... ok"),
        "{stdout}"
    );
}
