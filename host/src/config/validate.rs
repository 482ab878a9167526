//! Checks a [`RawConfig`] all at once and resolves it into a [`Config`].
//!
//! Each check that fails adds a [`Problem`] with its key path and carries on, so a user fixes every
//! mistake in one round. Files the config names are read here too: `check` must catch an unreadable
//! certificate, not the first request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use ipnet::IpNet;

use super::auth::{self, AuthMode, IdentityHeaders};
use super::policies;
use super::raw::{RawConfig, RawRoute, RawServer};
use super::{
    CaBundle, Config, HostPattern, LogConfig, Problem, RouteConfig, ServerConfig, UpstreamUrl,
};
use crate::canonical::CanonicalPath;
use crate::policy::PolicyLoader;
use crate::tls;

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_DRAIN_TIMEOUT: &str = "30s";
/// Generous: far above what one instance serves, low enough that a flood of idle connections
/// cannot exhaust the file descriptors the upstream and session store need.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const DEFAULT_MAX_REQUEST_BODY: &str = "10MiB";
/// nginx closes idle keep-alive connections after 75 s; a minute keeps browsers' HTTP/2
/// connections while bounding how long a silent client holds a `max_connections` place.
const DEFAULT_CONNECTION_IDLE_TIMEOUT: &str = "60s";
const DEFAULT_CONNECT_TIMEOUT: &str = "5s";
const DEFAULT_RESPONSE_TIMEOUT: &str = "60s";
const DEFAULT_LOG_LEVEL: &str = "info";

/// Collects problems while validation goes on.
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    pub(super) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Records the error of `result` under `key` and returns its value, if any.
    pub(super) fn check<T>(
        &mut self,
        key: impl Into<String>,
        result: Result<T, String>,
    ) -> Option<T> {
        result.map_err(|message| self.add(key, message)).ok()
    }
}

pub(super) fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, Vec<Problem>> {
    let mut problems = Problems(Vec::new());
    let server = validate_server(raw.server, base_dir, &mut problems);
    let level = raw
        .log
        .level
        .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
    if let Err(err) = tracing_subscriber::EnvFilter::try_new(&level) {
        problems.add(
            "log.level",
            format!("not a log filter like \"info\" or \"portcullis=debug,warn\": {err}"),
        );
    }
    let oidc_set = raw.oidc.is_some();
    let mut raw_oidc = raw.oidc;
    let dev_idp_listen = raw
        .dev_idp
        .and_then(|dev_idp| validate_dev_idp_listen(dev_idp, raw_oidc.is_some(), &mut problems));
    if let (Some(listen), Some(oidc)) = (dev_idp_listen, raw_oidc.as_mut())
        && oidc.discovery.is_none()
    {
        oidc.discovery = Some(format!("http://{listen}/.well-known/openid-configuration"));
    }
    let mut oidc = raw_oidc.and_then(|oidc| auth::validate_oidc(oidc, base_dir, &mut problems));
    if let (Some(oidc), Some(server)) = (oidc.as_mut(), &server)
        && server.resolved.case_insensitive_routes
    {
        // Request paths are folded before the callback and logout paths are compared with them.
        oidc.callback_path = crate::canonical::fold_case(&oidc.callback_path);
        oidc.logout_path = crate::canonical::fold_case(&oidc.logout_path);
    }
    let dev_idp = match (dev_idp_listen, &oidc) {
        (Some(listen), Some(oidc)) => Some(super::DevIdpConfig {
            listen,
            client: crate::dev_idp::DevClient {
                id: oidc.client_id.clone(),
                secret: oidc
                    .client_secret
                    .as_ref()
                    .map(|secret| secret.expose().to_owned()),
                redirect_uri: oidc.redirect_uri.clone(),
                post_logout_redirect_uri: oidc.post_logout_redirect_uri.clone(),
            },
        }),
        _ => None,
    };
    let session = auth::validate_session(raw.session, base_dir, &mut problems);
    let identity_headers =
        auth::validate_headers(raw.headers, "headers", &mut problems).map(Arc::new);
    let policy_limits = policies::validate_limits(raw.policy_limits, &mut problems);
    let defaults = RouteDefaults {
        policies: PolicyLoader::new(
            policy_limits.clone(),
            policies::wasm_cache_dir(raw.wasm, base_dir, &mut problems),
        ),
        oidc_set,
        identity_headers: identity_headers
            .clone()
            .unwrap_or_else(|| Arc::new(IdentityHeaders::seed_default())),
    };
    let routes = validate_routes(raw.routes, &server, &defaults, base_dir, &mut problems);
    match (server, session, identity_headers, problems.0.is_empty()) {
        (Some(server), Some(session), Some(identity_headers), true) => Ok(Config {
            server: server.resolved,
            log: LogConfig { level },
            routes,
            oidc,
            session,
            identity_headers,
            policy_limits,
            dev_idp,
        }),
        _ => Err(problems.0),
    }
}

