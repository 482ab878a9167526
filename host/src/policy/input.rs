//! What a policy sees: the request (canonical path, lower-case header names, client address) and
//! the user's claims, prepared so a decision costs as little as possible.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;

use super::decision::Decision;

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
    /// Decisions of policies that depend on nothing but these claims and their config.
    pub(crate) decisions: Arc<RememberedDecisions>,
}

/// Decisions remembered for one set of claims, by policy: a Rhai policy that reads neither the
/// request nor the route and does not log decides the same for every request of a session (Rhai
/// has no clock or randomness), so it runs once per session instead of once per request. Bounded:
/// each reload compiles policies anew (new ids), so the oldest entries make room.
#[derive(Debug, Default)]
pub(crate) struct RememberedDecisions {
    entries: std::sync::Mutex<Vec<(u64, Decision)>>,
}

/// How many policies' decisions one session remembers.
const REMEMBERED_PER_SESSION: usize = 16;

impl RememberedDecisions {
    /// The decision policy `policy_id` made for these claims, if remembered.
    pub(crate) fn get(&self, policy_id: u64) -> Option<Decision> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .find(|(id, _)| *id == policy_id)
            .map(|(_, decision)| decision.clone())
    }

    /// Remembers `decision` of policy `policy_id`.
    pub(crate) fn remember(&self, policy_id: u64, decision: &Decision) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.iter().any(|(id, _)| *id == policy_id) {
            return;
        }
        if entries.len() == REMEMBERED_PER_SESSION {
            entries.remove(0);
        }
        entries.push((policy_id, decision.clone()));
    }
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
            decisions: Arc::default(),
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
