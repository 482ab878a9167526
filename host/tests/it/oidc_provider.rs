//! Login, refresh and logout against a real, certified OpenID provider (`oidc-provider` from npm,
//! run on loopback from `tests/idp/`), driven through its own login and consent forms.

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use support::binary::RunningProxy;
use support::binary::read_log;
use support::browser::{Browser, get_with_cookie, json, location};
use support::echo::{self, received_header};
use support::real_idp::{
    CLIENT_SECRET, IdpOptions, RealIdp, confirm_logout_at_provider, log_in, log_in_at_provider,
    wait_for_login_page,
};
use support::{TestProxy, start_proxy_on};

fn config(
    proxy: SocketAddr,
    idp: &RealIdp,
    echo: SocketAddr,
    session: &str,
    leeway: &str,
) -> String {
    let discovery = idp.discovery_url();
    format!(
        r#"
[server]
listen = "{proxy}"

[oidc]
discovery = "{discovery}"
client_id = "portcullis"
client_secret = "{CLIENT_SECRET}"
redirect_uri = "http://{proxy}/auth"
post_logout_redirect_uri = "http://{proxy}/"
scopes = ["openid", "email", "profile", "groups", "offline_access"]
access_token_expires_leeway = "{leeway}"
# oidc-provider issues refresh tokens for offline_access only after an explicit consent prompt.
authorization_params = {{ prompt = "consent" }}

[session]
{session}
cookie_name = "sess_auth"
cookie_secure = false

[[routes]]
name = "app"
path = "/"
upstream = "http://{echo}"
"#
    )
}

struct Setup {
    idp: RealIdp,
    proxy: TestProxy,
}

async fn setup(options: IdpOptions, leeway: &str) -> Setup {
    let echo = echo::spawn().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let idp = RealIdp::start(addr, options);
    let text = config(addr, &idp, echo, "store = \"memory\"", leeway);
    let proxy = start_proxy_on(listener, &text, Path::new(".")).await;
    wait_for_login_page(&proxy.url("/")).await;
    Setup { idp, proxy }
}

#[tokio::test]
async fn alice_logs_in_and_the_backend_sees_her_identity_headers() {
    let setup = setup(IdpOptions::default(), "60s").await;
    let browser = Browser::new();
    let callback = log_in(&browser, &setup.proxy.url("/reports?month=11"), "alice").await;
    assert_eq!(callback.status(), StatusCode::FOUND);
    assert_eq!(
        callback.headers()["location"],
        "/reports?month=11",
        "back where she started"
    );
    let report = json(browser.get(&setup.proxy.url("/reports?month=11")).await).await;
    let header = |name| received_header(&report, name);
    assert_eq!(header("x-auth-subject").as_deref(), Some("alice"));
    assert_eq!(header("x-auth-username").as_deref(), Some("alice"));
    assert_eq!(header("x-auth-userid").as_deref(), Some("alice"));
    assert_eq!(header("x-auth-groups").as_deref(), Some("admins,staff"));
    assert_eq!(header("x-auth-audience").as_deref(), Some("portcullis"));
    assert_eq!(header("x-auth-locale").as_deref(), Some("en-GB"));
    let expires: u64 = header("x-auth-expiresin")
        .expect("exp")
        .parse()
        .expect("a number");
    assert!(expires > 1_700_000_000);
}

