//! [`Snapshot`]: everything a request needs that was prepared from one config — routes, the route
//! table, upstream clients, TLS config, login — built once off the request path.
//!
//! A request takes the current snapshot once and keeps it to the end (see `crate::proxy::Proxy`).
//! [`Builder`] makes snapshots, at start and at every reload alike, and owns the parts that outlive
//! them: the upstream connection pools and the session store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{AuthMode, Config, OidcConfig, RouteConfig, ServerConfig, SessionConfig};
use crate::cookies::OwnCookieNames;
use crate::oidc::{Auth, Oidc};
use crate::policy::PolicyPool;
use crate::routes::RouteTable;
use crate::session::{SessionManager, SledStore, StoreError, SystemClock};
use crate::upstream::{Target, UpstreamClient, UpstreamPools};

/// One resolved config, ready to serve.
pub struct Snapshot {
    /// `[server]`.
    pub server: ServerConfig,
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
    /// Where its requests go (the upstream's scheme and authority).
    pub target: Target,
    /// The `Host` the upstream is sent unless `preserve_host`: its authority as configured.
    pub upstream_host: http::HeaderValue,
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
                let upstream_host = http::HeaderValue::from_str(config.upstream.authority.as_str())
                    .expect("an authority is a valid header value");
                let target = Target::new(
                    config.upstream.scheme == http::uri::Scheme::HTTPS,
                    config.upstream.authority.clone(),
                );
                Route {
                    config,
                    client,
                    prefix_segments,
                    target,
                    upstream_host,
                }
            })
            .collect();
        pools.keep_only_used();
        Snapshot {
            server: config.server,
            routes,
            table,
            identity_header_names,
            own_cookies,
            auth,
            policy_pool,
        }
    }
}

impl Snapshot {
    /// Why this snapshot cannot serve its routes as configured, if it cannot: a route needs a
    /// login (`auth = "required"`) and the identity provider has not been discovered. `None` when
    /// it can (`/readyz`).
    pub fn not_ready_because(&self) -> Option<String> {
        let auth = self.auth.as_ref()?;
        let needs_login = self
            .routes
            .iter()
            .any(|route| route.config.auth == AuthMode::Required);
        let status = auth.oidc.status();
        if !needs_login || status.discovered {
            return None;
        }
        Some(match status.last_error {
            Some(error) => format!(
                "the identity provider {} is not discovered yet ({} failed attempts); last error: {error}",
                status.issuer, status.failed_attempts
            ),
            None => format!(
                "the identity provider {} is not discovered yet (first attempt under way)",
                status.issuer
            ),
        })
    }
}

/// How long a changed `[oidc]`'s discovery may take before the reload is refused.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a config could not become a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The session store could not be opened.
    #[error("cannot open the {0}")]
    Sessions(#[from] StoreError),
    /// A changed `[oidc]`'s provider could not be discovered (reloads only).
    #[error(
        "[oidc] changed, but discovery at {url} {problem}; the previous provider settings stay"
    )]
    Discovery {
        /// The discovery document's address.
        url: String,
        /// What went wrong.
        problem: String,
    },
}

/// Builds snapshots from validated configs, at start and at each reload, with the parts of the
/// process that outlive a snapshot: upstream pools (their idle connections are reused) and the
/// session store (opened when a config first has `[oidc]`; a reload never reopens it).
#[derive(Default)]
pub struct Builder {
    pools: Mutex<UpstreamPools>,
    /// The store with the `[session]` settings it was opened with (changing those needs a
    /// restart).
    sessions: Mutex<Option<(Arc<SessionManager>, SessionConfig)>>,
    /// How long the session store may be held by another process when it is first opened:
    /// during a takeover, the process being replaced holds it until its drain ends.
    store_wait: Duration,
}

impl Builder {
    /// A builder whose first opening of the session store waits up to `store_wait` while
    /// another process holds it (`portcullis run --takeover`).
    pub fn waiting_for_the_store(store_wait: Duration) -> Self {
        Builder {
            store_wait,
            ..Builder::default()
        }
    }

    /// The snapshot of `config`. `serving` is the snapshot it replaces (`None` at start).
    ///
    /// Login: an unchanged `[oidc]` keeps the running relying party; at start, discovery begins
    /// in the background (the proxy serves while the provider comes up); on a reload, a new or
    /// changed `[oidc]` is discovered first, so a provider that does not answer refuses the
    /// reload and leaves no trace (such as an opened store). Must run inside a tokio runtime.
    pub async fn build(
        &self,
        config: Config,
        serving: Option<&Snapshot>,
    ) -> Result<Snapshot, BuildError> {
        let running = serving.and_then(|snapshot| snapshot.auth.as_ref());
        let auth = match (&config.oidc, running) {
            (None, _) => None,
            (Some(wanted), Some(running)) if running.oidc.config() == wanted => {
                Some(running.clone())
            }
            (Some(wanted), _) => {
                let oidc = Arc::new(Oidc::new(wanted.clone()));
                if serving.is_none() {
                    oidc.start_discovery();
                } else {
                    discover(&oidc, wanted).await?;
                }
                let sessions = self.sessions(&config.session).await?;
                Some(Arc::new(Auth::new(oidc, sessions)))
            }
        };
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Snapshot::build(config, auth, &mut pools))
    }

    /// The `[session]` settings the store was opened with, once it is open.
    pub fn sessions_opened_with(&self) -> Option<SessionConfig> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.as_ref().map(|(_, settings)| settings.clone())
    }

    /// The session store, opened with `settings` the first time it is needed; while another
    /// process holds it, tried again every 100 ms for up to `store_wait`.
    async fn sessions(&self, settings: &SessionConfig) -> Result<Arc<SessionManager>, StoreError> {
        if let Some((open, _)) = &*self.sessions.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(open.clone());
        }
        let give_up = std::time::Instant::now() + self.store_wait;
        let mut said = false;
        let manager = loop {
            match SessionManager::open(settings, Arc::new(SystemClock)) {
                Ok(manager) => break Arc::new(manager),
                Err(err) if SledStore::is_in_use(&err) && std::time::Instant::now() < give_up => {
                    if !said {
                        tracing::info!(
                            wait = ?self.store_wait,
                            "the session store is held by the process being replaced; waiting for it to let go (send that process SIGTERM)"
                        );
                        said = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => return Err(err),
            }
        };
        if said {
            tracing::info!("the session store is open: taking over");
        }
        manager.spawn_sweeper(settings.sweep_interval);
        if settings.store.is_shared() {
            // Said at start, where the operator looks, rather than only in the 503s that follow.
            let probed = manager.clone();
            tokio::spawn(async move {
                if let Err(err) = probed.probe().await {
                    tracing::error!(error = %err, "the session store does not work yet: requests that need a session get 503 until it does (`portcullis check` tells more)");
                }
            });
        }
        *self.sessions.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((manager.clone(), settings.clone()));
        Ok(manager)
    }
}

/// Discovers a new or changed provider before anything is swapped.
async fn discover(oidc: &Oidc, config: &OidcConfig) -> Result<(), BuildError> {
    let problem = match tokio::time::timeout(DISCOVERY_TIMEOUT, oidc.discover_now()).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(err)) => format!("failed: {err}"),
        Err(_) => format!("did not answer within {DISCOVERY_TIMEOUT:?}"),
    };
    Err(BuildError::Discovery {
        url: config.discovery_url.to_string(),
        problem,
    })
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
