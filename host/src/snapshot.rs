//! [`Snapshot`]: everything a request needs that was prepared from one config — routes, the route
//! table, upstream clients, TLS config, login — built once off the request path.
//!
//! A request takes the current snapshot once and keeps it to the end (see [`crate::proxy::Proxy`]).

use std::sync::Arc;

use crate::config::{Config, LogConfig, RouteConfig, ServerConfig};
use crate::cookies::OwnCookieNames;
use crate::oidc::Auth;
use crate::policy::PolicyPool;
use crate::upstream::{UpstreamClient, UpstreamPools};
use crate::routes::RouteTable;

/// One resolved config, ready to serve.
pub struct Snapshot {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// Routes; a [`crate::routes::RouteId`] indexes this list.
    pub routes: Vec<Route>,
    /// Host and path → route.
    pub table: RouteTable,
    /// Every configured identity header name outside `X-Auth-*`, lower case with `-` for `_`
    /// ([`crate::header_ownership::normalise`]): stripped from client requests on every route, in
    /// every spelling, together with anything starting with `X-Auth-`.
    pub identity_header_names: Vec<String>,
    /// Portcullis's own cookie names (the configured ones, those of the running session store,
    /// and the defaults), taken out of every request's `Cookie` headers and refused in every
    /// upstream's `Set-Cookie`, with or without `[oidc]`.
    pub own_cookies: OwnCookieNames,
    /// Login and sessions, when `[oidc]` is configured. The sessions are the process's (a reload
    /// never touches them); the relying party is rebuilt when `[oidc]` changes.
    pub auth: Option<Arc<Auth>>,
    /// The threads this snapshot's policies run on (`policy_limits.threads`), started on first
    /// use and ended when the snapshot is dropped: a reload's new size applies to its requests.
    pub policy_pool: PolicyPool,
}

/// A route with what serving it needs.
pub struct Route {
    /// The route's config.
    pub config: RouteConfig,
    /// The pooled client for its upstream (shared with routes of the same trust roots).
    pub client: UpstreamClient,
    /// Segments in the route's path (`/` has 0, `/api/v1` has 2), removed by `strip_prefix`.
    prefix_segments: usize,
}

impl Snapshot {
    /// A snapshot without login and with upstream clients of its own (tests, embedding).
    pub fn new(config: Config) -> Self {
        Snapshot::build(config, None, &mut UpstreamPools::default())
    }

    /// Builds the snapshot for a validated config, with login `auth` and upstream clients from the
    /// process's `pools`. Cannot fail: everything that can was checked while loading the config.
    pub fn build(config: Config, auth: Option<Arc<Auth>>, pools: &mut UpstreamPools) -> Self {
        let table = RouteTable::new(&config.routes);
        let mut identity_header_names: Vec<String> = config
            .routes
            .iter()
            .flat_map(|route| route.identity_headers.0.iter())
            .chain(config.identity_headers.0.iter())
            .map(|(name, _)| crate::header_ownership::normalise(name.as_str()))
            .filter(|name| crate::header_ownership::classify(name).is_none())
            .collect();
        identity_header_names.sort();
        identity_header_names.dedup();
        // A reload cannot change the running store's cookie name (that needs a restart), but the
        // file's name is stripped as well: a name that is ours by either account never passes.
        let own_cookies = OwnCookieNames::new(
            std::iter::once(config.session.cookie_name.as_str()).chain(
                auth.as_ref()
                    .map(|auth| auth.sessions.config().cookie_name.as_str()),
            ),
        );
        let policy_pool = PolicyPool::new(&config.policy_limits);
        let connect_timeout = config.server.upstream_connect_timeout;
        let routes = config
            .routes
            .into_iter()
            .map(|config| {
                let roots = config.upstream_ca.as_ref().map(|bundle| &bundle.roots);
                let client = pools.client(roots, connect_timeout);
                let prefix_segments = config.path.split('/').filter(|s| !s.is_empty()).count();
                Route {
                    config,
                    client,
                    prefix_segments,
                }
            })
            .collect();
        pools.keep_only_used();
        Snapshot {
            server: config.server,
            log: config.log,
            routes,
            table,
            identity_header_names,
            own_cookies,
            auth,
            policy_pool,
        }
    }
}

impl Route {
    /// The path and query to request upstream for a canonical forward path.
    pub fn upstream_path_and_query(&self, forward_path: &str, query: Option<&str>) -> String {
        let path = if self.config.strip_prefix {
            skip_segments(forward_path, self.prefix_segments)
        } else {
            forward_path
        };
        let base = &self.config.upstream.base_path;
        let mut out =
            String::with_capacity(base.len() + path.len() + query.map_or(0, |q| q.len() + 1));
        out.push_str(base);
        out.push_str(path);
        if let Some(query) = query {
            out.push('?');
            out.push_str(query);
        }
        out
    }
}

/// `/a;x/b/c` without its first `n` segments (`/b/c` for n = 1); `/` when nothing is left.
fn skip_segments(path: &str, n: usize) -> &str {
    let mut rest = path;
    for _ in 0..n {
        rest = match rest[1..].find('/') {
            Some(at) => &rest[at + 1..],
            None => return "/",
        };
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_segments_keeps_the_rest_and_its_slashes() {
        assert_eq!(skip_segments("/api/users", 1), "/users");
        assert_eq!(skip_segments("/api", 1), "/");
        assert_eq!(skip_segments("/api/", 1), "/");
        assert_eq!(skip_segments("/api;v=1/v2/x", 2), "/x");
        assert_eq!(skip_segments("/a/b", 0), "/a/b");
    }

    #[test]
    fn upstream_paths_combine_base_prefix_and_query() {
        let text = r#"
            [[routes]]
            name = "api"
            path = "/api"
            upstream = "http://127.0.0.1:1/v1/"
            auth = "none"
            strip_prefix = true
        "#;
        let config = crate::config::parse(text, std::path::Path::new(".")).unwrap();
        let snapshot = Snapshot::new(config);
        let route = &snapshot.routes[0];
        assert_eq!(
            route.upstream_path_and_query("/api/users", Some("a=1")),
            "/v1/users?a=1"
        );
        assert_eq!(route.upstream_path_and_query("/api", None), "/v1/");
    }
}
