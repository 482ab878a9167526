//! `[[routes]]`: each route checked on its own by [`validate_route`], against what it inherits
//! ([`RouteContext`]) and what earlier routes took ([`SeenRoutes`]: names, host and path places,
//! CA bundles already read).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;

use super::auth::{self, AuthMode, IdentityHeaders};
use super::check::{Problems, parse_duration, parse_size};
use super::defaults;
use super::policies;
use super::raw::RawRoute;
use super::{CaBundle, HostPattern, RouteConfig, RoutePolicy, UpstreamUrl};
use crate::canonical::CanonicalPath;
use crate::policy::PolicyLoader;
use crate::tls;

/// What every route is checked against: the sections it inherits from and the config's folder.
pub(super) struct RouteContext<'a> {
    /// Loads every route's policy (one Rhai engine per config; `[wasm]` says where compiled
    /// Wasm policies are kept).
    pub(super) policies: PolicyLoader,
    /// Whether `[oidc]` is present (a login is possible).
    pub(super) oidc_set: bool,
    /// `[headers]`, for routes without `headers`.
    pub(super) identity_headers: Arc<IdentityHeaders>,
    /// `server.upstream_response_timeout`; `None` when `[server]` is invalid.
    pub(super) response_timeout: Option<Duration>,
    /// `server.max_request_body`; `None` when `[server]` is invalid.
    pub(super) max_request_body: Option<u64>,
    /// `server.case_insensitive_routes`: route paths are lower-cased.
    pub(super) case_insensitive: bool,
    /// The config file's folder, for `upstream_ca` and `policy` files.
    pub(super) base_dir: &'a Path,
}

/// What the routes before this one took, so a name or a place is given once and a CA file is
/// read once.
#[derive(Default)]
struct SeenRoutes {
    /// Route name → index of the route that has it.
    names: HashMap<String, usize>,
    /// (host, path) → index of the route that answers there.
    places: HashMap<(Option<HostPattern>, String), String>,
    /// `upstream_ca` as written → the bundle read from it.
    ca_bundles: HashMap<String, Arc<CaBundle>>,
}

/// Every `[[routes]]` entry, in file order; a route with a problem is left out (and reported).
pub(super) fn validate_routes(
    raw_routes: Vec<RawRoute>,
    context: &RouteContext,
    problems: &mut Problems,
) -> Vec<RouteConfig> {
    if raw_routes.is_empty() {
        problems.add(
            "routes",
            "no routes: add at least one [[routes]] with a path and an upstream",
        );
    }
    let mut seen = SeenRoutes::default();
    raw_routes
        .into_iter()
        .enumerate()
        .filter_map(|(i, raw)| validate_route(i, raw, context, &mut seen, problems))
        .collect()
}

