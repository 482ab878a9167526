//! The raw serde mirror of `portcullis.toml`: exactly what the file says, nothing checked beyond types.
//!
//! Every key is documented here; what an absent key means is in `defaults.rs`, the one table of
//! defaults, and `docs/config.md` is the user-facing copy of both. Unknown keys are refused
//! (`deny_unknown_fields`) so a typo never silently falls back to a default. Turning this into
//! checked, typed values is `validate.rs`'s job.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Listeners, TLS, limits and timeouts shared by all routes.
    #[serde(default)]
    pub server: RawServer,
    /// Log level.
    #[serde(default)]
    pub log: RawLog,
    /// OpenID Connect login. Optional (without it every route must say `auth = "none"`).
    pub oidc: Option<RawOidc>,
    /// The built-in development identity provider (demo users; never for production). It is
    /// started only when this section is present (or by `portcullis demo`).
    pub dev_idp: Option<RawDevIdp>,
    /// Where sessions live and how the session cookie looks.
    #[serde(default)]
    pub session: RawSession,
    /// Identity headers for the upstream, `"Header-Name" = "claim"` (absent: seven `X-Auth-*`
    /// headers, see `docs/oidc.md`).
    pub headers: Option<BTreeMap<String, String>>,
    /// Sandbox bounds of every policy.
    #[serde(default)]
    pub policy_limits: RawPolicyLimits,
    /// How compiled Wasm policies are kept.
    #[serde(default)]
    pub wasm: RawWasm,
    /// The routes, matched by host and longest path prefix. At least one is required.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

impl RawConfig {
    /// Every file the config names, as written (relative to the config's folder or absolute).
    pub fn referenced_files(&self) -> Vec<&str> {
        let tls = self.server.tls.iter().flat_map(|tls| [&tls.cert, &tls.key]);
        let secret = self
            .oidc
            .iter()
            .filter_map(|oidc| oidc.client_secret_file.as_ref());
        let routes = self
            .routes
            .iter()
            .flat_map(|route| route.upstream_ca.iter().chain(route.policy.iter()));
        tls.chain(secret)
            .chain(routes)
            .map(String::as_str)
            .collect()
    }
}

/// `[dev_idp]`: the development identity provider.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevIdp {
    /// Loopback address and fixed port it listens on. `[oidc] discovery` defaults to it.
    pub listen: Option<String>,
}

/// `[wasm]`: the on-disk cache of compiled Wasm policies.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWasm {
    /// Keep compiled policies on disk so a restart or reload does not recompile them.
    pub cache: Option<bool>,
    /// Where, relative to the config file's folder.
    pub cache_dir: Option<String>,
}

/// `[policy_limits]`: every key optional; defaults in `policy/limits.rs` and `docs/policies.md`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicyLimits {
    /// Rhai operations per decision.
    pub max_operations: Option<u64>,
    /// Nested calls.
    pub max_call_depth: Option<usize>,
    /// Expression nesting.
    pub max_expr_depth: Option<usize>,
    /// Bytes per string.
    pub max_string_size: Option<usize>,
    /// Items per array.
    pub max_array_size: Option<usize>,
    /// Entries per map.
    pub max_map_size: Option<usize>,
    /// Wall-clock cap per decision, e.g. `"20ms"`.
    pub timeout: Option<String>,
    /// Headers one decision may set.
    pub max_headers: Option<usize>,
    /// Bytes per header value set by a policy.
    pub max_header_value_size: Option<usize>,
    /// Linear memory of a Wasm policy, e.g. `"32MiB"` (at most 256 MiB).
    pub wasm_max_memory: Option<String>,
    /// Decisions a pooled Wasm instance serves before it is replaced.
    pub wasm_pooled_uses: Option<u64>,
    /// Threads that run policies.
    pub threads: Option<usize>,
}

