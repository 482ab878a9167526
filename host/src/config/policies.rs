//! `[policy_limits]` and the routes' `policy` keys: limits checked, scripts compiled at load.

use std::path::Path;

use super::RoutePolicy;
use super::raw::RawPolicyLimits;
use super::validate::{Problems, duration};
use crate::policy::{OutputRules, Policy, PolicyEngine, PolicyLimits};

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
    };
    if raw.max_operations == Some(0) {
        problems.add("policy_limits.max_operations", "must be at least 1");
    }
    let timeout = duration(
        problems,
        "policy_limits.timeout",
        raw.timeout.as_deref(),
        "20ms",
    );
    PolicyLimits {
        timeout: timeout.unwrap_or(limits.timeout),
        ..limits
    }
}

/// Compiles a route's policy file with its `policy_config`.
pub(super) fn compile_route_policy(
    engine: &PolicyEngine,
    file: &str,
    config: Option<toml::Table>,
    rules: OutputRules,
    base_dir: &Path,
    key: &str,
    problems: &mut Problems,
) -> Option<RoutePolicy> {
    if !file.ends_with(".rhai") {
        problems.add(
            key,
            format!("{file:?}: only Rhai policies (.rhai) are supported so far"),
        );
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
