//! Rhai policies: every sample against its decision table, the sandbox (each limit exceeded, no
//! eval, no import), output checks, error positions, and `portcullis policy test`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use http::{HeaderMap, StatusCode};
use portcullis::config::IdentityHeaders;
use portcullis::policy::{
    Decision, OutputRules, PolicyEngine, PolicyIdentity, PolicyLimits, PolicyRequest,
};
use serde_json::json;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn rules(limits: &PolicyLimits) -> OutputRules {
    OutputRules {
        limits: limits.clone(),
        identity_headers: IdentityHeaders::seed_default()
            .0
            .iter()
            .map(|(n, _)| n.as_str().to_owned())
            .collect(),
        may_set_identity_headers: false,
    }
}

fn config(value: serde_json::Value) -> rhai::Map {
    rhai::serde::to_dynamic(value)
        .unwrap()
        .try_cast::<rhai::Map>()
        .unwrap()
}

fn claims(groups: &[&str]) -> PolicyIdentity {
    let claims = json!({ "sub": "u1", "preferred_username": "user1", "groups": groups });
    PolicyIdentity::from_json(claims.as_object().unwrap())
}

/// One decision with the default limits.
fn decide(
    policy: &portcullis::policy::RhaiPolicy,
    method: &str,
    path: &str,
    claims: &PolicyIdentity,
) -> Result<Decision, String> {
    decide_with(
        policy,
        method,
        path,
        claims,
        &rules(&PolicyLimits::default()),
    )
}

fn decide_with(
    policy: &portcullis::policy::RhaiPolicy,
    method: &str,
    path: &str,
    claims: &PolicyIdentity,
    rules: &OutputRules,
) -> Result<Decision, String> {
    let mut headers = HeaderMap::new();
    headers.insert("accept", "text/html".parse().unwrap());
    headers.insert("x-tenant", "blue".parse().unwrap());
    let request = PolicyRequest {
        method,
        path,
        query: "a=1",
        host: "app.example.com",
        headers: &headers,
        client_ip: IpAddr::from([10, 1, 2, 3]),
        route: "app",
    };
    policy
        .decide(&request, claims, rules)
        .map_err(|err| err.to_string())
}

/// The default limits with a timeout far above what any decision here needs, for tests not about
/// the clock: `policy_limits.timeout` is wall-clock time, which a busy machine spends elsewhere.
fn calm_limits() -> PolicyLimits {
    PolicyLimits {
        timeout: std::time::Duration::from_secs(10),
        ..PolicyLimits::default()
    }
}

fn sample(name: &str, policy_config: serde_json::Value) -> portcullis::policy::RhaiPolicy {
    PolicyEngine::new(calm_limits())
        .compile(&samples().join(name), name, config(policy_config))
        .unwrap_or_else(|err| panic!("{err}"))
}

fn script(text: &str) -> portcullis::policy::RhaiPolicy {
    script_with(text, calm_limits())
}

fn script_with(text: &str, limits: PolicyLimits) -> portcullis::policy::RhaiPolicy {
    PolicyEngine::new(limits)
        .compile_text(text, "test.rhai", rhai::Map::new())
        .unwrap_or_else(|err| panic!("{err}"))
}

/// `allow`, `deny 403` or `login` for a table cell.
fn short(decision: Result<Decision, String>) -> String {
    match decision {
        Ok(Decision::Allow { .. }) => "allow".into(),
        Ok(Decision::Deny { status, .. }) => format!("deny {}", status.as_u16()),
        Ok(Decision::Login) => "login".into(),
        Err(err) => format!("error: {err}"),
    }
}

#[test]
fn require_group_decision_table() {
    let one = sample("require-group.rhai", json!({ "group": "admins" }));
    let any = sample("require-group.rhai", json!({ "groups": ["admins", "ops"] }));
    let table: [(&portcullis::policy::RhaiPolicy, &[&str], &str); 6] = [
        (&one, &["admins"], "allow"),
        (&one, &["staff", "admins"], "allow"),
        (&one, &["staff"], "deny 403"),
        (&one, &[], "deny 403"),
        (&any, &["ops"], "allow"),
        (&any, &["staff"], "deny 403"),
    ];
    for (policy, groups, expected) in table {
        assert_eq!(
            short(decide(policy, "GET", "/", &claims(groups))),
            expected,
            "{groups:?}"
        );
    }
    let Ok(Decision::Deny { reason, .. }) = decide(&any, "GET", "/", &claims(&[])) else {
        panic!()
    };
    assert_eq!(reason.as_deref(), Some("members of admins or ops only"));
    // It reads only claims and config: a session's later requests reuse its decision.
    let alice = claims(&["admins"]);
    let runs = one.runs();
    for _ in 0..3 {
        assert_eq!(short(decide(&one, "GET", "/", &alice)), "allow");
    }
    assert_eq!(one.runs(), runs + 1);
}

