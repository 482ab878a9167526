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

mod identity;
pub mod log;
mod request;
#[cfg(feature = "testing")]
pub mod testing;

pub use identity::Identity;
pub use request::Request;

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
    fn decide(request: &Request<'_>, identity: Option<&Identity<'_>>, config: &Config) -> Decision;
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

    impl request::RequestSource for wit::Request {
        fn method(&self) -> String {
            wit::Request::method(self)
        }
        fn path(&self) -> String {
            wit::Request::path(self)
        }
        fn query(&self) -> String {
            wit::Request::query(self)
        }
        fn host(&self) -> String {
            wit::Request::host(self)
        }
        fn header(&self, name: &str) -> Option<String> {
            wit::Request::header(self, name)
        }
        fn headers(&self) -> Vec<(String, String)> {
            wit::Request::headers(self)
                .into_iter()
                .map(|h| (h.name, h.value))
                .collect()
        }
        fn client_ip(&self) -> String {
            wit::Request::client_ip(self)
        }
        fn route(&self) -> String {
            wit::Request::route(self)
        }
    }

    impl identity::IdentitySource for wit::Identity {
        fn subject(&self) -> String {
            wit::Identity::subject(self)
        }
        fn has_group(&self, group: &str) -> bool {
            wit::Identity::has_group(self, group)
        }
        fn groups(&self) -> Vec<String> {
            wit::Identity::groups(self)
        }
        fn username(&self) -> Option<String> {
            wit::Identity::username(self)
        }
        fn email(&self) -> Option<String> {
            wit::Identity::email(self)
        }
        fn claim(&self, name: &str) -> Option<String> {
            wit::Identity::claim(self, name)
        }
        fn claims_json(&self) -> String {
            wit::Identity::claims_json(self)
        }
    }

    /// Wraps the call's handles, runs the policy, converts its decision.
    pub fn decide<P: Policy>(
        request: &wit::Request,
        identity: Option<&wit::Identity>,
        config_json: String,
    ) -> wit::Decision {
        let request = Request::from_source(request);
        let identity = identity.map(|identity| Identity::from_source(identity));
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
                    request: &$crate::__bindings::portcullis::policy::types::Request,
                    identity: ::core::option::Option<&$crate::__bindings::portcullis::policy::types::Identity>,
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
        assert_eq!(user.email(), Some("a@example.com"));
        assert_eq!(user.subject(), "a");
        assert!(identity("b", &[]).groups().is_empty());
    }

    #[test]
    fn requests_and_configs_read_easily() {
        let get = request("GET", "/x").with_header("X-Tenant", "blue");
        assert_eq!(get.header("x-tenant").as_deref(), Some("blue"));
        assert_eq!(get.headers(), [("x-tenant".to_owned(), "blue".to_owned())]);
        assert_eq!(
            (get.method(), get.path(), get.host()),
            ("GET", "/x", "localhost")
        );
        let settings = config(json!({ "group": "admins", "limit": 3 }));
        assert_eq!(settings.str("group"), Some("admins"));
        assert_eq!(settings.get::<u8>("limit"), Some(3));
        assert_eq!(settings.get::<u8>("missing"), None);
    }
}
