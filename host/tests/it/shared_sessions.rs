//! Several instances, one session space (docs/operations.md, "Running several instances"): two
//! `portcullis run` processes on one real `redis-server` (or a real 3-master Redis Cluster), a
//! real OpenID provider, and a browser moving between them as a load balancer would send it.

use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_test_redis::{RedisCluster, RedisServer};
use reqwest::StatusCode;
use support::binary::{RunningProxy, binary, read_log};
use support::browser::{Browser, get_with_cookie, json, location};
use support::closed_port;
use support::echo::{self, received_header};
use support::real_idp::{
    CLIENT_SECRET, IdpOptions, RealIdp, log_in, log_in_at_provider, wait_for_login_page,
};

/// The Redis key (default prefix) of the record of `kind` (`b's'` the session, `b'l'` its lease
/// lock) for the session cookie in `cookies`, as the store computes it: prefix + hex of the kind
/// and the SHA-256 of the cookie's 32 bytes. For tests that plant or alter a record by hand.
fn redis_key_of(cookies: &str, kind: u8) -> String {
    use base64::Engine;
    use sha2::Digest;
    let value = cookies
        .split("sess_shared=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("the session cookie");
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .unwrap();
    let mut key = vec![kind];
    key.extend_from_slice(&sha2::Sha256::digest(&id));
    let hex: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("portcullis:{hex}")
}

/// Plants a live lease lock under `lock_key`, as a process killed while refreshing leaves one:
/// its expiry (8 bytes, big-endian) far ahead; Redis keeps it 60 s.
fn plant_lock(redis: &RedisServer, lock_key: &str) {
    let planted = redis.cli(&["SET", lock_key, &"\u{7f}".repeat(8), "PX", "60000"]);
    assert!(planted.status.success());
}

/// The identity headers a backend sees (all seven, in a fixed order).
const IDENTITY: [&str; 7] = [
    "x-auth-subject",
    "x-auth-username",
    "x-auth-userid",
    "x-auth-groups",
    "x-auth-audience",
    "x-auth-expiresin",
    "x-auth-locale",
];

/// How the instances reach the shared store: the `[session]` lines naming it.
fn redis_server_lines(redis: &RedisServer) -> String {
    format!("store = \"redis\"\nredis_url = \"{}\"", redis.url())
}

fn redis_cluster_lines(cluster: &RedisCluster) -> String {
    let nodes: Vec<String> = cluster
        .urls()
        .iter()
        .map(|url| format!("\"{url}\""))
        .collect();
    format!(
        "store = \"redis-cluster\"\nredis_nodes = [{}]",
        nodes.join(", ")
    )
}

/// Two instances, A and B, sharing a store, a secret and the provider. The provider sends every
/// login back to A's callback (one public `redirect_uri`, as behind a load balancer); a login may
/// start on either.
struct Pair {
    idp: RealIdp,
    a: Option<RunningProxy>,
    /// Runs until the test ends (killed on drop).
    _b: RunningProxy,
    a_url: String,
    b_url: String,
    folder: tempfile::TempDir,
}

struct PairOptions<'a> {
    store_lines: String,
    idp: IdpOptions,
    leeway: &'a str,
    /// Extra `[session]` lines for both.
    session: &'a str,
    /// The secret file B uses (`None`: the one A uses).
    b_secret: Option<&'a str>,
}

impl<'a> PairOptions<'a> {
    fn new(store_lines: String) -> Self {
        PairOptions {
            store_lines,
            idp: IdpOptions::default(),
            leeway: "60s",
            session: "",
            b_secret: None,
        }
    }
}

