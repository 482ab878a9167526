//! The login-related sections: `[oidc]`, `[session]`, `[headers]` and the routes' `auth` keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, StatusCode};
use url::Url;

use super::check::{Problems, duration, duration_within};
use super::defaults;
use super::raw::{RawOidc, RawSession};
use super::redis::{self, RawRedis, RedisConfig};
use super::secret::{self, Secret};
use crate::canonical::CanonicalPath;
use crate::header_ownership::{self, HeaderClass};

const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";

/// `[oidc]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcConfig {
    /// The discovery document.
    pub discovery_url: Url,
    /// The issuer the discovery document and every ID token must name exactly.
    pub issuer: String,
    /// Our client id.
    pub client_id: String,
    /// Our client secret (none for a public client).
    pub client_secret: Option<Secret>,
    /// How the secret is sent to the token endpoint.
    pub client_auth: ClientAuth,
    /// The registered callback URL.
    pub redirect_uri: Url,
    /// Its path, which Portcullis serves (canonical).
    pub callback_path: String,
    /// The logout path (canonical).
    pub logout_path: String,
    /// Where the provider sends the browser after logout.
    pub post_logout_redirect_uri: Option<Url>,
    /// Send `id_token_hint` at logout.
    pub logout_id_token_hint: bool,
    /// Revoke tokens at logout.
    pub revoke_tokens_on_logout: bool,
    /// Serve `/.portcullis/whoami` on routes that do not say otherwise.
    pub whoami: bool,
    /// Extra authorization-request parameters.
    pub authorization_params: Vec<(String, String)>,
    /// Scopes requested at login (contains `openid`).
    pub scopes: Vec<String>,
    /// Refresh access tokens before they expire.
    pub renew_access_token_on_expiry: bool,
    /// How long before expiry to refresh.
    pub access_token_expires_leeway: Duration,
    /// Clock difference tolerated on `exp`/`iat`.
    pub clock_skew: Duration,
    /// What happens to requests without a session on `auth = "required"` routes.
    pub unauthenticated: Unauthenticated,
    /// 401 or 403 for denied unauthenticated requests.
    pub unauthenticated_status: StatusCode,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`).
    Basic,
    /// In the form body (`client_secret_post`).
    Post,
}

/// What a request without a session gets on an `auth = "required"` route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthenticated {
    /// Browsers (`Accept` has `text/html`) are redirected to log in; other clients are denied.
    Auto,
    /// Everyone is redirected to log in.
    Redirect,
    /// Everyone is denied.
    Deny,
}

/// A route's `auth` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A session is needed; without one the request is sent to log in or denied.
    Required,
    /// A session is used when there is one; requests without one pass anonymously.
    Optional,
    /// No session is looked at.
    None,
}

/// `[session]`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// Where sessions are kept.
    pub store: StoreKind,
    /// The cookie's name.
    pub cookie_name: String,
    /// `Secure` attribute.
    pub cookie_secure: bool,
    /// `Max-Age` attribute.
    pub cookie_persistent: bool,
    /// `Domain` attribute.
    pub cookie_domain: Option<String>,
    /// Cookie re-issue interval.
    pub renew: Duration,
    /// Absolute session lifetime.
    pub lifetime: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// In-memory cache size.
    pub cache_entries: usize,
    /// How often expired records are removed from the store.
    pub sweep_interval: Duration,
    /// How long a cached session is used before the store is read again.
    pub cache_lifetime: Duration,
    /// Where the secrets that seal records at rest come from.
    pub sealing: Sealing,
}

/// The environment variable that, when set, is the session-sealing secret.
pub const SESSION_SECRET_ENV: &str = "PORTCULLIS_SESSION_SECRET";

/// Where the secrets that seal session records at rest come from (used by stores that keep
/// records outside the process: sled, Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealing {
    /// The secret records are sealed with.
    pub current: SecretSource,
    /// Earlier secrets, tried when a record does not open with the current one.
    pub previous: Vec<PathBuf>,
}

/// Where one sealing secret is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// [`SESSION_SECRET_ENV`].
    Env,
    /// A file, created with a new random secret when missing.
    File(PathBuf),
}

/// Which session store backs the sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// sled on disk at this folder.
    Sled(PathBuf),
    /// In memory; lost on restart.
    Memory,
    /// Redis or a Redis Cluster, shared by several instances.
    Redis(RedisConfig),
}

impl StoreKind {
    /// Whether records are kept outside the process (and so sealed).
    pub fn keeps_records_outside(&self) -> bool {
        !matches!(self, StoreKind::Memory)
    }

    /// Whether several instances share the store (the secret must be shared, never made here).
    pub fn is_shared(&self) -> bool {
        matches!(self, StoreKind::Redis(_))
    }
}

/// Identity headers: which header carries which claim. Lists are joined with `,`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders(pub Vec<(HeaderName, String)>);

impl IdentityHeaders {
    /// The identity headers of a config without `[headers]`: the seven `X-Auth-*` headers of
    /// [`defaults::HEADERS`].
    pub fn seed_default() -> Self {
        IdentityHeaders(
            defaults::HEADERS
                .iter()
                .map(|(name, claim)| {
                    let name = HeaderName::from_bytes(name.as_bytes())
                        .expect("valid default header names");
                    (name, (*claim).to_owned())
                })
                .collect(),
        )
    }
}

/// `[headers]` or a route's `headers`: each name a valid header name Portcullis does not own for
/// another purpose (see [`crate::header_ownership`]), and no two names one header to a backend
/// (`X-Remote-User` and `X_Remote_User`).
pub(super) fn validate_headers(
    raw: Option<BTreeMap<String, String>>,
    key: &str,
    problems: &mut Problems,
) -> Option<IdentityHeaders> {
    let Some(raw) = raw else {
        return Some(IdentityHeaders::seed_default());
    };
    let mut headers: Vec<(HeaderName, String)> = Vec::new();
    let mut ok = true;
    for (name, claim) in raw {
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            problems.add(format!("{key}.{name}"), "not a valid header name");
            ok = false;
            continue;
        };
        if !header_ownership::classify(header.as_str()).is_none_or(HeaderClass::may_carry_claim) {
            problems.add(
                format!("{key}.{name}"),
                "this header is managed by the proxy and cannot carry a claim",
            );
            ok = false;
            continue;
        }
        if let Some((twin, _)) = headers
            .iter()
            .find(|(other, _)| header_ownership::same_name(other.as_str(), header.as_str()))
        {
            problems.add(
                format!("{key}.{name}"),
                format!("the same header as {twin:?} to backends that read `_` as `-`; keep one"),
            );
            ok = false;
            continue;
        }
        headers.push((header, claim));
    }
    ok.then_some(IdentityHeaders(headers))
}

/// A route's `auth`: `"required"` unless the route says otherwise, whether or not `[oidc]` exists,
/// so no edit elsewhere in the file (a removed or half-written `[oidc]`) can open a route. A route
/// that uses a login in a config without `[oidc]` is a problem naming the route.
pub(super) fn validate_auth_mode(
    raw: Option<&str>,
    oidc_set: bool,
    route_name: Option<&str>,
    key: &str,
    problems: &mut Problems,
) -> Option<AuthMode> {
    let mode = match raw.unwrap_or(defaults::ROUTE_AUTH) {
        "required" => AuthMode::Required,
        "optional" => AuthMode::Optional,
        "none" => AuthMode::None,
        other => {
            problems.add(
                key,
                format!("must be \"required\", \"optional\" or \"none\": {other:?}"),
            );
            return None;
        }
    };
    if mode != AuthMode::None && !oidc_set {
        let route =
            route_name.map_or_else(|| "this route".to_owned(), |name| format!("route {name:?}"));
        let why = match raw {
            None => {
                "needs a login (it has no auth key, and \"required\" is the default)".to_owned()
            }
            Some(written) => format!("has auth = {written:?}"),
        };
        problems.add(
            key,
            format!(
                "{route} {why}, but there is no [oidc] section to log in with: add [oidc], or write auth = \"none\" if the route is meant to be open to everyone"
            ),
        );
        return None;
    }
    Some(mode)
}

/// `[oidc]`: every key checked; `None` when one of them is invalid.
pub(super) fn validate_oidc(
    raw: RawOidc,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<OidcConfig> {
    let discovery = discovery(raw.discovery, problems);
    let client_id = required(raw.client_id, "client_id", "portcullis", problems);
    let client_secret = problems.check(
        "oidc.client_secret",
        secret::resolve(
            raw.client_secret.as_deref(),
            raw.client_secret_file.as_deref(),
            base_dir,
            "client_secret",
        ),
    );
    let client_auth = client_auth(raw.token_endpoint_auth_method.as_deref(), problems);
    let redirect_uri = redirect_uri(raw.redirect_uri, problems);
    let (callback_path, logout_path) =
        login_paths(redirect_uri.as_ref(), raw.logout_path.as_deref(), problems);
    let post_logout_redirect_uri = raw.post_logout_redirect_uri.and_then(|text| {
        problems.check("oidc.post_logout_redirect_uri", parse_absolute_url(&text))
    });
    let authorization_params = authorization_params(raw.authorization_params, problems);
    let scopes = scopes(raw.scopes, problems);
    let leeway = duration(
        problems,
        "oidc.access_token_expires_leeway",
        raw.access_token_expires_leeway.as_deref(),
        defaults::OIDC_ACCESS_TOKEN_EXPIRES_LEEWAY,
    );
    let clock_skew = duration(
        problems,
        "oidc.clock_skew",
        raw.clock_skew.as_deref(),
        defaults::OIDC_CLOCK_SKEW,
    );
    let unauthenticated = unauthenticated(raw.unauthenticated.as_deref(), problems);
    let unauthenticated_status = unauthenticated_status(raw.unauthenticated_status, problems);
    let (discovery_url, issuer) = discovery?;
    Some(OidcConfig {
        discovery_url,
        issuer,
        client_id: client_id?,
        client_secret: client_secret?,
        client_auth: client_auth?,
        redirect_uri: redirect_uri?,
        callback_path: callback_path?,
        logout_path: logout_path?,
        post_logout_redirect_uri,
        logout_id_token_hint: raw
            .logout_id_token_hint
            .unwrap_or(defaults::OIDC_LOGOUT_ID_TOKEN_HINT),
        revoke_tokens_on_logout: raw
            .revoke_tokens_on_logout
            .unwrap_or(defaults::OIDC_REVOKE_TOKENS_ON_LOGOUT),
        whoami: raw.whoami.unwrap_or(defaults::OIDC_WHOAMI),
        authorization_params,
        scopes,
        renew_access_token_on_expiry: raw
            .renew_access_token_on_expiry
            .unwrap_or(defaults::OIDC_RENEW_ACCESS_TOKEN_ON_EXPIRY),
        access_token_expires_leeway: leeway?,
        clock_skew: clock_skew?,
        unauthenticated: unauthenticated?,
        unauthenticated_status: unauthenticated_status?,
    })
}

/// A required `oidc` key: a problem showing what to write when it is missing.
fn required(
    value: Option<String>,
    key: &str,
    example: &str,
    problems: &mut Problems,
) -> Option<String> {
    if value.is_none() {
        problems.add(
            format!("oidc.{key}"),
            format!("missing, e.g. {key} = {example:?}"),
        );
    }
    value
}

/// `oidc.discovery`: required; the discovery URL and the issuer it implies.
fn discovery(raw: Option<String>, problems: &mut Problems) -> Option<(Url, String)> {
    let example = "https://idp.example/realms/home/.well-known/openid-configuration";
    let text = required(raw, "discovery", example, problems)?;
    problems.check("oidc.discovery", parse_discovery(&text))
}

/// `oidc.token_endpoint_auth_method`.
fn client_auth(raw: Option<&str>, problems: &mut Problems) -> Option<ClientAuth> {
    match raw.unwrap_or(defaults::OIDC_TOKEN_ENDPOINT_AUTH_METHOD) {
        "client_secret_basic" => Some(ClientAuth::Basic),
        "client_secret_post" => Some(ClientAuth::Post),
        other => {
            problems.add(
                "oidc.token_endpoint_auth_method",
                format!("must be \"client_secret_basic\" or \"client_secret_post\": {other:?}"),
            );
            None
        }
    }
}

/// `oidc.redirect_uri`: required, an absolute http(s) URL.
fn redirect_uri(raw: Option<String>, problems: &mut Problems) -> Option<Url> {
    let text = required(raw, "redirect_uri", "https://app.example/auth", problems)?;
    problems.check("oidc.redirect_uri", parse_absolute_url(&text))
}

/// The two paths Portcullis serves for the login: the callback (`redirect_uri`'s path) and
/// `oidc.logout_path`, each canonical, and different from each other.
fn login_paths(
    redirect_uri: Option<&Url>,
    logout_path: Option<&str>,
    problems: &mut Problems,
) -> (Option<String>, Option<String>) {
    let callback_path =
        redirect_uri.and_then(|url| problems.check("oidc.redirect_uri", endpoint_path(url.path())));
    let logout_path = problems.check(
        "oidc.logout_path",
        endpoint_path(logout_path.unwrap_or(defaults::OIDC_LOGOUT_PATH)),
    );
    if callback_path.is_some() && callback_path == logout_path {
        problems.add(
            "oidc.logout_path",
            "must differ from the redirect_uri's path",
        );
    }
    (callback_path, logout_path)
}

/// Authorization-request parameters Portcullis sets itself, which `authorization_params` may not.
const RESERVED_AUTHORIZATION_PARAMS: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

/// `oidc.authorization_params`: none of [`RESERVED_AUTHORIZATION_PARAMS`].
fn authorization_params(
    raw: Option<BTreeMap<String, String>>,
    problems: &mut Problems,
) -> Vec<(String, String)> {
    let params: Vec<(String, String)> = raw.unwrap_or_default().into_iter().collect();
    for (name, _) in &params {
        if RESERVED_AUTHORIZATION_PARAMS.contains(&name.as_str()) {
            problems.add(
                format!("oidc.authorization_params.{name}"),
                if name == "scope" {
                    "set by Portcullis itself; list scopes in oidc.scopes"
                } else {
                    "set by Portcullis itself; remove it"
                },
            );
        }
    }
    params
}

/// `oidc.scopes`: must contain `openid`.
fn scopes(raw: Option<Vec<String>>, problems: &mut Problems) -> Vec<String> {
    let scopes = raw.unwrap_or_else(|| {
        defaults::OIDC_SCOPES
            .iter()
            .map(|scope| (*scope).to_owned())
            .collect()
    });
    if !scopes.iter().any(|s| s == "openid") {
        problems.add("oidc.scopes", "must contain \"openid\"");
    }
    scopes
}

/// `oidc.unauthenticated`.
fn unauthenticated(raw: Option<&str>, problems: &mut Problems) -> Option<Unauthenticated> {
    match raw.unwrap_or(defaults::OIDC_UNAUTHENTICATED) {
        "auto" => Some(Unauthenticated::Auto),
        "redirect" => Some(Unauthenticated::Redirect),
        "deny" => Some(Unauthenticated::Deny),
        other => {
            problems.add(
                "oidc.unauthenticated",
                format!("must be \"auto\", \"redirect\" or \"deny\": {other:?}"),
            );
            None
        }
    }
}

/// `oidc.unauthenticated_status`: 401 or 403.
fn unauthenticated_status(raw: Option<u16>, problems: &mut Problems) -> Option<StatusCode> {
    match raw.unwrap_or(defaults::OIDC_UNAUTHENTICATED_STATUS) {
        401 => Some(StatusCode::UNAUTHORIZED),
        403 => Some(StatusCode::FORBIDDEN),
        other => {
            problems.add(
                "oidc.unauthenticated_status",
                format!("must be 401 or 403: {other}"),
            );
            None
        }
    }
}

/// `[session]`: every key checked; `None` when one of them is invalid.
pub(super) fn validate_session(
    raw: RawSession,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<SessionConfig> {
    let redis = RawRedis {
        url: raw.redis_url.as_deref(),
        url_file: raw.redis_url_file.as_deref(),
        nodes: raw.redis_nodes.as_deref(),
        key_prefix: raw.key_prefix.as_deref(),
        timeout: raw.redis_timeout.as_deref(),
        ca: raw.redis_ca.as_deref(),
    };
    let store = session_store(
        raw.store.as_deref(),
        raw.path.as_deref(),
        &redis,
        base_dir,
        problems,
    );
    let cookie_secure = raw.cookie_secure.unwrap_or(defaults::SESSION_COOKIE_SECURE);
    let cookie_domain = raw.cookie_domain.filter(|d| !d.is_empty());
    let cookie_name = cookie_name(
        raw.cookie_name,
        cookie_secure,
        cookie_domain.is_some(),
        problems,
    );
    let renew = duration(
        problems,
        "session.renew",
        raw.renew.as_deref(),
        defaults::SESSION_RENEW,
    );
    let lifetime = duration(
        problems,
        "session.lifetime",
        raw.lifetime.as_deref(),
        defaults::SESSION_LIFETIME,
    );
    let idle_timeout = duration(
        problems,
        "session.idle_timeout",
        raw.idle_timeout.as_deref(),
        defaults::SESSION_IDLE_TIMEOUT,
    );
    let cache_entries = raw.cache_entries.unwrap_or(defaults::SESSION_CACHE_ENTRIES);
    // More often only costs CPU (a nanosecond kept a core busy); less often than daily leaves
    // what no one can use in the files for days.
    let sweep_interval = duration_within(
        problems,
        "session.sweep_interval",
        raw.sweep_interval.as_deref(),
        defaults::SESSION_SWEEP_INTERVAL,
        Duration::from_secs(1)..=Duration::from_secs(86_400),
        "between 1s and 24h",
    );
    // Longer would let a logged-out session go on working on the other instances for longer.
    let cache_lifetime = duration_within(
        problems,
        "session.cache_lifetime",
        raw.cache_lifetime.as_deref(),
        defaults::SESSION_CACHE_LIFETIME,
        Duration::ZERO..=Duration::from_secs(60),
        "at most 60s",
    );
    let sealing = sealing(
        raw.secret_file.as_deref(),
        raw.previous_secret_files.unwrap_or_default(),
        store.as_ref(),
        base_dir,
        problems,
    );
    Some(SessionConfig {
        store: store?,
        cookie_name,
        cookie_secure,
        cookie_persistent: raw
            .cookie_persistent
            .unwrap_or(defaults::SESSION_COOKIE_PERSISTENT),
        cookie_domain,
        renew: renew?,
        lifetime: lifetime?,
        idle_timeout: idle_timeout?,
        cache_entries,
        sweep_interval: sweep_interval?,
        cache_lifetime: cache_lifetime?,
        sealing,
    })
}

/// `session.secret_file` and `session.previous_secret_files`. Files that exist must be private
/// and long enough now (a missing `secret_file` is created at start); the environment variable,
/// when set, must be long enough.
fn sealing(
    secret_file: Option<&str>,
    previous: Vec<String>,
    store: Option<&StoreKind>,
    base_dir: &Path,
    problems: &mut Problems,
) -> Sealing {
    let current = if std::env::var_os(SESSION_SECRET_ENV).is_some() {
        match std::env::var(SESSION_SECRET_ENV) {
            Ok(value) => {
                let value = secret::sealing_secret_text(value.as_bytes());
                if let Err(problem) = secret::check_sealing_secret(value) {
                    problems.add(SESSION_SECRET_ENV, problem);
                }
            }
            Err(_) => problems.add(SESSION_SECRET_ENV, "is not UTF-8".to_owned()),
        }
        SecretSource::Env
    } else {
        let path = match (secret_file, store) {
            (Some(file), _) => base_dir.join(file),
            // Beside the store's folder: `data/sessions` → `data/session.key`.
            (None, Some(StoreKind::Sled(folder))) => folder
                .parent()
                .unwrap_or(base_dir)
                .join(defaults::SESSION_SECRET_FILE_NAME),
            (None, Some(shared)) if shared.is_shared() => {
                // A secret made here would be this instance's alone: every other instance's
                // records would not open. One secret, given to all.
                problems.add(
                    "session.secret_file",
                    "is required with a shared store: every instance must seal sessions with the same secret. Write 32 random bytes once (`openssl rand -base64 32 > /etc/portcullis/session.key; chmod 600 /etc/portcullis/session.key`), give every instance a copy, and name it here (or set PORTCULLIS_SESSION_SECRET)",
                );
                base_dir.join(defaults::SESSION_SECRET_FILE_NAME)
            }
            (None, _) => base_dir.join(defaults::SESSION_SECRET_FILE_NAME),
        };
        match store {
            Some(StoreKind::Sled(_)) => {
                if let Err(problem) = secret::check_private_secret_file(&path, true) {
                    problems.add("session.secret_file", problem);
                }
            }
            // Never created for a shared store: it must be the copy the others have.
            Some(shared) if shared.is_shared() && secret_file.is_some() => {
                if let Err(problem) = secret::check_private_secret_file(&path, false) {
                    problems.add(
                        "session.secret_file",
                        format!(
                            "{problem} (with a shared store it is never created: give every instance a copy of the one secret, e.g. made once with `openssl rand -base64 32`)"
                        ),
                    );
                }
            }
            _ => {}
        }
        SecretSource::File(path)
    };
    let previous = previous
        .iter()
        .enumerate()
        .map(|(at, file)| {
            let path = base_dir.join(file);
            if let Err(problem) = secret::check_private_secret_file(&path, false) {
                problems.add(format!("session.previous_secret_files[{at}]"), problem);
            }
            path
        })
        .collect();
    Sealing { current, previous }
}

/// `session.store` (and `session.path` for sled, relative to the config's folder; the `redis_*`
/// keys for Redis).
fn session_store(
    store: Option<&str>,
    path: Option<&str>,
    redis: &RawRedis<'_>,
    base_dir: &Path,
    problems: &mut Problems,
) -> Option<StoreKind> {
    let kind = store.unwrap_or(defaults::SESSION_STORE);
    let is_redis = matches!(kind, "redis" | "redis-cluster");
    if !is_redis && redis.any() {
        problems.add(
            "session.store",
            format!(
                "is {kind:?}, but Redis keys (`redis_url`, `redis_nodes`, `key_prefix`, …) are set: set `store = \"redis\"` (or \"redis-cluster\") to use Redis, or remove them"
            ),
        );
    }
    if is_redis && path.is_some() {
        problems.add(
            "session.path",
            "is the sled folder; a Redis store has none: remove it",
        );
    }
    match kind {
        "sled" => Some(StoreKind::Sled(
            base_dir.join(path.unwrap_or(defaults::SESSION_PATH)),
        )),
        "memory" => Some(StoreKind::Memory),
        "redis" | "redis-cluster" => {
            redis::validate(redis, kind == "redis-cluster", base_dir, problems)
                .map(StoreKind::Redis)
        }
        other => {
            problems.add(
                "session.store",
                format!("must be \"sled\", \"redis\", \"redis-cluster\" or \"memory\": {other:?}"),
            );
            None
        }
    }
}

