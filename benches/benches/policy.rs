//! The cost of one policy decision: `require-group.rhai` for a user in 10 groups, as the authorize
//! phase runs it (claims converted once per session, a fresh scope per request).

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::policy::{PolicyEngine, PolicyLimits};
use portcullis_benches::{policy_claims, policy_request, policy_request_headers, policy_rules};

fn require_group(c: &mut Criterion) {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut config = rhai::Map::new();
    config.insert("group".into(), "group-7".into());
    let policy = PolicyEngine::new(PolicyLimits::default())
        .compile(
            &samples.join("require-group.rhai"),
            "require-group.rhai",
            config,
        )
        .expect("the sample compiles");
    let (claims, headers, rules) = (policy_claims(), policy_request_headers(), policy_rules());
    let request = policy_request(&headers);
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
