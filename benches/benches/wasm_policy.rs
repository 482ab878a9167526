//! What a Wasm policy costs (`require_group.wasm`): compiling it, loading it from the disk cache,
//! instantiating it, and one decision in both isolation modes for a user in 10 groups with a few
//! more claims, and for an anonymous request (which shows what the identity's strings cost).
//! Wasm policies are not remembered per session: a decision bench times the call a policy makes
//! for every request.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::policy::wasm::{CodeOrigin, WasmOptions, compile_uncached};
use portcullis::policy::{Isolation, Policy, PolicyLimits, WasmPolicy};
use portcullis_benches::{
    build_wasm_policies, policy_claims, policy_request, policy_request_headers, policy_rules,
};

fn require_group(isolation: Isolation) -> WasmPolicy {
    let file = build_wasm_policies().join("require_group.wasm");
    let mut config = serde_json::Map::new();
    config.insert("group".into(), "group-7".into());
    let options = WasmOptions {
        isolation,
        limits: PolicyLimits::default(),
        cache: None,
    };
    WasmPolicy::compile(&file, "require_group.wasm", &config, options).expect("the sample compiles")
}

fn load(c: &mut Criterion) {
    let bytes = std::fs::read(build_wasm_policies().join("require_group.wasm")).unwrap();
    let mut group = c.benchmark_group("policy/wasm/load");
    group.sample_size(10);
    group.bench_function("compile", |b| {
        b.iter(|| assert_eq!(compile_uncached(&bytes, None), Ok(CodeOrigin::Compiled)))
    });
    let cache = tempfile::tempdir().unwrap();
    compile_uncached(&bytes, Some(cache.path())).unwrap();
    group.bench_function("from the disk cache", |b| {
        b.iter(|| {
            assert_eq!(
                compile_uncached(&bytes, Some(cache.path())),
                Ok(CodeOrigin::DiskCache)
            )
        })
    });
    group.finish();
    let policy = require_group(Isolation::PerRequest);
    c.bench_function("policy/wasm/instantiate", |b| {
        b.iter(|| policy.instantiate_once().unwrap())
    });
}

fn decide(c: &mut Criterion) {
    let (claims, headers, rules) = (policy_claims(), policy_request_headers(), policy_rules());
    let request = policy_request(&headers);
    for (name, isolation) in [
        ("pooled", Isolation::Pooled),
        ("per-request", Isolation::PerRequest),
    ] {
        let policy = Policy::Wasm(require_group(isolation));
        c.bench_function(
            &format!("policy/wasm/require-group (10 groups, {name}, runs every request)"),
            |b| {
                b.iter(|| {
                    policy
                        .decide(black_box(&request), Some(black_box(&claims)), &rules)
                        .unwrap()
                })
            },
        );
        c.bench_function(
            &format!("policy/wasm/require-group (anonymous, {name}, runs every request)"),
            |b| b.iter(|| policy.decide(black_box(&request), None, &rules).unwrap()),
        );
    }
}

criterion_group!(benches, decide, load);
criterion_main!(benches);
