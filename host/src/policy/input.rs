//! What a policy sees: the request (canonical path, lower-case header names, client address) and
//! the user's claims, prepared so a decision costs as little as possible.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

/// The request as a policy sees it.
pub struct PolicyRequest<'a> {
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Canonical (decision) path.
    pub path: &'a str,
    /// Raw query, without `?` (empty when none).
    pub query: &'a str,
    /// Canonical host.
    pub host: &'a str,
    /// Request headers (after identity and forwarding headers were stripped).
    pub headers: &'a HeaderMap,
    /// The client's address (the TCP peer).
    pub client_ip: IpAddr,
    /// The route's name.
    pub route: &'a str,
}

/// The claims of a session, converted once for policies and shared by every request of the
/// session. `groups` is always an array (empty when the provider sent none).
#[derive(Clone, Debug)]
pub struct PolicyClaims {
    pub(crate) map: Arc<rhai::Map>,
    pub(crate) groups: Arc<Vec<String>>,
    /// All claims as JSON text, for Wasm policies.
    pub(crate) json: Arc<str>,
    /// The identity as Wasm policies receive it, converted on first use and shared.
    pub(crate) wasm_identity: Arc<std::sync::OnceLock<Arc<super::wasm::WasmIdentity>>>,
}

impl PolicyClaims {
    /// The claims of an ID token.
    pub fn from_json(claims: &serde_json::Map<String, serde_json::Value>) -> Self {
        let mut map = rhai::Map::new();
        for (name, value) in claims {
            if let Ok(value) = rhai::serde::to_dynamic(value) {
                map.insert(name.as_str().into(), value);
            }
        }
        let groups: Vec<String> = match claims.get("groups") {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        map.insert(
            "groups".into(),
            rhai::Dynamic::from_array(groups.iter().map(|g| g.clone().into()).collect()),
        );
        PolicyClaims {
            json: serde_json::Value::Object(claims.clone()).to_string().into(),
            wasm_identity: Arc::default(),
            map: Arc::new(map),
            groups: Arc::new(groups),
        }
    }

    /// No user: an empty map whose `groups` is an empty array (made once).
    pub fn anonymous() -> Self {
        static ANONYMOUS: std::sync::OnceLock<PolicyClaims> = std::sync::OnceLock::new();
        ANONYMOUS
            .get_or_init(|| Self::from_json(&serde_json::Map::new()))
            .clone()
    }
}
