//! `[policy_limits]` and the routes' `policy` keys: limits checked, scripts compiled at load.

use std::path::Path;

use super::RoutePolicy;
use super::check::{Problems, parse_duration};
use super::defaults;
use super::raw::{RawPolicyLimits, RawWasm};
use crate::policy::wasm::{CacheDir, WasmOptions};
use crate::policy::{Isolation, OutputRules, Policy, PolicyEngine, PolicyLimits, WasmPolicy};

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

/// Most policy threads a config may ask for.
const MAX_POLICY_THREADS: usize = 1024;

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
    let limits = PolicyLimits {
        max_operations: raw.max_operations.unwrap_or(defaults.max_operations).max(1),
        max_call_depth: positive(
            "max_call_depth",
            raw.max_call_depth,
            defaults.max_call_depth,
        ),
        max_expr_depth: positive(
            "max_expr_depth",
            raw.max_expr_depth,
            defaults.max_expr_depth,
        ),
        max_string_size: positive(
            "max_string_size",
            raw.max_string_size,
            defaults.max_string_size,
        ),
        max_array_size: positive(
            "max_array_size",
            raw.max_array_size,
            defaults.max_array_size,
        ),
        max_map_size: positive("max_map_size", raw.max_map_size, defaults.max_map_size),
        timeout: defaults.timeout,
        max_headers: raw.max_headers.unwrap_or(defaults.max_headers),
        max_header_value_size: positive(
            "max_header_value_size",
            raw.max_header_value_size,
            defaults.max_header_value_size,
        ),
        wasm_max_memory: defaults.wasm_max_memory,
        wasm_pooled_uses: defaults.wasm_pooled_uses,
        threads: match positive("threads", raw.threads, defaults.threads) {
            threads if threads > MAX_POLICY_THREADS => {
                problems.add(
                    "policy_limits.threads",
                    format!("at most {MAX_POLICY_THREADS}"),
                );
                defaults.threads
            }
            threads => threads,
        },
    };
    let wasm_max_memory = match raw.wasm_max_memory.as_deref().map(super::check::parse_size) {
        None => defaults.wasm_max_memory,
        Some(Ok(bytes)) if bytes <= crate::policy::wasm::MAX_CONFIGURABLE_MEMORY => bytes,
        Some(Ok(_)) => {
            problems.add("policy_limits.wasm_max_memory", "at most \"256MiB\"");
            defaults.wasm_max_memory
        }
        Some(Err(message)) => {
            problems.add("policy_limits.wasm_max_memory", message);
            defaults.wasm_max_memory
        }
    };
    if raw.max_operations == Some(0) {
        problems.add("policy_limits.max_operations", "must be at least 1");
    }
    let timeout = raw
        .timeout
        .and_then(|text| problems.check("policy_limits.timeout", parse_duration(&text)));
    PolicyLimits {
        timeout: timeout.unwrap_or(limits.timeout),
        wasm_max_memory,
        wasm_pooled_uses: raw
            .wasm_pooled_uses
            .unwrap_or(defaults.wasm_pooled_uses)
            .max(1),
        ..limits
    }
}

/// Compiles a route's policy file with its `policy_config`.
#[allow(clippy::too_many_arguments)]
pub(super) fn compile_route_policy(
    engine: &PolicyEngine,
    wasm_cache: Option<&CacheDir>,
    file: &str,
    config: Option<toml::Table>,
    isolation: Option<&str>,
    rules: OutputRules,
    base_dir: &Path,
    key: &str,
    problems: &mut Problems,
) -> Option<RoutePolicy> {
    let isolation_key = key.replace(".policy", ".isolation");
    if file.ends_with(".wasm") {
        let isolation = match isolation.unwrap_or(defaults::ROUTE_ISOLATION) {
            "pooled" => Isolation::Pooled,
            "per-request" => Isolation::PerRequest,
            other => {
                problems.add(
                    isolation_key,
                    format!("must be \"pooled\" or \"per-request\": {other:?}"),
                );
                return None;
            }
        };
        let config = match serde_json::to_value(config.unwrap_or_default()) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        return match WasmPolicy::compile(
            &base_dir.join(file),
            file,
            &config,
            WasmOptions {
                isolation,
                limits: engine.limits().clone(),
                cache: wasm_cache.cloned(),
            },
        ) {
            Ok(policy) => Some(RoutePolicy {
                policy: Policy::Wasm(policy),
                rules,
            }),
            Err(err) => {
                problems.add(key, err.to_string());
                None
            }
        };
    }
    if !file.ends_with(".rhai") {
        problems.add(
            key,
            format!("{file:?}: a policy is a Rhai script (.rhai) or a Wasm component (.wasm)"),
        );
        return None;
    }
    if isolation.is_some() {
        problems.add(isolation_key, "only Wasm policies have an isolation mode");
        return None;
    }
    let config = match rhai::serde::to_dynamic(config.unwrap_or_default()) {
        Ok(value) => value.try_cast::<rhai::Map>().unwrap_or_default(),
        Err(err) => {
            problems.add(
                format!("{key}_config"),
                format!("cannot be handed to the policy: {err}"),
            );
            return None;
        }
    };
    match engine.compile(&base_dir.join(file), file, config) {
        Ok(policy) => Some(RoutePolicy {
            policy: Policy::Rhai(policy),
            rules,
        }),
        Err(err) => {
            problems.add(key, err.to_string());
            None
        }
    }
}
