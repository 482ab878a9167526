//! [`PolicyIdentity`]: the user as every policy sees them, built once per session from the ID
//! token's claims and shared by the session's requests; with it, the decisions remembered for
//! that user ([`RememberedDecisions`]).

use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};

use super::decision::Decision;

/// The user as policies see them. Built once per session ([`PolicyIdentity::from_json`]) and
/// read by both engines: a Rhai script through `claims` and its helpers, a Wasm policy through
/// its `identity` handle. Cloning it costs a reference count.
///
/// Both engines read the same values: the token's claims, except that `groups` is always a list
/// of strings — one group sent as a string becomes a one-element list, no claim an empty list,
/// and elements that are not strings are left out.
#[derive(Clone, Debug)]
pub struct PolicyIdentity(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    subject: String,
    username: Option<String>,
    email: Option<String>,
    groups: Vec<String>,
    /// Every claim, `groups` as described on [`PolicyIdentity`].
    claims: Map<String, Value>,
    /// `claims` as JSON text, made on first use.
    claims_json: OnceLock<Box<str>>,
    /// `claims` as Rhai values, made by the Rhai engine on first use.
    script_claims: OnceLock<Arc<rhai::Map>>,
    decisions: RememberedDecisions,
}

impl PolicyIdentity {
    /// The user of an ID token with these claims.
    pub fn from_json(claims: &Map<String, Value>) -> Self {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let groups: Vec<String> = match claims.get("groups") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let mut normalised = claims.clone();
        normalised.insert(
            "groups".to_owned(),
            groups.iter().cloned().map(Value::String).collect(),
        );
        PolicyIdentity(Arc::new(Inner {
            subject: text("sub").unwrap_or_default(),
            username: text("preferred_username"),
            email: text("email"),
            groups,
            claims: normalised,
            claims_json: OnceLock::new(),
            script_claims: OnceLock::new(),
            decisions: RememberedDecisions::default(),
        }))
    }

    /// No user: no claims but an empty `groups` list (made once; a Rhai script on a route
    /// without a session reads this).
    pub fn anonymous() -> Self {
        static ANONYMOUS: OnceLock<PolicyIdentity> = OnceLock::new();
        ANONYMOUS
            .get_or_init(|| Self::from_json(&Map::new()))
            .clone()
    }

    /// The `sub` claim (empty when absent).
    pub fn subject(&self) -> &str {
        &self.0.subject
    }

    /// The `preferred_username` claim, if it is a string.
    pub fn username(&self) -> Option<&str> {
        self.0.username.as_deref()
    }

    /// The `email` claim, if it is a string.
    pub fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }

    /// The `groups` claim as a list (see [`PolicyIdentity`]).
    pub fn groups(&self) -> &[String] {
        &self.0.groups
    }

    /// Whether `group` is one of [`PolicyIdentity::groups`].
    pub fn has_group(&self, group: &str) -> bool {
        self.0.groups.iter().any(|g| g == group)
    }

    /// Every claim, `groups` as a list.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.0.claims
    }

    /// [`PolicyIdentity::claims`] as one JSON object (text made once).
    pub fn claims_json(&self) -> &str {
        self.0
            .claims_json
            .get_or_init(|| Value::Object(self.0.claims.clone()).to_string().into())
    }

    /// The claims as Rhai values: made by `convert` on first use, then shared.
    pub(crate) fn script_claims(
        &self,
        convert: impl FnOnce(&Map<String, Value>) -> rhai::Map,
    ) -> &Arc<rhai::Map> {
        self.0
            .script_claims
            .get_or_init(|| Arc::new(convert(&self.0.claims)))
    }

    /// The decisions remembered for this user.
    pub(crate) fn decisions(&self) -> &RememberedDecisions {
        &self.0.decisions
    }
}

/// Decisions remembered for one user, by policy: a policy whose decision depends on nothing but
/// the claims and its config decides the same for every request of a session, so it runs once
/// per session instead of once per request (which policies qualify: `rhai/remember.rs`).
/// Bounded: each reload compiles policies anew (new ids), so the oldest entries make room.
#[derive(Debug, Default)]
pub(crate) struct RememberedDecisions {
    entries: Mutex<Vec<(u64, Decision)>>,
}

/// How many policies' decisions one session remembers.
const REMEMBERED_PER_SESSION: usize = 16;

impl RememberedDecisions {
    /// The decision policy `policy_id` made for this user, if remembered.
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn identity(claims: Value) -> PolicyIdentity {
        PolicyIdentity::from_json(claims.as_object().unwrap())
    }

    #[test]
    fn groups_is_always_a_list_of_strings_in_every_view() {
        for (claims, groups) in [
            (json!({ "groups": ["a", "b"] }), vec!["a", "b"]),
            (json!({ "groups": "a" }), vec!["a"]),
            (json!({ "groups": ["a", 1, null, ["b"]] }), vec!["a"]),
            (json!({ "groups": 7 }), vec![]),
            (json!({}), vec![]),
        ] {
            let user = identity(claims.clone());
            assert_eq!(user.groups(), groups, "{claims}");
            assert_eq!(user.claims()["groups"], json!(groups), "{claims}");
            let parsed: Value = serde_json::from_str(user.claims_json()).unwrap();
            assert_eq!(parsed["groups"], json!(groups), "{claims}");
        }
    }

    #[test]
    fn the_named_claims_are_read_when_they_are_strings() {
        let user =
            identity(json!({ "sub": "u1", "preferred_username": "alice", "email": 7, "level": 3 }));
        assert_eq!(
            (user.subject(), user.username(), user.email()),
            ("u1", Some("alice"), None)
        );
        assert_eq!(user.claims()["level"], json!(3));
        assert_eq!(PolicyIdentity::anonymous().subject(), "");
        assert!(PolicyIdentity::anonymous().groups().is_empty());
    }
}
