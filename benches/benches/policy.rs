//! The cost of one policy decision for a user in 10 groups, each bench timing one thing:
//! - `require-group.rhai` reads only the claims and its config, so its decision is remembered per
//!   session: the script runs for a session's first request only (timed with remembering turned
//!   off, so every iteration runs it), and every later request is served the remembered decision
//!   without a run (timed apart);
//! - `read-only-for-viewers.rhai` reads `request.method`, so it runs for every request: the script
//!   run (fresh scope, the request's fields copied in);
//! - on the policy threads: the hop alone (queue, wake a policy thread, wake the waiting task), and
//!   the hop with the script run, as a request that runs its policy pays it.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use portcullis::policy::{PolicyEngine, PolicyLimits, PolicyPool, RhaiPolicy};
use portcullis_benches::{policy_claims, policy_request, policy_request_headers, policy_rules};

fn sample(name: &str, key: &str, value: &str) -> RhaiPolicy {
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut config = rhai::Map::new();
    config.insert(key.into(), value.into());
    PolicyEngine::new(PolicyLimits::default())
        .compile(&samples.join(name), name, config)
        .expect("the sample compiles")
}

fn decide(c: &mut Criterion) {
    let (claims, headers, rules) = (policy_claims(), policy_request_headers(), policy_rules());
    let request = policy_request(&headers);
    let run = sample("require-group.rhai", "group", "group-7");
    run.never_remember();
    let remembered = sample("require-group.rhai", "group", "group-7");
    for _ in 0..2 {
        run.decide(&request, &claims, &rules).unwrap();
        remembered.decide(&request, &claims, &rules).unwrap();
    }
    // What the names say: one runs the script every time, the other ran it once.
    assert_eq!((run.runs(), remembered.runs()), (2, 1));
    c.bench_function(
        "policy/rhai/require-group (10 groups, script run, remembering off)",
        |b| {
            b.iter(|| {
                run.decide(black_box(&request), black_box(&claims), &rules)
                    .unwrap()
            })
        },
    );
    c.bench_function(
        "policy/rhai/require-group (10 groups, remembered decision served, no run)",
        |b| {
            b.iter(|| {
                remembered
                    .decide(black_box(&request), black_box(&claims), &rules)
                    .unwrap()
            })
        },
    );
    let per_request = sample("read-only-for-viewers.rhai", "viewers", "group-7");
    c.bench_function(
        "policy/rhai/read-only-for-viewers (10 groups, script run, reads the request so runs every request)",
        |b| {
            b.iter(|| {
                per_request
                    .decide(black_box(&request), black_box(&claims), &rules)
                    .unwrap()
            })
        },
    );
}

fn on_the_policy_threads(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pool = PolicyPool::new(&PolicyLimits::default());
    c.bench_function("policy/pool/hop alone (empty job)", |b| {
        b.to_async(&runtime).iter(|| pool.run(|_| ()))
    });
    let policy = Arc::new(sample("read-only-for-viewers.rhai", "viewers", "group-7"));
    let (claims, rules) = (policy_claims(), Arc::new(policy_rules()));
    let headers = policy_request_headers();
    c.bench_function(
        "policy/pool/read-only-for-viewers (hop + script run)",
        |b| {
            // The headers travel with the job (the proxy moves them; their copy is set up here,
            // not timed).
            b.to_async(&runtime).iter_batched(
                || headers.clone(),
                |headers| {
                    let (policy, claims, rules) = (policy.clone(), claims.clone(), rules.clone());
                    let pool = &pool;
                    async move {
                        pool.run(move |deadline| {
                            let request = policy_request(&headers);
                            let decision = policy
                                .decide_by(&request, &claims, &rules, Some(deadline))
                                .unwrap();
                            (decision, headers)
                        })
                        .await
                        .unwrap()
                    }
                },
                BatchSize::SmallInput,
            )
        },
    );
}

criterion_group!(benches, decide, on_the_policy_threads);
criterion_main!(benches);
