//! `portcullis policy test`: one decision of a policy file for given claims, request and config,
//! without running the proxy.

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

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, what: &str) -> Result<T, TestError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| TestError::Input(format!("cannot read {what} {}: {err}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|err| TestError::Input(format!("{what} {} is not valid: {err}", path.display())))
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
            .ok_or_else(|| TestError::Input(format!("--config {pair:?}: expected key=value")))?;
        let json: serde_json::Value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
        config.insert(key.to_owned(), json);
    }
    Ok(config)
}

/// Runs one decision of the policy at `file`.
/// `timeout` replaces `policy_limits.timeout` (a slow or busy machine, such as a shared CI
/// runner, needs more than the proxy's default to decide as the proxy would on its own).
pub fn run(
    file: &Path,
    claims: &Path,
    request: Option<&Path>,
    config: &[String],
    timeout: Option<std::time::Duration>,
) -> Result<Decision, TestError> {
    let claims: serde_json::Map<String, serde_json::Value> = read_json(claims, "claims")?;
    let request: TestRequest = match request {
        Some(path) => read_json(path, "request")?,
        None => TestRequest::default(),
    };
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
    let input = PolicyRequest {
        method: &request.method,
        path: path.decision(),
        query: &request.query,
        host: &request.host,
        headers: &headers,
        client_ip: request.client_ip,
        route: &request.route,
    };
    // Claims without a subject stand for "no user" (e.g. `{}`).
    let claims = claims
        .contains_key("sub")
        .then(|| PolicyIdentity::from_json(&claims));
    Ok(policy.decide(&input, claims.as_ref(), &rules)?)
}
