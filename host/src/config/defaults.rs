//! Every default of every config key, in one table: what a key means when the file leaves it out.
//!
//! Each default is written as it would be in `portcullis.toml` (`"30s"`, `"10MiB"`, `"sled"`), so
//! it goes through the same parsing and checks as a written value. Validation reads these constants
//! and no other literal; `docs/config.md`, `docs/oidc.md` and `docs/policies.md` state them for users,
//! and the test at the end of this file keeps the docs and this table the same.
//!
//! Some defaults live below the config layer, because the layer that uses them must know them
//! without a config, and are only named here:
//! - `[policy_limits]`: [`PolicyLimits::default`](crate::policy::PolicyLimits), each limit beside
//!   the sandbox that enforces it;
//! - `routes[].isolation`: [`DEFAULT_ISOLATION`](crate::policy::DEFAULT_ISOLATION), read by
//!   `Policy::load` (which `portcullis policy test` uses without a config);
//! - `session.cookie_name`: [`default_session_cookie_name`](crate::cookies::default_session_cookie_name)
//!   of [`SESSION_COOKIE_SECURE`] and `cookie_domain`, since the default names stay Portcullis's
//!   own (taken out of every request) whatever name is configured.
//!
//! Keys left out of the table have no value when absent: `server.admin_listen`, `server.tls`,
//! `oidc.client_secret`, `oidc.post_logout_redirect_uri`, `oidc.authorization_params`,
//! `session.cookie_domain`, `session.previous_secret_files`, `session.redis_url_file`,
//! `session.redis_ca` (the public web roots), `session.redis_url` and `session.redis_nodes`
//! (required by their store), `routes[].host` (any host), `routes[].upstream_ca` (the public web
//! roots), `routes[].policy` and `routes[].policy_config`; or they inherit another key:
//! `routes[].response_timeout` (`server.upstream_response_timeout`), `routes[].max_request_body`
//! (`server.max_request_body`), `routes[].headers` (`[headers]`), and `oidc.discovery` (`[dev_idp]`'s
//! discovery URL when that section is present; required otherwise), and `session.secret_file`
//! ([`SESSION_SECRET_FILE_NAME`] beside the folder of `session.path`).

/// The session-sealing secret's file name, beside the store's folder when `session.secret_file`
/// is not set.
pub const SESSION_SECRET_FILE_NAME: &str = "session.key";

