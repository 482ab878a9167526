//! The cost of one Wasm policy decision (`require_group.wasm`, a user in 10 groups with a few more
//! claims) in both isolation modes.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::policy::wasm::WasmOptions;
use portcullis::policy::{Isolation, Policy, PolicyLimits, WasmPolicy};
use portcullis_benches::{
    build_wasm_policies, policy_claims, policy_request, policy_request_headers, policy_rules,
};

fn decide(c: &mut Criterion) {
    let file = build_wasm_policies().join("require_group.wasm");
    let mut config = serde_json::Map::new();
    config.insert("group".into(), "group-7".into());
    let (claims, headers, rules) = (policy_claims(), policy_request_headers(), policy_rules());
    let request = policy_request(&headers);
    for (name, isolation) in [
        ("pooled", Isolation::Pooled),
        ("per-request", Isolation::PerRequest),
    ] {
        let policy = Policy::Wasm(
            WasmPolicy::compile(
                &file,
                "require_group.wasm",
                &config,
                WasmOptions {
                    isolation,
                    limits: PolicyLimits::default(),
                    cache: None,
                },
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
