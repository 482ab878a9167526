//! Cookie → session: a cache hit, a sled read (cache off) with 10,000 sessions stored, a sled
//! read with 1,000,000 stored (`PORTCULLIS_BENCH_SESSIONS` to change; the store is built once
//! under `target/bench-data/` and reused, since filling it takes minutes), and the same through a
//! real `redis-server` on loopback (a hit in this instance's cache, and a miss: one round trip to
//! Redis) with 100,000 sessions stored, whose memory in Redis is printed. Records are sealed as
//! the proxy keeps them, so every read from a store includes opening the seal.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::session::{SessionManager, SystemClock};
use portcullis_benches::{realistic_session, session_config};
use portcullis_test_redis::RedisServer;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Fills `manager`'s store with `count` sessions; returns the cookies of every 1000th.
fn fill(runtime: &tokio::runtime::Runtime, manager: &SessionManager, count: usize) -> Vec<String> {
    runtime.block_on(async {
        let mut sampled = Vec::new();
        for i in 0..count {
            let cookie = manager
                .insert_unflushed(realistic_session())
                .await
                .expect("insert");
            if i % 1000 == 0 {
                sampled.push(cookie);
            }
        }
        manager.flush().await.unwrap();
        sampled
    })
}

/// Opens (filling it first when new) a sled store holding `count` sessions; returns the manager
/// and the cookies of every 1000th session.
fn store_with(
    runtime: &tokio::runtime::Runtime,
    count: usize,
    dir: &Path,
    cache_entries: usize,
) -> (SessionManager, Vec<String>) {
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
        let sampled = fill(runtime, &manager, count);
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
    let runtime = runtime();
    let mut group = c.benchmark_group("session/lookup");
    let (cached, cookies) = store_with(
        &runtime,
        10_000,
        &bench_data("sealed-sessions-10000"),
        10_000,
    );
    let hot = cookies[0].clone();
    runtime
        .block_on(cached.load(&hot))
        .unwrap()
        .expect("a session");
    group.bench_function("cache hit", |b| {
        b.to_async(&runtime)
            .iter(|| async { cached.load(black_box(&hot)).await.unwrap().unwrap() })
    });
    drop(cached);

    let big = std::env::var("PORTCULLIS_BENCH_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    for count in [10_000, big] {
        let name = format!("sled read, {count} stored");
        let dir = bench_data(&format!("sealed-sessions-{count}"));
        let (uncached, cookies) = store_with(&runtime, count, &dir, 0);
        let mut next = 0;
        group.bench_function(&name, |b| {
            b.to_async(&runtime).iter(|| {
                next = (next + 1) % cookies.len();
                let cookie = &cookies[next];
                let uncached = &uncached;
                async move { uncached.load(black_box(cookie)).await.unwrap().unwrap() }
            })
        });
    }
    group.finish();
}

/// The shared store: 100,000 sealed sessions in a real `redis-server` on loopback, read through
/// this instance's cache (a hit) and around it (a miss: one `GET` and the seal opened).
fn redis_lookups(c: &mut Criterion) {
    const SESSIONS: usize = 100_000;
    let runtime = runtime();
    let redis = RedisServer::start();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "a bench secret of thirty-two bytes").unwrap();
    let manager = |cache_entries: usize| {
        let text = format!(
            "[session]\nstore = \"redis\"\nredis_url = \"{}\"\nsecret_file = \"{}\"\ncache_entries = {cache_entries}\ncache_lifetime = \"60s\"\nlifetime = \"30d\"\nidle_timeout = \"30d\"\n[[routes]]\nname = \"none\"\nauth = \"none\"\nupstream = \"http://127.0.0.1:9\"\n",
            redis.url(),
            secret.path().display()
        );
        let config = portcullis::config::parse(&text, Path::new(".")).expect("a Redis config");
        let _guard = runtime.enter();
        SessionManager::open(&config.session, Arc::new(SystemClock)).expect("open Redis")
    };
    let uncached = manager(0);
    let before: u64 = used_memory(&redis);
    let cookies = fill(&runtime, &uncached, SESSIONS);
    let used = used_memory(&redis) - before;
    eprintln!(
        "redis: {SESSIONS} sealed sessions use {:.1} MiB of Redis memory ({} bytes each)",
        used as f64 / (1024.0 * 1024.0),
        used / SESSIONS as u64
    );
    let mut group = c.benchmark_group("session/lookup");
    let cached = manager(10_000);
    let hot = cookies[0].clone();
    runtime
        .block_on(cached.load(&hot))
        .unwrap()
        .expect("a session");
    group.bench_function("redis, cache hit", |b| {
        b.to_async(&runtime)
            .iter(|| async { cached.load(black_box(&hot)).await.unwrap().unwrap() })
    });
    let mut next = 0;
    let name = format!("redis read (cache miss), {SESSIONS} stored");
    group.bench_function(&name, |b| {
        b.to_async(&runtime).iter(|| {
            next = (next + 1) % cookies.len();
            let cookie = &cookies[next];
            let uncached = &uncached;
            async move { uncached.load(black_box(cookie)).await.unwrap().unwrap() }
        })
    });
    group.finish();
}

/// Redis's `used_memory`, in bytes.
fn used_memory(redis: &RedisServer) -> u64 {
    redis
        .cli_text(&["INFO", "memory"])
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|bytes| bytes.trim().parse().ok())
        .expect("INFO memory has used_memory")
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

criterion_group!(benches, lookups, redis_lookups, sealing, identity_headers);
criterion_main!(benches);