/// Declares the defaults: each becomes a `pub const`, and [`table`] lists them under their key paths.
macro_rules! defaults {
    ($($(#[doc = $doc:literal])+ $key:literal => $name:ident: $ty:ty = $value:expr;)+) => {
        $($(#[doc = $doc])+ pub const $name: $ty = $value;)+

        /// Every default declared here, under its key path (`routes` for a key of every route),
        /// as a TOML value.
        #[cfg(test)]
        pub(crate) fn table() -> Vec<(&'static str, toml::Value)> {
            vec![$(($key, toml::Value::try_from($name).expect("a TOML value"))),+]
        }
    };
}

defaults! {
    // [server]
    /// Public listener: loopback, so a fresh install is not reachable from other machines.
    "server.listen" => SERVER_LISTEN: &str = "127.0.0.1:8080";
    /// Peers whose forwarding headers are believed: none.
    "server.trusted_proxies" => SERVER_TRUSTED_PROXIES: &[&str] = &[];
    /// Grace period for in-flight requests at shutdown.
    "server.drain_timeout" => SERVER_DRAIN_TIMEOUT: &str = "30s";
    /// Request-body limit of routes that set none.
    "server.max_request_body" => SERVER_MAX_REQUEST_BODY: &str = "10MiB";
    /// `%2F`/`%5C` inside a path segment is refused: servers disagree on whether it separates.
    "server.allow_encoded_slashes" => SERVER_ALLOW_ENCODED_SLASHES: bool = false;
    /// Routes match case-sensitively, as most backends do.
    "server.case_insensitive_routes" => SERVER_CASE_INSENSITIVE_ROUTES: bool = false;
    /// Time to open a TCP (and TLS) connection to an upstream.
    "server.upstream_connect_timeout" => SERVER_UPSTREAM_CONNECT_TIMEOUT: &str = "5s";
    /// Time for an upstream's response headers, for routes that set none.
    "server.upstream_response_timeout" => SERVER_UPSTREAM_RESPONSE_TIMEOUT: &str = "60s";
    /// Open client connections served at once. Generous: far above what one instance serves, low
    /// enough that a flood of idle connections cannot exhaust the file descriptors the upstream
    /// and session store need.
    "server.max_connections" => SERVER_MAX_CONNECTIONS: usize = 10_000;
    /// A connection with no request in flight this long is closed. nginx closes idle keep-alive
    /// connections after 75 s; a minute keeps browsers' HTTP/2 connections while bounding how long
    /// a silent client holds a `max_connections` place.
    "server.connection_idle_timeout" => SERVER_CONNECTION_IDLE_TIMEOUT: &str = "60s";

    // [log]
    /// Log filter (`RUST_LOG`, when set, wins).
    "log.level" => LOG_LEVEL: &str = "info";

    // [oidc]
    /// How the client secret reaches the token endpoint: HTTP Basic.
    "oidc.token_endpoint_auth_method" => OIDC_TOKEN_ENDPOINT_AUTH_METHOD: &str = "client_secret_basic";
    /// The path Portcullis serves to log out.
    "oidc.logout_path" => OIDC_LOGOUT_PATH: &str = "/logout";
    /// Send `id_token_hint` to the end-session endpoint.
    "oidc.logout_id_token_hint" => OIDC_LOGOUT_ID_TOKEN_HINT: bool = true;
    /// Revoke tokens at the provider on logout.
    "oidc.revoke_tokens_on_logout" => OIDC_REVOKE_TOKENS_ON_LOGOUT: bool = true;
    /// Serve `/.portcullis/whoami` (the signed-in user's claims and identity headers).
    "oidc.whoami" => OIDC_WHOAMI: bool = false;
    /// Scopes requested at login.
    "oidc.scopes" => OIDC_SCOPES: &[&str] = &["openid", "email", "profile"];
    /// Refresh access tokens before they expire.
    "oidc.renew_access_token_on_expiry" => OIDC_RENEW_ACCESS_TOKEN_ON_EXPIRY: bool = true;
    /// How long before its expiry an access token is refreshed.
    "oidc.access_token_expires_leeway" => OIDC_ACCESS_TOKEN_EXPIRES_LEEWAY: &str = "60s";
    /// Clock difference tolerated on `exp` and `iat`.
    "oidc.clock_skew" => OIDC_CLOCK_SKEW: &str = "30s";
    /// Requests without a session on `auth = "required"` routes: browsers log in, others are denied.
    "oidc.unauthenticated" => OIDC_UNAUTHENTICATED: &str = "auto";
    /// Status of a denied unauthenticated request.
    "oidc.unauthenticated_status" => OIDC_UNAUTHENTICATED_STATUS: u16 = 401;

    // [session]
    /// Session store: sled, on disk.
    "session.store" => SESSION_STORE: &str = "sled";
    /// The sled folder, relative to the config file.
    "session.path" => SESSION_PATH: &str = "data/sessions";
    /// The cookie's `Secure` attribute.
    "session.cookie_secure" => SESSION_COOKIE_SECURE: bool = true;
    /// The cookie's `Max-Age`, so a session survives browser restarts.
    "session.cookie_persistent" => SESSION_COOKIE_PERSISTENT: bool = true;
    /// Cookie re-issue interval.
    "session.renew" => SESSION_RENEW: &str = "1h";
    /// Absolute session lifetime.
    "session.lifetime" => SESSION_LIFETIME: &str = "24h";
    /// A session unused this long ends.
    "session.idle_timeout" => SESSION_IDLE_TIMEOUT: &str = "8h";
    /// Sessions cached in memory in front of the store.
    "session.cache_entries" => SESSION_CACHE_ENTRIES: usize = 10_000;
    /// How often expired sessions and pending logins are removed from the store.
    "session.sweep_interval" => SESSION_SWEEP_INTERVAL: &str = "60s";
    /// How long a cached session is used before the store is read again: with a shared store,
    /// the bound on how long a logout on another instance takes to reach this one.
    "session.cache_lifetime" => SESSION_CACHE_LIFETIME: &str = "1s";
    /// What every Redis key starts with.
    "session.key_prefix" => SESSION_KEY_PREFIX: &str = "portcullis:";
    /// The longest a request waits for Redis to connect or to answer one command.
    "session.redis_timeout" => SESSION_REDIS_TIMEOUT: &str = "1s";

    // [headers]
    /// Identity headers: seven `X-Auth-*` headers, `(header, claim)`.
    "headers" => HEADERS: [(&str, &str); 7] = [
        ("X-Auth-Audience", "aud"),
        ("X-Auth-ExpiresIn", "exp"),
        ("X-Auth-Groups", "groups"),
        ("X-Auth-Subject", "sub"),
        ("X-Auth-Userid", "preferred_username"),
        ("X-Auth-Username", "preferred_username"),
        ("X-Auth-Locale", "locale"),
    ];

    // [[routes]]
    /// Path prefix: the whole site.
    "routes.path" => ROUTE_PATH: &str = "/";
    /// Keep the route's path prefix when forwarding.
    "routes.strip_prefix" => ROUTE_STRIP_PREFIX: bool = false;
    /// Forward the client's `Host`.
    "routes.preserve_host" => ROUTE_PRESERVE_HOST: bool = true;
    /// A login is required, with or without `[oidc]`, so a route is open only where the file says so.
    "routes.auth" => ROUTE_AUTH: &str = "required";
    /// Do not send the access token upstream.
    "routes.forward_access_token" => ROUTE_FORWARD_ACCESS_TOKEN: bool = false;
    /// A policy may not set identity headers.
    "routes.policy_may_set_identity_headers" => ROUTE_POLICY_MAY_SET_IDENTITY_HEADERS: bool = false;

    // [dev_idp]
    /// The development provider's address: loopback, fixed port.
    "dev_idp.listen" => DEV_IDP_LISTEN: &str = "127.0.0.1:8081";

    // [wasm]
    /// Keep compiled Wasm policies on disk.
    "wasm.cache" => WASM_CACHE: bool = true;
    /// Where, relative to the config file.
    "wasm.cache_dir" => WASM_CACHE_DIR: &str = "data/wasm-cache";
}

/// Keys that have no value of their own when left out, each with the words the docs use for what
/// applies instead: nothing, a required value, another key, or a value only known at start.
#[cfg(test)]
const WITHOUT_VALUE: &[(&str, &str)] = &[
    ("server.admin_listen", "none"),
    ("server.tls.cert", "required"),
    ("server.tls.key", "required"),
    ("oidc.discovery", "required"),
    ("oidc.client_id", "required"),
    ("oidc.client_secret", "none"),
    ("oidc.redirect_uri", "required"),
    ("oidc.post_logout_redirect_uri", "none"),
    ("oidc.authorization_params", "none"),
    ("session.cookie_domain", "none"),
    (
        "session.secret_file",
        "`session.key` beside `path`'s folder",
    ),
    ("session.previous_secret_files", "none"),
    ("session.redis_url", "required with `store = \"redis\"`"),
    ("session.redis_url_file", "none"),
    (
        "session.redis_nodes",
        "required with `store = \"redis-cluster\"`",
    ),
    ("session.redis_ca", "public web roots"),
    ("routes.name", "required"),
    ("routes.host", "any host"),
    ("routes.upstream", "required"),
    ("routes.upstream_ca", "public web roots"),
    (
        "routes.response_timeout",
        "server.upstream_response_timeout",
    ),
    ("routes.max_request_body", "server.max_request_body"),
    ("routes.headers", "[headers]"),
    ("routes.policy", "none"),
    ("routes.whoami", "`[oidc] whoami`"),
    ("routes.policy_config", "{}"),
    ("policy_limits.threads", "the machine's cores"),
    ("server.workers", "the cores the process may use"),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use toml::Value;

    use super::*;
    use crate::config::check::{parse_duration, parse_size};
    use crate::policy::PolicyLimits;

    /// The defaults this layer names but does not own (see the module comment), as TOML values.
    fn owned_below() -> Vec<(&'static str, Value)> {
        let limits = PolicyLimits::default();
        let value = |v: u64| Value::try_from(v).unwrap();
        let timeout = humantime::format_duration(limits.timeout).to_string();
        let cookie_name = crate::cookies::default_session_cookie_name(SESSION_COOKIE_SECURE, false);
        vec![
            ("session.cookie_name", Value::String(cookie_name)),
            (
                "routes.isolation",
                Value::String(crate::policy::DEFAULT_ISOLATION.to_owned()),
            ),
            ("policy_limits.timeout", Value::String(timeout)),
            ("policy_limits.max_operations", value(limits.max_operations)),
            (
                "policy_limits.max_call_depth",
                value(limits.max_call_depth as u64),
            ),
            (
                "policy_limits.max_expr_depth",
                value(limits.max_expr_depth as u64),
            ),
            (
                "policy_limits.max_string_size",
                value(limits.max_string_size as u64),
            ),
            (
                "policy_limits.max_array_size",
                value(limits.max_array_size as u64),
            ),
            (
                "policy_limits.max_map_size",
                value(limits.max_map_size as u64),
            ),
            (
                "policy_limits.max_headers",
                value(limits.max_headers as u64),
            ),
            (
                "policy_limits.max_header_value_size",
                value(limits.max_header_value_size as u64),
            ),
            (
                "policy_limits.wasm_max_memory",
                value(limits.wasm_max_memory),
            ),
            (
                "policy_limits.wasm_pooled_uses",
                value(limits.wasm_pooled_uses),
            ),
        ]
    }

    /// One row of a table in the docs.
    struct Row {
        /// `docs/NAME.md:LINE`, for messages.
        place: String,
        /// The `[section]` named by the heading above the table, if any.
        section: Option<String>,
        /// Each cell under its column's name, in lower case.
        cells: BTreeMap<String, String>,
    }

    /// Every row of every table in `docs/{file}` (header and separator rows left out).
    fn rows(file: &str) -> Vec<Row> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rows = Vec::new();
        let mut section = None;
        let mut columns: Option<Vec<String>> = None;
        for (number, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                section = first_code_span(line)
                    .filter(|span| span.starts_with('['))
                    .map(|span| span.trim_matches(['[', ']']).to_owned());
            }
            if !line.starts_with('|') {
                columns = None;
                continue;
            }
            let cells = line
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned());
            match &columns {
                None => columns = Some(cells.map(|cell| cell.to_lowercase()).collect()),
                Some(_) if line.chars().all(|c| matches!(c, '|' | '-' | ' ')) => {}
                Some(names) => rows.push(Row {
                    place: format!("docs/{file}:{}", number + 1),
                    section: section.clone(),
                    cells: names.iter().cloned().zip(cells).collect(),
                }),
            }
        }
        rows
    }

    /// One default as a doc states it.
    struct Documented {
        /// `docs/NAME.md:LINE`, for messages.
        place: String,
        /// The default column, as written.
        cell: String,
        /// The value in it, when it is one (`"30s"`, `true`, `10000`, `20ms`, `10,000`).
        value: Option<Value>,
    }

    /// Every default stated in the tables of `docs/{file}`: tables of `key | default | …`, whose
    /// keys belong to the heading's `[section]` (or to `section`); tables of
    /// `… | default | set by | …` (or `where set`), whose `set by` names the keys; and tables whose
    /// `default` column alone says `` `key = value` ``, where the key is named without its
    /// section (returned as `*.key`).
    fn documented(file: &str, section: Option<&str>) -> Vec<(String, Documented)> {
        let mut found = Vec::new();
        for row in rows(file) {
            let set_by = row.cells.get("set by").or(row.cells.get("where set"));
            match (row.cells.get("default"), row.cells.get("key"), set_by) {
                (Some(default), Some(key), None) => {
                    let section = section
                        .map(str::to_owned)
                        .or(row.section.clone())
                        .unwrap_or_else(|| panic!("{}: keys outside a `[section]`", row.place));
                    let key = format!("{section}.{}", key.trim_matches('`'));
                    found.push((key, key_default(&row.place, default)));
                }
                (Some(default), None, Some(set_by)) => {
                    found.extend(set_by_defaults(&row.place, default, set_by));
                }
                (Some(default), None, None) => {
                    found.extend(assigned_default(&row.place, default));
                }
                _ => {}
            }
        }
        found
    }

    /// A `default` cell of a key table: a value when it starts with one in backticks.
    fn key_default(place: &str, cell: &str) -> Documented {
        let value = cell
            .starts_with('`')
            .then(|| first_code_span(cell))
            .flatten()
            .and_then(literal);
        Documented {
            place: place.to_owned(),
            cell: cell.to_owned(),
            value,
        }
    }

    /// The defaults of a `set by` row: `16, 4 KiB` for `policy_limits.max_headers`,
    /// `max_header_value_size`. A value is read loosely (`10,000`, `` `32MiB` (max …) ``).
    /// Rows set by no key (`fixed`) state none.
    fn set_by_defaults(place: &str, default: &str, set_by: &str) -> Vec<(String, Documented)> {
        let keys: Vec<String> = code_spans(set_by)
            .into_iter()
            .filter(|key| {
                key.bytes()
                    .all(|b| b.is_ascii_lowercase() || b"_.".contains(&b))
            })
            .map(|key| match key.contains('.') {
                true => key.to_owned(),
                false => format!("policy_limits.{key}"),
            })
            .collect();
        let values: Vec<&str> = default.split(", ").collect();
        if keys.len() != values.len() {
            return Vec::new();
        }
        let documented = |cell: &str| {
            let loose = cell.split(" (").next().unwrap().replace(['`', ','], "");
            Documented {
                place: place.to_owned(),
                cell: cell.to_owned(),
                value: Some(literal(&loose).unwrap_or(Value::String(loose))),
            }
        };
        keys.into_iter()
            .zip(values.into_iter().map(documented))
            .collect()
    }

    /// A `default` cell that starts `` `key = value` ``, as `*.key` and the value.
    fn assigned_default(place: &str, cell: &str) -> Option<(String, Documented)> {
        let (key, value) = first_code_span(cell)?.split_once(" = ")?;
        let documented = Documented {
            place: place.to_owned(),
            cell: cell.to_owned(),
            value: literal(value),
        };
        Some((format!("*.{key}"), documented))
    }

    /// The text between the first pair of backticks.
    fn first_code_span(text: &str) -> Option<&str> {
        code_spans(text).into_iter().next()
    }

    fn code_spans(text: &str) -> Vec<&str> {
        text.split('`').skip(1).step_by(2).collect()
    }

    /// `text` read as a TOML value, if it is one.
    fn literal(text: &str) -> Option<Value> {
        let mut table: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
        table.remove("v")
    }

    /// Equal, or the same duration, or the same size (`"32MiB"` and `33554432`, `4 KiB` and `4096`).
    fn same(code: &Value, doc: &Value) -> bool {
        let duration = |v: &Value| {
            v.as_str()
                .and_then(|s| parse_duration(&s.replace(' ', "")).ok())
        };
        let size = |v: &Value| match v {
            Value::Integer(n) => u64::try_from(*n).ok(),
            Value::String(s) => parse_size(&s.replace(' ', "")).ok(),
            _ => None,
        };
        code == doc
            || duration(code).is_some_and(|d| duration(doc) == Some(d))
            || size(code).is_some_and(|s| size(doc) == Some(s))
    }

    fn all_documented() -> Vec<(String, Documented)> {
        let mut rows = documented("config.md", None);
        rows.extend(documented("oidc.md", None));
        rows.extend(documented("policies.md", Some("policy_limits")));
        rows.extend(documented("policies-wasm.md", None));
        rows.extend(documented("security.md", None));
        rows
    }

    /// `key`, or for `*.name` the one known key whose last part is `name` (unchanged when none
    /// or several are).
    fn resolve<'a>(key: &'a str, known: &[&'a str]) -> &'a str {
        let Some(name) = key.strip_prefix("*.") else {
            return key;
        };
        let mut matches = known
            .iter()
            .filter(|known| known.rsplit('.').next() == Some(name));
        match (matches.next(), matches.next()) {
            (Some(only), None) => only,
            _ => key,
        }
    }

    /// What is wrong with how `doc` states `key`'s default, if anything.
    fn mismatch(
        key: &str,
        doc: &Documented,
        code: &BTreeMap<&str, Value>,
        without: &BTreeMap<&str, &str>,
    ) -> Option<String> {
        let Documented { place, cell, value } = doc;
        if let Some(default) = code.get(key) {
            let agrees = value.as_ref().is_some_and(|value| same(default, value));
            return (!agrees)
                .then(|| format!("{place}: {key} is {default} in code, {cell} in the docs"));
        }
        match without.get(key) {
            Some(words) if cell.contains(words) => None,
            Some(words) => Some(format!(
                "{place}: {key} has no default value; the docs should say {words:?}, not {cell}"
            )),
            None => Some(format!(
                "{place}: {key} is documented, but neither in the defaults table nor in WITHOUT_VALUE"
            )),
        }
    }

    #[test]
    fn the_docs_state_the_defaults_of_this_table() {
        let code: BTreeMap<&str, Value> = table()
            .into_iter()
            .filter(|(key, _)| *key != "headers")
            .chain(owned_below())
            .collect();
        let without: BTreeMap<&str, &str> = WITHOUT_VALUE.iter().copied().collect();
        let known: Vec<&str> = code.keys().chain(without.keys()).copied().collect();
        let documented: Vec<(String, Documented)> = all_documented()
            .into_iter()
            .map(|(key, doc)| (resolve(&key, &known).to_owned(), doc))
            .collect();
        let mut wrong: Vec<String> = documented
            .iter()
            .filter_map(|(key, doc)| mismatch(key, doc, &code, &without))
            .collect();
        for key in code.keys().chain(without.keys()) {
            if !documented.iter().any(|(documented, _)| documented == key) {
                wrong.push(format!("{key}: no doc table states its default"));
            }
        }
        assert!(
            wrong.is_empty(),
            "docs and defaults differ:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn the_docs_list_the_default_identity_headers() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/oidc.md");
        let text = std::fs::read_to_string(path).unwrap();
        let after = text
            .split_once("### `[headers]`")
            .expect("oidc.md has a `[headers]` section")
            .1;
        let block = after
            .split_once("```toml\n")
            .and_then(|(_, rest)| rest.split_once("```"))
            .expect("the `[headers]` section shows the default in a toml block")
            .0;
        let parsed: toml::Table = toml::from_str(block).unwrap();
        let mut documented: Vec<(String, String)> = parsed["headers"]
            .as_table()
            .unwrap()
            .iter()
            .map(|(name, claim)| (name.clone(), claim.as_str().unwrap().to_owned()))
            .collect();
        let mut code: Vec<(String, String)> = HEADERS
            .iter()
            .map(|(name, claim)| ((*name).to_owned(), (*claim).to_owned()))
            .collect();
        documented.sort();
        code.sort();
        assert_eq!(documented, code);
    }
}