fn write_secret(folder: &Path, name: &str, secret: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = folder.join(name);
    std::fs::write(&path, secret).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

async fn pair(options: PairOptions<'_>) -> Pair {
    let echo = echo::spawn().await;
    let folder = tempfile::tempdir().unwrap();
    let (a_addr, b_addr) = (closed_port(), closed_port());
    let idp = RealIdp::start(a_addr, options.idp);
    let shared = write_secret(
        folder.path(),
        "shared.key",
        "one secret every instance shares, 32+ bytes",
    );
    let b_secret = match options.b_secret {
        Some(other) => write_secret(folder.path(), "other.key", other),
        None => shared.clone(),
    };
    let config = |name: &str, listen: SocketAddr, secret: &Path| {
        let discovery = idp.discovery_url();
        let text = format!(
            r#"
[server]
listen = "{listen}"

[oidc]
discovery = "{discovery}"
client_id = "portcullis"
client_secret = "{CLIENT_SECRET}"
redirect_uri = "http://{a_addr}/auth"
scopes = ["openid", "email", "profile", "groups", "offline_access"]
access_token_expires_leeway = "{leeway}"
authorization_params = {{ prompt = "consent" }}

[session]
{store}
secret_file = "{secret}"
cookie_name = "sess_shared"
cookie_secure = false
{extra}

[[routes]]
name = "public"
path = "/public"
auth = "none"
upstream = "http://{echo}"

[[routes]]
name = "app"
path = "/"
upstream = "http://{echo}"
forward_access_token = true
"#,
            leeway = options.leeway,
            store = options.store_lines,
            secret = secret.display(),
            extra = options.session,
        );
        let dir = folder.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("portcullis.toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let a_config = config("a", a_addr, &shared);
    let b_config = config("b", b_addr, &b_secret);
    let (a, b) = tokio::task::spawn_blocking(move || {
        (
            RunningProxy::start(&a_config),
            RunningProxy::start(&b_config),
        )
    })
    .await
    .unwrap();
    let a_url = format!("http://{}", a.addr);
    let b_url = format!("http://{}", b.addr);
    wait_for_login_page(&format!("{a_url}/")).await;
    wait_for_login_page(&format!("{b_url}/")).await;
    Pair {
        idp,
        a: Some(a),
        _b: b,
        a_url,
        b_url,
        folder,
    }
}

impl Pair {
    fn a(&self, path: &str) -> String {
        format!("{}{path}", self.a_url)
    }

    fn b(&self, path: &str) -> String {
        format!("{}{path}", self.b_url)
    }

    fn log(&self, instance: &str) -> String {
        read_log(&self.folder.path().join(instance).join("portcullis.toml"))
    }
}

/// The identity headers the backend received for `url`, asked by `browser`.
async fn identity_at(browser: &Browser, url: &str) -> Vec<Option<String>> {
    let answer = browser.client.get(url).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "GET {url}");
    let report = json(answer).await;
    IDENTITY
        .iter()
        .map(|name| received_header(&report, name))
        .collect()
}

/// A login that starts on B and finishes on A (its pending login is in the store, not in B's
/// memory) is a login on both, with the same identity headers.
async fn a_login_on_one_instance_is_a_login_on_the_other(store_lines: String) {
    let pair = pair(PairOptions::new(store_lines)).await;
    let browser = Browser::new();
    let start = browser.get(&pair.b("/reports")).await;
    assert_eq!(
        start.status(),
        StatusCode::FOUND,
        "B sends the browser to log in"
    );
    let callback = log_in_at_provider(&browser, location(&start), "alice").await;
    assert_eq!(
        callback.status(),
        StatusCode::FOUND,
        "A completes B's login"
    );
    assert_eq!(callback.headers()["location"], "/reports");
    let on_a = identity_at(&browser, &pair.a("/reports")).await;
    let on_b = identity_at(&browser, &pair.b("/reports")).await;
    assert_eq!(on_a[0].as_deref(), Some("alice"));
    assert_eq!(on_a[3].as_deref(), Some("admins,staff"));
    assert_eq!(on_a, on_b, "the same identity headers on both instances");
    for instance in ["a", "b"] {
        let log = pair.log(instance);
        assert!(
            !log.contains("does not work yet"),
            "{instance}'s start-up check of the store failed: {log}"
        );
    }
}

#[tokio::test]
async fn redis_a_login_on_one_instance_is_a_login_on_the_other() {
    let redis = RedisServer::start();
    a_login_on_one_instance_is_a_login_on_the_other(redis_server_lines(&redis)).await;
}

#[tokio::test]
async fn redis_cluster_a_login_on_one_instance_is_a_login_on_the_other() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    a_login_on_one_instance_is_a_login_on_the_other(redis_cluster_lines(&cluster)).await;
}

/// docs/operations.md: a logout on one instance reaches the others within `cache_lifetime`
/// (each instance uses its cached copy of a session that long at most).
async fn a_logout_on_one_instance_ends_the_session_on_the_other(store_lines: String) {
    let pair = pair(PairOptions {
        session: "cache_lifetime = \"1s\"",
        ..PairOptions::new(store_lines)
    })
    .await;
    let browser = Browser::new();
    log_in(&browser, &pair.a("/"), "alice").await;
    let cookies = browser.cookie_header(&pair.a("/"));
    // Both instances have the session cached now.
    identity_at(&browser, &pair.a("/")).await;
    identity_at(&browser, &pair.b("/")).await;

    let logout = browser.get(&pair.b("/logout")).await;
    assert_eq!(logout.status(), StatusCode::FOUND);
    let logged_out = Instant::now();
    assert_eq!(
        get_with_cookie(&pair.b("/"), &cookies).await.status(),
        StatusCode::FOUND,
        "B itself: at once"
    );
    // A: within the bound. Asked every 50 ms; the first refusal must come by 1 s (the cache
    // lifetime) plus what the machine needs to answer one request.
    let refused_after = loop {
        let status = get_with_cookie(&pair.a("/"), &cookies).await.status();
        if status == StatusCode::FOUND {
            break logged_out.elapsed();
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            logged_out.elapsed() < Duration::from_secs(5),
            "A still serves the logged-out session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        refused_after <= Duration::from_millis(1500),
        "A refused the session {refused_after:?} after the logout on B; the bound is cache_lifetime (1 s)"
    );
}

#[tokio::test]
async fn redis_a_logout_on_one_instance_ends_the_session_on_the_other() {
    let redis = RedisServer::start();
    a_logout_on_one_instance_ends_the_session_on_the_other(redis_server_lines(&redis)).await;
}

#[tokio::test]
async fn redis_cluster_a_logout_on_one_instance_ends_the_session_on_the_other() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    a_logout_on_one_instance_ends_the_session_on_the_other(redis_cluster_lines(&cluster)).await;
}

/// An access token due for refresh, hit on A and B at once: one refresh at the provider (the
/// session's lease lock is in Redis), and both instances forward the new access token (the one
/// that waited picks up what the other wrote).
#[tokio::test]
async fn an_expired_access_token_hit_on_both_instances_at_once_is_refreshed_once() {
    let redis = RedisServer::start();
    // Access tokens live 6 s; with a 4 s leeway they are due 2 s after login. The provider holds
    // each refresh 300 ms, so the requests on both instances overlap it.
    let pair = pair(PairOptions {
        idp: IdpOptions {
            access_token_ttl: 6,
            refresh_delay_ms: 300,
        },
        leeway: "4s",
        ..PairOptions::new(redis_server_lines(&redis))
    })
    .await;
    let browser = Browser::new();
    log_in(&browser, &pair.a("/"), "alice").await;
    let issued_at_login = pair.idp.issued_tokens().await;
    assert_eq!(pair.idp.stats().await.1, 0);
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let urls: Vec<String> = (0..8)
        .map(|n| if n % 2 == 0 { pair.a("/") } else { pair.b("/") })
        .collect();
    let answers =
        futures_util::future::join_all(urls.iter().map(|url| browser.client.get(url).send())).await;
    let mut forwarded = Vec::new();
    for answer in answers {
        let report = json(answer.unwrap()).await;
        assert_eq!(
            received_header(&report, "x-auth-subject").as_deref(),
            Some("alice")
        );
        forwarded.push(received_header(&report, "authorization").expect("the access token"));
    }
    assert_eq!(
        pair.idp.stats().await.1,
        1,
        "eight requests on two instances, one refresh"
    );
    let issued = pair.idp.issued_tokens().await;
    let refreshed = &issued.last().unwrap().access_token;
    assert_ne!(refreshed, &issued_at_login[0].access_token);
    for token in &forwarded {
        assert_eq!(
            token,
            &format!("Bearer {refreshed}"),
            "every request, on either instance, forwards the refreshed token"
        );
    }
}

/// kill -9 of A: B keeps serving A's users (nothing of theirs lived only in A).
#[tokio::test]
async fn after_a_kill_9_of_one_instance_the_other_serves_its_users() {
    let redis = RedisServer::start();
    let mut pair = pair(PairOptions::new(redis_server_lines(&redis))).await;
    let browser = Browser::new();
    log_in(&browser, &pair.a("/"), "alice").await;
    assert_eq!(
        identity_at(&browser, &pair.a("/")).await[0].as_deref(),
        Some("alice")
    );
    drop(pair.a.take()); // SIGKILL
    assert_eq!(
        identity_at(&browser, &pair.b("/")).await[0].as_deref(),
        Some("alice")
    );
}

/// The records in Redis are sealed: `redis-cli --scan` and `DUMP` of every key show no token and
/// no claim value, after two logins, a refresh and a logout.
#[tokio::test]
async fn redis_holds_no_token_or_claim() {
    let redis = RedisServer::start();
    let pair = pair(PairOptions {
        idp: IdpOptions {
            access_token_ttl: 6,
            refresh_delay_ms: 0,
        },
        leeway: "4s",
        ..PairOptions::new(redis_server_lines(&redis))
    })
    .await;
    let alice = Browser::new();
    let bob = Browser::new();
    log_in(&alice, &pair.a("/"), "alice").await;
    log_in(&bob, &pair.a("/"), "bob").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    identity_at(&alice, &pair.b("/")).await; // refreshed on B
    let pending = Browser::new();
    assert_eq!(pending.get(&pair.b("/")).await.status(), StatusCode::FOUND);
    let alice_cookies = alice.cookie_header(&pair.a("/"));
    alice.get(&pair.a("/logout")).await;

    let keys = redis.cli_text(&["--scan"]);
    let keys: Vec<&str> = keys.lines().collect();
    assert!(
        keys.len() >= 2 && keys.iter().all(|key| key.starts_with("portcullis:")),
        "bob's session and a pending login, under the default prefix: {keys:?}"
    );
    let mut contents = keys.join("\n").into_bytes();
    for key in &keys {
        contents.extend(redis.cli(&["--no-raw", "DUMP", key]).stdout);
        contents.extend(redis.cli(&["GET", key]).stdout);
    }
    let issued = pair.idp.issued_tokens().await;
    assert!(issued.len() >= 3, "two logins and a refresh: {issued:?}");
    let mut secrets: Vec<String> = ["alice@example.com", "Alice", "admins", "en-GB", "de-DE"]
        .map(str::to_owned)
        .to_vec();
    secrets.push(
        alice_cookies
            .split("sess_shared=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned(),
    );
    for tokens in &issued {
        secrets.push(tokens.access_token.clone());
        secrets.push(tokens.id_token.clone());
        secrets.extend(tokens.refresh_token.clone());
    }
    for secret in &secrets {
        assert!(
            !contents
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()),
            "{secret:?} is in Redis"
        );
    }
}

/// An instance given another secret cannot open the records: its users log in again (a
/// redirect to the provider), never a 500, and it says why once in its log.
#[tokio::test]
async fn an_instance_with_another_secret_sees_no_session() {
    let redis = RedisServer::start();
    let pair = pair(PairOptions {
        b_secret: Some("a different secret, also 32 bytes long"),
        ..PairOptions::new(redis_server_lines(&redis))
    })
    .await;
    let browser = Browser::new();
    log_in(&browser, &pair.a("/"), "alice").await;
    identity_at(&browser, &pair.a("/")).await;
    for _ in 0..2 {
        let on_b = browser.get(&pair.b("/")).await;
        assert_eq!(on_b.status(), StatusCode::FOUND, "B asks for a login");
        assert!(location(&on_b).starts_with(&pair.idp.issuer));
    }
    let log = pair.log("b");
    assert_eq!(
        log.matches("does not open with the session secrets configured")
            .count(),
        1,
        "{log}"
    );
}

/// Redis stops under load: requests that need a session get 503 (a JSON answer saying the
/// session store is not answering), never a pass without a session; `auth = "none"` routes keep
/// answering; once Redis is back the proxy reconnects by itself and every request is a 200.
#[tokio::test]
async fn while_redis_is_down_sessions_get_503_open_routes_work_and_it_reconnects() {
    // Persisted on every write, so the session is there again when Redis comes back.
    let mut redis = RedisServer::start_with(&["appendonly yes", "appendfsync always"]);
    let pair = pair(PairOptions {
        session: "cache_lifetime = \"1s\"\nredis_timeout = \"200ms\"",
        ..PairOptions::new(redis_server_lines(&redis))
    })
    .await;
    let browser = Browser::new();
    log_in(&browser, &pair.a("/"), "alice").await;
    let cookies = browser.cookie_header(&pair.a("/"));

    #[derive(Default, Debug)]
    struct Counts {
        session: std::collections::BTreeMap<u16, usize>,
        open: std::collections::BTreeMap<u16, usize>,
    }
    /// Four clients, each asking for the app (with the session) and an open route in turn, on
    /// both instances, for `span`.
    async fn load(pair: &Pair, cookies: &str, span: Duration) -> Counts {
        let until = Instant::now() + span;
        let clients = (0..4).map(|n| {
            let base = if n % 2 == 0 { pair.a("") } else { pair.b("") };
            let cookies = cookies.to_owned();
            async move {
                let client = reqwest::Client::new();
                let mut counts = Counts::default();
                while Instant::now() < until {
                    let session = client
                        .get(format!("{base}/"))
                        .header("cookie", &cookies)
                        .header("accept", "application/json")
                        .send()
                        .await
                        .unwrap();
                    let status = session.status().as_u16();
                    if status == 503 {
                        let body = session.text().await.unwrap();
                        assert!(body.contains("session store"), "{body}");
                    }
                    *counts.session.entry(status).or_default() += 1;
                    let open = client.get(format!("{base}/public")).send().await.unwrap();
                    *counts.open.entry(open.status().as_u16()).or_default() += 1;
                }
                counts
            }
        });
        let mut total = Counts::default();
        for counts in futures_util::future::join_all(clients).await {
            for (status, n) in counts.session {
                *total.session.entry(status).or_default() += n;
            }
            for (status, n) in counts.open {
                *total.open.entry(status).or_default() += n;
            }
        }
        total
    }
    let only = |counts: &std::collections::BTreeMap<u16, usize>, allowed: &[u16]| {
        counts.keys().all(|status| allowed.contains(status))
    };

    let before = load(&pair, &cookies, Duration::from_millis(500)).await;
    assert!(
        only(&before.session, &[200]) && only(&before.open, &[200]),
        "{before:?}"
    );

    redis.stop();
    let during = load(&pair, &cookies, Duration::from_secs(3)).await;
    assert!(
        only(&during.session, &[200, 503]),
        "during the outage: {during:?}"
    );
    assert!(
        during.session.get(&503).is_some_and(|n| *n > 0),
        "with Redis down for 3 s (cache lifetime 1 s), requests needing a session got 503: {during:?}"
    );
    assert!(
        only(&during.open, &[200]),
        "open routes during the outage: {during:?}"
    );
    // Logged sparingly (the 1st, 2nd, 4th… failure), not once per refused request.
    let refused = during.session.get(&503).copied().unwrap_or_default();
    let logged: usize = ["a", "b"]
        .iter()
        .map(|instance| {
            pair.log(instance)
                .matches("the session store failed")
                .count()
        })
        .sum();
    let sparing = 2 * (usize::BITS - refused.leading_zeros()) as usize + 4;
    assert!(
        logged >= 2 && logged <= sparing,
        "{logged} log lines for {refused} refused requests"
    );

    redis.resume();
    // Reconnected by itself: within a few seconds, and from then on every answer is a 200.
    let back = Instant::now();
    while get_with_cookie(&pair.a("/"), &cookies).await.status() != StatusCode::OK
        || get_with_cookie(&pair.b("/"), &cookies).await.status() != StatusCode::OK
    {
        assert!(back.elapsed() < Duration::from_secs(10), "no reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = load(&pair, &cookies, Duration::from_secs(1)).await;
    assert!(
        only(&after.session, &[200]) && only(&after.open, &[200]),
        "{after:?}"
    );
    assert!(pair.log("a").contains("the session store works again"));

    // Redis restarted while nobody asked: the first request after it is answered (its broken
    // connection is noticed and made anew within that request).
    redis.stop();
    redis.resume();
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the cache lifetime
    for url in [pair.a("/"), pair.b("/")] {
        let status = get_with_cookie(&url, &cookies).await.status();
        assert_eq!(
            status,
            StatusCode::OK,
            "{url}: the first request after a restart"
        );
    }
}

/// Every bad Redis setting is refused by `portcullis check` with the key and what to do, and
/// without repeating a URL (it may hold a password).
#[test]
fn bad_redis_settings_are_named_with_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = write_secret(
        dir.path(),
        "session.key",
        "a secret of thirty-two bytes....",
    );
    let loose = dir.path().join("redis-url");
    std::fs::write(&loose, "redis://:hunter2@127.0.0.1:6379").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let secret_line = format!("secret_file = \"{}\"", secret.display());
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("store = \"redis\"\nredis_url = \"http://:hunter2@127.0.0.1:6379\"\n{secret_line}"),
            "session.redis_url",
            "redis://[user:password@]host:port",
        ),
        (
            format!("store = \"redis\"\n{secret_line}"),
            "session.redis_url",
            "is required with `store = \"redis\"`",
        ),
        (
            format!("store = \"redis\"\nredis_url_file = \"missing-file\"\n{secret_line}"),
            "session.redis_url_file",
            "cannot read",
        ),
        (
            format!("store = \"redis\"\nredis_url_file = \"{}\"\n{secret_line}", loose.display()),
            "session.redis_url_file",
            "chmod 600",
        ),
        (
            "store = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"".to_owned(),
            "session.secret_file",
            "every instance must seal sessions with the same secret",
        ),
        (
            "store = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\nsecret_file = \"nowhere.key\"".to_owned(),
            "session.secret_file",
            "give every instance a copy of the one secret",
        ),
        (
            format!("store = \"redis\"\nredis_url_file = \"{}\"\n{secret_line}", dir.path().display()),
            "session.redis_url_file",
            "is not a file",
        ),
        (
            format!("store = \"redis-cluster\"\nredis_nodes = [\"redis://127.0.0.1:7000\"]\n{secret_line}"),
            "session.redis_nodes",
            "list two or more of them",
        ),
        (
            format!("store = \"redis-cluster\"\nredis_url = \"redis://127.0.0.1:7000\"\nredis_nodes = [\"redis://127.0.0.1:7000\", \"redis://127.0.0.1:7001\"]\n{secret_line}"),
            "session.redis_url",
            "list the cluster's nodes in `redis_nodes`",
        ),
        (
            format!("store = \"redis\"\nredis_url = \"redis://:hunter2@0.0.0.0:6379\"\n{secret_line}"),
            "session.redis_url",
            "the Redis client refuses it",
        ),
        (
            format!("store = \"redis-cluster\"\nredis_nodes = [\"redis://:hunter2@127.0.0.1:7000\", \"rediss://:hunter2@127.0.0.1:7001\"]\n{secret_line}"),
            "session.redis_nodes",
            "the same scheme",
        ),
        (
            format!("store = \"redis-cluster\"\nredis_nodes = [\"redis://127.0.0.1:7000\", \"redis://127.0.0.1:7000/\", \"redis://127.0.0.1:7001\"]\n{secret_line}"),
            "session.redis_nodes",
            "names one node twice",
        ),
        (
            format!("store = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\nredis_ca = \"{}\"\n{secret_line}", secret.display()),
            "session.redis_ca",
            "use rediss:// URLs",
        ),
        (
            format!("store = \"redis\"\nredis_url = \"rediss://127.0.0.1:6379\"\nredis_ca = \"{}\"\n{secret_line}", secret.display()),
            "session.redis_ca",
            "cannot read CA certificates",
        ),
        (
            "store = \"sled\"\nredis_url = \"redis://127.0.0.1:6379\"".to_owned(),
            "session.store",
            "set `store = \"redis\"`",
        ),
        (
            format!("store = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"\nredis_timeout = \"5m\"\n{secret_line}"),
            "session.redis_timeout",
            "between 10ms and 60s",
        ),
    ];
    for (session, key, advice) in cases {
        let config = dir.path().join("portcullis.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n\n[session]\n{session}\n\n[[routes]]\nname = \"app\"\nauth = \"none\"\nupstream = \"http://127.0.0.1:9\"\n"
            ),
        )
        .unwrap();
        let output = binary()
            .args(["check", "--offline", "--config"])
            .arg(&config)
            .env_remove("PORTCULLIS_SESSION_SECRET")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stderr).into_owned()
            + String::from_utf8_lossy(&output.stdout).as_ref();
        assert!(!output.status.success(), "{session}: passed\n{text}");
        assert!(
            text.contains(key) && text.contains(advice),
            "{session}: wanted {key} … {advice}\n{text}"
        );
        assert!(
            !text.contains("hunter2"),
            "{session}: the password shown\n{text}"
        );
    }
}

