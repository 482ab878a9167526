//! `portcullis policy test`: one decision of a policy for given claims, request and config,
//! without running the proxy — of a policy file ([`run`]), or of a policy already loaded with its
//! route's rules ([`decide`], for `--route`).
//!
//! Claims and request are JSON given inline (`'{"sub": "alice"}'`) or read from a file
//! (`@claims.json`, as curl writes it); a plain path is still read, for scripts written before
//! the `@`.

use std::net::IpAddr;
use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use super::compiled::{LoadError, Policy, PolicyLoader, PolicySource};
use super::decision::{Decision, PolicyError};
use super::identity::PolicyIdentity;
use super::input::PolicyRequest;
use super::limits::PolicyLimits;
use super::output::OutputRules;
use crate::canonical::CanonicalPath;

/// Why `policy test` could not produce a decision.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// An input file is missing or malformed.
    #[error("{0}")]
    Input(String),
    /// The policy failed (compile, runtime, limit, output).
    #[error("{0}")]
    Policy(#[from] PolicyError),
}

/// The request of a test, as `--request request.json` gives it. Every field is optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TestRequest {
    /// Default `GET`.
    pub method: String,
    /// Default `/`; canonicalised as the proxy would.
    pub path: String,
    /// Default empty.
    pub query: String,
    /// Default `localhost`.
    pub host: String,
    /// Header name → value. Default none.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Default `127.0.0.1`.
    pub client_ip: IpAddr,
    /// Default `test`.
    pub route: String,
}

impl Default for TestRequest {
    fn default() -> Self {
        TestRequest {
            method: "GET".into(),
            path: "/".into(),
            query: String::new(),
            host: "localhost".into(),
            headers: Default::default(),
            client_ip: IpAddr::from([127, 0, 0, 1]),
            route: "test".into(),
        }
    }
}

/// `--claims` or `--request`: inline JSON, `@file`, or (the old form) a file's path.
fn read_json<T: for<'de> Deserialize<'de>>(given: &str, what: &str) -> Result<T, TestError> {
    let from_file = |path: &str| {
        let text = std::fs::read_to_string(path)
            .map_err(|err| TestError::Input(format!("cannot read --{what} file {path}: {err}")))?;
        serde_json::from_str(&text)
            .map_err(|err| TestError::Input(format!("--{what} file {path} is not valid: {err}")))
    };
    if let Some(path) = given.strip_prefix('@') {
        return from_file(path);
    }
    if given.trim_start().starts_with('{') || !Path::new(given).is_file() {
        return serde_json::from_str(given).map_err(|err| {
            TestError::Input(format!(
                "--{what} is not a JSON object ({err}); give JSON (--{what} '{{\"sub\": \"alice\"}}') or a file (--{what} @{what}.json)"
            ))
        });
    }
    from_file(given)
}

/// Turns `key=value` arguments into the policy's `config`: values that parse as JSON are taken as
/// JSON (`groups=["a","b"]`, `limit=3`), anything else as a string.
pub fn config_from_pairs(
    pairs: &[String],
) -> Result<serde_json::Map<String, serde_json::Value>, TestError> {
    let mut config = serde_json::Map::new();
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| TestError::Input(format!("--set {pair:?}: expected key=value")))?;
        let json: serde_json::Value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
        config.insert(key.to_owned(), json);
    }
    Ok(config)
}

/// The claims and request of a test.
pub struct TestInput {
    claims: serde_json::Map<String, serde_json::Value>,
    request: TestRequest,
}

impl TestInput {
    /// Reads `--claims` and `--request` (inline JSON or `@file`). `route` is the request's route
    /// name when `--request` does not give one.
    pub fn read(
        claims: &str,
        request: Option<&str>,
        route: Option<&str>,
    ) -> Result<Self, TestError> {
        let claims = read_json(claims, "claims")?;
        let mut request: TestRequest = match request {
            Some(given) => read_json(given, "request")?,
            None => TestRequest::default(),
        };
        if let Some(route) = route
            && request.route == TestRequest::default().route
        {
            request.route = route.to_owned();
        }
        Ok(TestInput { claims, request })
    }
}

/// Runs one decision of the policy at `file`, on a route with the default identity headers and
/// `config` (`key=value` pairs) as its `policy_config`. `timeout` replaces
/// `policy_limits.timeout` (a slow or busy machine, such as a shared CI runner, needs more than
/// the proxy's default to decide as the proxy would on its own).
pub fn run(
    file: &Path,
    input: &TestInput,
    config: &[String],
    timeout: Option<std::time::Duration>,
) -> Result<Decision, TestError> {
    let shown = file.display().to_string();
    let defaults = PolicyLimits::default();
    let limits = PolicyLimits {
        timeout: timeout.unwrap_or(defaults.timeout),
        ..defaults
    };
    let source = PolicySource {
        file: &shown,
        path: file.to_owned(),
        config: config_from_pairs(config)?,
        // One decision: a fresh instance, nothing kept.
        isolation: shown.ends_with(".wasm").then_some("per-request"),
    };
    // No cache: `policy test` writes nothing.
    let policy =
        Policy::load(source, &PolicyLoader::new(limits.clone(), None)).map_err(
            |err| match err {
                LoadError::Policy(err) => TestError::Policy(err),
                other => TestError::Input(other.to_string()),
            },
        )?;
    // Identity headers are refused as in a route with the default `[headers]`: those are all
    // `X-Auth-*`, which `header_ownership` owns by prefix whatever a config names.
    let rules = OutputRules {
        limits,
        identity_headers: Vec::new(),
        may_set_identity_headers: false,
    };
    decide(&policy, &rules, input)
}

/// One decision of a loaded `policy` under `rules`, as a route with them decides.
pub fn decide(
    policy: &Policy,
    rules: &OutputRules,
    input: &TestInput,
) -> Result<Decision, TestError> {
    let request = &input.request;
    let path = CanonicalPath::parse(&request.path, false)
        .map_err(|err| TestError::Input(format!("request path {:?}: {err}", request.path)))?;
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| TestError::Input(format!("bad header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| TestError::Input(format!("bad value for header {name}")))?;
        headers.append(name, value);
    }
    let request_input = PolicyRequest {
        method: &request.method,
        path: path.decision(),
        query: &request.query,
        host: &request.host,
        headers: &headers,
        client_ip: request.client_ip,
        route: &request.route,
    };
    // Claims without a subject stand for "no user" (e.g. `{}`).
    let claims = input
        .claims
        .contains_key("sub")
        .then(|| PolicyIdentity::from_json(&input.claims));
    Ok(policy.decide(&request_input, claims.as_ref(), rules)?)
}
