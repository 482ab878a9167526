//! Shared fixtures for the Portcullis benchmarks (`cargo bench -p portcullis-benches`).

use std::path::Path;

/// The WebSocket frames and handshake of `ws-echo` and `ws-load` (the tunnel load test).
pub mod websocket;

/// A config text with `count` host-less routes `/svc{i}/api` plus one host-specific route per ten,
/// all pointing at a loopback upstream that is never contacted.
pub fn many_routes_config(count: usize) -> String {
    let mut text = String::from("[server]\nlisten = \"127.0.0.1:0\"\n");
    for i in 0..count {
        let host = if i % 10 == 0 {
            format!("host = \"svc{i}.example.com\"\n")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "\n[[routes]]\nname = \"svc{i}\"\n{host}path = \"/svc{i}/api\"\nupstream = \"http://127.0.0.1:9/\"\nauth = \"none\"\n"
        ));
    }
    text
}

/// Parses a benchmark config (it names no files).
pub fn config(text: &str) -> portcullis::Config {
    portcullis::config::parse(text, Path::new(".")).expect("benchmark config is valid")
}

/// Builds the sample Wasm policies (`policies/wasm`) for `wasm32-wasip2` and returns the folder
/// with the `.wasm` files. Panics with the command to run when the target is missing.
pub fn build_wasm_policies() -> std::path::PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = repo.join("target/wasm-policies");
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(repo.join("policies/wasm/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run cargo");
    assert!(
        status.success(),
        "building policies/wasm failed (missing target? run `rustup target add wasm32-wasip2`)"
    );
    target_dir.join("wasm32-wasip2/release")
}

/// A realistic user for policy benches: 10 groups (`group-0` … `group-9`) and the usual claims.
pub fn policy_claims() -> portcullis::policy::PolicyIdentity {
    let groups: Vec<String> = (0..10).map(|i| format!("group-{i}")).collect();
    let claims = serde_json::json!({
        "sub": "alice", "preferred_username": "alice", "email": "alice@example.com", "locale": "en-GB",
        "aud": "portcullis", "iss": "https://idp.example", "exp": 1_900_000_000, "iat": 1_800_000_000,
        "groups": groups,
    });
    portcullis::policy::PolicyIdentity::from_json(claims.as_object().expect("an object"))
}

/// Typical browser request headers for policy benches.
pub fn policy_request_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("accept", "text/html"),
        ("user-agent", "bench"),
        ("cookie", "a=b"),
        ("x-request-id", "r"),
    ] {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
    headers
}

/// `GET /admin/users?page=2` on route `admin`, with `headers`.
pub fn policy_request(headers: &http::HeaderMap) -> portcullis::policy::PolicyRequest<'_> {
    portcullis::policy::PolicyRequest {
        method: "GET",
        path: "/admin/users",
        query: "page=2",
        host: "app.example.com",
        headers,
        client_ip: std::net::IpAddr::from([10, 0, 0, 7]),
        route: "admin",
    }
}

/// Output rules with the default limits.
pub fn policy_rules() -> portcullis::policy::OutputRules {
    portcullis::policy::OutputRules {
        limits: portcullis::policy::PolicyLimits::default(),
        identity_headers: Vec::new(),
        may_set_identity_headers: false,
    }
}

/// A session as a real login leaves it: the user's claims (10 groups) and provider-sized tokens.
pub fn realistic_session() -> portcullis::session::Session {
    let claims = serde_json::json!({
        "sub": "6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b", "preferred_username": "alice",
        "email": "alice@example.com", "locale": "en-GB", "aud": "portcullis",
        "iss": "https://idp.example/realms/home", "exp": 1_900_000_000u64, "iat": 1_800_000_000u64,
        "groups": (0..10).map(|i| format!("group-{i}")).collect::<Vec<_>>(),
    });
    let token = |length: usize| "x".repeat(length);
    portcullis::session::Session {
        claims: claims.as_object().expect("an object").clone(),
        id_token: token(900),
        access_token: token(1100),
        refresh_token: Some(token(400)),
        access_expires_at: Some(u64::MAX / 2),
        created_at: 0,
        last_seen: 0,
        cookie_issued_at: 0,
        policy_claims: Default::default(),
        header_values: Default::default(),
    }
}

/// Session settings for benches: sled at `path` (or memory), `cache_entries` cached.
pub fn session_config(
    path: Option<&Path>,
    cache_entries: usize,
) -> portcullis::config::SessionConfig {
    use std::time::Duration;
    portcullis::config::SessionConfig {
        store: match path {
            Some(path) => portcullis::config::StoreKind::Sled(path.to_owned()),
            None => portcullis::config::StoreKind::Memory,
        },
        cookie_name: "session".into(),
        cookie_secure: false,
        cookie_persistent: false,
        cookie_domain: None,
        renew: Duration::from_secs(3600),
        lifetime: Duration::from_secs(30 * 24 * 3600),
        idle_timeout: Duration::from_secs(30 * 24 * 3600),
        cache_entries,
        sweep_interval: Duration::from_secs(60),
        // Long enough that a "cache hit" bench only hits.
        cache_lifetime: Duration::from_secs(3600),
        sealing: portcullis::config::Sealing {
            // Where the proxy keeps it for this store (`session.key` beside the folder), so that
            // a store built here opens in `portcullis run` too (benches/load/memory.sh).
            current: portcullis::config::SecretSource::File(
                path.and_then(Path::parent)
                    .unwrap_or(Path::new("."))
                    .join("session.key"),
            ),
            previous: Vec::new(),
        },
    }
}