/// `[oidc]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    /// The provider's discovery document URL, ending in `/.well-known/openid-configuration`. Required.
    pub discovery: Option<String>,
    /// Our client id at the provider. Required.
    pub client_id: Option<String>,
    /// Client secret, inline or `env:NAME`. Or use `client_secret_file`.
    pub client_secret: Option<String>,
    /// File holding the client secret.
    pub client_secret_file: Option<String>,
    /// `"client_secret_basic"` or `"client_secret_post"`.
    pub token_endpoint_auth_method: Option<String>,
    /// Absolute callback URL registered at the provider; its path is served by Portcullis. Required.
    pub redirect_uri: Option<String>,
    /// Path that logs out.
    pub logout_path: Option<String>,
    /// Where the provider sends the browser after logout. Optional.
    pub post_logout_redirect_uri: Option<String>,
    /// Send `id_token_hint` to the end-session endpoint.
    pub logout_id_token_hint: Option<bool>,
    /// Revoke the refresh (or access) token at the provider on logout.
    pub revoke_tokens_on_logout: Option<bool>,
    /// Serve `/.portcullis/whoami` on every route (the signed-in user's claims and identity
    /// headers); a route's `whoami` decides for it.
    pub whoami: Option<bool>,
    /// Extra parameters for the authorization request, e.g. `{ prompt = "consent" }`. Optional.
    pub authorization_params: Option<BTreeMap<String, String>>,
    /// Scopes requested at login; must contain `openid`.
    pub scopes: Option<Vec<String>>,
    /// Refresh the access token when it is about to expire.
    pub renew_access_token_on_expiry: Option<bool>,
    /// How long before its expiry an access token is refreshed.
    pub access_token_expires_leeway: Option<String>,
    /// Clock difference tolerated when checking `exp` and `iat`.
    pub clock_skew: Option<String>,
    /// `"auto"` (browsers are redirected to log in, others denied), `"redirect"`, `"deny"`.
    pub unauthenticated: Option<String>,
    /// Status for denied unauthenticated requests: 401 or 403.
    pub unauthenticated_status: Option<u16>,
}

/// `[session]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    /// `"sled"` (on disk), `"redis"`, `"redis-cluster"` (shared by several instances) or
    /// `"memory"` (lost on restart; for tests and trials).
    pub store: Option<String>,
    /// Folder of the sled database, relative to the config file.
    pub path: Option<String>,
    /// Cookie name (the login binding is `<name>_login`). When absent, the strongest prefix the
    /// attributes allow (see `cookies::default_session_cookie_name`). A `__Host-` name needs
    /// `Secure` and no `Domain`; a `__Secure-` name needs `Secure`.
    pub cookie_name: Option<String>,
    /// Mark the cookie `Secure`; turn off only for plain-HTTP local use.
    pub cookie_secure: Option<bool>,
    /// Give the cookie a `Max-Age` (survives browser restarts).
    pub cookie_persistent: Option<bool>,
    /// Cookie `Domain`, for single sign-on across subdomains. Absent: a host-only cookie.
    pub cookie_domain: Option<String>,
    /// Re-issue the cookie when it is older than this.
    pub renew: Option<String>,
    /// Absolute session lifetime.
    pub lifetime: Option<String>,
    /// A session unused for this long ends.
    pub idle_timeout: Option<String>,
    /// Sessions kept in the in-memory cache in front of the store.
    pub cache_entries: Option<usize>,
    /// How often expired sessions and pending logins are removed from the store.
    pub sweep_interval: Option<String>,
    /// The file holding the secret that seals records on disk (created when missing). Default:
    /// `session.key` beside the store's folder. `PORTCULLIS_SESSION_SECRET`, when set, wins.
    pub secret_file: Option<String>,
    /// Files of earlier secrets: records they sealed still open (rotation).
    pub previous_secret_files: Option<Vec<String>>,
    /// How long an instance uses its cached copy of a session before reading the store again.
    pub cache_lifetime: Option<String>,
    /// `store = "redis"`: the server's URL (`redis://` or `rediss://`).
    pub redis_url: Option<String>,
    /// `store = "redis"`: a file holding the URL (it may carry a password).
    pub redis_url_file: Option<String>,
    /// `store = "redis-cluster"`: URLs of two or more of the cluster's nodes.
    pub redis_nodes: Option<Vec<String>>,
    /// What every Redis key starts with.
    pub key_prefix: Option<String>,
    /// The longest a request waits for Redis.
    pub redis_timeout: Option<String>,
    /// A PEM file of the CA certificates that verify a `rediss://` server (instead of the public
    /// web roots).
    pub redis_ca: Option<String>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Public listen addresses. A single string is accepted too.
    pub listen: Option<OneOrMany>,
    /// Address of the admin listener (`/healthz`, `/readyz`). Optional.
    pub admin_listen: Option<String>,
    /// Peers (IP or CIDR) whose `X-Forwarded-*` and `Forwarded` headers are believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    pub drain_timeout: Option<String>,
    /// Largest request body accepted (`413` above it), e.g. `"10MiB"`.
    pub max_request_body: Option<String>,
    /// Accept `%2F` and `%5C` inside path segments (kept encoded); otherwise such paths get 400.
    pub allow_encoded_slashes: Option<bool>,
    /// Match routes without regard to case, for backends that ignore it (IIS): `/ADMIN` is decided
    /// and forwarded as `/admin`. Otherwise paths are case-sensitive.
    pub case_insensitive_routes: Option<bool>,
    /// Time allowed to open a TCP (and TLS) connection to an upstream (`502` on failure, `504` on
    /// timeout).
    pub upstream_connect_timeout: Option<String>,
    /// Time allowed for an upstream to send its response headers (`504` after it).
    pub upstream_response_timeout: Option<String>,
    /// TLS termination for every public listener. Absent: plain HTTP.
    pub tls: Option<RawTls>,
    /// Open client connections the public listeners serve at once; a connection beyond it is
    /// answered `503` (plain HTTP) or closed (TLS).
    pub max_connections: Option<usize>,
    /// A client connection with no request in flight for this long is closed (including one that
    /// never sends a request; bytes alone, such as HTTP/2 PINGs, do not count).
    pub connection_idle_timeout: Option<String>,
    /// Threads serving client connections, each with its own event loop and its own listening
    /// socket per address. Absent: the cores the process may use.
    pub workers: Option<usize>,
}