#[test]
fn read_only_for_viewers_decision_table() {
    let policy = sample("read-only-for-viewers.rhai", json!({}));
    let table: [(&[&str], &str, &str); 7] = [
        (&["editors"], "DELETE", "allow"),
        (&["editors"], "GET", "allow"),
        (&["viewers"], "GET", "allow"),
        (&["viewers"], "HEAD", "allow"),
        (&["viewers"], "POST", "deny 403"),
        (&["viewers"], "DELETE", "deny 403"),
        (&[], "GET", "deny 403"),
    ];
    for (groups, method, expected) in table {
        assert_eq!(
            short(decide(&policy, method, "/doc", &claims(groups))),
            expected,
            "{groups:?} {method}"
        );
    }
}

#[test]
fn per_path_groups_decision_table() {
    let strict = sample(
        "per-path-groups.rhai",
        json!({ "paths": { "/admin": "admins", "/admin/audit": "auditors", "/reports": "staff" } }),
    );
    let open = sample(
        "per-path-groups.rhai",
        json!({ "default": "allow", "paths": { "/admin": "admins" } }),
    );
    let table: [(&portcullis::policy::RhaiPolicy, &[&str], &str, &str); 9] = [
        (&strict, &["admins"], "/admin", "allow"),
        (&strict, &["admins"], "/admin/users", "allow"),
        (&strict, &["staff"], "/admin", "deny 403"),
        (&strict, &["admins"], "/admin/audit/log", "deny 403"),
        (&strict, &["auditors"], "/admin/audit/log", "allow"),
        (&strict, &["admins"], "/administrator", "deny 403"),
        (&strict, &["staff"], "/reports/2026", "allow"),
        (&open, &[], "/elsewhere", "allow"),
        (&open, &[], "/admin", "deny 403"),
    ];
    for (policy, groups, path, expected) in table {
        assert_eq!(
            short(decide(policy, "GET", path, &claims(groups))),
            expected,
            "{groups:?} {path}"
        );
    }
}

#[test]
fn set_role_header_decision_table() {
    let policy = sample("set-role-header.rhai", json!({}));
    let table: [(&[&str], &str); 4] = [
        (&["admins", "staff"], "admin"),
        (&["staff"], "staff"),
        (&[], "user"),
        (&["x"], "user"),
    ];
    for (groups, role) in table {
        let Ok(Decision::Allow { headers }) = decide(&policy, "GET", "/", &claims(groups)) else {
            panic!("{groups:?}")
        };
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        assert!(
            headers.contains(&("x-role".into(), role.into())),
            "{groups:?}: {headers:?}"
        );
        assert!(
            headers.contains(&("x-user".into(), "user1".into())),
            "{headers:?}"
        );
    }
    assert_eq!(
        short(decide(&policy, "GET", "/", &PolicyIdentity::anonymous())),
        "login"
    );
}

#[test]
fn scripts_see_the_documented_values() {
    let policy = script(
        r#"
        let ok = request.method == "POST" && request.path == "/a/b" && request.query == "a=1"
            && request.host == "app.example.com" && request.client_ip == "10.1.2.3"
            && request.headers["x-tenant"] == "blue" && header("X-Tenant") == "blue"
            && header("missing") == () && route == "app"
            && claims.sub == "u1" && claim("sub") == "u1" && claim("missing") == ()
            && type_of(claims.groups) == "array" && has_group("a") && !has_group("z")
            && has_any_group(["z", "b"]) && !has_any_group([]);
        if ok { allow() } else { deny(418) }
    "#,
    );
    assert_eq!(
        short(decide_with(
            &policy,
            "POST",
            "/a/b",
            &claims(&["a", "b"]),
            &rules(&PolicyLimits::default())
        )),
        "allow"
    );
    let anonymous = script(
        r#"if type_of(claims.groups) == "array" && claims.groups.len() == 0 { allow() } else { deny(500) }"#,
    );
    assert_eq!(
        short(decide(&anonymous, "GET", "/", &PolicyIdentity::anonymous())),
        "allow"
    );
}

