//! Per-request costs before any upstream is contacted: canonicalising the path and host, and
//! choosing a route among 1,000.

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::canonical::{CanonicalPath, canonical_host};
use portcullis::routes::RouteTable;
use portcullis_benches::{config, many_routes_config};
use std::hint::black_box;

fn canonicalise(c: &mut Criterion) {
    let mut group = c.benchmark_group("canonical");
    group.bench_function("path/plain", |b| {
        b.iter(|| CanonicalPath::parse(black_box("/svc500/api/users/42/profile"), false))
    });
    group.bench_function("path/dots-escapes-params", |b| {
        b.iter(|| {
            CanonicalPath::parse(
                black_box("/svc500//api/./users/%34%32/../42;v=1/pro%66ile"),
                false,
            )
        })
    });
    group.bench_function("host", |b| {
        b.iter(|| canonical_host(black_box("Svc500.Example.com:8443")))
    });
    group.finish();
}

fn route_lookup(c: &mut Criterion) {
    let routes = config(&many_routes_config(1000)).routes;
    let table = RouteTable::new(&routes);
    let mut group = c.benchmark_group("route_lookup_1000_routes");
    group.bench_function("host-less, deep path", |b| {
        b.iter(|| {
            table.lookup(
                black_box("app.example.org"),
                black_box("/svc777/api/users/42/profile"),
            )
        })
    });
    group.bench_function("host-specific", |b| {
        b.iter(|| table.lookup(black_box("svc500.example.com"), black_box("/svc500/api/x")))
    });
    group.bench_function("no match", |b| {
        b.iter(|| table.lookup(black_box("app.example.org"), black_box("/nothing/here")))
    });
    group.finish();
}

criterion_group!(benches, canonicalise, route_lookup);
criterion_main!(benches);