#[tokio::test]
async fn browsers_are_redirected_and_api_clients_get_401() {
    let setup = setup(IdpOptions::default(), "60s").await;
    let browser = Browser::new();
    let redirected = browser.get(&setup.proxy.url("/x")).await;
    assert_eq!(redirected.status(), StatusCode::FOUND);
    let target = location(&redirected);
    assert!(
        target.starts_with(&format!("{}/auth?", setup.idp.issuer)),
        "{target}"
    );
    for part in [
        "response_type=code",
        "code_challenge_method=S256",
        "state=",
        "nonce=",
        "scope=openid",
    ] {
        assert!(target.contains(part), "{part} missing in {target}");
    }
    let api = browser.get_api(&setup.proxy.url("/x")).await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_ends_the_session_here_and_at_the_provider() {
    let setup = setup(IdpOptions::default(), "60s").await;
    let browser = Browser::new();
    log_in(&browser, &setup.proxy.url("/"), "bob").await;
    assert_eq!(
        browser.get(&setup.proxy.url("/")).await.status(),
        StatusCode::OK
    );
    // A copy of the cookies, as a thief (or a browser that ignores `Max-Age=0`) keeps them.
    let stolen = browser.cookie_header(&setup.proxy.url("/"));
    let replayed = || async {
        get_with_cookie(&setup.proxy.url("/"), &stolen)
            .await
            .status()
    };
    assert_eq!(
        replayed().await,
        StatusCode::OK,
        "the copied cookies carry the session before logout"
    );

    let logout = browser.get(&setup.proxy.url("/logout")).await;
    let end_session = location(&logout);
    assert!(
        end_session.starts_with(&format!("{}/session/end?", setup.idp.issuer)),
        "{end_session}"
    );
    assert!(end_session.contains("id_token_hint="));
    let after = confirm_logout_at_provider(&browser, &end_session).await;
    assert!(
        after.starts_with(&setup.proxy.url("/")),
        "back at post_logout_redirect_uri: {after}"
    );

    // The session ended in the store, not just in the browser: the old cookie logs in no one.
    assert_eq!(
        replayed().await,
        StatusCode::FOUND,
        "the old cookie after logout"
    );

    // The next visit asks for a login again, and the provider shows its login form again.
    let start = browser.get(&setup.proxy.url("/")).await;
    assert_eq!(start.status(), StatusCode::FOUND);
    let mut url = location(&start);
    for _ in 0..3 {
        if url.contains("/interaction/") {
            break;
        }
        url = location(&browser.get(&url).await);
    }
    let page = browser.get(&url).await.text().await.unwrap();
    assert!(
        page.contains("name=\"login\""),
        "the provider's session ended too"
    );
}

#[tokio::test]
async fn short_lived_access_tokens_are_refreshed_once_for_concurrent_requests() {
    // Access tokens live 6 s; with a 4 s leeway they are due 2 s after login. The provider holds
    // each refresh 300 ms, so the six requests overlap it: without single flight, each would ask
    // for a refresh of its own.
    let setup = setup(
        IdpOptions {
            access_token_ttl: 6,
            refresh_delay_ms: 300,
        },
        "4s",
    )
    .await;
    let browser = Browser::new();
    log_in(&browser, &setup.proxy.url("/"), "alice").await;
    let (_, refreshes_before) = setup.idp.stats().await;
    assert_eq!(refreshes_before, 0);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let requests = (0..6).map(|_| browser.client.get(setup.proxy.url("/")).send());
    for answer in futures_util::future::join_all(requests).await {
        let report = json(answer.unwrap()).await;
        assert_eq!(
            received_header(&report, "x-auth-subject").as_deref(),
            Some("alice")
        );
    }
    let (_, refreshes) = setup.idp.stats().await;
    assert_eq!(refreshes, 1, "six concurrent requests, one refresh");
}

#[tokio::test]
async fn two_tabs_can_log_in_at_the_same_time() {
    let setup = setup(IdpOptions::default(), "60s").await;
    let browser = Browser::new();
    let first = browser.get(&setup.proxy.url("/first")).await;
    let second = browser.get(&setup.proxy.url("/second")).await;
    let second_done = log_in_at_provider(&browser, location(&second), "carol").await;
    let first_done = log_in_at_provider(&browser, location(&first), "carol").await;
    assert_eq!(second_done.headers()["location"], "/second");
    assert_eq!(first_done.headers()["location"], "/first");
}

/// A free loopback port (the binary is restarted on the same one).
fn reserve_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn sessions_survive_a_restart_and_a_kill_9() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = reserve_port();
    let idp = RealIdp::start(addr, IdpOptions::default());
    let sessions = format!(
        "store = \"sled\"\npath = \"{}\"",
        dir.path().join("sessions").display()
    );
    let config_path = dir.path().join("portcullis.toml");
    std::fs::write(&config_path, config(addr, &idp, echo, &sessions, "60s")).unwrap();

    let proxy = RunningProxy::start(&config_path);
    wait_for_login_page(&format!("http://{addr}/")).await;
    let browser = Browser::new();
    let callback = log_in(&browser, &format!("http://{addr}/"), "alice").await;
    assert_eq!(callback.status(), StatusCode::FOUND);
    // kill -9 right after the callback answered: the acknowledged login must be on disk.
    drop(proxy);

    for restart in ["after kill -9", "after SIGTERM"] {
        let proxy = RunningProxy::start(&config_path);
        let answer = browser.client.get(format!("http://{addr}/")).send().await;
        let log = std::fs::read_to_string(dir.path().join("portcullis.log")).unwrap_or_default();
        let report = json(answer.unwrap_or_else(|err| panic!("{restart}: {err}\n{log}"))).await;
        assert_eq!(
            received_header(&report, "x-auth-subject").as_deref(),
            Some("alice"),
            "{restart}"
        );
        proxy.terminate();
        let mut proxy = proxy;
        let status = tokio::task::spawn_blocking(move || proxy.child.wait().unwrap())
            .await
            .unwrap();
        assert!(status.success(), "{restart}: {status}");
    }
}