/// `routes[i]`: every key checked, each problem under `routes[i].KEY`; `None` when one is invalid.
fn validate_route(
    i: usize,
    raw: RawRoute,
    context: &RouteContext,
    seen: &mut SeenRoutes,
    problems: &mut Problems,
) -> Option<RouteConfig> {
    let taken = raw
        .name
        .as_ref()
        .is_some_and(|name| seen.names.contains_key(name));
    let name = route_name(raw.name, i, &mut seen.names, problems);
    // Problems name the route as its author does: `routes["admin"]`, by index only when it has
    // no usable name of its own (none, a malformed one, or an earlier route's).
    let label = match &name {
        Some(name) if !taken => format!("routes[{name:?}]"),
        _ => format!("routes[{i}]"),
    };
    let key = |field: &str| format!("{label}.{field}");
    let host = route_host(raw.host.as_deref(), &key("host"), problems);
    let path = route_path(raw.path.as_deref(), context, &key("path"), problems);
    if raw.host.is_none() || host.is_some() {
        claim_place(&label, &host, &path, &mut seen.places, problems);
    }
    let upstream = route_upstream(raw.upstream.as_deref(), &key("upstream"), problems);
    let upstream_ca = raw.upstream_ca.and_then(|file| {
        upstream_ca(
            file,
            upstream.as_ref(),
            context,
            seen,
            &key("upstream_ca"),
            problems,
        )
    });
    let response_timeout = match raw.response_timeout.as_deref() {
        Some(text) => problems.check(key("response_timeout"), parse_duration(text)),
        None => context.response_timeout,
    };
    let max_request_body = match raw.max_request_body.as_deref() {
        Some(text) => problems.check(key("max_request_body"), parse_size(text)),
        None => context.max_request_body,
    };
    let auth = auth::validate_auth_mode(
        raw.auth.as_deref(),
        context.oidc_set,
        name.as_deref(),
        &key("auth"),
        problems,
    );
    let identity_headers = route_headers(raw.headers, context, &key("headers"), problems);
    let forward_access_token = raw
        .forward_access_token
        .unwrap_or(defaults::ROUTE_FORWARD_ACCESS_TOKEN);
    check_token_forwarding(
        forward_access_token,
        auth,
        &key("forward_access_token"),
        problems,
    );
    if raw.whoami == Some(true) && auth == Some(AuthMode::None) {
        problems.add(
            key("whoami"),
            "needs auth = \"required\" or \"optional\" (without a login there is no one to show)",
        );
    }
    let policy_keys = PolicyKeys {
        policy: raw.policy,
        policy_config: raw.policy_config,
        isolation: raw.isolation,
        may_set_identity_headers: raw.policy_may_set_identity_headers,
    };
    let policy = route_policy(
        policy_keys,
        identity_headers.as_deref(),
        context,
        &label,
        problems,
    )?;
    Some(RouteConfig {
        name: name?,
        host,
        path: path?,
        upstream: upstream?,
        upstream_ca,
        strip_prefix: raw.strip_prefix.unwrap_or(defaults::ROUTE_STRIP_PREFIX),
        preserve_host: raw.preserve_host.unwrap_or(defaults::ROUTE_PRESERVE_HOST),
        response_timeout: response_timeout?,
        max_request_body: max_request_body?,
        auth: auth?,
        identity_headers: identity_headers?,
        forward_access_token,
        whoami: raw.whoami,
        policy,
    })
}

/// `routes[i].name`: present, well-formed, and not the name of an earlier route.
fn route_name(
    raw: Option<String>,
    i: usize,
    names: &mut HashMap<String, usize>,
    problems: &mut Problems,
) -> Option<String> {
    let key = format!("routes[{i}].name");
    let Some(name) = raw else {
        problems.add(key, "missing: every route needs a unique name");
        return None;
    };
    problems.check(&key, check_route_name(&name))?;
    if let Some(first) = names.insert(name.clone(), i) {
        problems.add(
            key,
            format!("{name:?} is already the name of routes[{first}]"),
        );
    }
    Some(name)
}

/// `routes[i].host`: an exact or wildcard host name; `None` for any host, or when invalid.
fn route_host(raw: Option<&str>, key: &str, problems: &mut Problems) -> Option<HostPattern> {
    problems.check(key, parse_host_pattern(raw?))
}

/// `routes[i].path` in canonical form (lower-cased when routes ignore case).
fn route_path(
    raw: Option<&str>,
    context: &RouteContext,
    key: &str,
    problems: &mut Problems,
) -> Option<String> {
    let path = problems.check(key, parse_route_path(raw.unwrap_or(defaults::ROUTE_PATH)))?;
    Some(match context.case_insensitive {
        true => crate::canonical::fold_case(&path),
        false => path,
    })
}

/// Takes the route's (host, path) place; a problem when an earlier route has it, since only one
/// of them could ever match.
fn claim_place(
    label: &str,
    host: &Option<HostPattern>,
    path: &Option<String>,
    places: &mut HashMap<(Option<HostPattern>, String), String>,
    problems: &mut Problems,
) {
    if let Some(path) = path
        && let Some(first) = places.insert((host.clone(), path.clone()), label.to_owned())
    {
        problems.add(
            label,
            format!("same host and path as {first}; only one of them could ever match"),
        );
    }
}

/// `routes[i].upstream`: required, an http or https URL.
fn route_upstream(raw: Option<&str>, key: &str, problems: &mut Problems) -> Option<UpstreamUrl> {
    let Some(text) = raw else {
        problems.add(
            key,
            "missing: the URL requests are sent to, e.g. \"http://127.0.0.1:3000\"",
        );
        return None;
    };
    problems.check(key, parse_upstream(text))
}