/// `examples/ha/run.sh --check`: Redis, two instances and HAProxy in front; a login through
/// HAProxy, the session served by both instances, one killed with `kill -9`, the other carrying
/// on, a logout. Run with this build's binary on ports no other test uses.
#[test]
fn the_ha_example_logs_in_through_haproxy_and_survives_a_kill_9() {
    let base = free_port_block(31);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ha/run.sh");
    let output = std::process::Command::new("timeout")
        .arg("120")
        .arg(&script)
        .arg("--check")
        .env("PORTCULLIS_BIN", env!("CARGO_BIN_EXE_portcullis"))
        .env("HA_BASE_PORT", base.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + String::from_utf8_lossy(&output.stderr).as_ref();
    assert!(output.status.success(), "{text}");
    assert!(text.contains("alice's session served by:"), "{text}");
    assert!(text.contains("ha check: ok"), "{text}");
}

/// The first of `count` consecutive loopback ports that are all free now, below the ephemeral
/// range (so that no test's client connection takes one meanwhile).
fn free_port_block(count: u16) -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    for attempt in 0..200u32 {
        let base = 12_000 + ((seed / 1000 + attempt * 7919) % 18_000) as u16;
        let all_free = (base..base + count)
            .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no block of {count} free ports");
}

/// `portcullis check` (without `--offline`) tries the configured Redis as `run` will use it (a
/// read, a conditional write, a take): silent when it works; a problem naming the key and what
/// to do when Redis refuses (a wrong or missing password), never showing the password; a note
/// when it cannot be reached (it may be down, or not reachable from here).
#[test]
fn check_tries_the_redis_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write_secret(
        dir.path(),
        "session.key",
        "a secret of thirty-two bytes....",
    );
    let open = RedisServer::start();
    let guarded = RedisServer::start_with(&["requirepass the-right-pass"]);
    let check = |url: &str| {
        let config = dir.path().join("portcullis.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n\n[session]\nstore = \"redis\"\nredis_url = \"{url}\"\nredis_timeout = \"500ms\"\nsecret_file = \"{}\"\n\n[[routes]]\nname = \"app\"\nauth = \"none\"\nupstream = \"http://127.0.0.1:9\"\n",
                secret.display()
            ),
        )
        .unwrap();
        let output = binary()
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            !text.contains("the-right-pass") && !text.contains("hunter2"),
            "{text}"
        );
        (output.status.success(), text)
    };
    let (ok, text) = check(&open.url());
    assert!(ok && !text.contains("session"), "{text}");
    let (ok, text) = check(&format!(
        "redis://:the-right-pass@127.0.0.1:{}",
        guarded.port()
    ));
    assert!(ok && !text.contains("session"), "{text}");
    for wrong in [
        format!("redis://:hunter2@127.0.0.1:{}", guarded.port()),
        guarded.url(),
    ] {
        let (ok, text) = check(&wrong);
        assert!(!ok, "{text}");
        assert!(
            text.contains("session.redis_url: Redis refused") && text.contains("password"),
            "{text}"
        );
    }
    // The ACL user docs/operations.md gives: enough; without the scripts, refused.
    let acl = RedisServer::start_with(&[
        "user portcullis on >acl-pass ~portcullis:* +get +set +del +getdel +evalsha +script|load",
        "user reader on >acl-pass ~portcullis:* +get +set +del +getdel",
        "user nodel on >acl-pass ~portcullis:* +get +set +getdel +evalsha +script|load",
        // Runs the scripts while Redis has them cached (the lines above loaded them), but could
        // not load them again after a restart.
        "user noload on >acl-pass ~portcullis:* +get +set +del +getdel +evalsha",
    ]);
    let (ok, text) = check(&format!(
        "redis://portcullis:acl-pass@127.0.0.1:{}",
        acl.port()
    ));
    assert!(ok && !text.contains("session"), "{text}");
    for refused in [
        format!("redis://reader:acl-pass@127.0.0.1:{}", acl.port()),
        format!("redis://nodel:acl-pass@127.0.0.1:{}", acl.port()),
        format!("redis://noload:acl-pass@127.0.0.1:{}", acl.port()),
        // A database number needs SELECT, which the line does not give.
        format!("redis://portcullis:acl-pass@127.0.0.1:{}/2", acl.port()),
    ] {
        let (ok, text) = check(&refused);
        assert!(!ok && text.contains("EVALSHA and SCRIPT LOAD"), "{text}");
    }
    let (ok, text) = check(&format!("redis://127.0.0.1:{}", closed_port().port()));
    assert!(ok, "{text}");
    assert!(
        text.contains("note: the session store could not be reached"),
        "{text}"
    );
}

