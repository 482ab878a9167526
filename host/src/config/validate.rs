//! Checks a [`RawConfig`] all at once and resolves it into a [`Config`].
//!
//! Each check that fails adds a [`Problem`] with its key path and carries on, so a user fixes every
//! mistake in one round. Files the config names are read here too: `check` must catch an unreadable
//! certificate, not the first request. Sections are checked in file order, each by its own
//! function (`[[routes]]` in `route.rs`, the login sections in `auth.rs`, the policy sections in
//! `policies.rs`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::auth::{self, IdentityHeaders, OidcConfig};
use super::check::{Problems, duration, parse_socket_addr, size};
use super::defaults;
use super::policies;
use super::raw::{OneOrMany, RawConfig, RawDevIdp, RawLog, RawOidc, RawServer, RawTls};
use super::route::{self, RouteContext};
use super::{Config, DevClient, DevIdpConfig, LogConfig, Problem, ServerConfig};
use crate::policy::PolicyLoader;
use crate::tls;

pub(super) fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, Vec<Problem>> {
    let mut problems = Problems::new();
    let server = validate_server(raw.server, base_dir, &mut problems);
    let log = validate_log(raw.log, &mut problems);
    let oidc_set = raw.oidc.is_some();
    let case_insensitive = server
        .as_ref()
        .is_some_and(|server| server.resolved.case_insensitive_routes);
    let (oidc, dev_idp) = validate_login(
        raw.oidc,
        raw.dev_idp,
        case_insensitive,
        base_dir,
        &mut problems,
    );
    let session = auth::validate_session(raw.session, base_dir, &mut problems);
    let identity_headers =
        auth::validate_headers(raw.headers, "headers", &mut problems).map(Arc::new);
    let policy_limits = policies::validate_limits(raw.policy_limits, &mut problems);
    let context = RouteContext {
        policies: PolicyLoader::new(
            policy_limits.clone(),
            policies::wasm_cache_dir(raw.wasm, base_dir, &mut problems),
        ),
        oidc_set,
        identity_headers: identity_headers
            .clone()
            .unwrap_or_else(|| Arc::new(IdentityHeaders::seed_default())),
        response_timeout: server.as_ref().map(|server| server.response_timeout),
        max_request_body: server
            .as_ref()
            .map(|server| server.resolved.max_request_body),
        case_insensitive,
        base_dir,
    };
    let routes = route::validate_routes(raw.routes, &context, &mut problems);
    if let (Some(dev_idp), Some(server)) = (&dev_idp, &server) {
        dev_idp_port_is_its_own(dev_idp.listen, &server.resolved, &mut problems);
    }
    match (server, session, identity_headers, problems.is_empty()) {
        (Some(server), Some(session), Some(identity_headers), true) => Ok(Config {
            server: server.resolved,
            log,
            routes,
            oidc,
            session,
            identity_headers,
            policy_limits,
            dev_idp,
        }),
        _ => Err(problems.into_vec()),
    }
}

/// `[server]` plus the default routes inherit that the resolved config does not keep.
struct ServerWithDefaults {
    resolved: ServerConfig,
    /// `server.upstream_response_timeout`, for routes without `response_timeout`.
    response_timeout: Duration,
}