/// `session.cookie_name`: a configured name is used as written, if its characters are plain and
/// its `__Host-`/`__Secure-` prefix suits the cookie's attributes; the default takes the strongest
/// prefix the attributes allow, so that no other site or upstream can plant it.
fn cookie_name(raw: Option<String>, secure: bool, domain: bool, problems: &mut Problems) -> String {
    let name = raw.unwrap_or_else(|| crate::cookies::default_session_cookie_name(secure, domain));
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !plain {
        problems.add(
            "session.cookie_name",
            format!("use letters, digits, '-', '_' and '.' only: {name:?}"),
        );
    }
    if let Err(reason) = crate::cookies::NamePrefix::of(&name).allows(secure, domain) {
        problems.add("session.cookie_name", reason);
    }
    name
}

/// The discovery URL and the issuer it implies (the URL without the well-known suffix).
fn parse_discovery(text: &str) -> Result<(Url, String), String> {
    let url = Url::parse(text).map_err(|_| "not an absolute URL".to_owned())?;
    if !url.username().is_empty() || url.password().is_some() {
        // Not repeated here: the message would show the password it refuses to log.
        return Err(
            "must not carry a user or password: a discovery document is public, and this URL is shown in logs, /readyz and /reload".to_owned(),
        );
    }
    let url = parse_absolute_url(text)?;
    let issuer = text
        .strip_suffix(DISCOVERY_SUFFIX)
        .ok_or_else(|| format!("must end in {DISCOVERY_SUFFIX:?}: {text:?}"))?;
    Ok((url, issuer.to_owned()))
}