/// oidc.md, "Sessions": expired sessions are removed from the store's files every
/// `sweep_interval`, and live records (here a login still under way) are kept. The records are
/// read from the sled folder after the proxy stopped; a session is never looked up in between,
/// since a lookup of an expired session would remove it too.
#[tokio::test]
async fn the_sweeper_removes_expired_sessions_from_the_store_files_and_keeps_live_records() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("sessions");
    let addr = reserve_port();
    let idp = RealIdp::start(addr, IdpOptions::default());
    let sessions = format!(
        "store = \"sled\"\npath = \"{}\"\nidle_timeout = \"2s\"\nsweep_interval = \"1s\"",
        store.display()
    );
    let config_path = dir.path().join("portcullis.toml");
    std::fs::write(&config_path, config(addr, &idp, echo, &sessions, "60s")).unwrap();
    let proxy = RunningProxy::start(&config_path);
    let url = format!("http://{addr}/");
    wait_for_login_page(&url).await;

    let alice = Browser::new();
    assert_eq!(
        log_in(&alice, &url, "alice").await.status(),
        StatusCode::FOUND
    );
    // Bob's login stays under way: its pending record lives ten minutes.
    let bob = Browser::new();
    assert_eq!(bob.get(&url).await.status(), StatusCode::FOUND);
    // Alice's session is expired 3 s after her login at the latest (whole seconds), and swept
    // within a second after that; 6 s leaves room on a busy machine.
    tokio::time::sleep(Duration::from_secs(6)).await;
    proxy.terminate();
    assert!(proxy.exited().await.success());

    // Records are sealed (oidc.md, "At rest"): opened here with the secret the proxy made.
    let keys = portcullis::session::SealingKeys::load(&portcullis::config::Sealing {
        current: portcullis::config::SecretSource::File(dir.path().join("session.key")),
        previous: Vec::new(),
    })
    .unwrap();
    let db = sled::open(&store).unwrap();
    let records: Vec<Vec<u8>> = db
        .iter()
        .map(|entry| {
            let (key, record) = entry.unwrap();
            // 8 bytes of expiry, then the sealed record.
            keys.open(&key, &record[8..])
                .expect("sealed with the proxy's secret")
        })
        .collect();
    let holds = |record: &Vec<u8>, text: &str| {
        record
            .windows(text.len())
            .any(|window| window == text.as_bytes())
    };
    assert!(
        !records.iter().any(|record| holds(record, "alice")),
        "the expired session is still in the store's files"
    );
    let pending_logins = records
        .iter()
        .filter(|record| holds(record, "pkce_verifier"))
        .count();
    assert_eq!(
        (records.len(), pending_logins),
        (2, 2),
        "left: the pending logins of bob and of the readiness probe, nothing else"
    );
}

/// Every file under `folder`, with its permission bits; folders too.
fn files_under(folder: &Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        found.push((entry.path(), mode));
        if entry.file_type().unwrap().is_dir() {
            found.extend(files_under(&entry.path()));
        }
    }
    found
}

/// A proxy on sled in `<dir>/data/sessions`, with the secret in its default place
/// (`data/session.key`) and `session_extra` in `[session]`.
fn write_sled_config(
    dir: &Path,
    addr: SocketAddr,
    idp: &RealIdp,
    echo: SocketAddr,
    session_extra: &str,
) -> std::path::PathBuf {
    let sessions = format!(
        "store = \"sled\"\npath = \"{}\"\n{session_extra}",
        dir.join("data/sessions").display()
    );
    let config_path = dir.join("portcullis.toml");
    std::fs::write(&config_path, config(addr, idp, echo, &sessions, "60s")).unwrap();
    config_path
}