/// `routes[i].upstream_ca`: only for an https upstream; each file is read once for all routes.
fn upstream_ca(
    file: String,
    upstream: Option<&UpstreamUrl>,
    context: &RouteContext,
    seen: &mut SeenRoutes,
    key: &str,
    problems: &mut Problems,
) -> Option<Arc<CaBundle>> {
    if upstream.is_some_and(|u| u.scheme != http::uri::Scheme::HTTPS) {
        problems.add(
            key,
            "only used with an https upstream; remove it or use https://",
        );
        return None;
    }
    if let Some(bundle) = seen.ca_bundles.get(&file) {
        return Some(bundle.clone());
    }
    let roots = problems.check(
        key,
        tls::load_ca_bundle(&context.base_dir.join(&file), &file),
    )?;
    let bundle = Arc::new(CaBundle {
        roots: Arc::new(roots),
    });
    seen.ca_bundles.insert(file, bundle.clone());
    Some(bundle)
}

/// `routes[i].headers`: the route's own identity headers, or `[headers]`.
fn route_headers(
    raw: Option<std::collections::BTreeMap<String, String>>,
    context: &RouteContext,
    key: &str,
    problems: &mut Problems,
) -> Option<Arc<IdentityHeaders>> {
    match raw {
        None => Some(context.identity_headers.clone()),
        Some(headers) => auth::validate_headers(Some(headers), key, problems).map(Arc::new),
    }
}

/// `routes[i].forward_access_token` needs a route with a login: there is no token without one.
fn check_token_forwarding(
    forward: bool,
    auth: Option<AuthMode>,
    key: &str,
    problems: &mut Problems,
) {
    if forward && auth == Some(AuthMode::None) {
        problems.add(
            key,
            "needs auth = \"required\" or \"optional\" (there is no token without a login)",
        );
    }
}

/// A route's policy keys, as written.
struct PolicyKeys {
    policy: Option<String>,
    policy_config: Option<toml::Table>,
    isolation: Option<String>,
    may_set_identity_headers: Option<bool>,
}

/// `routes[i].policy`, compiled with its `policy_config`: `Some(None)` for a route without one,
/// `None` when it does not compile (the route is then left out; the problem is reported). No
/// policy is compiled while the route's identity headers are invalid.
fn route_policy(
    keys: PolicyKeys,
    identity_headers: Option<&IdentityHeaders>,
    context: &RouteContext,
    label: &str,
    problems: &mut Problems,
) -> Option<Option<RoutePolicy>> {
    match (keys.policy, identity_headers) {
        (Some(file), Some(identity_headers)) => {
            let key = format!("{label}.policy");
            let written = policies::RoutePolicyKeys {
                key: &key,
                file: &file,
                base_dir: context.base_dir,
                config: keys.policy_config,
                isolation: keys.isolation.as_deref(),
                may_set_identity_headers: keys
                    .may_set_identity_headers
                    .unwrap_or(defaults::ROUTE_POLICY_MAY_SET_IDENTITY_HEADERS),
            };
            policies::compile_route_policy(written, identity_headers, &context.policies, problems)
                .map(Some)
        }
        (None, _) if keys.policy_config.is_some() => {
            problems.add(
                format!("{label}.policy_config"),
                "given, but the route has no policy",
            );
            Some(None)
        }
        _ => Some(None),
    }
}

fn check_route_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "use letters, digits, '-', '_' and '.' only: {name:?}"
        ))
    }
}

fn parse_host_pattern(text: &str) -> Result<HostPattern, String> {
    let lower = text.to_ascii_lowercase();
    let (wildcard, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let valid_name = !name.is_empty()
        && !name.starts_with('.')
        && !name.ends_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !valid_name {
        return Err(format!(
            "not a host name like \"app.example.com\" or \"*.example.com\" (no port, no scheme; a wildcard only as the first label): {text:?}"
        ));
    }
    Ok(if wildcard {
        HostPattern::Wildcard(format!(".{name}"))
    } else {
        HostPattern::Exact(name.to_owned())
    })
}

/// A route's path prefix in canonical form. Text may be written as people read it (`/données`);
/// anything else a request path would be canonicalised into must already be in canonical form.
fn parse_route_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("must start with '/': {text:?}"));
    }
    let canonical = CanonicalPath::parse(text, false)
        .map_err(|err| format!("not a usable path prefix ({err}): {text:?}"))?;
    let trimmed = canonical.decision().trim_end_matches('/');
    let prefix = if trimmed.is_empty() { "/" } else { trimmed };
    // A prefix must already be canonical, or it could never match a canonical request path.
    let written = crate::canonical::escape_raw_bytes(text);
    if prefix != written.trim_end_matches('/') && !(prefix == "/" && text == "/") {
        return Err(format!(
            "not in canonical form: write {prefix:?} instead of {text:?}"
        ));
    }
    if text.contains(';') {
        return Err(format!("a path prefix cannot contain ';': {text:?}"));
    }
    Ok(prefix.to_owned())
}

