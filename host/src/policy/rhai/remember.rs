//! Which Rhai decisions are remembered per session: judged once, when a script is compiled.
//!
//! Rhai here has no clock, no randomness and no state between decisions, so a script whose
//! decision uses nothing but the user's claims and the route's config decides the same for every
//! request of a session: it runs once per session and its decision is reused. The judgement is a
//! conservative reading of the script's code without comments, failing closed — anything it
//! cannot show to be claims-only runs on every request:
//! - a script that names anything whose value or effect differs between requests (in [`ApiTable`]:
//!   `request`, `header`, `route`, `print`, `debug`) anywhere — as a name, inside a longer name,
//!   or in a string — runs on every request;
//! - so does a script that calls a function by a name only known at run time (`Fn`, `call`):
//!   `Fn("hea" + "der")` names nothing.
//!
//! One way to call a function by a built name remains: library functions that take a function
//! pointer also take a function's name as a string (`["x"].map("hea" + "der")`; `map`, `filter`,
//! `all`, `some`, `reduce`, `sort`, …). A check at run time closes it: `header` called without
//! the request (not copied for a script judged not to read it) makes the script run again with
//! it, and both judgements turn off for good. `print` and `debug` are keywords, which no built
//! name reaches; should that change, a script judged claims-only that wrote to the log is not
//! remembered, nor judged claims-only again. The corpus below pins each case.

use super::api::{ApiTable, Reads};

/// Words of the language that call a function by a name known only at run time.
const CALLS_BY_NAME: [&str; 2] = ["Fn", "call"];

/// What a script's code shows it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Verdict {
    /// It may read the request, which must then be copied for it.
    pub(super) reads_request: bool,
    /// Its decision depends on the claims and config alone: remembered per session.
    pub(super) claims_only: bool,
}

