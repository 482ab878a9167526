//! Time from writing a policy file to the new decision being served: the watcher's event, the
//! debounce (`reload::watch::QUIET`), loading and compiling the config, and the swap. Measured
//! through the real watcher (inotify) and `Proxy::handle`, no sockets.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use portcullis::Proxy;
use portcullis::proxy::ConnInfo;

/// A policy that refuses with its version, so the answer says which version decided.
fn policy(version: u64) -> String {
    format!("deny(403, \"v{version}\")\n")
}

async fn served(proxy: &Proxy) -> String {
    let request = http::Request::get("/")
        .header("host", "bench")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let conn = ConnInfo::new("127.0.0.1:1".parse().unwrap(), false);
    let response = proxy.handle(request, conn).await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

fn write_to_served(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("portcullis.toml");
    let policy_path = dir.path().join("policy.rhai");
    std::fs::write(
        &config_path,
        "[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\npolicy = \"policy.rhai\"\n",
    )
    .unwrap();
    std::fs::write(&policy_path, policy(0)).unwrap();
    let proxy = runtime.block_on(async {
        let baseline = portcullis::reload::watch::Baseline::take(&config_path);
        let config = portcullis::config::load(&config_path).unwrap();
        let app = portcullis::App::start(config, portcullis::Listeners::default())
            .await
            .unwrap();
        app.watch(config_path.clone(), baseline);
        app.handle().proxy().clone()
    });
    let mut version = 0;
    let mut group = c.benchmark_group("reload");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("policy write to new decision served", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    version += 1;
                    let expected = format!("v{version}");
                    let written = Instant::now();
                    std::fs::write(&policy_path, policy(version)).unwrap();
                    while !served(&proxy).await.contains(&expected) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    total += written.elapsed();
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, write_to_served);
criterion_main!(benches);
