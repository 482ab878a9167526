//! Write [Portcullis](https://github.com/) access policies in Rust.
//!
//! A policy is a type implementing [`Policy`]: it gets the [`Request`], the user's [`Identity`]
//! (when logged in) and the route's [`Config`], and returns a [`Decision`]. [`export_policy!`] turns
//! it into a WebAssembly component the proxy loads:
//!
//! ```
//! use portcullis_sdk::{Config, Decision, Identity, Policy, Request, export_policy};
//!
//! struct RequireAdmins;
//!
//! impl Policy for RequireAdmins {
//!     fn decide(_request: &Request, identity: Option<&Identity>, _config: &Config) -> Decision {
//!         match identity {
//!             Some(user) if user.has_group("admins") => Decision::allow().header("X-Role", "admin"),
//!             Some(_) => Decision::deny(403, "admins only"),
//!             None => Decision::login(),
//!         }
//!     }
//! }
//!
//! export_policy!(RequireAdmins);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`). The policy
//! runs sandboxed: it can compute and [`log`], nothing else. The contract is `wit/policy.wit`.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub mod log;
#[cfg(feature = "testing")]
pub mod testing;

/// The request being decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The canonical path routing decided on (decoded, no `..`, no `//`, no `;params`).
    pub path: String,
    /// The raw query without `?`; empty when there is none.
    pub query: String,
    /// The canonical host: lower case, without port.
    pub host: String,
    /// Request headers: lower-case names, one entry per value.
    pub headers: Vec<(String, String)>,
    /// The TCP peer's address.
    pub client_ip: String,
    /// The route's name.
    pub route: String,
}

impl Request {
    /// The first value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// The logged-in user.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The `sub` claim.
    pub subject: String,
    /// The `groups` claim (empty when absent).
    pub groups: Vec<String>,
    /// The `preferred_username` claim.
    pub username: Option<String>,
    /// The `email` claim.
    pub email: Option<String>,
    /// All claims: parsed from the host's JSON only when a policy asks for one.
    claims: Claims,
}

/// The claims of an identity, parsed on first use.
#[derive(Debug, Clone)]
struct Claims {
    json: String,
    parsed: std::sync::OnceLock<Map<String, Value>>,
}

impl Claims {
    fn get(&self) -> &Map<String, Value> {
        self.parsed
            .get_or_init(|| serde_json::from_str(&self.json).unwrap_or_default())
    }
}

impl PartialEq for Claims {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Identity {
    /// An identity from all the claims of an ID token.
    pub fn from_claims(claims: Map<String, Value>) -> Self {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let groups = match claims.get("groups") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Identity {
            subject: text("sub").unwrap_or_default(),
            groups,
            username: text("preferred_username"),
            email: text("email"),
            claims: Claims {
                json: String::new(),
                parsed: claims.into(),
            },
        }
    }

    /// Whether the user is in `group`.
    pub fn has_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Whether the user is in any of `groups`.
    pub fn has_any_group(&self, groups: &[&str]) -> bool {
        groups.iter().any(|g| self.has_group(g))
    }

    /// A claim converted to `T`; `None` when absent or of another type.
    pub fn claim<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        serde_json::from_value(self.claims.get().get(name)?.clone()).ok()
    }

    /// Every claim.
    pub fn claims(&self) -> &Map<String, Value> {
        self.claims.get()
    }
}

/// The route's `[routes.policy_config]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config(Map<String, Value>);

impl Config {
    /// A config from a JSON object.
    pub fn new(values: Map<String, Value>) -> Self {
        Config(values)
    }

    /// A value converted to `T`; `None` when absent or of another type.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        serde_json::from_value(self.0.get(key)?.clone()).ok()
    }

    /// A string value.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.as_str()
    }
}

/// What a policy decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through, setting these headers upstream.
    Allow(Vec<(String, String)>),
    /// Refuse it with a status (400–599) and an optional reason the client sees.
    Deny {
        /// The status.
        status: u16,
        /// The reason.
        reason: Option<String>,
    },
    /// Send the user to log in (again).
    Login,
}

impl Decision {
    /// Let the request through (add headers with [`Decision::header`]).
    pub fn allow() -> Self {
        Decision::Allow(Vec::new())
    }

    /// Adds a header to set upstream (only on an allow; ignored otherwise).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Decision::Allow(headers) = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// Refuse with `status` and a reason shown to the client.
    pub fn deny(status: u16, reason: impl Into<String>) -> Self {
        Decision::Deny {
            status,
            reason: Some(reason.into()),
        }
    }

    /// Refuse with `status` and the default text.
    pub fn deny_status(status: u16) -> Self {
        Decision::Deny {
            status,
            reason: None,
        }
    }

    /// Send the user to log in.
    pub fn login() -> Self {
        Decision::Login
    }
}

