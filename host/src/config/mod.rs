//! Configuration: TOML file → raw serde mirror (`raw.rs`) → checked, resolved [`Config`] (`validate.rs`,
//! with `route.rs` for `[[routes]]`, `auth.rs` for the login sections and `policies.rs` for the
//! policy sections). Every default is in `defaults.rs`; `check.rs` holds what the sections share.
//!
//! [`load`] (and [`parse`], for text already read) is the only way in: `portcullis check`, start-up
//! and reloads all go through it, so they accept exactly the same files. Every problem is reported at
//! once with its key path.

mod auth;
mod check;
mod defaults;
mod load;
mod policies;
mod raw;
mod redis;
mod route;
pub mod secret;
mod validate;

pub use auth::{
    AuthMode, ClientAuth, IdentityHeaders, OidcConfig, SESSION_SECRET_ENV, Sealing, SecretSource,
    SessionConfig, StoreKind, Unauthenticated,
};
pub use load::{ParseError, load, load_text, parse, referenced_files};
pub use redis::{RedisConfig, RedisTarget, RedisUrl};

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use ipnet::IpNet;

/// A loaded, valid configuration. Files it names (certificates, CA bundles) are already read.
#[derive(Debug)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[[routes]]`, in file order.
    pub routes: Vec<RouteConfig>,
    /// `[oidc]`, when login is configured.
    pub oidc: Option<OidcConfig>,
    /// `[session]` (defaults when absent).
    pub session: SessionConfig,
    /// `[headers]`: the default identity headers of routes.
    pub identity_headers: Arc<IdentityHeaders>,
    /// `[policy_limits]`.
    pub policy_limits: crate::policy::PolicyLimits,
    /// `[dev_idp]`: the development identity provider to start, registered for `[oidc]`'s client.
    pub dev_idp: Option<DevIdpConfig>,
}

impl Config {
    /// What the config allows but its author probably did not mean: printed by `check` (which
    /// still passes) and logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        // Browsers treat localhost as a secure origin: Secure cookies come back there.
        let local =
            |url: &url::Url| matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        if let Some(oidc) = &self.oidc
            && self.session.cookie_secure
            && oidc.redirect_uri.scheme() == "http"
            && !local(&oidc.redirect_uri)
        {
            warnings.push(format!(
                "session.cookie_secure is true (the default) but oidc.redirect_uri is plain HTTP ({}): browsers keep Secure cookies away from plain-HTTP sites, so logins fail at the callback. Serve HTTPS with an https redirect_uri, or set [session] cookie_secure = false for plain-HTTP local use",
                oidc.redirect_uri
            ));
        }
        warnings
    }

    /// Why this config must not start without `--dev`: a `[dev_idp]` (a demo provider with
    /// public passwords) beside an `[oidc] discovery` that names another provider — a demo
    /// section left in a real config. `None` when there is none, or when logins use it.
    pub fn dev_idp_beside_a_real_provider(&self) -> Option<String> {
        let (dev, oidc) = (self.dev_idp.as_ref()?, self.oidc.as_ref()?);
        let own = format!("http://{}/.well-known/openid-configuration", dev.listen);
        (oidc.discovery_url.as_str() != own).then(|| {
            format!(
                "[dev_idp] starts a demo identity provider with public passwords on {}, beside [oidc] discovery = {:?}: remove [dev_idp] from a real config, or give --dev to run both on purpose",
                dev.listen,
                oidc.discovery_url.as_str()
            )
        })
    }
}

/// `[dev_idp]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DevIdpConfig {
    /// Where it listens (loopback, fixed port).
    pub listen: SocketAddr,
    /// The one client it knows: `[oidc]`'s.
    pub client: DevClient,
}

/// The one client the development provider knows: the config's `[oidc]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct DevClient {
    /// `client_id`.
    pub id: String,
    /// `client_secret` (none: a public client, PKCE only).
    pub secret: Option<String>,
    /// The registered `redirect_uri`.
    pub redirect_uri: url::Url,
    /// The registered `post_logout_redirect_uri`.
    pub post_logout_redirect_uri: Option<url::Url>,
}