/// `[server]`: every key checked; `None` when one of them is invalid.
fn validate_server(
    raw: RawServer,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<ServerWithDefaults> {
    let listen = listen_addresses(raw.listen, problems);
    let admin_listen = raw
        .admin_listen
        .and_then(|text| admin_address(&text, &listen, problems));
    let trusted_proxies = trusted_proxies(raw.trusted_proxies, problems);
    let drain_timeout = duration(
        problems,
        "server.drain_timeout",
        raw.drain_timeout.as_deref(),
        defaults::SERVER_DRAIN_TIMEOUT,
    );
    let max_request_body = size(
        problems,
        "server.max_request_body",
        raw.max_request_body.as_deref(),
        defaults::SERVER_MAX_REQUEST_BODY,
    );
    let upstream_connect_timeout = duration(
        problems,
        "server.upstream_connect_timeout",
        raw.upstream_connect_timeout.as_deref(),
        defaults::SERVER_UPSTREAM_CONNECT_TIMEOUT,
    );
    let response_timeout = duration(
        problems,
        "server.upstream_response_timeout",
        raw.upstream_response_timeout.as_deref(),
        defaults::SERVER_UPSTREAM_RESPONSE_TIMEOUT,
    );
    let max_connections = max_connections(raw.max_connections, problems);
    let connection_idle_timeout = duration(
        problems,
        "server.connection_idle_timeout",
        raw.connection_idle_timeout.as_deref(),
        defaults::SERVER_CONNECTION_IDLE_TIMEOUT,
    );
    let workers = workers(raw.workers, problems);
    let tls = match raw.tls {
        None => Some(None),
        Some(raw_tls) => server_tls(raw_tls, base_dir, problems).map(Some),
    };
    Some(ServerWithDefaults {
        resolved: ServerConfig {
            listen,
            admin_listen,
            trusted_proxies,
            drain_timeout: drain_timeout?,
            max_request_body: max_request_body?,
            allow_encoded_slashes: raw
                .allow_encoded_slashes
                .unwrap_or(defaults::SERVER_ALLOW_ENCODED_SLASHES),
            case_insensitive_routes: raw
                .case_insensitive_routes
                .unwrap_or(defaults::SERVER_CASE_INSENSITIVE_ROUTES),
            upstream_connect_timeout: upstream_connect_timeout?,
            tls: tls?,
            max_connections: max_connections?,
            connection_idle_timeout: connection_idle_timeout?,
            workers: workers?,
        },
        response_timeout: response_timeout?,
    })
}

/// `server.listen`: at least one address; the valid ones (each invalid one is a problem).
fn listen_addresses(raw: Option<OneOrMany>, problems: &mut Problems) -> Vec<SocketAddr> {
    let texts = raw
        .map(OneOrMany::into_vec)
        .unwrap_or_else(|| vec![defaults::SERVER_LISTEN.to_owned()]);
    if texts.is_empty() {
        problems.add(
            "server.listen",
            "needs at least one address, e.g. \"127.0.0.1:8080\"",
        );
    }
    let mut listen: Vec<SocketAddr> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let Some(addr) = problems.check(format!("server.listen[{i}]"), parse_socket_addr(text))
        else {
            continue;
        };
        match listen.iter().find(|earlier| same_port(**earlier, addr)) {
            Some(earlier) => problems.add(
                format!("server.listen[{i}]"),
                format!("{addr} takes the same port as {earlier}, listed before it: only one of them can be bound"),
            ),
            None => listen.push(addr),
        }
    }
    listen
}

