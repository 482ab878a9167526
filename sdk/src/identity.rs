//! The logged-in user.

use std::cell::OnceCell;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Where the values of an [`Identity`] not yet read come from: the proxy, during a call.
pub(crate) trait IdentitySource {
    fn subject(&self) -> String;
    fn has_group(&self, group: &str) -> bool;
    fn groups(&self) -> Vec<String>;
    fn username(&self) -> Option<String>;
    fn email(&self) -> Option<String>;
    fn claim(&self, name: &str) -> Option<String>;
    fn claims_json(&self) -> String;
}

/// The logged-in user, from the ID token.
///
/// In the proxy each value is fetched the first time it is read (then kept): `has_group` asks the
/// proxy about that one group, so a user in many groups costs nothing extra.
/// [`Identity::from_claims`] builds one for unit tests.
#[derive(Clone)]
pub struct Identity<'a> {
    source: Option<&'a dyn IdentitySource>,
    subject: OnceCell<String>,
    groups: OnceCell<Vec<String>>,
    username: OnceCell<Option<String>>,
    email: OnceCell<Option<String>>,
    claims: OnceCell<Map<String, Value>>,
}

impl<'a> Identity<'a> {
    /// A user read from the proxy.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn from_source(source: &'a dyn IdentitySource) -> Self {
        Identity {
            source: Some(source),
            subject: OnceCell::new(),
            groups: OnceCell::new(),
            username: OnceCell::new(),
            email: OnceCell::new(),
            claims: OnceCell::new(),
        }
    }

    /// The `sub` claim.
    pub fn subject(&self) -> &str {
        self.subject
            .get_or_init(|| self.source.map(|s| s.subject()).unwrap_or_default())
    }

    /// The `groups` claim (empty when absent).
    pub fn groups(&self) -> &[String] {
        self.groups
            .get_or_init(|| self.source.map(|s| s.groups()).unwrap_or_default())
    }

    /// The `preferred_username` claim.
    pub fn username(&self) -> Option<&str> {
        self.username
            .get_or_init(|| self.source.and_then(|s| s.username()))
            .as_deref()
    }

    /// The `email` claim.
    pub fn email(&self) -> Option<&str> {
        self.email
            .get_or_init(|| self.source.and_then(|s| s.email()))
            .as_deref()
    }

    /// Whether the user is in `group`.
    pub fn has_group(&self, group: &str) -> bool {
        match (self.groups.get(), self.source) {
            (None, Some(source)) => source.has_group(group),
            _ => self.groups().iter().any(|g| g == group),
        }
    }

    /// Whether the user is in any of `groups`.
    pub fn has_any_group(&self, groups: &[&str]) -> bool {
        groups.iter().any(|g| self.has_group(g))
    }

    /// A claim converted to `T`; `None` when absent or of another type.
    pub fn claim<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        match (self.claims.get(), self.source) {
            (None, Some(source)) => serde_json::from_str(&source.claim(name)?).ok(),
            _ => serde_json::from_value(self.claims().get(name)?.clone()).ok(),
        }
    }

    /// Every claim.
    pub fn claims(&self) -> &Map<String, Value> {
        self.claims.get_or_init(|| {
            self.source
                .and_then(|s| serde_json::from_str(&s.claims_json()).ok())
                .unwrap_or_default()
        })
    }
}

impl Identity<'static> {
    /// A user from all the claims of an ID token. For unit tests.
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
            source: None,
            subject: OnceCell::from(text("sub").unwrap_or_default()),
            groups: OnceCell::from(groups),
            username: OnceCell::from(text("preferred_username")),
            email: OnceCell::from(text("email")),
            claims: OnceCell::from(claims),
        }
    }
}

impl std::fmt::Debug for Identity<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject())
            .finish_non_exhaustive()
    }
}