/// oidc.md, "Sessions", "At rest" (issue 17: the store was world-readable and held live tokens in
/// plain text, logged-out sessions' too). Started with umask 022, the proxy makes its data folder
/// 0700 and every file 0600; the files hold no token and no claim value of a live session or of a
/// logged-out one; and the logout revoked the logged-out user's tokens at the provider (on by
/// default), while the other user's still work.
#[tokio::test]
async fn the_store_files_are_private_and_hold_no_token_or_claim() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = reserve_port();
    let idp = RealIdp::start(addr, IdpOptions::default());
    let config_path = write_sled_config(dir.path(), addr, &idp, echo, "");
    let proxy = RunningProxy::start(&config_path);
    let url = format!("http://{addr}/");
    wait_for_login_page(&url).await;
    let alice = Browser::new();
    let bob = Browser::new();
    log_in(&alice, &url, "alice").await;
    log_in(&bob, &url, "bob").await;
    let issued = idp.issued_tokens().await;
    let [alice_tokens, bob_tokens] = &issued[..] else {
        panic!("two logins, two token answers: {issued:?}");
    };
    let alice_cookies = alice.cookie_header(&url);
    let logout = alice.get(&format!("{url}logout")).await;
    assert_eq!(logout.status(), StatusCode::FOUND);
    // SIGTERM at once: the logout must be on disk all the same (a takeover or restart right
    // after it must not bring the session back).
    proxy.terminate();
    assert!(proxy.exited().await.success());

    let data = dir.path().join("data");
    let files = files_under(&data);
    assert!(
        files.iter().any(|(path, _)| path.ends_with("sessions/db")),
        "{files:?}"
    );
    assert!(
        files.iter().any(|(path, _)| path.ends_with("session.key")),
        "{files:?}"
    );
    for (path, mode) in &files {
        let private = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, private, "{} is {mode:o}", path.display());
    }
    let contents: Vec<u8> = files
        .iter()
        .filter(|(path, _)| path.is_file())
        .flat_map(|(path, _)| std::fs::read(path).unwrap())
        .collect();
    let mut secrets: Vec<&str> = vec!["alice@example.com", "Alice", "admins", "en-GB", "de-DE"];
    for tokens in [alice_tokens, bob_tokens] {
        secrets.push(&tokens.access_token);
        secrets.push(&tokens.id_token);
        secrets.push(
            tokens
                .refresh_token
                .as_deref()
                .expect("offline_access gives a refresh token"),
        );
    }
    for secret in secrets {
        assert!(
            !contents
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()),
            "{secret:?} is in the session files"
        );
    }

    let restarted = RunningProxy::start(&config_path);
    let replayed = get_with_cookie(&url, &alice_cookies).await;
    assert_eq!(
        replayed.status(),
        StatusCode::FOUND,
        "the logout held across the restart"
    );
    let bob_status = bob.client.get(&url).send().await.unwrap().status();
    assert_eq!(bob_status, StatusCode::OK, "bob's session did");
    drop(restarted);

    let alice_refresh = alice_tokens.refresh_token.as_deref().unwrap();
    let bob_refresh = bob_tokens.refresh_token.as_deref().unwrap();
    assert!(
        !idp.accepts_refresh_token(alice_refresh).await,
        "revoked at logout"
    );
    assert!(
        idp.accepts_refresh_token(bob_refresh).await,
        "bob did not log out"
    );
    assert!(
        !idp.accepts_access_token(&alice_tokens.access_token).await,
        "revoked with the refresh token's grant"
    );
    assert!(idp.accepts_access_token(&bob_tokens.access_token).await);
}

/// oidc.md, "Rotating the secret": with another secret the old records are no session (log in
/// again, never an error); with the old secret listed in `previous_secret_files` they open again.
#[tokio::test]
async fn a_changed_session_secret_asks_for_a_new_login_and_a_previous_one_keeps_the_session() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = reserve_port();
    let idp = RealIdp::start(addr, IdpOptions::default());
    let config_path = write_sled_config(dir.path(), addr, &idp, echo, "");
    let url = format!("http://{addr}/");
    let alice = Browser::new();
    let status_after_restart = |config: &Path| {
        let proxy = RunningProxy::start(config);
        let client = alice.client.clone();
        let url = url.clone();
        async move {
            let status = client.get(&url).send().await.unwrap().status();
            proxy.terminate();
            assert!(proxy.exited().await.success());
            status
        }
    };
    {
        let proxy = RunningProxy::start(&config_path);
        wait_for_login_page(&url).await;
        log_in(&alice, &url, "alice").await;
        proxy.terminate();
        assert!(proxy.exited().await.success());
    }
    assert_eq!(
        status_after_restart(&config_path).await,
        StatusCode::OK,
        "same secret"
    );

    let data = dir.path().join("data");
    std::fs::rename(data.join("session.key"), data.join("old.key")).unwrap();
    // A new secret is made at start; alice's record does not open with it.
    assert_eq!(
        status_after_restart(&config_path).await,
        StatusCode::UNAUTHORIZED,
        "another secret: no session, no error"
    );
    assert!(read_log(&config_path).contains("does not open with the session secrets configured"));

    let config_path = write_sled_config(
        dir.path(),
        addr,
        &idp,
        echo,
        "previous_secret_files = [\"data/old.key\"]",
    );
    assert_eq!(
        status_after_restart(&config_path).await,
        StatusCode::OK,
        "the old secret listed as previous"
    );
}