fn parse_upstream(text: &str) -> Result<UpstreamUrl, String> {
    let not_a_url = || format!("not a URL: {text:?}");
    let uri: Uri = text.parse().map_err(|_| not_a_url())?;
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(not_a_url());
    };
    if !matches!(scheme.as_str(), "http" | "https") {
        return Err(format!("scheme must be http or https: {text:?}"));
    }
    if authority.as_str().contains('@') {
        return Err(format!(
            "user and password in the URL are not supported: {:?}",
            authority.host()
        ));
    }
    if uri.query().is_some() {
        return Err(format!("an upstream URL cannot have a query: {text:?}"));
    }
    // A port that is not 1–65535 (`:99999`, `:`, `:0`) would otherwise be dropped (`Authority`
    // reads it as no port) and the connector would use the scheme's default: the route's traffic,
    // identity headers and all, would go to another service.
    let after_host = match authority.as_str().rsplit_once(']') {
        Some((_, rest)) => rest, // `[v6]:port`
        None => authority.as_str(),
    };
    if let Some((_, port)) = after_host.rsplit_once(':')
        && !matches!(port.parse::<u16>(), Ok(1..))
    {
        return Err(format!(
            "the port must be a number from 1 to 65535, not {port:?}: {text:?}"
        ));
    }
    Ok(UpstreamUrl {
        scheme: scheme.clone(),
        authority: authority.clone(),
        base_path: uri.path().trim_end_matches('/').to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        assert_eq!(
            parse_upstream("htp:/x").unwrap_err(),
            "not a URL: \"htp:/x\""
        );
        assert_eq!(
            parse_upstream("ftp://x").unwrap_err(),
            "scheme must be http or https: \"ftp://x\""
        );
        let url = parse_upstream("https://backend:8443/base/").unwrap();
        assert_eq!(url.base_path, "/base");
        assert_eq!(url.authority.as_str(), "backend:8443");
        assert_eq!(parse_upstream("http://b").unwrap().base_path, "");
        for (bad, says) in [
            ("http://127.0.0.1:99999", "from 1 to 65535"),
            ("http://127.0.0.1:65536/x", "from 1 to 65535"),
            ("http://backend:0", "from 1 to 65535"),
            ("https://backend:", "from 1 to 65535, not \"\""),
        ] {
            let err = parse_upstream(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(parse_upstream("http://[::1]:65535").is_ok());
    }

    #[test]
    fn route_paths_must_be_canonical() {
        assert_eq!(parse_route_path("/").unwrap(), "/");
        assert_eq!(parse_route_path("/api/").unwrap(), "/api");
        assert!(parse_route_path("/a/../b").is_err());
        assert!(parse_route_path("//a").is_err());
        assert!(parse_route_path("api").is_err());
        assert!(parse_route_path("/a;b").is_err());
        assert_eq!(parse_route_path("/données").unwrap(), "/donn%C3%A9es");
        assert_eq!(parse_route_path("/donn%C3%A9es").unwrap(), "/donn%C3%A9es");
        assert!(parse_route_path("/a\\b").is_err());
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            parse_host_pattern("App.Example.com").unwrap(),
            HostPattern::Exact("app.example.com".into())
        );
        assert_eq!(
            parse_host_pattern("*.example.com").unwrap(),
            HostPattern::Wildcard(".example.com".into())
        );
        for bad in ["a.*.com", "*", "app.example.com:80", "http://x", ""] {
            assert!(parse_host_pattern(bad).is_err(), "{bad}");
        }
    }
}