fn parse_absolute_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|_| format!("not an absolute URL: {text:?}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("must be an http or https URL: {text:?}"));
    }
    if url.fragment().is_some() {
        return Err(format!("cannot have a #fragment: {text:?}"));
    }
    Ok(url)
}

/// A path Portcullis serves itself (callback, logout): absolute and canonical.
fn endpoint_path(path: &str) -> Result<String, String> {
    let canonical = CanonicalPath::parse(path, false)
        .map_err(|err| format!("not a usable path ({err}): {path:?}"))?;
    if canonical.decision() != path || path == "/" {
        return Err(format!(
            "must be a canonical path other than \"/\": {path:?}"
        ));
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(toml: &str) -> Result<SessionConfig, String> {
        let text = format!(
            "[session]\nstore = \"memory\"\n{toml}\n\n[[routes]]\nname = \"a\"\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n"
        );
        crate::config::parse(&text, Path::new("."))
            .map(|config| config.session)
            .map_err(|err| format!("{err:?}"))
    }

    #[test]
    fn default_cookie_names_carry_the_prefix_the_attributes_allow() {
        let name = |toml: &str| session(toml).unwrap().cookie_name;
        assert_eq!(name(""), "__Host-portcullis_session");
        assert_eq!(
            name("cookie_domain = \"example.com\""),
            "__Secure-portcullis_session"
        );
        assert_eq!(name("cookie_secure = false"), "portcullis_session");
        assert_eq!(name("cookie_name = \"sess\""), "sess", "used as written");
    }

    #[test]
    fn a_prefixed_cookie_name_must_match_its_attributes() {
        for bad in [
            "cookie_name = \"__Host-sess\"\ncookie_secure = false",
            "cookie_name = \"__Host-sess\"\ncookie_domain = \"example.com\"",
            "cookie_name = \"__host-sess\"\ncookie_domain = \"example.com\"",
            "cookie_name = \"__Secure-sess\"\ncookie_secure = false",
            "cookie_name = \"__SECURE-sess\"\ncookie_secure = false",
        ] {
            let err = session(bad).unwrap_err();
            assert!(err.contains("session.cookie_name"), "{bad}: {err}");
        }
        for good in [
            "cookie_name = \"__Host-sess\"",
            "cookie_name = \"__Secure-sess\"\ncookie_domain = \"example.com\"",
            "cookie_name = \"sess\"\ncookie_secure = false\ncookie_domain = \"example.com\"",
        ] {
            assert!(session(good).is_ok(), "{good}");
        }
    }
}
