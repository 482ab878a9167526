//! Per-route policies: a script that receives the request and the user's claims and returns a
//! [`Decision`]. A deny is a value; a policy that fails (syntax, runtime error, exceeded limit, bad
//! output) is a [`PolicyError`], which the proxy answers with 500 — fail closed.
//!
//! Policies are compiled when the config is loaded ([`PolicyEngine::compile`]) and never on the
//! request path: Rhai scripts (`rhai.rs`) and Wasm components (`wasm/`) behind one [`Policy`]
//! type. The proxy runs them on the policy threads ([`PolicyPool`]), never on the threads that
//! serve connections.

mod decision;
mod identity;
pub mod input;
pub mod limits;
pub mod output;
pub mod pool;
mod rhai;
mod rhai_guards;
pub mod tester;
pub mod wasm;

pub use self::rhai::{PolicyEngine, RhaiPolicy};
pub use decision::{Decision, PolicyError};
pub use identity::PolicyIdentity;
pub use input::PolicyRequest;
pub use limits::PolicyLimits;
pub use output::OutputRules;
pub use pool::{PolicyPool, PoolError};
pub use wasm::{Isolation, WasmPolicy};

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
        identity: Option<&PolicyIdentity>,
        rules: &OutputRules,
    ) -> Result<Decision, PolicyError> {
        self.decide_by(request, identity, rules, None)
    }

    /// [`Policy::decide`], stopping the script at `deadline` too if that comes before its own
    /// timeout (the caller's deadline on a [`PolicyPool`] thread).
    pub fn decide_by(
        &self,
        request: &PolicyRequest<'_>,
        identity: Option<&PolicyIdentity>,
        rules: &OutputRules,
        deadline: Option<std::time::Instant>,
    ) -> Result<Decision, PolicyError> {
        match self {
            Policy::Rhai(policy) => policy.decide_by(
                request,
                identity.unwrap_or(&PolicyIdentity::anonymous()),
                rules,
                deadline,
            ),
            Policy::Wasm(policy) => policy.decide_by(request, identity, rules, deadline),
        }
    }

    /// The decision already made for this user, when the policy's decisions are remembered
    /// per session (a Rhai script that reads nothing but the claims and its config): served
    /// without running anything.
    pub fn remembered(&self, identity: Option<&PolicyIdentity>) -> Option<Decision> {
        match self {
            Policy::Rhai(policy) => {
                policy.remembered(identity.unwrap_or(&PolicyIdentity::anonymous()))
            }
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
