//! The raw serde mirror of `portcullis.toml`: exactly what the file says, nothing checked beyond types.
//!
//! Every key is documented here with its default; `docs/config.md` is the user-facing copy of these
//! comments. Unknown keys are refused (`deny_unknown_fields`) so a typo never silently falls back to a
//! default. Turning this into checked, typed values is `validate.rs`'s job.

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
    /// The routes, matched by host and longest path prefix. At least one is required.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Public listen addresses. Default `["127.0.0.1:8080"]`. A single string is accepted too.
    pub listen: Option<OneOrMany>,
    /// Address of the admin listener (`/healthz`, `/readyz`). Default: none.
    pub admin_listen: Option<String>,
    /// Peers (IP or CIDR) whose `X-Forwarded-*` and `Forwarded` headers are believed. Default: none.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// How long in-flight requests may run after SIGTERM/SIGINT. Default `"30s"`.
    pub drain_timeout: Option<String>,
    /// Largest request body accepted (`413` above it), e.g. `"10MiB"`. Default `"10MiB"`.
    pub max_request_body: Option<String>,
    /// Accept `%2F` and `%5C` inside path segments (kept encoded). Default `false`: such paths get 400.
    #[serde(default)]
    pub allow_encoded_slashes: bool,
    /// Time allowed to open a TCP (and TLS) connection to an upstream (`502` on failure, `504` on
    /// timeout). Default `"5s"`.
    pub upstream_connect_timeout: Option<String>,
    /// Time allowed for an upstream to send its response headers (`504` after it). Default `"60s"`.
    pub upstream_response_timeout: Option<String>,
    /// TLS termination for every public listener. Default: plain HTTP.
    pub tls: Option<RawTls>,
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
    /// A tracing filter such as `"info"` or `"portcullis=debug,info"`. Default `"info"`.
    /// `RUST_LOG`, when set, wins.
    pub level: Option<String>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Unique name, used in logs (letters, digits, `-`, `_`, `.`). Required.
    pub name: Option<String>,
    /// Host the route answers for: exact (`app.example.com`) or wildcard (`*.example.com`, one or more
    /// labels). Default: any host.
    pub host: Option<String>,
    /// Path prefix, matched on whole segments (`/api` matches `/api` and `/api/x`, not `/apix`).
    /// Default `"/"`.
    pub path: Option<String>,
    /// Where requests go: `http://` or `https://` URL, optionally with a base path. Required.
    pub upstream: Option<String>,
    /// PEM file of CA certificates trusted for an `https` upstream instead of the public web roots.
    pub upstream_ca: Option<String>,
    /// Remove the route's `path` prefix before forwarding. Default `false`.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Forward the client's `Host`; when false the upstream's host is sent. Default `true`.
    pub preserve_host: Option<bool>,
    /// Overrides `server.upstream_response_timeout` for this route.
    pub response_timeout: Option<String>,
    /// Overrides `server.max_request_body` for this route.
    pub max_request_body: Option<String>,
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
