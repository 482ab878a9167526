//! Helpers for unit-testing a policy natively (feature `testing`):
//!
//! ```
//! use portcullis_sdk::testing::{identity, request};
//! use portcullis_sdk::{Config, Decision, Policy};
//! # struct MyPolicy;
//! # impl Policy for MyPolicy {
//! #     fn decide(_: &portcullis_sdk::Request, i: Option<&portcullis_sdk::Identity>, _: &Config) -> Decision {
//! #         if i.is_some_and(|i| i.has_group("admins")) { Decision::allow() } else { Decision::deny(403, "no") }
//! #     }
//! # }
//! let alice = identity("alice", &["admins"]);
//! assert_eq!(MyPolicy::decide(&request("GET", "/"), Some(&alice), &Config::default()), Decision::allow());
//! ```

use serde_json::{Map, Value, json};

use crate::{Config, Identity, Request};

/// A request with `method` and `path` on host `localhost` from `127.0.0.1`, route `test`
/// ([`Request::new`]; add headers and the rest with its `with_` methods).
pub fn request(method: &str, path: &str) -> Request<'static> {
    Request::new(method, path)
}

/// A user `subject` in `groups` (also their `preferred_username`).
pub fn identity(subject: &str, groups: &[&str]) -> Identity<'static> {
    let claims = json!({ "sub": subject, "preferred_username": subject, "groups": groups });
    Identity::from_claims(claims.as_object().cloned().unwrap_or_default())
}

/// A config from a JSON object, e.g. `config(json!({"group": "admins"}))`.
pub fn config(values: Value) -> Config {
    Config::new(values.as_object().cloned().unwrap_or_else(Map::new))
}
