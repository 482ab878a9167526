//! [`Policy`]: a route's policy, loaded once ([`Policy::load`], the one way the config and
//! `portcullis policy test` load a policy file) and asked for a decision per request.

use std::path::PathBuf;

use super::decision::{Decision, PolicyError};
use super::identity::PolicyIdentity;
use super::input::PolicyRequest;
use super::limits::PolicyLimits;
use super::output::OutputRules;
use super::rhai::{PolicyEngine, RhaiPolicy};
use super::wasm::{CacheDir, Isolation, WasmOptions, WasmPolicy};

/// A policy file to load and what the policy is given.
#[derive(Debug, Clone)]
pub struct PolicySource<'a> {
    /// The file as written (in the config, or on the command line): shown in messages, and its
    /// extension says which engine runs it (`.rhai` or `.wasm`).
    pub file: &'a str,
    /// Where to read it.
    pub path: PathBuf,
    /// The route's `policy_config`: a script's `config`, a component's `config-json`.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// How a Wasm policy's instances are used, as written: `"pooled"` (also when absent) or
    /// `"per-request"`. A Rhai policy takes none.
    pub isolation: Option<&'a str>,
}

/// What every policy of one config is loaded with: one Rhai engine, whose limits the Wasm
/// policies run under too, and where compiled Wasm components are cached.
#[derive(Debug, Clone)]
pub struct PolicyLoader {
    engine: PolicyEngine,
    wasm_cache: Option<CacheDir>,
}

impl PolicyLoader {
    /// Policies under `limits`, compiled Wasm kept in `wasm_cache` (none: compiled at each load).
    pub fn new(limits: PolicyLimits, wasm_cache: Option<CacheDir>) -> Self {
        PolicyLoader {
            engine: PolicyEngine::new(limits),
            wasm_cache,
        }
    }

    /// The limits every policy runs under.
    pub fn limits(&self) -> &PolicyLimits {
        self.engine.limits()
    }
}

/// Why a policy could not be loaded. [`LoadError::key`] says which of the route's keys is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file is neither a `.rhai` nor a `.wasm` file.
    #[error("{0:?}: a policy is a Rhai script (.rhai) or a Wasm component (.wasm)")]
    UnknownKind(String),
    /// `isolation` is not a mode.
    #[error("must be \"pooled\" or \"per-request\": {0:?}")]
    UnknownIsolation(String),
    /// `isolation` is given for a Rhai policy.
    #[error("only Wasm policies have an isolation mode")]
    IsolationForRhai,
    /// The config cannot be turned into script values.
    #[error("cannot be handed to the policy: {0}")]
    Config(String),
    /// The file cannot be read or compiled.
    #[error("{0}")]
    Policy(#[from] PolicyError),
}

impl LoadError {
    /// The route key the error is about: `policy`, `isolation` or `policy_config`.
    pub fn key(&self) -> &'static str {
        match self {
            LoadError::UnknownKind(_) | LoadError::Policy(_) => "policy",
            LoadError::UnknownIsolation(_) | LoadError::IsolationForRhai => "isolation",
            LoadError::Config(_) => "policy_config",
        }
    }
}

/// A compiled policy of a route, ready to decide.
#[derive(Debug)]
pub enum Policy {
    /// A Rhai script.
    Rhai(RhaiPolicy),
    /// A WebAssembly component.
    Wasm(WasmPolicy),
}

/// The `isolation` of a Wasm policy whose route names none: an instance reused per policy thread.
pub const DEFAULT_ISOLATION: &str = "pooled";

impl Policy {
    /// Loads and compiles the policy `source` names, with the engine its extension says.
    pub fn load(source: PolicySource<'_>, loader: &PolicyLoader) -> Result<Policy, LoadError> {
        if source.file.ends_with(".wasm") {
            let isolation = match source.isolation.unwrap_or(DEFAULT_ISOLATION) {
                "pooled" => Isolation::Pooled,
                "per-request" => Isolation::PerRequest,
                other => return Err(LoadError::UnknownIsolation(other.to_owned())),
            };
            let options = WasmOptions {
                isolation,
                limits: loader.limits().clone(),
                cache: loader.wasm_cache.clone(),
            };
            let policy = WasmPolicy::compile(&source.path, source.file, &source.config, options)?;
            return Ok(Policy::Wasm(policy));
        }
        if !source.file.ends_with(".rhai") {
            return Err(LoadError::UnknownKind(source.file.to_owned()));
        }
        if source.isolation.is_some() {
            return Err(LoadError::IsolationForRhai);
        }
        let config = rhai::serde::to_dynamic(serde_json::Value::Object(source.config))
            .map_err(|err| LoadError::Config(err.to_string()))?
            .try_cast::<rhai::Map>()
            .unwrap_or_default();
        let policy = loader.engine.compile(&source.path, source.file, config)?;
        Ok(Policy::Rhai(policy))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str, isolation: Option<&str>) -> Result<Policy, LoadError> {
        let source = PolicySource {
            file,
            path: PathBuf::from("/nonexistent").join(file),
            config: serde_json::Map::new(),
            isolation,
        };
        Policy::load(source, &PolicyLoader::new(PolicyLimits::default(), None))
    }

    #[test]
    fn each_load_error_names_the_key_to_fix() {
        for (file, isolation, key, message) in [
            (
                "p.lua",
                None,
                "policy",
                "a Rhai script (.rhai) or a Wasm component",
            ),
            ("p.rhai", Some("pooled"), "isolation", "only Wasm policies"),
            ("p.wasm", Some("shared"), "isolation", "\"shared\""),
            ("p.rhai", None, "policy", "cannot read the policy"),
            (
                "p.wasm",
                Some("per-request"),
                "policy",
                "cannot read the policy",
            ),
        ] {
            let err = load(file, isolation).unwrap_err();
            assert_eq!(err.key(), key, "{file} {isolation:?}: {err}");
            assert!(err.to_string().contains(message), "{file}: {err}");
        }
    }
}