/// What routes inherit from the top-level login sections.
struct RouteDefaults {
    /// Loads every route's policy (one Rhai engine per config; `[wasm]` says where compiled
    /// Wasm policies are kept).
    policies: PolicyLoader,
    oidc_set: bool,
    identity_headers: Arc<IdentityHeaders>,
}

/// `[server]` plus the defaults routes inherit.
struct ServerWithDefaults {
    resolved: ServerConfig,
    response_timeout: Duration,
}

fn validate_server(
    raw: RawServer,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<ServerWithDefaults> {
    let listen_texts = raw
        .listen
        .map(|listen| listen.into_vec())
        .unwrap_or_else(|| vec![DEFAULT_LISTEN.to_owned()]);
    if listen_texts.is_empty() {
        problems.add(
            "server.listen",
            "needs at least one address, e.g. \"127.0.0.1:8080\"",
        );
    }
    let listen: Vec<SocketAddr> = listen_texts
        .iter()
        .enumerate()
        .filter_map(|(i, text)| {
            problems.check(format!("server.listen[{i}]"), parse_socket_addr(text))
        })
        .collect();
    let admin_listen = raw
        .admin_listen
        .and_then(|text| problems.check("server.admin_listen", parse_socket_addr(&text)));
    if let Some(admin) = admin_listen
        && admin.port() != 0
        && listen.contains(&admin)
    {
        problems.add(
            "server.admin_listen",
            format!(
                "{admin} is also a public listener; the admin endpoints must not be reachable there"
            ),
        );
    }
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, text)| {
            problems.check(format!("server.trusted_proxies[{i}]"), parse_ip_net(text))
        })
        .collect();
    let drain_timeout = duration(
        problems,
        "server.drain_timeout",
        raw.drain_timeout.as_deref(),
        DEFAULT_DRAIN_TIMEOUT,
    );
    let max_request_body = size(
        problems,
        "server.max_request_body",
        raw.max_request_body.as_deref(),
        DEFAULT_MAX_REQUEST_BODY,
    );
    let upstream_connect_timeout = duration(
        problems,
        "server.upstream_connect_timeout",
        raw.upstream_connect_timeout.as_deref(),
        DEFAULT_CONNECT_TIMEOUT,
    );
    let response_timeout = duration(
        problems,
        "server.upstream_response_timeout",
        raw.upstream_response_timeout.as_deref(),
        DEFAULT_RESPONSE_TIMEOUT,
    );
    let max_connections = match raw.max_connections {
        Some(0) => {
            problems.add(
                "server.max_connections",
                "must be at least 1 (it bounds open client connections)",
            );
            None
        }
        other => Some(other.unwrap_or(DEFAULT_MAX_CONNECTIONS)),
    };
    let connection_idle_timeout = duration(
        problems,
        "server.connection_idle_timeout",
        raw.connection_idle_timeout.as_deref(),
        DEFAULT_CONNECTION_IDLE_TIMEOUT,
    )
    .filter(|timeout| {
        let positive = !timeout.is_zero();
        if !positive {
            problems.add(
                "server.connection_idle_timeout",
                "must be longer than 0s (it is how long a silent connection is kept)",
            );
        }
        positive
    });
    let tls = match raw.tls {
        None => Some(None),
        Some(raw_tls) => {
            let certs = problems.check(
                "server.tls.cert",
                tls::read_cert_chain(&base_dir.join(&raw_tls.cert)),
            );
            let key = problems.check(
                "server.tls.key",
                tls::read_private_key(&base_dir.join(&raw_tls.key)),
            );
            match (certs, key) {
                (Some(certs), Some(key)) => problems
                    .check("server.tls.key", tls::server_config(certs, key))
                    .map(Some),
                _ => None,
            }
        }
    };
    Some(ServerWithDefaults {
        resolved: ServerConfig {
            listen,
            admin_listen,
            trusted_proxies,
            drain_timeout: drain_timeout?,
            max_request_body: max_request_body?,
            allow_encoded_slashes: raw.allow_encoded_slashes,
            case_insensitive_routes: raw.case_insensitive_routes,
            upstream_connect_timeout: upstream_connect_timeout?,
            tls: tls?,
            max_connections: max_connections?,
            connection_idle_timeout: connection_idle_timeout?,
        },
        response_timeout: response_timeout?,
    })
}