/// `[server]`, resolved.
#[derive(Debug)]
pub struct ServerConfig {
    /// Public listeners (at least one).
    pub listen: Vec<SocketAddr>,
    /// Admin listener for health checks.
    pub admin_listen: Option<SocketAddr>,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Grace period for in-flight requests at shutdown.
    pub drain_timeout: Duration,
    /// Default request-body limit in bytes.
    pub max_request_body: u64,
    /// Whether `%2F`/`%5C` inside a path segment is accepted.
    pub allow_encoded_slashes: bool,
    /// Whether routes match without regard to case; request paths are then lower-cased (for the
    /// decision and upstream alike) and route paths were lower-cased when loaded.
    pub case_insensitive_routes: bool,
    /// Upstream TCP + TLS connect timeout.
    pub upstream_connect_timeout: Duration,
    /// TLS termination, ready to use; `None` for plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Open client connections served at once on the public listeners.
    pub max_connections: usize,
    /// A client connection with no request in flight for this long is closed.
    pub connection_idle_timeout: Duration,
    /// Threads serving client connections (each its own event loop and listening sockets).
    pub workers: usize,
}

/// `[log]`, resolved.
#[derive(Debug)]
pub struct LogConfig {
    /// A valid tracing filter directive.
    pub level: String,
}

/// One route, resolved.
#[derive(Debug)]
pub struct RouteConfig {
    /// Unique name used in logs.
    pub name: String,
    /// Which hosts the route answers for; `None` for any.
    pub host: Option<HostPattern>,
    /// Canonical path prefix without a trailing slash (`/` for the root).
    pub path: String,
    /// Where matching requests are sent.
    pub upstream: UpstreamUrl,
    /// CA certificates for an https upstream; `None` means the public web roots.
    pub upstream_ca: Option<Arc<CaBundle>>,
    /// Remove `path` before forwarding.
    pub strip_prefix: bool,
    /// Forward the client's Host header.
    pub preserve_host: bool,
    /// Time allowed for the upstream's response headers.
    pub response_timeout: Duration,
    /// Request-body limit in bytes.
    pub max_request_body: u64,
    /// Whether a login is required, optional or not used.
    pub auth: AuthMode,
    /// Identity headers set for this route's upstream.
    pub identity_headers: Arc<IdentityHeaders>,
    /// Send the access token upstream as `Authorization: Bearer`.
    pub forward_access_token: bool,
    /// Serve `/.portcullis/whoami` here; `None`: as `[oidc] whoami` says.
    pub whoami: Option<bool>,
    /// The route's policy, compiled, with the rules its output must follow.
    pub policy: Option<RoutePolicy>,
}

/// A route's compiled policy and the checks its decisions pass.
#[derive(Debug)]
pub struct RoutePolicy {
    /// The compiled policy (with the route's `policy_config` bound).
    pub policy: crate::policy::Policy,
    /// What headers its decisions may set.
    pub rules: crate::policy::OutputRules,
    /// On the workers, or moved to the policy threads after running long.
    pub placement: crate::policy::Placement,
}

/// The `host` of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `app.example.com` (lower case).
    Exact(String),
    /// `*.example.com`: stored as the suffix `.example.com`; matches one or more labels before it.
    Wildcard(String),
}

/// An upstream URL split into the parts each request reuses.
#[derive(Debug, Clone)]
pub struct UpstreamUrl {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port` as written.
    pub authority: Authority,
    /// Path prefix put before every forwarded path, without a trailing slash (`""` for none).
    pub base_path: String,
}

/// CA certificates read from a route's `upstream_ca` file.
#[derive(Debug)]
pub struct CaBundle {
    /// The trust anchors it holds.
    pub roots: Arc<rustls::RootCertStore>,
}

/// Why a config file was refused. Its `Display` is what `portcullis check` prints.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The config file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type (the TOML parser stops at the first).
    Syntax {
        /// The config file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// Well-formed, but with values that cannot work: all of them, each with its key path.
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

/// One invalid value: where (`routes[2].upstream`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `server.listen[1]` or `routes[2].upstream`.
    pub key: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Syntax { path, message } => {
                write!(
                    f,
                    "config file {} is not valid TOML for Portcullis:\n{}",
                    path.display(),
                    message.trim_end()
                )
            }
            ConfigError::Invalid { path, problems } => {
                let count = problems.len();
                let noun = if count == 1 { "problem" } else { "problems" };
                write!(f, "config file {} has {count} {noun}:", path.display())?;
                for problem in problems {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}
