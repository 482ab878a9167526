//! The demo users of the development identity provider. Fixed, public, and only ever for trying
//! Portcullis out.

/// A demo user.
#[derive(Debug)]
pub struct DemoUser {
    /// The login name (`preferred_username`).
    pub username: &'static str,
    /// The password, printed by `portcullis demo`.
    pub password: &'static str,
    /// The stable subject identifier (`sub`).
    pub subject: &'static str,
    /// Display name.
    pub name: &'static str,
    /// E-mail address.
    pub email: &'static str,
    /// Group memberships (`groups` claim).
    pub groups: &'static [&'static str],
}

/// alice (admins, staff), bob (staff), carol (no group).
pub const DEMO_USERS: &[DemoUser] = &[
    DemoUser {
        username: "alice",
        password: "alice",
        subject: "u-1001",
        name: "Alice Example",
        email: "alice@example.test",
        groups: &["admins", "staff"],
    },
    DemoUser {
        username: "bob",
        password: "bob",
        subject: "u-1002",
        name: "Bob Example",
        email: "bob@example.test",
        groups: &["staff"],
    },
    DemoUser {
        username: "carol",
        password: "carol",
        subject: "u-1003",
        name: "Carol Example",
        email: "carol@example.test",
        groups: &[],
    },
];

/// The user with these credentials.
pub fn authenticate(username: &str, password: &str) -> Option<&'static DemoUser> {
    DEMO_USERS
        .iter()
        .find(|user| user.username == username && user.password == password)
}

impl DemoUser {
    /// The claims of ID tokens and userinfo for this user.
    pub fn claims(&self) -> serde_json::Map<String, serde_json::Value> {
        let claims = serde_json::json!({
            "sub": self.subject,
            "preferred_username": self.username,
            "name": self.name,
            "email": self.email,
            "email_verified": true,
            "groups": self.groups,
            "locale": "en",
        });
        match claims {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("a JSON object literal"),
        }
    }
}