/// docs/security.md, "Every limit": a Redis that does not answer (paused: connected, silent)
/// costs a request `redis_timeout` at most, then a 503; once it answers again, so does the session.
#[tokio::test]
async fn a_silent_redis_costs_a_request_redis_timeout_then_503() {
    let redis = RedisServer::start();
    let pair = pair(PairOptions {
        session: "cache_lifetime = \"100ms\"\nredis_timeout = \"300ms\"",
        ..PairOptions::new(redis_server_lines(&redis))
    })
    .await;
    let browser = Browser::new();
    log_in(&browser, &pair.a("/"), "alice").await;
    identity_at(&browser, &pair.a("/")).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // past the cache lifetime
    assert_eq!(redis.cli_text(&["CLIENT", "PAUSE", "4000", "ALL"]), "OK");
    let asked = Instant::now();
    let answer = browser.get_api(&pair.a("/")).await;
    let waited = asked.elapsed();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer.text().await.unwrap().contains("session store"),
        "says why"
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(2000),
        "answered after {waited:?}; redis_timeout is 300 ms"
    );
    redis.cli_text(&["CLIENT", "UNPAUSE"]);
    let back = Instant::now();
    while browser
        .client
        .get(pair.a("/"))
        .send()
        .await
        .unwrap()
        .status()
        != StatusCode::OK
    {
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "the session did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// docs/security.md, "Every limit": a session whose lease lock another instance holds and never
/// gives back (planted here by hand in Redis, as a process killed mid-refresh leaves it): its
/// requests wait 12 s for that refresh (together, not one after the other), then go on with the
/// current tokens while they are valid; nobody refreshes behind the holder's back.
#[tokio::test]
async fn a_refresh_lock_never_given_back_costs_its_waiters_12_s_then_the_current_tokens() {
    let redis = RedisServer::start();
    // Tokens live 40 s and are due for refresh from 2 s after login (38 s leeway): after the
    // 12 s wait they are still valid.
    let pair = pair(PairOptions {
        idp: IdpOptions {
            access_token_ttl: 40,
            refresh_delay_ms: 0,
        },
        leeway: "38s",
        ..PairOptions::new(redis_server_lines(&redis))
    })
    .await;
    let browser = Browser::new();
    log_in(&browser, &pair.a("/"), "alice").await;
    plant_lock(
        &redis,
        &redis_key_of(&browser.cookie_header(&pair.a("/")), b'l'),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Three requests of the session at once on B: they queue for the lock on B; once the first
    // gave up waiting, the others do not wait again.
    let asked = Instant::now();
    let answers = futures_util::future::join_all((0..3).map(|_| async {
        let answer = browser.client.get(pair.b("/")).send().await.unwrap();
        (answer, asked.elapsed())
    }))
    .await;
    let issued = pair.idp.issued_tokens().await;
    for (answer, waited) in answers {
        assert_eq!(answer.status(), StatusCode::OK);
        let report = json(answer).await;
        assert_eq!(
            received_header(&report, "authorization"),
            Some(format!("Bearer {}", issued[0].access_token)),
            "the current token"
        );
        assert!(
            (Duration::from_secs(11)..Duration::from_secs(20)).contains(&waited),
            "waited {waited:?}; the bound is 12 s"
        );
    }
    assert_eq!(
        pair.idp.stats().await.1,
        0,
        "no refresh behind the holder's back"
    );
}

/// Every browser request without a session stores a pending login for 10 minutes (and writes an
/// access-log line): what one request can make Redis (or the log) hold is bounded (a 60 KB path is not kept), and the user still comes
/// back to the site after logging in (to the path alone when path and query are too long, to `/`
/// when the path is).
#[tokio::test]
async fn a_pending_login_stays_small_whatever_the_request_path() {
    let redis = RedisServer::start();
    let pair = pair(PairOptions::new(redis_server_lines(&redis))).await;
    let cases = [
        (format!("/{}", "a".repeat(60_000)), "/".to_owned()),
        (
            format!("/reports?{}", "q=1&".repeat(1000)),
            "/reports".to_owned(),
        ),
        // JSON doubles `\` and `"`: what is stored is measured as stored.
        (
            format!("/reports?q={}", "\\".repeat(1100)),
            "/reports".to_owned(),
        ),
        (
            "/reports?month=11".to_owned(),
            "/reports?month=11".to_owned(),
        ),
    ];
    for (asked, comes_back_to) in cases {
        let browser = Browser::new();
        let start = browser.get(&pair.a(&asked)).await;
        assert_eq!(start.status(), StatusCode::FOUND);
        let largest = redis
            .cli_text(&["--scan"])
            .lines()
            .map(|key| redis.cli_text(&["STRLEN", key]).parse::<usize>().unwrap())
            .max()
            .unwrap();
        assert!(largest < 3 * 1024, "a record of {largest} bytes");
        let callback = log_in_at_provider(&browser, location(&start), "alice").await;
        assert_eq!(callback.headers()["location"], comes_back_to.as_str());
    }
    // Nor what one request makes the log hold: the access log cuts the path.
    let log = pair.log("a");
    let longest = log.lines().map(str::len).max().unwrap_or_default();
    assert!(longest < 2048, "a log line of {longest} bytes");
}

/// A full Redis (`noeviction`: writes refused) stops new logins, not the sessions it holds: their
/// activity is not recorded meanwhile, a refresh waits, and they go on being served.
#[tokio::test]
async fn a_full_redis_refuses_logins_and_keeps_serving_sessions() {
    let redis = RedisServer::start_with(&["maxmemory-policy noeviction"]);
    // Activity is recorded every 2 s (a tenth of the idle timeout): soon due in this test.
    // …and the access token (an hour) is due for refresh 2 s after login: a refresh cannot take
    // its lock either, and the token serves while it is valid.
    let pair = pair(PairOptions {
        session: "idle_timeout = \"20s\"\ncache_lifetime = \"100ms\"",
        leeway: "3598s",
        ..PairOptions::new(redis_server_lines(&redis))
    })
    .await;
    let browser = Browser::new();
    log_in(&browser, &pair.a("/"), "alice").await;
    assert_eq!(redis.cli_text(&["CONFIG", "SET", "maxmemory", "1"]), "OK");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for url in [pair.a("/"), pair.b("/")] {
        assert_eq!(
            identity_at(&browser, &url).await[0].as_deref(),
            Some("alice"),
            "{url}"
        );
    }
    let newcomer = Browser::new();
    assert_eq!(
        newcomer.get(&pair.a("/")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a login cannot start while Redis refuses writes"
    );
    assert_eq!(redis.cli_text(&["CONFIG", "SET", "maxmemory", "0"]), "OK");
    assert_eq!(newcomer.get(&pair.a("/")).await.status(), StatusCode::FOUND);
}

/// A listed cluster node that accepts connections and never answers (a host whose packets are
/// dropped) does not keep the proxy from the cluster: the other node is enough, as
/// docs/operations.md promises for listing two or more.
#[tokio::test]
async fn a_silent_cluster_node_does_not_keep_the_proxy_from_the_cluster() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap(); // never accepts
    let lines = format!(
        "store = \"redis-cluster\"\nredis_nodes = [\"redis://{}\", \"{}\"]\nredis_timeout = \"500ms\"",
        silent.local_addr().unwrap(),
        cluster.urls()[0]
    );
    let pair = pair(PairOptions::new(lines)).await;
    let browser = Browser::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let start = browser.get(&pair.a("/")).await;
        if start.status() == StatusCode::FOUND {
            let callback = log_in_at_provider(&browser, location(&start), "alice").await;
            assert_eq!(callback.status(), StatusCode::FOUND);
            break;
        }
        assert_eq!(start.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "never reached the cluster");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        identity_at(&browser, &pair.b("/")).await[0].as_deref(),
        Some("alice")
    );
    drop(silent);
}

/// A key of this deployment holding something Portcullis did not write (a list) is no session
/// for its cookie — a login again, never a 503 for good — and logout still works.
#[tokio::test]
async fn a_key_of_another_type_is_no_session() {
    let redis = RedisServer::start();
    let pair = pair(PairOptions {
        session: "cache_lifetime = \"100ms\"",
        ..PairOptions::new(redis_server_lines(&redis))
    })
    .await;
    let browser = Browser::new();
    log_in(&browser, &pair.a("/"), "alice").await;
    let key = redis_key_of(&browser.cookie_header(&pair.a("/")), b's');
    assert_eq!(redis.cli_text(&["DEL", &key]), "1");
    assert_eq!(redis.cli_text(&["LPUSH", &key, "x"]), "1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(browser.get(&pair.b("/")).await.status(), StatusCode::FOUND);
    assert_eq!(
        browser.get(&pair.b("/logout")).await.status(),
        StatusCode::FOUND
    );
}

/// `rediss://` to a Redis whose certificate comes from a private CA: with `redis_ca` naming it,
/// two instances share their sessions over TLS; without, the server is not trusted (`check`
/// reports it as a problem).
#[tokio::test]
async fn rediss_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let cert = support::tls::TestCert::generate(certs.path(), "redis");
    let redis = RedisServer::start_tls(&cert.cert_path, &cert.key_path, &cert.cert_path);
    assert!(redis.url().starts_with("rediss://"));

    let secret = write_secret(
        certs.path(),
        "session.key",
        "a secret of thirty-two bytes....",
    );
    let config = certs.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[session]\nstore = \"redis\"\nredis_url = \"{}\"\nsecret_file = \"{}\"\n\n[[routes]]\nname = \"app\"\nauth = \"none\"\nupstream = \"http://127.0.0.1:9\"\n",
            redis.url(),
            secret.display()
        ),
    )
    .unwrap();
    let output = binary()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("session.redis_url: Redis refused") && text.contains("certificate"),
        "{text}"
    );

    let lines = format!(
        "store = \"redis\"\nredis_url = \"{}\"\nredis_ca = \"{}\"",
        redis.url(),
        cert.cert_path.display()
    );
    a_login_on_one_instance_is_a_login_on_the_other(lines).await;
}