/// Judges `text`, a script's source, by the names in `api`.
pub(super) fn judge(text: &str, api: &ApiTable) -> Verdict {
    // A comment saying "request" must not cost a copy of every request. String literals stay: a
    // name in one (`Fn("print")`) counts as used. (A raw engine: the policy engine's strict
    // variables would refuse the script's variables here.)
    let code = rhai::Engine::new_raw()
        .compact_script(text)
        .unwrap_or_else(|_| text.to_owned());
    let names = |wanted: fn(Reads) -> bool| {
        api.names()
            .filter(move |(_, reads)| wanted(*reads))
            .map(|(name, _)| name)
    };
    let mentions = |word: &str| code.contains(word);
    let reads_request = names(|reads| reads == Reads::Request)
        .chain(CALLS_BY_NAME)
        .any(mentions);
    let per_request = names(|reads| !reads.same_for_a_session()).any(mentions);
    Verdict {
        reads_request,
        claims_only: !reads_request && !per_request,
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use http::HeaderMap;
    use serde_json::json;

    use super::super::PolicyEngine;
    use super::*;
    use crate::policy::decision::Decision;
    use crate::policy::identity::PolicyIdentity;
    use crate::policy::input::PolicyRequest;
    use crate::policy::limits::PolicyLimits;
    use crate::policy::output::OutputRules;

    /// What a corpus script is expected to do over three requests of one session.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
        /// Runs once; every request gets the first decision.
        Remembered,
        /// Runs for every request, and its decision follows the request: allow for the first
        /// kind of request, deny for the second.
        ReadsRequest,
        /// Runs for every request because it writes to the log.
        Logs,
        /// Runs for every request though its decision does not depend on it: the price of
        /// failing closed.
        Conservative,
        /// Fails when it runs: what it reaches for cannot be reached this way.
        Refused,
    }

    use Expect::*;

    /// Tricky scripts and what each must do. A script that reads the request allows a `GET` of
    /// `/a` on route `app` with `X-Tenant: blue`, and denies a `POST` of `/b` on route `other`
    /// with `X-Tenant: red`; the user is in group `admins`.
    const CORPUS: &[(&str, Expect)] = &[
        // Claims and config only.
        (
            r#"if has_group("admins") { allow() } else { deny(403) }"#,
            Remembered,
        ),
        (
            r#"if "admins" in claims.groups { allow() } else { deny(403) }"#,
            Remembered,
        ),
        (
            r#"if has_any_group(config.groups ?? ["admins"]) { allow() } else { deny(403) }"#,
            Remembered,
        ),
        (
            "// reads no request, header or route; no print\nallow()",
            Remembered,
        ),
        (
            "/* request.path, header(\"x\"), route, debug(1) */ allow()",
            Remembered,
        ),
        // A closure and a nested function over the claims.
        (
            r#"if ["ops", "admins"].some(|g| has_group(g)) { allow() } else { deny(403) }"#,
            Remembered,
        ),
        (
            r#"fn admin(c) { "admins" in c.groups } if admin(claims) { allow() } else { deny(403) }"#,
            Remembered,
        ),
        // `this` in a function called as a method.
        (
            r#"fn admin() { "admins" in this.groups } let c = claims.to_map(); if c.admin() { allow() } else { deny(403) }"#,
            Remembered,
        ),
        // A claims-only function named by a string built at run time.
        (
            r#"if ["admins"].map("has_" + "group")[0] { allow() } else { deny(403) }"#,
            Remembered,
        ),
        // The request, the header helper, the route.
        (
            r#"if request.method == "GET" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        (
            r#"if request.headers["x-tenant"] == "blue" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        (
            r#"if header("X-Tenant") == "blue" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        (
            r#"if route == "app" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        (
            r#"let r = request; if r.path == "/a" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        (
            r#"fn tenant() { header("x-tenant") } if tenant() == "blue" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        (
            r#"fn m() { this.method } if request.m() == "GET" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        // Function pointers, by name, alias, curry, closure, `call`.
        (
            r#"let f = Fn("header"); if f.call("x-tenant") == "blue" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        (
            r#"let f = Fn("hea" + "der"); if f.call("x-tenant") == "blue" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        (
            r#"if call(Fn("hea" + "der"), "x-tenant") == "blue" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        (
            r#"let f = Fn("hea" + "der").curry("x-tenant"); if f.call() == "blue" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        (
            r#"let h = |n| header(n); if h.call("x-tenant") == "blue" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        (
            r#"let g = || request.path; if g.call() == "/a" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        // A built name passed where a function pointer is expected: caught when it runs.
        (
            r#"if ["x-tenant"].map("hea" + "der")[0] == "blue" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        (
            r#"let n = ["he", "ader"]; if ["x-tenant"].map(n[0] + n[1])[0] == "blue" { allow() } else { deny(403) }"#,
            ReadsRequest,
        ),
        // Logging. `print` and `debug` are keywords: no built name reaches them, nor `eval`.
        (r#"print("checked"); allow()"#, Logs),
        (r#"debug("checked"); allow()"#, Logs),
        (r#"["checked"].map("pri" + "nt"); allow()"#, Refused),
        (
            r#"let f = Fn("deb" + "ug"); f.call("checked"); allow()"#,
            Refused,
        ),
        (r#"call(Fn("ev" + "al"), "allow()")"#, Refused),
        // Names that only look like reading the request.
        (
            r#"fn header(n) { "blue" } if header("x") == "blue" { allow() } else { deny(403) }"#,
            Conservative,
        ),
        (r#"let requested = 1; allow()"#, Conservative),
        (r#"let text = "the route"; allow()"#, Conservative),
        (
            r#"let f = Fn("has_group"); if f.call("admins") { allow() } else { deny(403) }"#,
            Conservative,
        ),
    ];

    fn rules() -> OutputRules {
        OutputRules {
            limits: PolicyLimits::default(),
            identity_headers: Vec::new(),
            may_set_identity_headers: false,
        }
    }

    /// The two kinds of request of the corpus.
    fn request(allowed: bool) -> (HeaderMap, [&'static str; 3]) {
        let mut headers = HeaderMap::new();
        let tenant = if allowed { "blue" } else { "red" };
        headers.insert("x-tenant", tenant.parse().unwrap());
        let parts = if allowed {
            ["GET", "/a", "app"]
        } else {
            ["POST", "/b", "other"]
        };
        (headers, parts)
    }

    fn decide(
        policy: &super::super::RhaiPolicy,
        user: &PolicyIdentity,
        allowed: bool,
    ) -> &'static str {
        let (headers, [method, path, route]) = request(allowed);
        let request = PolicyRequest {
            method,
            path,
            query: "",
            host: "app.example.com",
            headers: &headers,
            client_ip: IpAddr::from([10, 0, 0, 1]),
            route,
        };
        match policy.decide(&request, user, &rules()) {
            Ok(Decision::Allow { .. }) => "allow",
            Ok(Decision::Deny { .. }) => "deny",
            Ok(Decision::Login) => "login",
            Err(_) => "error",
        }
    }

    #[test]
    fn each_script_of_the_corpus_is_remembered_or_run_per_request_as_expected() {
        let engine = PolicyEngine::new(PolicyLimits::default());
        for &(text, expect) in CORPUS {
            let policy = engine
                .compile_text(text, "corpus.rhai", rhai::Map::new())
                .unwrap_or_else(|err| panic!("{text}: {err}"));
            let user = PolicyIdentity::from_json(
                json!({ "sub": "u1", "groups": ["admins"] })
                    .as_object()
                    .unwrap(),
            );
            let decisions = [
                decide(&policy, &user, true),
                decide(&policy, &user, false),
                decide(&policy, &user, true),
            ];
            let (runs, wanted) = match expect {
                Remembered => (1, [decisions[0]; 3]),
                ReadsRequest => (3, ["allow", "deny", "allow"]),
                Logs | Conservative => (3, [decisions[0]; 3]),
                Refused => (3, ["error"; 3]),
            };
            assert_eq!(decisions, wanted, "{text}");
            // A built name caught at run time costs its first decision one run more.
            let extra = u64::from(expect == ReadsRequest && judge(text, &engine.api).claims_only);
            assert_eq!(policy.runs(), runs + extra, "{expect:?}: {text}");
        }
    }

    #[test]
    fn only_the_names_whose_value_differs_between_requests_make_a_script_run_per_request() {
        let engine = PolicyEngine::new(PolicyLimits::default());
        let per_request: Vec<&str> = engine
            .api
            .names()
            .filter(|(_, reads)| !reads.same_for_a_session())
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            per_request,
            ["request", "route", "print", "debug", "header"]
        );
        // These are the functions and hooks that check at run time (`Current::header`,
        // `Current::log_line`): a new one must get such a check too.
    }
}
