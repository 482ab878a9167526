//! The cost of one Wasm policy decision (`require_group.wasm`, a user in 10 groups with a few more
//! claims) in both isolation modes.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use portcullis::policy::{
    Isolation, OutputRules, Policy, PolicyClaims, PolicyLimits, PolicyRequest, WasmPolicy,
};
use portcullis_benches::build_wasm_policies;

fn decide(c: &mut Criterion) {
    let file = build_wasm_policies().join("require_group.wasm");
    let mut config = serde_json::Map::new();
    config.insert("group".into(), "group-7".into());
    let groups: Vec<String> = (0..10).map(|i| format!("group-{i}")).collect();
    let claims = serde_json::json!({
        "sub": "alice", "preferred_username": "alice", "email": "alice@example.com", "locale": "en-GB",
        "aud": "portcullis", "iss": "https://idp.example", "exp": 1_900_000_000, "iat": 1_800_000_000,
        "groups": groups,
    });
    let claims = PolicyClaims::from_json(claims.as_object().unwrap());
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("accept", "text/html"),
        ("user-agent", "bench"),
        ("x-request-id", "r"),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    let request = PolicyRequest {
        method: "GET",
        path: "/admin/users",
        query: "page=2",
        host: "app.example.com",
        headers: &headers,
        client_ip: IpAddr::from([10, 0, 0, 7]),
        route: "admin",
    };
    let rules = OutputRules {
        limits: PolicyLimits::default(),
        identity_headers: Vec::new(),
        may_set_identity_headers: false,
    };
    for (name, isolation) in [
        ("pooled", Isolation::Pooled),
        ("per-request", Isolation::PerRequest),
    ] {
        let policy = Policy::Wasm(
            WasmPolicy::compile(
                &file,
                "require_group.wasm",
                &config,
                isolation,
                PolicyLimits::default(),
            )
            .expect("the sample compiles"),
        );
        c.bench_function(
            &format!("policy/wasm/require-group (10 groups, {name})"),
            |b| {
                b.iter(|| {
                    policy
                        .decide(black_box(&request), Some(black_box(&claims)), &rules)
                        .unwrap()
                })
            },
        );
    }
}

criterion_group!(benches, decide);
criterion_main!(benches);