/// After waiting in vain for a lock never given back, a session whose access token has expired
/// gets a 503, not a logout: the session is intact, and once the lease is gone it is refreshed.
#[tokio::test]
async fn a_lock_never_given_back_over_an_expired_token_is_a_503_not_a_logout() {
    let redis = RedisServer::start();
    let pair = pair(PairOptions {
        idp: IdpOptions {
            access_token_ttl: 3,
            refresh_delay_ms: 0,
        },
        leeway: "1s",
        ..PairOptions::new(redis_server_lines(&redis))
    })
    .await;
    let browser = Browser::new();
    log_in(&browser, &pair.a("/"), "alice").await;
    let lock_key = redis_key_of(&browser.cookie_header(&pair.a("/")), b'l');
    plant_lock(&redis, &lock_key);
    tokio::time::sleep(Duration::from_millis(3500)).await; // the access token has expired
    let answer = browser.get_api(&pair.b("/")).await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !answer
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|value| value.to_str().unwrap().starts_with("sess_shared=;")),
        "the session cookie is kept"
    );
    assert_eq!(redis.cli_text(&["DEL", &lock_key]), "1");
    tokio::time::sleep(Duration::from_secs(13)).await; // past the remembered give-up
    assert_eq!(
        identity_at(&browser, &pair.b("/")).await[0].as_deref(),
        Some("alice"),
        "refreshed once the lock is gone"
    );
}