fn validate_routes(
    raw_routes: Vec<RawRoute>,
    server: &Option<ServerWithDefaults>,
    defaults: &RouteDefaults,
    base_dir: &Path,
    problems: &mut Problems,
) -> Vec<RouteConfig> {
    if raw_routes.is_empty() {
        problems.add(
            "routes",
            "no routes: add at least one [[routes]] with a path and an upstream",
        );
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut places: HashMap<(Option<HostPattern>, String), usize> = HashMap::new();
    let mut ca_bundles: HashMap<String, Arc<CaBundle>> = HashMap::new();
    let mut routes = Vec::new();
    for (i, raw) in raw_routes.into_iter().enumerate() {
        let key = |field: &str| format!("routes[{i}].{field}");
        let name = match raw.name {
            None => {
                problems.add(key("name"), "missing: every route needs a unique name");
                None
            }
            Some(name) => problems
                .check(key("name"), check_route_name(&name))
                .map(|()| name),
        };
        if let Some(name) = &name
            && let Some(first) = names.insert(name.clone(), i)
        {
            problems.add(
                key("name"),
                format!("{name:?} is already the name of routes[{first}]"),
            );
        }
        let host = raw
            .host
            .as_deref()
            .and_then(|host| problems.check(key("host"), parse_host_pattern(host)));
        let path = problems
            .check(
                key("path"),
                parse_route_path(raw.path.as_deref().unwrap_or("/")),
            )
            .map(|path| match server {
                Some(server) if server.resolved.case_insensitive_routes => {
                    crate::canonical::fold_case(&path)
                }
                _ => path,
            });
        if let Some(path) = &path
            && (raw.host.is_none() || host.is_some())
            && let Some(first) = places.insert((host.clone(), path.clone()), i)
        {
            problems.add(
                format!("routes[{i}]"),
                format!("same host and path as routes[{first}]; only one of them could ever match"),
            );
        }
        let upstream = match raw.upstream {
            None => {
                problems.add(
                    key("upstream"),
                    "missing: the URL requests are sent to, e.g. \"http://127.0.0.1:3000\"",
                );
                None
            }
            Some(text) => problems.check(key("upstream"), parse_upstream(&text)),
        };
        let upstream_ca = raw.upstream_ca.and_then(|ca_path| {
            if upstream
                .as_ref()
                .is_some_and(|u| u.scheme != http::uri::Scheme::HTTPS)
            {
                problems.add(
                    key("upstream_ca"),
                    "only used with an https upstream; remove it or use https://",
                );
                return None;
            }
            if let Some(bundle) = ca_bundles.get(&ca_path) {
                return Some(bundle.clone());
            }
            let roots = problems.check(
                key("upstream_ca"),
                tls::load_ca_bundle(&base_dir.join(&ca_path), &ca_path),
            )?;
            let bundle = Arc::new(CaBundle {
                path: ca_path.clone(),
                roots: Arc::new(roots),
            });
            ca_bundles.insert(ca_path, bundle.clone());
            Some(bundle)
        });
        let response_timeout = match raw.response_timeout.as_deref() {
            Some(text) => problems.check(key("response_timeout"), parse_duration(text)),
            None => server.as_ref().map(|s| s.response_timeout),
        };
        let max_request_body = match raw.max_request_body.as_deref() {
            Some(text) => problems.check(key("max_request_body"), parse_size(text)),
            None => server.as_ref().map(|s| s.resolved.max_request_body),
        };
        let auth = auth::validate_auth_mode(
            raw.auth.as_deref(),
            defaults.oidc_set,
            name.as_deref(),
            &key("auth"),
            problems,
        );
        let identity_headers = match raw.headers {
            None => Some(defaults.identity_headers.clone()),
            Some(headers) => {
                auth::validate_headers(Some(headers), &key("headers"), problems).map(Arc::new)
            }
        };
        if raw.forward_access_token && auth == Some(AuthMode::None) {
            problems.add(
                key("forward_access_token"),
                "needs auth = \"required\" or \"optional\" (there is no token without a login)",
            );
        }
        let policy = match (&raw.policy, &identity_headers) {
            (Some(file), Some(identity_headers)) => {
                let keys = policies::RoutePolicyKeys {
                    key: &key("policy"),
                    file,
                    base_dir,
                    config: raw.policy_config,
                    isolation: raw.isolation.as_deref(),
                    may_set_identity_headers: raw.policy_may_set_identity_headers,
                };
                let compiled = policies::compile_route_policy(
                    keys,
                    identity_headers,
                    &defaults.policies,
                    problems,
                );
                if compiled.is_none() {
                    continue;
                }
                compiled
            }
            (None, _) if raw.policy_config.is_some() => {
                problems.add(key("policy_config"), "given, but the route has no policy");
                None
            }
            _ => None,
        };
        if let (
            Some(name),
            Some(path),
            Some(upstream),
            Some(response_timeout),
            Some(max_request_body),
            Some(auth),
            Some(identity_headers),
        ) = (
            name,
            path,
            upstream,
            response_timeout,
            max_request_body,
            auth,
            identity_headers,
        ) {
            routes.push(RouteConfig {
                name,
                host,
                path,
                upstream,
                upstream_ca,
                strip_prefix: raw.strip_prefix,
                preserve_host: raw.preserve_host.unwrap_or(true),
                response_timeout,
                max_request_body,
                auth,
                identity_headers,
                forward_access_token: raw.forward_access_token,
                policy,
            });
        }
    }
    routes
}

/// `[dev_idp] listen`: a loopback address with a fixed port (the browser and `[oidc] discovery`
/// must reach it).
fn validate_dev_idp_listen(
    raw: super::raw::RawDevIdp,
    oidc_set: bool,
    problems: &mut Problems,
) -> Option<SocketAddr> {
    if !oidc_set {
        problems.add(
            "dev_idp",
            "registers the client of the [oidc] section: add [oidc] with client_id, client_secret and redirect_uri",
        );
        return None;
    }
    let text = raw.listen.unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let addr = problems.check("dev_idp.listen", parse_socket_addr(&text))?;
    if !addr.ip().is_loopback() {
        problems.add(
            "dev_idp.listen",
            format!("the development identity provider listens on loopback only (127.0.0.1 or [::1]): {text:?}"),
        );
        return None;
    }
    if addr.port() == 0 {
        problems.add(
            "dev_idp.listen",
            "needs a fixed port: browsers and [oidc] discovery must find it",
        );
        return None;
    }
    Some(addr)
}

fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("not an address like \"127.0.0.1:8080\" or \"[::1]:8080\": {text:?}"))
}

fn parse_ip_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("not an IP address or CIDR range like \"10.0.0.0/8\": {text:?}"))
}

pub(super) fn duration(
    problems: &mut Problems,
    key: &str,
    text: Option<&str>,
    default: &str,
) -> Option<Duration> {
    problems.check(key, parse_duration(text.unwrap_or(default)))
}

fn size(problems: &mut Problems, key: &str, text: Option<&str>, default: &str) -> Option<u64> {
    problems.check(key, parse_size(text.unwrap_or(default)))
}

pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err(format!("must be longer than zero: {text:?}")),
        Ok(duration) => Ok(duration),
        Err(_) => Err(format!(
            "not a duration like \"500ms\", \"30s\" or \"1h\": {text:?}"
        )),
    }
}

pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    match text.parse::<bytesize::ByteSize>() {
        Ok(size) if size.as_u64() == 0 => Err(format!("must be larger than zero: {text:?}")),
        Ok(size) => Ok(size.as_u64()),
        Err(_) => Err(format!(
            "not a size like \"512KiB\", \"10MiB\" or \"1GiB\": {text:?}"
        )),
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

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10MiB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("ten").is_err());
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("0s").is_err());
    }
}
