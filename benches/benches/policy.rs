//! The cost of one policy decision: `require-group.rhai` for a user in 10 groups, as the authorize
//! phase runs it (claims converted once per session, a fresh scope per request).

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use portcullis::policy::{OutputRules, PolicyClaims, PolicyEngine, PolicyLimits, PolicyRequest};

fn require_group(c: &mut Criterion) {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let engine = PolicyEngine::new(PolicyLimits::default());
    let mut config = rhai::Map::new();
    config.insert("group".into(), "group-7".into());
    let policy = engine
        .compile(
            &samples.join("require-group.rhai"),
            "require-group.rhai",
            config,
        )
        .expect("the sample compiles");
    let groups: Vec<String> = (0..10).map(|i| format!("group-{i}")).collect();
    let claims = serde_json::json!({
        "sub": "alice", "preferred_username": "alice", "email": "alice@example.com",
        "aud": "portcullis", "iss": "https://idp.example", "exp": 1_900_000_000, "iat": 1_800_000_000,
        "groups": groups,
    });
    let claims = PolicyClaims::from_json(claims.as_object().unwrap());
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("accept", "text/html"),
        ("user-agent", "bench"),
        ("cookie", "a=b"),
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
        limits: engine.limits().clone(),
        identity_headers: Vec::new(),
        may_set_identity_headers: false,
    };
    c.bench_function("policy/rhai/require-group (10 groups)", |b| {
        b.iter(|| {
            policy
                .decide(black_box(&request), black_box(&claims), &rules)
                .unwrap()
        })
    });
}

criterion_group!(benches, require_group);
criterion_main!(benches);
