//! identity-headers: passes everyone with a login and tells the backend who they are in
//! `X-Role` (admin, staff or user) and `X-User`; asks for a login otherwise.

use portcullis_sdk::{Config, Decision, Identity, Policy, Request, export_policy, log};

struct IdentityHeaders;

impl Policy for IdentityHeaders {
    fn decide(request: &Request, identity: Option<&Identity>, _config: &Config) -> Decision {
        let Some(user) = identity else {
            return Decision::login();
        };
        let role = if user.has_group("admins") {
            "admin"
        } else if user.has_group("staff") {
            "staff"
        } else {
            "user"
        };
        log::debug(&format!(
            "{} {} as {role}",
            request.method(),
            request.path()
        ));
        let name = user.username().unwrap_or(user.subject()).to_owned();
        Decision::allow()
            .header("X-Role", role)
            .header("X-User", name)
    }
}

export_policy!(IdentityHeaders);