/// `[server.tls]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file with the certificate chain, leaf first. Relative to the config file.
    pub cert: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1). Relative to the config file.
    pub key: String,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// A tracing filter such as `"info"` or `"portcullis=debug,info"`. `RUST_LOG`, when set, wins.
    pub level: Option<String>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique name, used in logs (letters, digits, `-`, `_`, `.`). Required.
    pub name: Option<String>,
    /// Host the route answers for: exact (`app.example.com`) or wildcard (`*.example.com`, one or more
    /// labels). Absent: any host.
    pub host: Option<String>,
    /// Path prefix, matched on whole segments (`/api` matches `/api` and `/api/x`, not `/apix`).
    pub path: Option<String>,
    /// Where requests go: `http://` or `https://` URL, optionally with a base path. Required.
    pub upstream: Option<String>,
    /// PEM file of CA certificates trusted for an `https` upstream instead of the public web roots.
    pub upstream_ca: Option<String>,
    /// Remove the route's `path` prefix before forwarding.
    pub strip_prefix: Option<bool>,
    /// Forward the client's `Host`; when false the upstream's host is sent.
    pub preserve_host: Option<bool>,
    /// Overrides `server.upstream_response_timeout` for this route.
    pub response_timeout: Option<String>,
    /// Overrides `server.max_request_body` for this route.
    pub max_request_body: Option<String>,
    /// `"required"` (absent too, with or without `[oidc]`), `"optional"` or `"none"` (open to
    /// everyone; only where a route says so).
    pub auth: Option<String>,
    /// Identity headers for this route, replacing the top-level `[headers]`.
    pub headers: Option<BTreeMap<String, String>>,
    /// Send `Authorization: Bearer <access token>` upstream.
    pub forward_access_token: Option<bool>,
    /// Serve `/.portcullis/whoami` on this route (default: `[oidc] whoami`).
    pub whoami: Option<bool>,
    /// Policy deciding each request (`.rhai` or `.wasm`), relative to the config file. Optional.
    pub policy: Option<String>,
    /// Table handed to the policy as `config` (absent: empty).
    pub policy_config: Option<toml::Table>,
    /// Let the policy set identity headers (`X-Auth-*`, the route's `headers`).
    pub policy_may_set_identity_headers: Option<bool>,
    /// For Wasm policies: `"pooled"` (instances reused per policy thread) or `"per-request"`.
    pub isolation: Option<String>,
}

/// A key that takes either one string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a string or a list of strings, like \"127.0.0.1:8080\" or [\"127.0.0.1:8080\", \"[::1]:8080\"]"
)]
pub enum OneOrMany {
    /// `listen = "127.0.0.1:8080"`
    One(String),
    /// `listen = ["127.0.0.1:8080", "[::1]:8080"]`
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list, whichever form was written.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_of_the_wrong_type_is_named_for_keys_with_a_default() {
        for (section, key, value, expected) in [
            (
                "[server]",
                "allow_encoded_slashes",
                "\"yes\"",
                "invalid type: string \"yes\", expected a boolean",
            ),
            (
                "[server]",
                "case_insensitive_routes",
                "1",
                "invalid type: integer `1`, expected a boolean",
            ),
            (
                "[server]",
                "trusted_proxies",
                "\"10.0.0.0/8\"",
                "invalid type: string \"10.0.0.0/8\", expected a sequence",
            ),
            (
                "[[routes]]",
                "strip_prefix",
                "\"yes\"",
                "invalid type: string \"yes\", expected a boolean",
            ),
            (
                "[[routes]]",
                "forward_access_token",
                "1",
                "invalid type: integer `1`, expected a boolean",
            ),
            (
                "[[routes]]",
                "policy_may_set_identity_headers",
                "[]",
                "invalid type: sequence, expected a boolean",
            ),
        ] {
            let text = format!("{section}\n{key} = {value}\n");
            let err = toml::from_str::<RawConfig>(&text).unwrap_err();
            assert_eq!(err.message(), expected, "{key}");
            assert_eq!(
                err.span(),
                Some(section.len() + key.len() + 4..text.len() - 1),
                "{key}"
            );
        }
    }
}
