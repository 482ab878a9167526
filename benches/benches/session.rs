//! Cookie → session: a cache hit, a sled read (cache off) with 10,000 sessions stored, and a sled
//! read with 1,000,000 stored (`PORTCULLIS_BENCH_SESSIONS` to change; the store is built once
//! under `target/bench-data/` and reused, since filling it takes minutes). Records are sealed as
//! the proxy keeps them, so a sled read includes opening the seal.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::session::{SessionManager, SystemClock};
use portcullis_benches::{realistic_session, session_config};

/// Opens (filling it first when new) a sled store holding `count` sessions; returns the manager
/// and the cookies of every 1000th session.
fn store_with(count: usize, dir: &Path, cache_entries: usize) -> (SessionManager, Vec<String>) {
    let cookies_file = dir.join("cookies.txt");
    let fresh = !cookies_file.exists();
    if fresh {
        let _ = std::fs::remove_dir_all(dir);
    }
    let manager = SessionManager::open(
        &session_config(Some(&dir.join("sled")), cache_entries),
        Arc::new(SystemClock),
    )
    .expect("open the bench store");
    if fresh {
        let mut sampled = Vec::new();
        for i in 0..count {
            let cookie = manager
                .insert_unflushed(realistic_session())
                .expect("insert");
            if i % 1000 == 0 {
                sampled.push(cookie);
            }
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(manager.flush())
            .unwrap();
        std::fs::write(&cookies_file, sampled.join("\n")).unwrap();
    }
    let cookies = std::fs::read_to_string(&cookies_file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (manager, cookies)
}

fn bench_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench-data")
        .join(name)
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("session/lookup");
    let (cached, cookies) = store_with(10_000, &bench_data("sealed-sessions-10000"), 10_000);
    let hot = cookies[0].clone();
    cached.load(&hot).unwrap().expect("a session");
    group.bench_function("cache hit", |b| {
        b.iter(|| cached.load(black_box(&hot)).unwrap().unwrap())
    });
    drop(cached);

    let big = std::env::var("PORTCULLIS_BENCH_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    for count in [10_000, big] {
        let name = format!("sled read, {count} stored");
        let dir = bench_data(&format!("sealed-sessions-{count}"));
        let (uncached, cookies) = store_with(count, &dir, 0);
        let mut next = 0;
        group.bench_function(&name, |b| {
            b.iter(|| {
                next = (next + 1) % cookies.len();
                uncached.load(black_box(&cookies[next])).unwrap().unwrap()
            })
        });
    }
    group.finish();
}

/// What sealing adds to every store write and every read that misses the cache: a realistic
/// session record (claims and three tokens, ~2 KB) sealed, and opened.
fn sealing(c: &mut Criterion) {
    let keys =
        portcullis::session::SealingKeys::from_secrets(b"a bench secret of thirty-two bytes", &[]);
    let record = serde_json::to_vec(&realistic_session()).unwrap();
    let key = b"s0123456789abcdef0123456789abcdef";
    let sealed = keys.seal(key, &record);
    c.bench_function("session record: seal", |b| {
        b.iter(|| keys.seal(black_box(key), black_box(&record)))
    });
    c.bench_function("session record: open", |b| {
        b.iter(|| keys.open(black_box(key), black_box(&sealed)).unwrap())
    });
}

fn identity_headers(c: &mut Criterion) {
    let session = realistic_session();
    let identity = portcullis::config::IdentityHeaders::seed_default();
    c.bench_function("identity headers (the seven X-Auth-*)", |b| {
        b.iter(|| {
            let mut headers = http::HeaderMap::new();
            portcullis::proxy::headers::set_identity(
                &mut headers,
                black_box(&identity),
                black_box(session.header_values()),
            );
            headers
        })
    });
}

criterion_group!(benches, lookups, sealing, identity_headers);
criterion_main!(benches);