/// Whether two listeners would ask for the same port: the same address, or the same family with
/// one of them on every address (`0.0.0.0`, `[::]`). IPv6 listeners are IPv6 only, so `[::]:P`
/// and `0.0.0.0:P` do not clash. Port 0 never clashes (each gets a port of its own).
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `server.admin_listen`: an address that is not also a public listener (port 0 excepted: each
/// listener then gets a port of its own).
fn admin_address(text: &str, listen: &[SocketAddr], problems: &mut Problems) -> Option<SocketAddr> {
    let admin = problems.check("server.admin_listen", parse_socket_addr(text))?;
    if admin.port() != 0 && listen.contains(&admin) {
        problems.add(
            "server.admin_listen",
            format!(
                "{admin} is also a public listener; the admin endpoints must not be reachable there"
            ),
        );
    } else if let Some(public) = listen.iter().find(|public| same_port(**public, admin)) {
        problems.add(
            "server.admin_listen",
            format!("{admin} takes the same port as the public listener {public}: only one of them can be bound"),
        );
    }
    Some(admin)
}

/// `server.trusted_proxies`: the valid entries (each invalid one is a problem).
fn trusted_proxies(raw: Option<Vec<String>>, problems: &mut Problems) -> Vec<IpNet> {
    let texts = raw.unwrap_or_else(|| {
        defaults::SERVER_TRUSTED_PROXIES
            .iter()
            .map(|proxy| (*proxy).to_owned())
            .collect()
    });
    texts
        .iter()
        .enumerate()
        .filter_map(|(i, text)| {
            problems.check(format!("server.trusted_proxies[{i}]"), parse_ip_net(text))
        })
        .collect()
}

/// `server.max_connections`: at least 1.
fn max_connections(raw: Option<usize>, problems: &mut Problems) -> Option<usize> {
    match raw.unwrap_or(defaults::SERVER_MAX_CONNECTIONS) {
        0 => {
            problems.add(
                "server.max_connections",
                "must be at least 1 (it bounds open client connections)",
            );
            None
        }
        max => Some(max),
    }
}

/// Most `server.workers` a config may ask for.
const MAX_WORKERS: usize = 1024;

/// `server.workers`: 1 to [`MAX_WORKERS`]; absent, the cores this process may use (its CPU
/// affinity, as `taskset` or a container's cpuset sets it).
fn workers(raw: Option<usize>, problems: &mut Problems) -> Option<usize> {
    match raw {
        None => Some(std::thread::available_parallelism().map_or(1, usize::from)),
        Some(workers @ 1..=MAX_WORKERS) => Some(workers),
        Some(_) => {
            problems.add(
                "server.workers",
                format!("must be from 1 to {MAX_WORKERS} (threads serving connections; leave it out for one per core)"),
            );
            None
        }
    }
}

/// `[server.tls]`: the certificate chain and key read, and a TLS configuration made of them.
fn server_tls(
    raw: RawTls,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<Arc<rustls::ServerConfig>> {
    let certs = problems.check(
        "server.tls.cert",
        tls::read_cert_chain(&base_dir.join(&raw.cert)),
    );
    let key = problems.check(
        "server.tls.key",
        tls::read_private_key(&base_dir.join(&raw.key)),
    );
    problems.check("server.tls.key", tls::server_config(certs?, key?))
}

/// `[log]`: the level is a valid tracing filter.
fn validate_log(raw: RawLog, problems: &mut Problems) -> LogConfig {
    let level = raw.level.unwrap_or_else(|| defaults::LOG_LEVEL.to_owned());
    if let Err(err) = tracing_subscriber::EnvFilter::try_new(&level) {
        problems.add(
            "log.level",
            format!("not a log filter like \"info\" or \"portcullis=debug,warn\": {err}"),
        );
    }
    LogConfig { level }
}

/// `[dev_idp]` and `[oidc]`: the development provider (whose discovery URL `[oidc]` defaults to)
/// and the login, with the provider registered for the login's client.
fn validate_login(
    raw_oidc: Option<RawOidc>,
    raw_dev_idp: Option<RawDevIdp>,
    case_insensitive: bool,
    base_dir: &Path,
    problems: &mut Problems,
) -> (Option<OidcConfig>, Option<DevIdpConfig>) {
    let dev_idp_listen = raw_dev_idp
        .and_then(|dev_idp| validate_dev_idp_listen(dev_idp, raw_oidc.is_some(), problems));
    let oidc = raw_oidc.and_then(|mut oidc| {
        if let Some(listen) = dev_idp_listen {
            oidc.discovery
                .get_or_insert_with(|| format!("http://{listen}/.well-known/openid-configuration"));
        }
        auth::validate_oidc(oidc, base_dir, problems)
    });
    let oidc = oidc.map(|oidc| match case_insensitive {
        true => fold_login_paths(oidc),
        false => oidc,
    });
    let dev_idp = dev_idp_listen
        .zip(oidc.as_ref())
        .map(|(listen, oidc)| dev_idp_config(listen, oidc));
    (oidc, dev_idp)
}

/// The callback and logout paths lower-cased, as request paths are before they are compared
/// with them when routes ignore case.
fn fold_login_paths(mut oidc: OidcConfig) -> OidcConfig {
    oidc.callback_path = crate::canonical::fold_case(&oidc.callback_path);
    oidc.logout_path = crate::canonical::fold_case(&oidc.logout_path);
    oidc
}

/// The development provider at `listen`, registering `[oidc]`'s client.
fn dev_idp_config(listen: SocketAddr, oidc: &OidcConfig) -> DevIdpConfig {
    DevIdpConfig {
        listen,
        client: DevClient {
            id: oidc.client_id.clone(),
            secret: oidc
                .client_secret
                .as_ref()
                .map(|secret| secret.expose().to_owned()),
            redirect_uri: oidc.redirect_uri.clone(),
            post_logout_redirect_uri: oidc.post_logout_redirect_uri.clone(),
        },
    }
}

/// `[dev_idp] listen` may not ask for a port a listener of `[server]` takes: `check` would pass a
/// config that cannot start.
fn dev_idp_port_is_its_own(listen: SocketAddr, server: &ServerConfig, problems: &mut Problems) {
    let taken = server
        .listen
        .iter()
        .map(|addr| ("server.listen", *addr))
        .chain(
            server
                .admin_listen
                .map(|addr| ("server.admin_listen", addr)),
        )
        .find(|(_, addr)| same_port(*addr, listen));
    if let Some((key, addr)) = taken {
        problems.add(
            "dev_idp.listen",
            format!("{listen} takes the same port as {key} ({addr}): give the development provider a port of its own"),
        );
    }
}

/// `[dev_idp] listen`: a loopback address with a fixed port (the browser and `[oidc] discovery`
/// must reach it).
fn validate_dev_idp_listen(
    raw: RawDevIdp,
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
    let text = raw
        .listen
        .unwrap_or_else(|| defaults::DEV_IDP_LISTEN.to_owned());
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

fn parse_ip_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("not an IP address or CIDR range like \"10.0.0.0/8\": {text:?}"))
}
