//! echo-inputs: a test fixture, not an example. Allows every request and reflects each value the
//! policy can read as a header, so the host's tests see exactly what a policy receives through
//! the `request` and `identity` handles.

use portcullis_sdk::{Config, Decision, Identity, Policy, Request, export_policy};

struct EchoInputs;

impl Policy for EchoInputs {
    fn decide(request: &Request, identity: Option<&Identity>, config: &Config) -> Decision {
        // Asked before `headers()`, so the single-header question reaches the host.
        let tenant = request.header("X-Tenant").unwrap_or_default();
        let header_names: Vec<&str> = request.headers().iter().map(|(n, _)| n.as_str()).collect();
        let mut decision = Decision::allow()
            .header(
                "X-Echo-Request",
                format!(
                    "{} {} ?{} @{} from {} on {}",
                    request.method(),
                    request.path(),
                    request.query(),
                    request.host(),
                    request.client_ip(),
                    request.route()
                ),
            )
            .header("X-Echo-Tenant", tenant)
            .header("X-Echo-Header-Names", header_names.join(","))
            .header("X-Echo-Config", config.str("note").unwrap_or("-"));
        if let Some(user) = identity {
            // `has_group` first (asks the host), then the whole list.
            let member = user.has_group("staff");
            decision = decision
                .header(
                    "X-Echo-User",
                    format!(
                        "{} {} {} staff={member}",
                        user.subject(),
                        user.username().unwrap_or("-"),
                        user.email().unwrap_or("-"),
                    ),
                )
                .header("X-Echo-Groups", user.groups().join(","))
                .header(
                    "X-Echo-Level",
                    user.claim::<u32>("level")
                        .map_or("-".into(), |l| l.to_string()),
                )
                .header("X-Echo-Claim-Count", user.claims().len().to_string());
        }
        decision
    }
}

export_policy!(EchoInputs);

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_sdk::testing::{config, identity, request};
    use serde_json::json;

    #[test]
    fn reflects_what_it_reads() {
        let get = request("GET", "/x").with_header("X-Tenant", "blue");
        let Decision::Allow(headers) =
            EchoInputs::decide(&get, Some(&identity("a", &["staff"])), &config(json!({})))
        else {
            panic!("echo-inputs always allows")
        };
        assert!(headers.contains(&("X-Echo-Tenant".into(), "blue".into())));
        assert!(headers.contains(&("X-Echo-User".into(), "a a - staff=true".into())));
    }
}
