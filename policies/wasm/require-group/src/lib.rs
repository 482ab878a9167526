//! require-group: members of the configured group(s) get through; everyone else gets 403 — the
//! same decisions as `policies/require-group.rhai`.
//!
//! ```toml
//! [routes.policy_config]
//! group = "admins"               # one group…
//! # groups = ["admins", "ops"]   # …or any of several
//! ```

use portcullis_sdk::{Config, Decision, Identity, Policy, Request, export_policy};

struct RequireGroup;

impl Policy for RequireGroup {
    fn decide(_request: &Request, identity: Option<&Identity>, config: &Config) -> Decision {
        let required: Vec<String> = config
            .get("groups")
            .unwrap_or_else(|| vec![config.str("group").unwrap_or("admins").to_owned()]);
        let member =
            identity.is_some_and(|user| required.iter().any(|group| user.has_group(group)));
        if member {
            Decision::allow()
        } else {
            Decision::deny(403, format!("members of {} only", required.join(" or ")))
        }
    }
}

export_policy!(RequireGroup);

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_sdk::testing::{config, identity, request};
    use serde_json::json;

    #[test]
    fn members_pass_and_others_are_refused() {
        let admins = config(json!({ "group": "admins" }));
        let get = request("GET", "/");
        assert_eq!(
            RequireGroup::decide(&get, Some(&identity("a", &["admins"])), &admins),
            Decision::allow()
        );
        assert_eq!(
            RequireGroup::decide(&get, Some(&identity("b", &["staff"])), &admins),
            Decision::deny(403, "members of admins only")
        );
        assert_eq!(
            RequireGroup::decide(&get, None, &admins),
            Decision::deny(403, "members of admins only")
        );
    }
}