/// A policy: decides one request.
pub trait Policy {
    /// Decides `request` for `identity` (absent without a login) under the route's `config`.
    fn decide(request: &Request, identity: Option<&Identity>, config: &Config) -> Decision;
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
#[allow(unsafe_code, missing_docs)]
pub mod __bindings {
    wit_bindgen::generate!({
        world: "policy",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "portcullis_sdk::__bindings",
    });
}

/// Glue between the generated bindings and the idiomatic types. Not part of the API.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __private {
    use super::__bindings::portcullis::policy::types as wit;
    use super::*;

    std::thread_local! {
        /// The last config text and what it parsed to: a route's config is the same on every
        /// call, so a reused instance parses it once.
        static LAST_CONFIG: std::cell::RefCell<Option<(String, std::rc::Rc<Config>)>> =
            const { std::cell::RefCell::new(None) };
    }

    fn parsed_config(text: String) -> std::rc::Rc<Config> {
        LAST_CONFIG.with_borrow_mut(|last| match last {
            Some((seen, config)) if *seen == text => config.clone(),
            _ => {
                let config =
                    std::rc::Rc::new(Config(serde_json::from_str(&text).unwrap_or_default()));
                *last = Some((text, config.clone()));
                config
            }
        })
    }

    /// Converts the call's arguments, runs the policy, converts its decision.
    pub fn decide<P: Policy>(
        request: wit::Request,
        identity: Option<wit::Identity>,
        config_json: String,
    ) -> wit::Decision {
        let request = Request {
            method: request.method,
            path: request.path,
            query: request.query,
            host: request.host,
            headers: request
                .headers
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect(),
            client_ip: request.client_ip,
            route: request.route,
        };
        let identity = identity.map(|identity| Identity {
            subject: identity.subject,
            groups: identity.groups,
            username: identity.username,
            email: identity.email,
            claims: Claims {
                json: identity.claims_json,
                parsed: std::sync::OnceLock::new(),
            },
        });
        let config = parsed_config(config_json);
        match P::decide(&request, identity.as_ref(), &config) {
            Decision::Allow(headers) => wit::Decision::Allow(
                headers
                    .into_iter()
                    .map(|(name, value)| wit::Header { name, value })
                    .collect(),
            ),
            Decision::Deny { status, reason } => {
                wit::Decision::Deny(wit::Denial { status, reason })
            }
            Decision::Login => wit::Decision::Login,
        }
    }
}

/// Exports a [`Policy`] as the component's `decide` function. Use once per policy crate.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __PortcullisPolicy;
            impl $crate::__bindings::Guest for __PortcullisPolicy {
                fn decide(
                    request: $crate::__bindings::portcullis::policy::types::Request,
                    identity: ::core::option::Option<$crate::__bindings::portcullis::policy::types::Identity>,
                    config_json: ::std::string::String,
                ) -> $crate::__bindings::portcullis::policy::types::Decision {
                    $crate::__private::decide::<$policy>(request, identity, config_json)
                }
            }
            $crate::__bindings::__export_policy_world!(__PortcullisPolicy with_types_in $crate::__bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{config, identity, request};
    use serde_json::json;

    #[test]
    fn decisions_build_fluently() {
        assert_eq!(
            Decision::allow()
                .header("X-Role", "admin")
                .header("X-Team", "ops"),
            Decision::Allow(vec![
                ("X-Role".into(), "admin".into()),
                ("X-Team".into(), "ops".into())
            ])
        );
        assert_eq!(
            Decision::deny(403, "no").header("X-Ignored", "1"),
            Decision::deny(403, "no")
        );
        assert_eq!(
            Decision::deny_status(404),
            Decision::Deny {
                status: 404,
                reason: None
            }
        );
    }

    #[test]
    fn identities_expose_groups_and_typed_claims() {
        let claims =
            json!({ "sub": "a", "groups": ["x", "y"], "age": 42, "email": "a@example.com" });
        let user = Identity::from_claims(claims.as_object().cloned().unwrap());
        assert!(user.has_group("x") && user.has_any_group(&["z", "y"]) && !user.has_group("z"));
        assert_eq!(user.claim::<u32>("age"), Some(42));
        assert_eq!(user.claim::<String>("age"), None);
        assert_eq!(user.email.as_deref(), Some("a@example.com"));
        assert!(identity("b", &[]).groups.is_empty());
    }

    #[test]
    fn requests_and_configs_read_easily() {
        let mut get = request("GET", "/x");
        get.headers.push(("x-tenant".into(), "blue".into()));
        assert_eq!(get.header("X-Tenant"), Some("blue"));
        let settings = config(json!({ "group": "admins", "limit": 3 }));
        assert_eq!(settings.str("group"), Some("admins"));
        assert_eq!(settings.get::<u8>("limit"), Some(3));
        assert_eq!(settings.get::<u8>("missing"), None);
    }
}