#[test]
fn anything_but_a_decision_is_a_policy_error() {
    for (text, message) in [
        ("42", "the policy returned i64"),
        (r#""allow""#, "returned string"),
        ("deny(200)", "deny(200): the status must be 400–599"),
        ("throw \"nope\"", "nope"),
        ("let x = 1 / 0; allow()", "Division by zero"),
    ] {
        let err = short(decide(&script(text), "GET", "/", &claims(&[])));
        assert!(
            err.starts_with("error: test.rhai") && err.contains(message),
            "{text}: {err}"
        );
    }
}

#[test]
fn errors_carry_file_line_and_column() {
    let err = PolicyEngine::new(PolicyLimits::default())
        .compile_text(
            "allow(\n  let = ;",
            "policies/broken.rhai",
            rhai::Map::new(),
        )
        .unwrap_err();
    assert!(
        err.to_string().starts_with("policies/broken.rhai:2:"),
        "{err}"
    );
    let runtime = short(decide(
        &script("let a = 1;\nlet b = claims.nope.len();\nallow()"),
        "GET",
        "/",
        &claims(&[]),
    ));
    assert!(runtime.starts_with("error: test.rhai:2:"), "{runtime}");
    let undefined = PolicyEngine::new(PolicyLimits::default())
        .compile_text("if not_a_variable { allow() }", "v.rhai", rhai::Map::new())
        .unwrap_err();
    assert!(
        undefined.to_string().contains("not_a_variable"),
        "strict variables: {undefined}"
    );
}

#[test]
fn eval_and_import_are_not_available() {
    let engine = PolicyEngine::new(PolicyLimits::default());
    assert!(
        engine
            .compile_text(r#"eval("allow()")"#, "e.rhai", rhai::Map::new())
            .is_err()
    );
    assert!(
        engine
            .compile_text(r#"import "fs" as fs; allow()"#, "i.rhai", rhai::Map::new())
            .is_err()
    );
    for call in [
        "open_file(\"/etc/passwd\")",
        "env(\"HOME\")",
        "timestamp()",
        "system(\"ls\")",
    ] {
        let err = engine
            .compile_text(&format!("{call}; allow()"), "t.rhai", rhai::Map::new())
            .err()
            .unwrap_or_else(|| panic!("{call} must not exist"))
            .to_string();
        let name = call.split('(').next().unwrap();
        assert!(
            err.starts_with(&format!("t.rhai:1:1: there is no function `{name}`")),
            "{err}"
        );
    }
}

/// Issue 13: `sleep(3)` in a policy held a worker thread for 3 s. Rhai's core package (`sleep`,
/// `exit`, `parse_json`, …) is not registered: a script that calls it is refused when it is
/// compiled, and a call by a name made at run time is a policy error, at once.
#[test]
fn sleep_and_the_rest_of_rhais_core_package_cannot_be_called() {
    let engine = PolicyEngine::new(PolicyLimits::default());
    for call in ["sleep(1)", "sleep(0.5)", "exit()", "parse_json(\"{}\")"] {
        let name = call.split('(').next().unwrap();
        let err = engine
            .compile_text(&format!("{call}; allow()"), "test.rhai", rhai::Map::new())
            .err()
            .unwrap_or_else(|| panic!("{call} compiled"))
            .to_string();
        assert!(
            err.starts_with(&format!("test.rhai:1:1: there is no function `{name}`")),
            "{call}: {err}"
        );
        let by_name = format!("Fn(\"{name}\").call(1); allow()");
        let started = std::time::Instant::now();
        let err = short(decide(&script(&by_name), "GET", "/", &claims(&[])));
        assert!(
            err.starts_with("error: test.rhai:1:")
                && err.contains(&format!("Function not found: {name}")),
            "{by_name}: {err}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_millis(400),
            "{by_name} ran"
        );
    }
}

#[test]
fn every_limit_is_enforced() {
    let limits = PolicyLimits {
        max_operations: 10_000,
        max_call_depth: 8,
        max_expr_depth: 16,
        max_string_size: 100,
        max_array_size: 10,
        max_map_size: 10,
        // Generous: these cases must hit their own limit, not the clock (tested on its own below).
        timeout: std::time::Duration::from_secs(10),
        max_headers: 2,
        max_header_value_size: 16,
        ..PolicyLimits::default()
    };
    let cases = [
        ("loop {} ", "max_operations"),
        ("fn f(n) { f(n + 1) } f(0)", "max_call_depth"),
        (
            "let s = \"\"; for i in 0..1000 { s += \"x\"; } allow()",
            "max_string_size",
        ),
        (
            "let a = []; for i in 0..100 { a.push(i); } allow()",
            "max_array_size",
        ),
        (
            "let m = #{}; for i in 0..100 { m.set(`k${i}`, i); } allow()",
            "max_map_size",
        ),
        (
            "allow(#{ \"A\": \"1\", \"B\": \"2\", \"C\": \"3\" })",
            "max_headers",
        ),
        (
            "allow(#{ \"A\": \"0123456789abcdefghij\" })",
            "max_header_value_size",
        ),
    ];
    for (text, limit) in cases {
        let policy = script_with(text, limits.clone());
        let err = short(decide_with(
            &policy,
            "GET",
            "/",
            &claims(&[]),
            &rules(&limits),
        ));
        assert!(
            err.starts_with("error:") && err.contains(limit),
            "{limit}: {err}"
        );
    }
    // Rhai 1.27 does not check the map size on `m[key] = value`; such growth is still bounded by
    // the operation budget.
    let patient = PolicyLimits {
        timeout: std::time::Duration::from_secs(30),
        ..limits.clone()
    };
    let growing = script_with(
        "let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }",
        patient.clone(),
    );
    let err = short(decide_with(
        &growing,
        "GET",
        "/",
        &claims(&[]),
        &rules(&patient),
    ));
    assert!(err.contains("max_operations"), "{err}");
    let literal =
        "let m = #{ a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 10, k: 11 }; allow()";
    let err = PolicyEngine::new(limits.clone())
        .compile_text(literal, "m.rhai", rhai::Map::new())
        .unwrap_err();
    assert!(
        err.to_string().contains("maximum limit (10)"),
        "map literals are checked at compile time: {err}"
    );
    let deep = format!("let x = {}1{}; allow()", "(".repeat(40), ")".repeat(40));
    let err = PolicyEngine::new(limits.clone())
        .compile_text(&deep, "deep.rhai", rhai::Map::new())
        .unwrap_err();
    assert!(
        err.to_string().contains("deep.rhai:1:"),
        "max_expr_depth is checked at compile time: {err}"
    );
}

#[test]
fn the_wall_clock_cap_stops_a_slow_script() {
    // Plenty of operations, little time: the deadline stops it first.
    let limits = PolicyLimits {
        max_operations: u64::MAX,
        timeout: std::time::Duration::from_millis(30),
        ..PolicyLimits::default()
    };
    let policy = script_with("loop { let s = \"x\" + \"y\"; }", limits.clone());
    let started = std::time::Instant::now();
    let err = short(decide_with(
        &policy,
        "GET",
        "/",
        &claims(&[]),
        &rules(&limits),
    ));
    assert!(err.contains("policy_limits.timeout"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "stopped near its cap"
    );
}

#[test]
fn header_output_is_checked() {
    let limits = PolicyLimits::default();
    let cases = [
        (
            r#"allow(#{ "X-Ok": "a\r\nX-Injected: 1" })"#,
            "CR, LF or NUL",
        ),
        (r#"allow(#{ "Host": "evil" })"#, "managed by the proxy"),
        (
            r#"allow(#{ "Content-Length": "0" })"#,
            "managed by the proxy",
        ),
        (
            r#"allow(#{ "Transfer-Encoding": "chunked" })"#,
            "managed by the proxy",
        ),
        (
            r#"allow(#{ "Connection": "close" })"#,
            "managed by the proxy",
        ),
        (
            r#"allow(#{ "X-Forwarded-For": "1.2.3.4" })"#,
            "managed by the proxy",
        ),
        (
            r#"allow(#{ "X-Auth-Groups": "admins" })"#,
            "identity header",
        ),
        (r#"allow(#{ "x_auth_subject": "root" })"#, "identity header"),
        (
            r#"allow(#{ "bad header": "x" })"#,
            "not a valid header name",
        ),
    ];
    for (text, message) in cases {
        let err = short(decide(&script(text), "GET", "/", &claims(&[])));
        assert!(err.contains(message), "{text}: {err}");
    }
    let permissive = OutputRules {
        may_set_identity_headers: true,
        ..rules(&limits)
    };
    let decision = decide_with(
        &script(r#"allow(#{ "X-Auth-Groups": "admins" })"#),
        "GET",
        "/",
        &claims(&[]),
        &permissive,
    );
    assert_eq!(short(decision), "allow", "allowed when the route says so");
}

#[test]
fn a_failing_policy_does_not_affect_the_next_decision() {
    let broken = script("loop {}");
    let fine = script("allow()");
    for _ in 0..3 {
        assert!(short(decide(&broken, "GET", "/", &claims(&[]))).starts_with("error:"));
        assert_eq!(short(decide(&fine, "GET", "/", &claims(&[]))), "allow");
    }
}

mod cli {
    use crate::support::binary::binary;

    fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn policy_test_prints_the_decision_and_honours_expect() {
        let dir = tempfile::tempdir().unwrap();
        let claims = write(
            dir.path(),
            "claims.json",
            r#"{"sub": "bob", "groups": ["staff"]}"#,
        );
        let request = write(
            dir.path(),
            "request.json",
            r#"{"method": "DELETE", "path": "/doc"}"#,
        );
        let policy = super::samples().join("require-group.rhai");
        let run = |args: &[&str]| {
            binary()
                .args(["policy", "test"])
                .arg(&policy)
                .arg("--claims")
                .arg(format!("@{}", claims.display()))
                .arg("--request")
                .arg(format!("@{}", request.display()))
                .args(args)
                .output()
                .unwrap()
        };
        let allowed = run(&["--set", "groups=[\"staff\"]"]);
        assert_eq!(allowed.status.code(), Some(0));
        assert_eq!(
            String::from_utf8_lossy(&allowed.stdout).trim(),
            r#"{"decision":"allow","headers":{}}"#
        );
        let denied = run(&["--set", "group=admins", "--expect", "allow"]);
        assert_eq!(denied.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&denied.stdout).trim(),
            r#"{"decision":"deny","reason":"members of admins only","status":403}"#
        );
        let expected = run(&["--set", "group=admins", "--expect", "deny"]);
        assert_eq!(expected.status.code(), Some(0));
    }

    /// Issue 17: `--claims` and `--request` said "JSON object" but read only files, and
    /// `--config` meant policy values here but the config file in `run` and `check`. Inline JSON
    /// and `@file` both work; a plain path and `--config key=value` still do, the latter with a
    /// warning naming `--set`.
    #[test]
    fn policy_test_takes_inline_json_or_a_file_and_the_old_spellings_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let claims = write(
            dir.path(),
            "bob.json",
            r#"{"sub": "bob", "groups": ["staff"]}"#,
        );
        let policy = super::samples().join("require-group.rhai");
        let decide = |args: &[&str]| {
            let output = binary()
                .args(["policy", "test"])
                .arg(&policy)
                .args(args)
                .output()
                .unwrap();
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stdout).trim().to_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        };
        let deny = r#"{"decision":"deny","reason":"members of admins only","status":403}"#;
        let inline = decide(&[
            "--claims",
            r#"{"sub": "bob", "groups": ["staff"]}"#,
            "--request",
            r#"{"method": "POST"}"#,
            "--set",
            "group=admins",
        ]);
        assert_eq!(
            (inline.0, inline.1.as_str()),
            (Some(0), deny),
            "{}",
            inline.2
        );
        let from_file = decide(&[
            "--claims",
            &format!("@{}", claims.display()),
            "--set",
            "group=admins",
        ]);
        assert_eq!(
            (from_file.0, from_file.1.as_str()),
            (Some(0), deny),
            "{}",
            from_file.2
        );
        let old = decide(&[
            "--claims",
            &claims.display().to_string(),
            "--config",
            "group=admins",
        ]);
        assert_eq!((old.0, old.1.as_str()), (Some(0), deny), "{}", old.2);
        assert!(
            old.2.contains("--config key=value is now --set key=value"),
            "{}",
            old.2
        );
        let broken = decide(&["--claims", "{\"sub\": "]);
        assert_eq!(broken.0, Some(2));
        assert!(
            broken.2.contains("--claims is not a JSON object"),
            "{}",
            broken.2
        );
    }

    /// Issue 17: `--route NAME --config FILE` tests a route as the proxy decides for it: its policy
    /// file, its `policy_config` and its identity headers, from the real config.
    #[test]
    fn policy_test_decides_for_a_route_of_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "role.rhai",
            "if has_group(config.group) { allow(#{ \"X-Role\": config.role, \"X-User\": claims.sub }) } else { deny(403, \"not for you\") }",
        );
        let config = write(
            dir.path(),
            "portcullis.toml",
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[headers]\n\"X-User\" = \"sub\"\n\n[[routes]]\nname = \"admin\"\npath = \"/admin\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\npolicy = \"role.rhai\"\npolicy_config = { group = \"admins\", role = \"boss\" }\n\n[[routes]]\nname = \"open\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n",
        );
        let decide = |args: &[&str]| {
            let output = binary()
                .args(["policy", "test", "--config"])
                .arg(&config)
                .args(args)
                .output()
                .unwrap();
            (
                output.status.code(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            )
        };
        let (code, said) = decide(&[
            "--route",
            "admin",
            "--claims",
            r#"{"sub": "ann", "groups": ["admins"]}"#,
        ]);
        assert_eq!(code, Some(2), "{said}");
        assert!(
            said.contains("X-User") && said.contains("identity header"),
            "the route's [headers] make X-User an identity header the policy may not set: {said}"
        );
        std::fs::write(
            dir.path().join("role.rhai"),
            "if has_group(config.group) { allow(#{ \"X-Role\": config.role }) } else { deny(403, \"not for you\") }",
        )
        .unwrap();
        let (code, said) = decide(&[
            "--route",
            "admin",
            "--claims",
            r#"{"sub": "ann", "groups": ["admins"]}"#,
        ]);
        assert_eq!(code, Some(0), "{said}");
        assert_eq!(
            said.trim(),
            r#"{"decision":"allow","headers":{"x-role":"boss"}}"#
        );
        let (code, said) = decide(&[
            "--route",
            "admin",
            "--claims",
            r#"{"sub": "bob"}"#,
            "--expect",
            "deny",
        ]);
        assert_eq!(code, Some(0), "{said}");
        let (code, said) = decide(&["--route", "nope", "--claims", "{}"]);
        assert_eq!(code, Some(2));
        assert!(
            said.contains("has no route \"nope\"; its routes: admin, open"),
            "{said}"
        );
        let (code, said) = decide(&["--route", "open", "--claims", "{}"]);
        assert_eq!(code, Some(2));
        assert!(
            said.contains("route \"open\"") && said.contains("has no policy"),
            "{said}"
        );
    }

    #[test]
    fn policy_test_exits_2_on_a_policy_error() {
        let dir = tempfile::tempdir().unwrap();
        let claims = write(dir.path(), "claims.json", r#"{"sub": "bob"}"#);
        let broken = write(dir.path(), "broken.rhai", "if true {\n  allow(\n");
        // A runaway that a limit stops at once: `loop {}` would race the operation budget against
        // the 20 ms wall clock of the default limits, and lose to the clock on a busy machine.
        let recursing = write(dir.path(), "recurse.rhai", "fn f(n) { f(n + 1) } f(0)");
        for (policy, message) in [
            (&broken, "broken.rhai:"),
            (&recursing, "policy_limits.max_call_depth"),
        ] {
            let output = binary()
                .args(["policy", "test"])
                .arg(policy)
                .arg("--claims")
                .arg(&claims)
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(2));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(message), "{stderr}");
        }
        let login = write(dir.path(), "login.rhai", "login()");
        let output = binary()
            .args(["policy", "test"])
            .arg(&login)
            .arg("--claims")
            .arg(&claims)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            r#"{"decision":"login"}"#
        );
    }

    /// Every outcome of `policy test` has its exit code, as docs/policies.md promises: 0 for a
    /// decision (login included) that matches `--expect` or without one, 1 for another decision,
    /// 2 with a message naming the file for a bad policy or input file and a bad argument.
    #[test]
    fn policy_test_exit_codes_for_every_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        write(dir.path(), "claims.json", r#"{"sub": "bob"}"#);
        write(dir.path(), "not-json.json", "not json");
        write(dir.path(), "array.json", "[1, 2]");
        write(dir.path(), "bad-ip.json", r#"{"client_ip": "nope"}"#);
        write(dir.path(), "login.rhai", "login()");
        write(dir.path(), "allow.rhai", "allow()");
        // (policy, claims, further arguments, exit code, what stdout or stderr says)
        let cases: &[(&str, &str, &[&str], i32, &str)] = &[
            (
                "login.rhai",
                "claims.json",
                &[],
                0,
                r#"{"decision":"login"}"#,
            ),
            (
                "login.rhai",
                "claims.json",
                &["--expect", "login"],
                0,
                r#"{"decision":"login"}"#,
            ),
            (
                "login.rhai",
                "claims.json",
                &["--expect", "allow"],
                1,
                "expected allow, the policy decided login",
            ),
            (
                "allow.rhai",
                "@missing.json",
                &[],
                2,
                "cannot read --claims file",
            ),
            (
                "allow.rhai",
                "@not-json.json",
                &[],
                2,
                "not-json.json is not valid",
            ),
            (
                "allow.rhai",
                "@array.json",
                &[],
                2,
                "array.json is not valid",
            ),
            (
                "allow.rhai",
                "[1, 2]",
                &[],
                2,
                "--claims is not a JSON object",
            ),
            (
                "allow.rhai",
                "claims.json",
                &["--request", "@bad-ip.json"],
                2,
                "bad-ip.json is not valid: invalid IP address",
            ),
            (
                "allow.rhai",
                "claims.json",
                &["--request", "@not-json.json"],
                2,
                "request",
            ),
            (
                "allow.rhai",
                "claims.json",
                &["--set", "novalue"],
                2,
                "expected key=value",
            ),
            (
                "allow.rhai",
                "claims.json",
                &["--route", "admin"],
                2,
                "give either a policy FILE or --route",
            ),
            (
                "missing.rhai",
                "claims.json",
                &[],
                2,
                "cannot read the policy",
            ),
            (
                "allow.rhai",
                "claims.json",
                &["--expect", "maybe"],
                2,
                "possible values: allow, deny, login",
            ),
        ];
        for &(policy, claims, extra, code, says) in cases {
            // File arguments are names in the test's folder; the rest is passed as written.
            let args: Vec<String> = [policy, "--claims", claims]
                .iter()
                .chain(extra)
                .map(|arg| match arg.strip_prefix('@') {
                    Some(file) => format!("@{}", path(file)),
                    None if arg.ends_with(".json") || arg.ends_with(".rhai") => path(arg),
                    None => (*arg).to_owned(),
                })
                .collect();
            let output = binary()
                .args(["policy", "test"])
                .args(&args)
                .output()
                .unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(output.status.code(), Some(code), "{args:?}: {said}");
            assert!(said.contains(says), "{args:?}: {said}");
        }
    }

    /// `policy test` knows no config: it refuses identity headers as a route with the default
    /// `[headers]` does because `header_ownership` owns every default name by itself.
    #[test]
    fn policy_test_refuses_the_default_identity_headers() {
        use portcullis::header_ownership::{HeaderClass, classify};
        for (name, _) in &portcullis::config::IdentityHeaders::seed_default().0 {
            assert_eq!(
                classify(name.as_str()),
                Some(HeaderClass::Identity),
                "{name}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let claims = write(dir.path(), "claims.json", r#"{"sub": "bob"}"#);
        let policy = write(
            dir.path(),
            "spoof.rhai",
            r#"allow(#{ "X-Auth-Userid": "root" })"#,
        );
        let output = binary()
            .args(["policy", "test"])
            .arg(&policy)
            .arg("--claims")
            .arg(&claims)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("is an identity header"), "{stderr}");
    }
}

#[test]
fn deny_statuses_are_kept() {
    let Ok(Decision::Deny { status, reason }) =
        decide(&script("deny(451, \"legal\")"), "GET", "/", &claims(&[]))
    else {
        panic!()
    };
    assert_eq!(status, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    assert_eq!(reason.as_deref(), Some("legal"));
}

#[test]
fn a_script_cannot_change_claims_or_config_for_later_requests() {
    let engine = PolicyEngine::new(PolicyLimits::default());
    let compile = |text: &str| {
        engine
            .compile_text(text, "tamper.rhai", config(json!({ "group": "admins" })))
            .unwrap()
    };
    let user = claims(&["staff"]);
    // What a script reads out of claims is a copy: changing it changes nothing else.
    let copy = compile(
        r#"let g = claims.groups; g.push("admins"); claims.groups.push("admins"); if has_group("admins") || "admins" in claims.groups { deny(403) } else { allow() }"#,
    );
    assert_eq!(short(decide(&copy, "GET", "/", &user)), "allow");
    // claims has no setters; config is this decision's own copy.
    let err = short(decide(
        &compile(r#"claims.sub = "root"; allow()"#),
        "GET",
        "/",
        &user,
    ));
    assert!(err.contains("No writable property"), "{err}");
    let own_copy = compile(
        r#"config.group = "nobody"; if config.group == "nobody" { allow() } else { deny(500) }"#,
    );
    assert_eq!(short(decide(&own_copy, "GET", "/", &user)), "allow");
    let check = compile(
        r#"if claims.sub == "u1" && claims.groups == ["staff"] && config.group == "admins" && "sub" in claims && claims.keys().len() == 3 { allow() } else { deny(403) }"#,
    );
    assert_eq!(short(decide(&check, "GET", "/", &user)), "allow");
}

#[test]
fn a_policy_reading_only_claims_runs_once_per_session_and_any_other_every_time() {
    let group_check = "if has_group(\"admins\") { allow() } else { deny(403) }";
    let by_group = script(group_check);
    let (alice, bob) = (claims(&["admins"]), claims(&["staff"]));
    for _ in 0..3 {
        assert_eq!(short(decide(&by_group, "GET", "/a", &alice)), "allow");
        assert_eq!(short(decide(&by_group, "POST", "/b", &bob)), "deny 403");
    }
    assert_eq!(by_group.runs(), 2, "once for each session's claims");

    // A reload compiles the policy anew: it decides again rather than reuse the old decision.
    let reloaded = script(group_check);
    assert_eq!(short(decide(&reloaded, "GET", "/a", &alice)), "allow");
    assert_eq!(reloaded.runs(), 1);

    // Reading the request (or the route), or logging, makes it run for every request.
    for text in [
        "if request.path == \"/a\" { allow() } else { deny(403) }",
        "if route == \"app\" { allow() } else { deny(403) }",
        "print(\"checked\"); allow()",
    ] {
        let policy = script(text);
        for _ in 0..3 {
            assert_eq!(
                short(decide(&policy, "GET", "/a", &alice)),
                "allow",
                "{text}"
            );
        }
        assert_eq!(policy.runs(), 3, "{text}");
    }
    let by_path = script("if request.path == \"/a\" { allow() } else { deny(403) }");
    assert_eq!(short(decide(&by_path, "GET", "/b", &alice)), "deny 403");

    // Failures are not remembered: each request meets them (and logs them) again.
    let failing = script("if has_group(\"admins\") { throw \"no\" } allow()");
    for _ in 0..2 {
        assert!(short(decide(&failing, "GET", "/", &alice)).starts_with("error"));
    }
    assert_eq!(failing.runs(), 2);
}

#[test]
fn comments_do_not_count_as_reading_the_request() {
    let policy = script(
        "// allows everyone, whatever the request, route or header; no print or debug\nallow()",
    );
    let alice = claims(&["admins"]);
    for _ in 0..3 {
        assert_eq!(short(decide(&policy, "GET", "/", &alice)), "allow");
    }
    assert_eq!(policy.runs(), 1);
    // A call through a function pointer counts: its name can be built at run time.
    let indirect = script(
        "let f = Fn(\"hea\" + \"der\"); if f.call(\"x-tenant\") == () { deny(403) } else { allow() }",
    );
    for _ in 0..2 {
        assert_eq!(short(decide(&indirect, "GET", "/", &alice)), "allow");
    }
    assert_eq!(indirect.runs(), 2);
}

#[test]
fn a_header_read_the_text_check_missed_still_sees_the_request() {
    // `map` with a function *name* built at run time calls `header` without the code saying so.
    let hidden = script(
        "let values = [\"x-tenant\"].map(\"hea\" + \"der\"); if values[0] == \"blue\" { deny(403) } else { allow() }",
    );
    let alice = claims(&["admins"]);
    assert_eq!(short(decide(&hidden, "GET", "/", &alice)), "deny 403");
    assert_eq!(hidden.runs(), 2, "ran again, with the request");
    assert_eq!(short(decide(&hidden, "GET", "/", &alice)), "deny 403");
    assert_eq!(hidden.runs(), 3, "and is no longer remembered per session");
}

/// `s.replace("a", s)` on a string within `max_string_size` once built its whole (gigabyte)
/// result before the size check: the proxy could be made to allocate until it was killed.
#[test]
fn one_replace_call_cannot_build_a_string_past_max_string_size() {
    let limits = PolicyLimits::default();
    for text in [
        r#"let s = ""; s.pad(60000, 'a'); s.replace("a", s); allow()"#,
        r#"let s = ""; s.pad(60000, 'a'); s.replace('a', s); allow()"#,
        r#"let s = ""; s.pad(60000, 'a'); s.replace("", "bb"); allow()"#,
    ] {
        let started = std::time::Instant::now();
        let err = short(decide_with(
            &script_with(text, limits.clone()),
            "GET",
            "/",
            &claims(&[]),
            &rules(&limits),
        ));
        assert!(err.contains("max_string_size"), "{text}: {err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{text}: refused before building the result ({:?})",
            started.elapsed()
        );
    }
    // Within the limit, replace works as before.
    let fine = script(
        r#"let s = "a-b"; s.replace("-", "+"); s.replace('+', "="); if s == "a=b" { allow() } else { deny(403) }"#,
    );
    assert_eq!(short(decide(&fine, "GET", "/", &claims(&[]))), "allow");
}

/// Rhai's `sort`/`order`/`dedup` with a comparer ignored the comparer's errors: a comparer stopped
/// by the operation budget was called again and again, and the script still returned `allow()`.
#[test]
fn a_comparer_that_exceeds_a_limit_ends_the_script() {
    let limits = PolicyLimits {
        max_operations: 10_000,
        // Generous: each comparer must be stopped by the operation budget, not the clock.
        timeout: std::time::Duration::from_secs(10),
        ..PolicyLimits::default()
    };
    for call in [
        "a.sort(|x, y| { loop {} })",
        "a.sort_by(|x, y| { loop {} })",
        "a.order(|x, y| { loop {} })",
        "a.order_by(|x, y| { loop {} })",
        "a.dedup(|x, y| { loop {} })",
        "fn spin(x, y) { loop {} } a.sort(\"spin\")",
        "fn spin(x, y) { loop {} } a.dedup(\"spin\")",
    ] {
        let text = format!("let a = [5, 3, 1, 4, 2, 2, 9, 8, 7, 6]; {call}; allow()");
        let err = short(decide_with(
            &script_with(&text, limits.clone()),
            "GET",
            "/",
            &claims(&[]),
            &rules(&limits),
        ));
        assert!(err.contains("max_operations"), "{call}: {err}");
    }
    // Comparers that behave still sort.
    let sorted = script(
        "let a = [3, 1, 2]; a.sort(|x, y| x - y); let b = a.order(|x, y| x > y); let c = [1, 1, 2]; c.dedup(|x, y| x == y); if a == [1, 2, 3] && b == [3, 2, 1] && c == [1, 2] { allow() } else { deny(403) }",
    );
    assert_eq!(short(decide(&sorted, "GET", "/", &claims(&[]))), "allow");
}
