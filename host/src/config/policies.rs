//! `[policy_limits]`, `[wasm]` and the routes' policy keys: limits checked, each route's policy loaded
//! with [`Policy::load`] when the config is.

use std::path::Path;

use super::RoutePolicy;
use super::auth::IdentityHeaders;
use super::check::{Problems, parse_duration, parse_size};
use super::defaults;
use super::raw::{RawPolicyLimits, RawWasm};
use crate::policy::limits::{MAX_THREADS, MAX_WASM_MEMORY};
use crate::policy::wasm::CacheDir;
use crate::policy::{OutputRules, Policy, PolicyLimits, PolicyLoader, PolicySource};

/// Where compiled Wasm policies are kept: `[wasm] cache_dir` (relative to the config's folder),
/// [`defaults::WASM_CACHE_DIR`] by default, nowhere with `cache = false`.
pub(super) fn wasm_cache_dir(
    raw: RawWasm,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<CacheDir> {
    match (raw.cache.unwrap_or(defaults::WASM_CACHE), raw.cache_dir) {
        (false, Some(_)) => {
            problems.add(
                "wasm.cache_dir",
                "is set but `cache = false`: remove one of them",
            );
            None
        }
        (false, None) => None,
        (true, Some(dir)) if dir.is_empty() => {
            problems.add(
                "wasm.cache_dir",
                "is empty: name a folder, or set `cache = false`",
            );
            None
        }
        (true, Some(dir)) => Some(CacheDir {
            path: base_dir.join(dir),
            explicit: true,
        }),
        (true, None) => Some(CacheDir {
            path: base_dir.join(defaults::WASM_CACHE_DIR),
            explicit: false,
        }),
    }
}

/// `[policy_limits]`: each key given replaces its default. Problems are added in the order of
/// the checks below.
pub(super) fn validate_limits(raw: RawPolicyLimits, problems: &mut Problems) -> PolicyLimits {
    let defaults = PolicyLimits::default();
    let mut positive = |key: &str, value: Option<usize>, default: usize| match value {
        Some(0) => {
            problems.add(format!("policy_limits.{key}"), "must be at least 1");
            default
        }
        Some(value) => value,
        None => default,
    };
    let max_call_depth = positive(
        "max_call_depth",
        raw.max_call_depth,
        defaults.max_call_depth,
    );
    let max_expr_depth = positive(
        "max_expr_depth",
        raw.max_expr_depth,
        defaults.max_expr_depth,
    );
    let max_string_size = positive(
        "max_string_size",
        raw.max_string_size,
        defaults.max_string_size,
    );
    let max_array_size = positive(
        "max_array_size",
        raw.max_array_size,
        defaults.max_array_size,
    );
    let max_map_size = positive("max_map_size", raw.max_map_size, defaults.max_map_size);
    let max_header_value_size = positive(
        "max_header_value_size",
        raw.max_header_value_size,
        defaults.max_header_value_size,
    );
    let threads = match positive("threads", raw.threads, defaults.threads) {
        threads if threads > MAX_THREADS => {
            problems.add("policy_limits.threads", format!("at most {MAX_THREADS}"));
            defaults.threads
        }
        threads => threads,
    };
    let wasm_max_memory = wasm_max_memory(raw.wasm_max_memory.as_deref(), problems)
        .unwrap_or(defaults.wasm_max_memory);
    if raw.max_operations == Some(0) {
        problems.add("policy_limits.max_operations", "must be at least 1");
    }
    let timeout = raw
        .timeout
        .and_then(|text| problems.check("policy_limits.timeout", parse_duration(&text)));
    PolicyLimits {
        max_operations: raw.max_operations.unwrap_or(defaults.max_operations).max(1),
        max_call_depth,
        max_expr_depth,
        max_string_size,
        max_array_size,
        max_map_size,
        timeout: timeout.unwrap_or(defaults.timeout),
        max_headers: raw.max_headers.unwrap_or(defaults.max_headers),
        max_header_value_size,
        wasm_max_memory,
        wasm_pooled_uses: raw
            .wasm_pooled_uses
            .unwrap_or(defaults.wasm_pooled_uses)
            .max(1),
        threads,
    }
}

/// `policy_limits.wasm_max_memory` in bytes, if given and valid (at most [`MAX_WASM_MEMORY`]).
fn wasm_max_memory(text: Option<&str>, problems: &mut Problems) -> Option<u64> {
    match parse_size(text?) {
        Ok(bytes) if bytes <= MAX_WASM_MEMORY => Some(bytes),
        Ok(_) => {
            problems.add("policy_limits.wasm_max_memory", "at most \"256MiB\"");
            None
        }
        Err(message) => {
            problems.add("policy_limits.wasm_max_memory", message);
            None
        }
    }
}

/// A route's policy keys, as written.
pub(super) struct RoutePolicyKeys<'a> {
    /// The key path of `policy`, e.g. `routes[2].policy`; the other keys are its siblings.
    pub key: &'a str,
    /// `policy`: the file, relative to `base_dir`.
    pub file: &'a str,
    /// The config file's folder.
    pub base_dir: &'a Path,
    /// `policy_config`.
    pub config: Option<toml::Table>,
    /// `isolation`.
    pub isolation: Option<&'a str>,
    /// `policy_may_set_identity_headers`.
    pub may_set_identity_headers: bool,
}

/// Loads a route's policy ([`Policy::load`]) with the rules its decisions follow on a route
/// with these identity headers; `None` after adding what is wrong to `problems`.
pub(super) fn compile_route_policy(
    keys: RoutePolicyKeys<'_>,
    identity_headers: &IdentityHeaders,
    loader: &PolicyLoader,
    problems: &mut Problems,
) -> Option<RoutePolicy> {
    let sibling = |name: &str| match keys.key.strip_suffix("policy") {
        Some(route) => format!("{route}{name}"),
        None => name.to_owned(),
    };
    let config = match serde_json::to_value(keys.config.unwrap_or_default()) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) => serde_json::Map::new(),
        Err(err) => {
            problems.add(
                sibling("policy_config"),
                format!("cannot be handed to the policy: {err}"),
            );
            return None;
        }
    };
    let source = PolicySource {
        file: keys.file,
        path: keys.base_dir.join(keys.file),
        config,
        isolation: keys.isolation,
    };
    let policy = match Policy::load(source, loader) {
        Ok(policy) => policy,
        Err(err) => {
            problems.add(sibling(err.key()), err.to_string());
            return None;
        }
    };
    let rules = OutputRules {
        limits: loader.limits().clone(),
        identity_headers: identity_headers
            .0
            .iter()
            .map(|(name, _)| crate::header_ownership::normalise(name.as_str()))
            .collect(),
        may_set_identity_headers: keys.may_set_identity_headers,
    };
    Some(RoutePolicy {
        policy,
        rules,
        placement: Default::default(),
    })
}
