//! report-inputs: a test fixture, not an example. Allows every request and reports every input it
//! read as one JSON object, in the header `x-inputs`. `report-inputs.rhai` beside this crate is the
//! same policy in Rhai: the host's parity test runs both over a table of requests and users and
//! requires the same report, so the two engines cannot disagree on an input unnoticed.
//!
//! Config: `headers` (names to ask for, in any case), `claims` (claim names), `group`, `values`.

use portcullis_sdk::{Config, Decision, Identity, Policy, Request, export_policy};
use serde_json::{Map, Value, json};

struct ReportInputs;

impl Policy for ReportInputs {
    fn decide(request: &Request, identity: Option<&Identity>, config: &Config) -> Decision {
        let names: Vec<String> = config.get("headers").unwrap_or_default();
        let text = |value: Option<String>| value.map_or(Value::Null, Value::String);
        // Asked one by one before `headers()` is read: the host answers each.
        let asked: Map<String, Value> = names
            .iter()
            .map(|name| (name.clone(), text(request.header(name))))
            .collect();
        let mut header_names: Vec<String> =
            request.headers().iter().map(|(name, _)| name.clone()).collect();
        header_names.sort();
        header_names.dedup();
        // Asked again once `headers()` was read: the SDK answers from its copy.
        let listed: Map<String, Value> = names
            .iter()
            .map(|name| (name.clone(), text(request.header(name))))
            .collect();
        let user = identity.map_or(Value::Null, |user| report_user(user, config));
        let report = json!({
            "method": request.method(),
            "path": request.path(),
            "query": request.query(),
            "host": request.host(),
            "client_ip": request.client_ip(),
            "route": request.route(),
            "header": asked,
            "listed": listed,
            "header_names": header_names,
            "values": config.get::<Value>("values"),
            "user": user,
        });
        Decision::allow().header("x-inputs", report.to_string())
    }
}

fn report_user(user: &Identity, config: &Config) -> Value {
    let names: Vec<String> = config.get("claims").unwrap_or_default();
    let claim: Map<String, Value> = names
        .iter()
        .map(|name| (name.clone(), user.claim(name).unwrap_or(Value::Null)))
        .collect();
    json!({
        "groups": user.groups(),
        "in_group": user.has_group(config.str("group").unwrap_or_default()),
        "claim": claim,
        "claims": user.claims(),
    })
}

export_policy!(ReportInputs);
