//! Per-route policies: a script that receives the request and the user's claims and returns a
//! [`Decision`]. A deny is a value; a policy that fails (syntax, runtime error, exceeded limit, bad
//! output) is a [`PolicyError`], which the proxy answers with 500 — fail closed.
//!
//! Policies are compiled when the config is loaded ([`PolicyEngine::compile`]) and never on the
//! request path: Rhai scripts (`rhai.rs`) and Wasm components (`wasm/`) behind one [`Policy`]
//! type. The proxy runs them on the policy threads ([`PolicyPool`]), never on the threads that
//! serve connections.

pub mod input;
pub mod limits;
pub mod output;
pub mod pool;
mod rhai;
mod rhai_guards;
pub mod tester;
pub mod wasm;

use std::fmt;

use http::{HeaderName, HeaderValue, StatusCode};

pub use self::rhai::{PolicyEngine, RhaiPolicy};
pub use input::{PolicyClaims, PolicyRequest};
pub use limits::PolicyLimits;
pub use output::OutputRules;
pub use pool::{PolicyPool, PoolError};
pub use wasm::{Isolation, WasmPolicy};

/// What a policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through, setting these headers on the upstream request.
    Allow {
        /// Validated header edits.
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// Refuse with this status (4xx or 5xx) and an optional reason shown to the client.
    Deny {
        /// The status.
        status: StatusCode,
        /// The reason, if given.
        reason: Option<String>,
    },
    /// Send the user to log in (again).
    Login,
}

impl Decision {
    /// The decision as `portcullis policy test` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Decision::Allow { headers } => {
                let headers: serde_json::Map<String, serde_json::Value> = headers
                    .iter()
                    .map(|(name, value)| {
                        (
                            name.to_string(),
                            String::from_utf8_lossy(value.as_bytes())
                                .into_owned()
                                .into(),
                        )
                    })
                    .collect();
                serde_json::json!({ "decision": "allow", "headers": headers })
            }
            Decision::Deny { status, reason } => {
                let mut json = serde_json::json!({ "decision": "deny", "status": status.as_u16() });
                if let Some(reason) = reason {
                    json["reason"] = reason.clone().into();
                }
                json
            }
            Decision::Login => serde_json::json!({ "decision": "login" }),
        }
    }

    /// `allow`, `deny` or `login`.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Deny { .. } => "deny",
            Decision::Login => "login",
        }
    }
}

/// A policy failed: it did not compile, failed while running, exceeded a limit, or returned
/// something that is not a valid decision. Carries where (file and line) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The policy file as written in the config.
    pub file: String,
    /// `line:column` in the file, when known.
    pub position: Option<(usize, usize)>,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for PolicyError {}

/// A compiled policy of a route, ready to decide.
#[derive(Debug)]
pub enum Policy {
    /// A Rhai script.
    Rhai(RhaiPolicy),
    /// A WebAssembly component.
    Wasm(WasmPolicy),
}

impl Policy {
    /// Runs the policy for one request, on this thread, within `policy_limits.timeout`.
    pub fn decide(
        &self,
        request: &PolicyRequest<'_>,
        claims: Option<&PolicyClaims>,
        rules: &OutputRules,
    ) -> Result<Decision, PolicyError> {
        self.decide_by(request, claims, rules, None)
    }

    /// [`Policy::decide`], stopping the script at `deadline` too if that comes before its own
    /// timeout (the caller's deadline on a [`PolicyPool`] thread).
    pub fn decide_by(
        &self,
        request: &PolicyRequest<'_>,
        claims: Option<&PolicyClaims>,
        rules: &OutputRules,
        deadline: Option<std::time::Instant>,
    ) -> Result<Decision, PolicyError> {
        match self {
            Policy::Rhai(policy) => policy.decide_by(
                request,
                claims.unwrap_or(&PolicyClaims::anonymous()),
                rules,
                deadline,
            ),
            Policy::Wasm(policy) => policy.decide_by(request, claims, rules, deadline),
        }
    }

    /// The decision already made for these claims, when the policy's decisions are remembered
    /// per session (a Rhai script that reads nothing but the claims and its config): served
    /// without running anything.
    pub fn remembered(&self, claims: Option<&PolicyClaims>) -> Option<Decision> {
        match self {
            Policy::Rhai(policy) => policy.remembered(claims.unwrap_or(&PolicyClaims::anonymous())),
            Policy::Wasm(_) => None,
        }
    }

    /// The file the policy came from, as written in the config.
    pub fn file(&self) -> &str {
        match self {
            Policy::Rhai(policy) => policy.file(),
            Policy::Wasm(policy) => policy.file(),
        }
    }
}
