//! The login against a hostile provider whose tokens the test scripts: every forged, misdirected,
//! stale or replayed answer is refused, logged with a reason code and no token, and reaches no
//! upstream. Also: the return URL never leaves the origin, cookies carry the safe attributes,
//! refresh is single-flight and ends the session when the provider says so.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use support::browser::{Browser, get_with_cookie, json, location, set_cookies};
use support::echo::{self, received_header, received_headers};
use support::hostile_idp::{HostileIdp, Key, NonceChoice, Recipe, Script, Signing};
use support::{TestProxy, logs, start_proxy_at};

fn config(idp: &HostileIdp, echo: SocketAddr) -> impl FnOnce(SocketAddr) -> String {
    config_with(idp, echo, "")
}

fn config_with(
    idp: &HostileIdp,
    echo: SocketAddr,
    oidc_extra: &'static str,
) -> impl FnOnce(SocketAddr) -> String {
    config_with_session(idp, echo, oidc_extra, "")
}

/// [`config_with`] and `session_extra` in `[session]`.
fn config_with_session(
    idp: &HostileIdp,
    echo: SocketAddr,
    oidc_extra: &'static str,
    session_extra: &'static str,
) -> impl FnOnce(SocketAddr) -> String {
    let discovery = idp.discovery_url();
    move |proxy: SocketAddr| {
        format!(
            r#"
[server]
listen = "{proxy}"

[oidc]
discovery = "{discovery}"
client_id = "portcullis"
client_secret = "hostile:test%secret+"
redirect_uri = "http://{proxy}/auth"
post_logout_redirect_uri = "http://{proxy}/"
access_token_expires_leeway = "60s"
{oidc_extra}

[session]
store = "memory"
cookie_name = "sess_auth"
cookie_secure = false
{session_extra}

[[routes]]
name = "app"
path = "/"
upstream = "http://{echo}"

[[routes]]
name = "public"
path = "/public"
upstream = "http://{echo}"
auth = "none"
"#
        )
    }
}

struct Setup {
    idp: HostileIdp,
    proxy: TestProxy,
    /// What this test logs: its proxy and provider run on its thread.
    log: logs::Capture,
}

async fn setup(script: Script) -> Setup {
    let log = logs::capture();
    let idp = HostileIdp::start(script).await;
    let echo = echo::spawn().await;
    let proxy = start_proxy_at(config(&idp, echo), std::path::Path::new(".")).await;
    wait_until_discovered(&proxy).await;
    Setup { idp, proxy, log }
}

/// Discovery runs in the background: wait until a browser request is no longer answered 503.
async fn wait_until_discovered(proxy: &TestProxy) {
    let browser = Browser::new();
    for _ in 0..300 {
        if browser.get(&proxy.url("/")).await.status() != StatusCode::SERVICE_UNAVAILABLE {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("OIDC discovery did not complete");
}

/// Runs a login from `path` up to the callback's answer (not following it).
async fn login(browser: &Browser, setup: &Setup, path: &str) -> reqwest::Response {
    let start = browser.get(&setup.proxy.url(path)).await;
    assert_eq!(start.status(), StatusCode::FOUND);
    let authorize = location(&start);
    assert!(authorize.starts_with(&setup.idp.issuer), "{authorize}");
    let approved = browser.get(&authorize).await;
    let callback = location(&approved);
    browser.get(&callback).await
}

fn assert_no_session_cookie(response: &reqwest::Response) {
    for cookie in set_cookies(response) {
        assert!(
            !cookie.starts_with("sess_auth=") || cookie.contains("Max-Age=0"),
            "a refused login must not set a session cookie: {cookie}"
        );
    }
}

/// Runs a login whose ID token the script spoils, and checks it is refused with `reason`.
async fn refused(change: impl FnOnce(&mut Recipe), reason: &str) {
    let mut script = Script::default();
    change(&mut script.login);
    let setup = setup(script).await;
    let browser = Browser::new();
    let answer = login(&browser, &setup, "/app").await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{reason}");
    assert_no_session_cookie(&answer);
    // Still not logged in: the app is not reached.
    assert_eq!(
        browser.get(&setup.proxy.url("/app")).await.status(),
        StatusCode::FOUND
    );
    let own = setup.log.own();
    let refusals: Vec<&str> = own
        .lines()
        .filter(|l| l.contains("login refused"))
        .collect();
    assert!(
        own.contains(&format!("reason=\"{reason}\"")) || own.contains(&format!("reason={reason}")),
        "no {reason} in the log: {refusals:#?}\n{own}"
    );
    // No test may log token material: read everything logged so far.
    let log = logs::text();
    for token in setup.idp.issued_id_tokens() {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !log.contains(&token) && (signature.is_empty() || !log.contains(signature)),
            "token material logged"
        );
    }
}

#[tokio::test]
async fn a_good_login_reaches_the_app_with_identity_headers() {
    let setup = setup(Script::default()).await;
    let browser = Browser::new();
    let started = std::time::Instant::now();
    let answer = login(&browser, &setup, "/app/page?x=1").await;
    let took = started.elapsed().as_secs() + 1;
    assert_eq!(answer.status(), StatusCode::FOUND);
    assert_eq!(answer.headers()["location"], "/app/page?x=1");
    let cookie = set_cookies(&answer)
        .into_iter()
        .find(|c| c.starts_with("sess_auth="))
        .expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    // The day the session has left, in whole seconds: 86400, or less by the seconds the clock
    // turned while the login ran (it did on a busy machine).
    let max_age: u64 = cookie
        .split("; ")
        .find_map(|attribute| attribute.strip_prefix("Max-Age="))
        .unwrap_or_else(|| panic!("Max-Age missing: {cookie}"))
        .parse()
        .unwrap();
    assert!(
        (86400 - took..=86400).contains(&max_age),
        "Max-Age={max_age} after a login of under {took} s: {cookie}"
    );
    let page = browser.get(&setup.proxy.url("/app/page?x=1")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let report = json(page).await;
    assert_eq!(
        received_header(&report, "x-auth-subject").as_deref(),
        Some("alice")
    );
    assert_eq!(
        received_header(&report, "x-auth-groups").as_deref(),
        Some("admins,staff")
    );
    assert_eq!(
        received_header(&report, "x-auth-username").as_deref(),
        Some("alice")
    );
    assert_eq!(
        received_header(&report, "x-auth-audience").as_deref(),
        Some("portcullis")
    );
    let cookies = received_headers(&report, "cookie");
    assert!(
        cookies.iter().all(|c| !c.contains("sess_auth")),
        "the session cookie went upstream: {cookies:?}"
    );
}

#[tokio::test]
async fn a_tampered_signature_is_refused() {
    refused(
        |r| r.signing = Signing::Rs256Tampered(Key::A),
        "id_token_bad_signature",
    )
    .await;
}

#[tokio::test]
async fn alg_none_is_refused_even_when_advertised() {
    refused(|r| r.signing = Signing::None, "id_token_disallowed_alg").await;
}

#[tokio::test]
async fn hs256_keyed_with_the_public_key_is_refused() {
    refused(
        |r| r.signing = Signing::Hs256WithPublicKey(Key::A),
        "id_token_disallowed_alg",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_issuer_is_refused() {
    refused(
        |r| r.iss = Some("http://evil.example".into()),
        "id_token_wrong_issuer",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    refused(
        |r| r.aud = Some(serde_json::json!("another-client")),
        "id_token_wrong_audience",
    )
    .await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    refused(|r| r.exp_in = -600, "id_token_expired").await;
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused() {
    refused(|r| r.iat_in = 3600, "id_token_iat_in_future").await;
}

/// Runs a login whose ID token the script changes, and checks it is accepted.
async fn accepted(change: impl FnOnce(&mut Recipe), what: &str) {
    let mut script = Script::default();
    change(&mut script.login);
    let setup = setup(script).await;
    let browser = Browser::new();
    let answer = login(&browser, &setup, "/app").await;
    assert_eq!(
        answer.status(),
        StatusCode::FOUND,
        "{what}: back to the app"
    );
    assert_eq!(
        browser.get(&setup.proxy.url("/app")).await.status(),
        StatusCode::OK,
        "{what}: logged in"
    );
}

/// `aud` and `azp` (OpenID Connect Core 3.1.3.7): the token must list us as its audience, and no
/// audience we do not trust — Portcullis trusts none besides itself, so a token issued for
/// several clients is refused even when its `azp` names us; `azp`, when present, must name us.
#[tokio::test]
async fn the_audience_is_us_alone_and_azp_when_present_names_us() {
    accepted(
        |r| r.extra["azp"] = serde_json::json!("portcullis"),
        "azp names us",
    )
    .await;
    refused(
        |r| r.extra["azp"] = serde_json::json!("another-client"),
        "id_token_wrong_audience",
    )
    .await;
    refused(
        |r| {
            r.aud = Some(serde_json::json!(["portcullis", "another-client"]));
            r.extra["azp"] = serde_json::json!("portcullis");
        },
        "id_token_wrong_audience",
    )
    .await;
}

/// `clock_skew` (default 30 s) on both sides: `exp` 10 s past and `iat` 10 s ahead are inside
/// it, 60 s is outside. (Margins of 20–30 s: the test's own time must not decide.)
#[tokio::test]
async fn clock_skew_is_tolerated_up_to_its_bound_and_not_past_it() {
    accepted(|r| r.exp_in = -10, "expired 10 s ago").await;
    refused(|r| r.exp_in = -60, "id_token_expired").await;
    accepted(|r| r.iat_in = 10, "issued 10 s ahead").await;
    refused(|r| r.iat_in = 60, "id_token_iat_in_future").await;
}

#[tokio::test]
async fn a_wrong_nonce_is_refused() {
    refused(|r| r.nonce = NonceChoice::Wrong, "id_token_nonce_mismatch").await;
}

#[tokio::test]
async fn a_missing_nonce_is_refused() {
    refused(
        |r| r.nonce = NonceChoice::Missing,
        "id_token_nonce_mismatch",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_key_is_refused_when_the_jwks_does_not_have_it() {
    refused(
        |r| r.signing = Signing::Rs256(Key::B),
        "id_token_unknown_key",
    )
    .await;
}

/// A token signed with an unknown key makes the proxy fetch the JWKS again, but at most once per
/// 30 s: a stream of tokens with made-up key ids cannot turn the proxy into a flood at the
/// provider.
#[tokio::test]
async fn the_jwks_is_refetched_for_an_unknown_key_at_most_once_per_30_s() {
    let mut script = Script::default();
    script.login.signing = Signing::Rs256(Key::B);
    let setup = setup(script).await;
    let before = setup.idp.jwks_calls();
    for attempt in 1..=3 {
        let answer = login(&Browser::new(), &setup, "/app").await;
        assert_eq!(
            answer.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
        assert_eq!(
            setup.idp.jwks_calls() - before,
            1,
            "one refetch for {attempt} logins with an unknown key"
        );
    }
}

#[tokio::test]
async fn rotated_keys_are_picked_up_by_refetching_the_jwks() {
    let mut script = Script::default();
    script.login.signing = Signing::Rs256(Key::B);
    let setup = setup(script).await;
    // The provider rotates to key B after the proxy cached a JWKS with only key A.
    setup.idp.script(|s| s.jwks = vec![Key::A, Key::B]);
    let browser = Browser::new();
    let answer = login(&browser, &setup, "/app").await;
    assert_eq!(
        answer.status(),
        StatusCode::FOUND,
        "the refetched JWKS has the new key"
    );
    assert_eq!(
        browser.get(&setup.proxy.url("/app")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_replayed_callback_is_refused_before_the_token_endpoint() {
    let setup = setup(Script::default()).await;
    let browser = Browser::new();
    let start = browser.get(&setup.proxy.url("/app")).await;
    let approved = browser.get(&location(&start)).await;
    let callback = location(&approved);
    assert_eq!(browser.get(&callback).await.status(), StatusCode::FOUND);
    let calls = setup.idp.token_calls();
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        setup.idp.token_calls(),
        calls,
        "a replayed state must not reach the token endpoint"
    );
}

#[tokio::test]
async fn a_callback_without_or_with_an_unknown_state_is_refused() {
    let setup = setup(Script::default()).await;
    let browser = Browser::new();
    for query in ["", "?code=x", "?code=x&state=made-up", "?state=&code=x"] {
        let answer = browser
            .get(&setup.proxy.url(&format!("/auth{query}")))
            .await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    assert_eq!(setup.idp.token_calls(), 0);
}

#[tokio::test]
async fn a_login_started_in_another_browser_is_refused() {
    let setup = setup(Script::default()).await;
    let attacker = Browser::new();
    let start = attacker.get(&setup.proxy.url("/app")).await;
    let approved = attacker.get(&location(&start)).await;
    let callback = location(&approved);
    // The victim opens the attacker's callback link (login CSRF): no binding cookie, refused.
    let victim = Browser::new();
    let answer = victim.get(&callback).await;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert_no_session_cookie(&answer);
    assert_eq!(setup.idp.token_calls(), 0);
}

#[tokio::test]
async fn two_tabs_can_log_in_at_once() {
    let setup = setup(Script::default()).await;
    let browser = Browser::new();
    let first = browser.get(&setup.proxy.url("/one")).await;
    let second = browser.get(&setup.proxy.url("/two")).await;
    let first_callback = location(&browser.get(&location(&first)).await);
    let second_callback = location(&browser.get(&location(&second)).await);
    let second_answer = browser.get(&second_callback).await;
    let first_answer = browser.get(&first_callback).await;
    assert_eq!(
        second_answer.status(),
        StatusCode::FOUND,
        "{:?}",
        second_answer.text().await
    );
    assert_eq!(second_answer.headers()["location"], "/two");
    assert_eq!(first_answer.headers()["location"], "/one");
}

#[tokio::test]
async fn the_return_url_never_leaves_the_origin() {
    let setup = setup(Script::default()).await;
    for path in [
        "//evil.example",
        "//evil.example/%2e%2e",
        "/app?next=https://evil.example",
        "/.//evil.example",
    ] {
        let browser = Browser::new();
        let answer = login(&browser, &setup, path).await;
        assert_eq!(answer.status(), StatusCode::FOUND, "{path}");
        let target = answer.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            target.starts_with('/') && !target.starts_with("//") && !target.starts_with("/\\"),
            "{path} returned to {target}"
        );
    }
    // Targets that would be ambiguous never get as far as a login.
    let browser = Browser::new();
    for path in [
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/%2f%2fevil.example",
    ] {
        assert_eq!(
            browser.get(&setup.proxy.url(path)).await.status(),
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
}

#[tokio::test]
async fn api_clients_get_401_and_no_cookie() {
    let setup = setup(Script::default()).await;
    let answer = Browser::new().get_api(&setup.proxy.url("/api/data")).await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert!(answer.headers().contains_key("www-authenticate"));
    assert!(
        set_cookies(&answer).is_empty(),
        "a denied request sets no cookie"
    );
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let setup = setup(Script::default()).await;
    let browser = Browser::new();
    login(&browser, &setup, "/").await;
    let response = browser
        .client
        .get(setup.proxy.url("/"))
        .header("X-Auth-Groups", "root")
        .header("x_auth_groups", "root")
        .header("X-AUTH-SUBJECT", "root")
        .header("X-Auth-Extra", "root")
        .send()
        .await
        .unwrap();
    let report = json(response).await;
    assert_eq!(received_headers(&report, "x-auth-groups"), ["admins,staff"]);
    assert_eq!(received_headers(&report, "x-auth-subject"), ["alice"]);
    assert!(received_header(&report, "x-auth-extra").is_none());
    assert!(received_header(&report, "x_auth_groups").is_none());
}

#[tokio::test]
async fn an_identity_header_configured_with_underscores_cannot_be_forged_in_the_other_spelling() {
    let setup = setup_with(
        "",
        "[headers]\n\"X_Remote_User\" = \"preferred_username\"\n\"X-Auth-Groups\" = \"groups\"\n",
    )
    .await;
    let browser = Browser::new();
    login(&browser, &setup, "/").await;
    let response = browser
        .client
        .get(setup.proxy.url("/"))
        .header("X-Remote-User", "root")
        .header("x_remote_user", "root")
        .header("X_Auth_Groups", "root")
        .send()
        .await
        .unwrap();
    let report = json(response).await;
    assert_eq!(received_headers(&report, "x_remote_user"), ["alice"]);
    assert!(
        received_header(&report, "x-remote-user").is_none(),
        "the client's X-Remote-User reached a backend that reads it as X_Remote_User"
    );
    assert_eq!(received_headers(&report, "x-auth-groups"), ["admins,staff"]);
    assert!(received_header(&report, "x_auth_groups").is_none());
}

#[tokio::test]
async fn a_group_name_holding_a_comma_never_forges_membership_in_x_auth_groups() {
    let setup = setup(Script::default()).await;
    setup.idp.script(|s| {
        s.login.extra =
            serde_json::json!({ "preferred_username": "mallory", "groups": ["staff", "admins,evil"] });
    });
    let browser = Browser::new();
    login(&browser, &setup, "/").await;
    let report = json(browser.get(&setup.proxy.url("/")).await).await;
    let groups = received_headers(&report, "x-auth-groups");
    assert_eq!(groups, ["staff,admins%2Cevil"]);
    let split: Vec<&str> = groups[0].split(',').map(str::trim).collect();
    assert!(
        !split.contains(&"admins"),
        "a backend splitting on ',' sees an admins entry: {split:?}"
    );
}

#[tokio::test]
async fn concurrent_requests_share_one_refresh() {
    // Access tokens expire within the 60 s leeway: every request finds the session due.
    let script = Script {
        access_expires_in: 30,
        ..Script::default()
    };
    let setup = setup(script).await;
    let browser = Browser::new();
    login(&browser, &setup, "/").await;
    // After the first refresh the access token is again due; the scripted refresh answers 300 s.
    setup.idp.script(|s| s.access_expires_in = 300);
    // The provider holds the refresh while all eight requests arrive: without single flight,
    // each would ask for one of its own meanwhile.
    setup.idp.hold_refreshes();
    let requests: Vec<_> = (0..8)
        .map(|_| tokio::spawn(browser.client.get(setup.proxy.url("/")).send()))
        .collect();
    for _ in 0..500 {
        if setup.idp.refresh_calls() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(setup.idp.refresh_calls(), 1, "the first refresh is held");
    // Time for the other seven to reach the proxy and (without single flight) the provider.
    tokio::time::sleep(Duration::from_millis(500)).await;
    setup.idp.release_refreshes();
    for answer in futures_util::future::join_all(requests).await {
        assert_eq!(answer.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(
        setup.idp.refresh_calls(),
        1,
        "one refresh for eight concurrent requests"
    );
}

/// What a user gets when the access token cannot be renewed (oidc.md, "Authenticated requests"):
/// with renewal off, without a refresh token, or with the provider down for the refresh, the
/// session keeps working until its access token has really expired, and then ends (an API
/// client gets 401) — never an error page, never a session that outlives its token.
#[tokio::test]
async fn without_a_renewal_the_session_lasts_until_the_access_token_expires() {
    // Access tokens live 2 s: due at once (the leeway is 60 s), expired 2 s after login.
    let renewal_off = setup_with("renew_access_token_on_expiry = false", "").await;
    renewal_off.idp.script(|s| s.access_expires_in = 2);
    let no_refresh_token = setup(Script {
        access_expires_in: 2,
        no_refresh_token: true,
        ..Script::default()
    })
    .await;
    let provider_down = setup(Script {
        access_expires_in: 2,
        refresh_unavailable: true,
        ..Script::default()
    })
    .await;
    let cases = [
        ("renewal off", &renewal_off, false),
        ("no refresh token", &no_refresh_token, false),
        ("provider down", &provider_down, true),
    ];
    let mut browsers = Vec::new();
    for (name, setup, asks_provider) in cases {
        let browser = Browser::new();
        login(&browser, setup, "/").await;
        let within = browser.get_api(&setup.proxy.url("/")).await;
        assert_eq!(within.status(), StatusCode::OK, "{name}: before expiry");
        assert_eq!(
            setup.idp.refresh_calls() > 0,
            asks_provider,
            "{name}: refresh attempted"
        );
        browsers.push(browser);
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;
    for ((name, setup, _), browser) in cases.into_iter().zip(browsers) {
        let after = browser.get_api(&setup.proxy.url("/")).await;
        assert_eq!(
            after.status(),
            StatusCode::UNAUTHORIZED,
            "{name}: after expiry"
        );
    }
}

/// A proxy on the hostile provider with `session_extra` in `[session]`.
async fn setup_session(session_extra: &'static str) -> Setup {
    let log = logs::capture();
    let idp = HostileIdp::start(Script::default()).await;
    let echo = echo::spawn().await;
    let proxy = start_proxy_at(
        config_with_session(&idp, echo, "", session_extra),
        std::path::Path::new("."),
    )
    .await;
    wait_until_discovered(&proxy).await;
    Setup { idp, proxy, log }
}

/// The cookie value of the session a callback answer set.
fn issued_session(callback: &reqwest::Response) -> String {
    set_cookies(callback)
        .iter()
        .find_map(|cookie| cookie.strip_prefix("sess_auth="))
        .and_then(|rest| rest.split(';').next())
        .expect("the callback sets the session cookie")
        .to_owned()
}

/// Sessions through the proxy (oidc.md, "Sessions"): an unused session ends after `idle_timeout`,
/// any session after `lifetime`; the cookie is re-sent once older than `renew`, with the same
/// session; a session id planted in the browser before the login (well-formed: 43 base64url
/// characters, as an issued one) is never the one issued.
#[tokio::test]
async fn sessions_end_on_idle_timeout_and_lifetime_and_the_cookie_is_renewed_never_fixed() {
    let idle = setup_session("idle_timeout = \"2s\"").await;
    let lifetime = setup_session("lifetime = \"2s\"").await;
    let renew = setup_session("renew = \"1s\"").await;
    let mut sessions = Vec::new();
    for (name, setup) in [("idle", &idle), ("lifetime", &lifetime), ("renew", &renew)] {
        let browser = Browser::new();
        browser.plant_cookie(
            &setup.proxy.url("/"),
            "sess_auth=PLANTEDbyAnAttacker0123456789abcdefghijklmn",
        );
        let callback = login(&browser, setup, "/").await;
        let issued = issued_session(&callback);
        assert_ne!(
            issued, "PLANTEDbyAnAttacker0123456789abcdefghijklmn",
            "{name}: fixation"
        );
        assert_eq!(
            get_with_cookie(
                &setup.proxy.url("/"),
                "sess_auth=PLANTEDbyAnAttacker0123456789abcdefghijklmn"
            )
            .await
            .status(),
            StatusCode::FOUND,
            "{name}: the planted id is no session"
        );
        assert_eq!(
            browser.get_api(&setup.proxy.url("/")).await.status(),
            StatusCode::OK,
            "{name}: logged in"
        );
        sessions.push((name, setup, browser, issued));
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;
    for (name, setup, browser, issued) in sessions {
        let answer = browser.get_api(&setup.proxy.url("/")).await;
        if name == "renew" {
            assert_eq!(answer.status(), StatusCode::OK, "renew: still logged in");
            assert!(
                set_cookies(&answer)
                    .iter()
                    .any(|cookie| cookie.starts_with(&format!("sess_auth={issued};"))),
                "renew: the same session's cookie re-sent: {:?}",
                set_cookies(&answer)
            );
        } else {
            assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{name}: ended");
            // Ended at the proxy, not only in the client: the cookie's Max-Age (the remaining
            // lifetime) makes a client drop it, so the value is replayed by hand.
            let replayed =
                get_with_cookie(&setup.proxy.url("/"), &format!("sess_auth={issued}")).await;
            assert_eq!(
                replayed.status(),
                StatusCode::FOUND,
                "{name}: ended at the proxy"
            );
        }
    }
}

#[tokio::test]
async fn a_refresh_naming_another_user_ends_the_session() {
    let script = Script {
        access_expires_in: 30,
        ..Script::default()
    };
    let setup = setup(script).await;
    let browser = Browser::new();
    login(&browser, &setup, "/").await;
    setup.idp.script(|s| {
        let mut other = Recipe::good();
        other.sub = "mallory".into();
        other.nonce = NonceChoice::Missing;
        s.refresh = Some(other);
    });
    let answer = browser.get(&setup.proxy.url("/")).await;
    assert_eq!(answer.status(), StatusCode::FOUND, "sent to log in again");
    assert!(
        set_cookies(&answer)
            .iter()
            .any(|c| c.starts_with("sess_auth=;") && c.contains("Max-Age=0"))
    );
    assert!(setup.log.own().contains("id_token_subject_changed"));
}

#[tokio::test]
async fn invalid_grant_on_refresh_ends_the_session() {
    let script = Script {
        access_expires_in: 30,
        ..Script::default()
    };
    let setup = setup(script).await;
    let browser = Browser::new();
    login(&browser, &setup, "/").await;
    setup.idp.script(|s| s.refresh_invalid_grant = true);
    assert_eq!(
        browser.get(&setup.proxy.url("/")).await.status(),
        StatusCode::FOUND
    );
    assert_eq!(
        browser.get_api(&setup.proxy.url("/")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// The `sess_auth` cookie a login's callback set, as a `Cookie` header value.
fn session_cookie(callback: &reqwest::Response) -> String {
    set_cookies(callback)
        .into_iter()
        .find(|c| c.starts_with("sess_auth=") && !c.contains("Max-Age=0"))
        .and_then(|c| c.split(';').next().map(str::to_owned))
        .expect("the callback sets the session cookie")
}

#[tokio::test]
async fn a_refresh_finishing_after_logout_does_not_revive_the_session() {
    // Access tokens are due within the 60 s leeway: the next request refreshes.
    let script = Script {
        access_expires_in: 30,
        ..Script::default()
    };
    let setup = setup(script).await;
    let browser = Browser::new();
    let callback = login(&browser, &setup, "/").await;
    let cookie = session_cookie(&callback);
    setup.idp.script(|s| s.access_expires_in = 300);
    setup.idp.hold_refreshes();
    // A client without a cookie jar, so the old cookie can be replayed after the logout.
    let api = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let in_flight = tokio::spawn({
        let request = api
            .get(setup.proxy.url("/"))
            .header("cookie", cookie.clone())
            .header("accept", "application/json");
        async move { request.send().await.unwrap().status() }
    });
    // The refresh has reached the provider and is held there.
    for _ in 0..500 {
        if setup.idp.refresh_calls() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        setup.idp.refresh_calls(),
        1,
        "the request started a refresh"
    );
    let logout = api
        .get(setup.proxy.url("/logout"))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::FOUND);
    setup.idp.release_refreshes();
    assert_eq!(
        in_flight.await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "the request whose refresh outlived the logout is not let through"
    );
    // The old cookie, replayed after the logout, opens nothing.
    let replayed = api
        .get(setup.proxy.url("/"))
        .header("cookie", cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        setup.idp.refresh_calls(),
        1,
        "no second refresh of an ended session"
    );
}

#[tokio::test]
async fn oversized_provider_answers_are_refused_not_buffered() {
    let log = logs::capture();
    let oversized = portcullis::oidc::MAX_PROVIDER_RESPONSE + 1;
    let idp = HostileIdp::start(Script {
        discovery_padding: oversized,
        ..Script::default()
    })
    .await;
    let echo = echo::spawn().await;
    let proxy = start_proxy_at(config(&idp, echo), std::path::Path::new(".")).await;
    // The provider's address is this test's own.
    let refusal = format!("the answer from {} is larger than", idp.discovery_url());
    for _ in 0..200 {
        if !logs::events_with(&refusal).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        !logs::events_with(&refusal).is_empty(),
        "no refusal of the oversized discovery document"
    );
    let browser = Browser::new();
    assert_eq!(
        browser.get(&proxy.url("/")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "no login without a discovery document"
    );
    // A provider that answers sanely again is used; an oversized token answer fails the login.
    idp.script(|s| {
        s.discovery_padding = 0;
        s.token_padding = oversized;
    });
    wait_until_discovered(&proxy).await;
    let setup = Setup { idp, proxy, log };
    let answer = login(&browser, &setup, "/").await;
    assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
    assert_no_session_cookie(&answer);
}

#[tokio::test]
async fn logout_ends_the_session_and_goes_to_the_end_session_endpoint() {
    let setup = setup(Script::default()).await;
    let browser = Browser::new();
    login(&browser, &setup, "/").await;
    assert_eq!(
        browser.get(&setup.proxy.url("/")).await.status(),
        StatusCode::OK
    );
    // A copy of the cookies, as a thief (or a browser that ignores `Max-Age=0`) keeps them; it
    // works now, so what fails below is the logout.
    let stolen = browser.cookie_header(&setup.proxy.url("/"));
    assert!(stolen.contains("sess_auth="), "{stolen}");
    assert_eq!(
        get_with_cookie(&setup.proxy.url("/"), &stolen)
            .await
            .status(),
        StatusCode::OK
    );
    let answer = browser.get(&setup.proxy.url("/logout")).await;
    assert_eq!(answer.status(), StatusCode::FOUND);
    let target = location(&answer);
    assert!(
        target.starts_with(&format!("{}/logout?", setup.idp.issuer)),
        "{target}"
    );
    assert!(target.contains("id_token_hint="), "{target}");
    assert!(target.contains("post_logout_redirect_uri="), "{target}");
    assert!(
        set_cookies(&answer)
            .iter()
            .any(|c| c.starts_with("sess_auth=;") && c.contains("Max-Age=0"))
    );
    assert_eq!(
        browser.get(&setup.proxy.url("/")).await.status(),
        StatusCode::FOUND,
        "logged out"
    );
    // The session ended in the store, not just in the browser: the old cookie logs in no one.
    let replayed = get_with_cookie(&setup.proxy.url("/"), &stolen).await;
    assert_eq!(
        replayed.status(),
        StatusCode::FOUND,
        "the old cookie after logout"
    );
    assert!(location(&replayed).starts_with(&setup.idp.issuer));
}

#[tokio::test]
async fn while_the_provider_is_down_login_routes_answer_503_and_open_routes_work() {
    logs::capture();
    let idp_addr = support::closed_port();
    let echo = echo::spawn().await;
    let discovery = format!("http://{idp_addr}/.well-known/openid-configuration");
    let proxy = start_proxy_at(
        |proxy| {
            format!(
                r#"
[server]
listen = "{proxy}"
[oidc]
discovery = "{discovery}"
client_id = "portcullis"
client_secret = "hostile:test%secret+"
redirect_uri = "http://{proxy}/auth"
[session]
store = "memory"
cookie_secure = false
[[routes]]
name = "open"
path = "/public"
upstream = "http://{echo}"
auth = "none"
[[routes]]
name = "app"
path = "/"
upstream = "http://{echo}"
"#
            )
        },
        std::path::Path::new("."),
    )
    .await;
    let browser = Browser::new();
    assert_eq!(
        browser.get(&proxy.url("/app")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        browser.get_api(&proxy.url("/app")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        browser.get(&proxy.url("/public/x")).await.status(),
        StatusCode::OK
    );
    // The provider comes up: discovery is retried and logins start working.
    let _idp = HostileIdp::start_at(idp_addr, Script::default()).await;
    wait_until_discovered(&proxy).await;
}

#[tokio::test]
async fn logout_can_revoke_the_refresh_token() {
    let log = logs::capture();
    let idp = HostileIdp::start(Script::default()).await;
    let echo = echo::spawn().await;
    let proxy = start_proxy_at(
        config_with(&idp, echo, "revoke_tokens_on_logout = true"),
        std::path::Path::new("."),
    )
    .await;
    wait_until_discovered(&proxy).await;
    let setup = Setup { idp, proxy, log };
    let browser = Browser::new();
    login(&browser, &setup, "/").await;
    assert!(setup.idp.revoked().is_empty());
    browser.get(&setup.proxy.url("/logout")).await;
    assert_eq!(
        setup.idp.revoked(),
        setup.idp.issued_refresh_tokens(),
        "the session's refresh token is revoked"
    );
}

#[tokio::test]
async fn a_replayed_code_under_a_new_state_is_refused_by_the_provider_and_by_us() {
    let setup = setup(Script::default()).await;
    let browser = Browser::new();
    let start = browser.get(&setup.proxy.url("/app")).await;
    let callback = location(&browser.get(&location(&start)).await);
    assert_eq!(browser.get(&callback).await.status(), StatusCode::FOUND);
    let used_code = callback
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    // A new login (another browser), answered with the old code.
    let browser = Browser::new();
    let fresh = browser.get(&setup.proxy.url("/other")).await;
    let fresh_callback = location(&browser.get(&location(&fresh)).await);
    let fresh_code = fresh_callback
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let replay = fresh_callback.replace(fresh_code, &used_code);
    let answer = browser.get(&replay).await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert_no_session_cookie(&answer);
    assert!(setup.log.own().contains("code_refused"));
}

#[tokio::test]
async fn route_policies_decide_after_login_and_fail_closed() {
    let log = logs::capture();
    let idp = HostileIdp::start(Script::default()).await;
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("read-only.rhai"),
        r#"print(`checked ${request.method}`); if request.method == "GET" { allow() } else { deny(405, "read only") }"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.rhai"), "loop {}").unwrap();
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let base = config(&idp, echo);
    let samples_dir = samples.display().to_string();
    // Named by its full path, so the lines about it are this test's own.
    let own_policy = dir.path().join("read-only.rhai").display().to_string();
    let read_only = own_policy.clone();
    let proxy = start_proxy_at(
        move |addr| {
            format!(
                r#"{}
[[routes]]
name = "admin"
path = "/admin"
upstream = "http://{echo}"
policy = "{samples_dir}/require-group.rhai"
[routes.policy_config]
group = "admins"

[[routes]]
name = "role"
path = "/role"
upstream = "http://{echo}"
policy = "{samples_dir}/set-role-header.rhai"

[[routes]]
name = "open"
path = "/open"
upstream = "http://{echo}"
auth = "none"
policy = "{read_only}"

[[routes]]
name = "broken"
path = "/broken"
upstream = "http://{echo}"
policy = "broken.rhai"
"#,
                base(addr)
            )
        },
        dir.path(),
    )
    .await;
    wait_until_discovered(&proxy).await;
    let setup = Setup { idp, proxy, log };

    // Anonymous, on an auth = "none" route: the policy still decides.
    let anonymous = Browser::new();
    assert_eq!(
        anonymous.get(&setup.proxy.url("/open/page")).await.status(),
        StatusCode::OK
    );
    let post = anonymous
        .client
        .post(setup.proxy.url("/open/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: serde_json::Value = serde_json::from_str(&post.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], 405);
    assert_eq!(body["message"], "read only");
    // Printed on a policy thread: found by the policy's path, in this test's own folder.
    let line = logs::events_with(&own_policy)
        .into_iter()
        .find(|event| event.contains("print: checked POST"))
        .expect("print() reaches the log");
    assert!(
        line.contains("route=open") && line.contains("read-only.rhai"),
        "{line}"
    );

    // alice is in admins.
    let alice = Browser::new();
    login(&alice, &setup, "/admin").await;
    assert_eq!(
        alice.get(&setup.proxy.url("/admin/users")).await.status(),
        StatusCode::OK
    );
    let report = json(alice.get(&setup.proxy.url("/role")).await).await;
    assert_eq!(received_header(&report, "x-role").as_deref(), Some("admin"));
    assert_eq!(received_header(&report, "x-user").as_deref(), Some("alice"));

    // bob is not.
    setup.idp.script(|s| {
        s.login.sub = "bob".into();
        s.login.extra = serde_json::json!({ "preferred_username": "bob", "groups": ["staff"] });
    });
    let bob = Browser::new();
    login(&bob, &setup, "/role").await;
    let refused = bob.get(&setup.proxy.url("/admin")).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("<h1>403 Forbidden</h1>") && page.contains("<p>members of admins only</p>"),
        "a readable page for the browser: {page}"
    );
    let report = json(bob.get(&setup.proxy.url("/role")).await).await;
    assert_eq!(received_header(&report, "x-role").as_deref(), Some("staff"));

    // A failing policy answers 500 and is logged with its file; other routes keep working.
    let broken = alice.get(&setup.proxy.url("/broken")).await;
    assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        setup.log.own().contains("broken.rhai"),
        "the policy error names its file"
    );
    assert_eq!(
        alice.get(&setup.proxy.url("/admin")).await.status(),
        StatusCode::OK
    );
}

/// Starts a proxy against the hostile provider with `oidc_extra` in `[oidc]` and extra routes.
async fn setup_with(oidc_extra: &'static str, routes: &'static str) -> Setup {
    let log = logs::capture();
    let idp = HostileIdp::start(Script::default()).await;
    let echo = echo::spawn().await;
    let base = config_with(&idp, echo, oidc_extra);
    let proxy = start_proxy_at(
        move |addr| {
            format!(
                "{}\n{}",
                base(addr),
                routes.replace("{echo}", &echo.to_string())
            )
        },
        std::path::Path::new("."),
    )
    .await;
    wait_until_discovered(&proxy).await;
    Setup { idp, proxy, log }
}

#[tokio::test]
async fn optional_routes_forwarded_tokens_and_per_route_headers() {
    let setup = setup_with(
        "",
        r#"
[[routes]]
name = "optional"
path = "/optional"
upstream = "http://{echo}"
auth = "optional"

[[routes]]
name = "api"
path = "/api"
upstream = "http://{echo}"
forward_access_token = true
[routes.headers]
"X-User" = "preferred_username"
"#,
    )
    .await;
    let browser = Browser::new();
    let anonymous = json(browser.get(&setup.proxy.url("/optional")).await).await;
    assert_eq!(
        received_header(&anonymous, "x-auth-subject"),
        None,
        "passes without a login"
    );
    login(&browser, &setup, "/").await;
    let optional = json(browser.get(&setup.proxy.url("/optional")).await).await;
    assert_eq!(
        received_header(&optional, "x-auth-subject").as_deref(),
        Some("alice")
    );
    let api = json(browser.get(&setup.proxy.url("/api")).await).await;
    assert_eq!(
        received_header(&api, "x-user").as_deref(),
        Some("alice"),
        "the route's own headers"
    );
    assert_eq!(
        received_header(&api, "x-auth-subject"),
        None,
        "replacing the top-level set"
    );
    let bearer = received_header(&api, "authorization").expect("access token forwarded");
    assert!(bearer.starts_with("Bearer at-"), "{bearer}");
    // A client cannot send the route's identity header itself.
    let spoofed = browser
        .client
        .get(setup.proxy.url("/optional"))
        .header("X_User", "root")
        .send()
        .await
        .unwrap();
    assert_eq!(received_header(&json(spoofed).await, "x-user"), None);
}

#[tokio::test]
async fn client_secret_post_is_used_when_configured() {
    let setup = setup_with("token_endpoint_auth_method = \"client_secret_post\"", "").await;
    login(&Browser::new(), &setup, "/").await;
    assert_eq!(setup.idp.client_auth_methods(), ["client_secret_post"]);
    let basic = self::setup(Script::default()).await;
    login(&Browser::new(), &basic, "/").await;
    assert_eq!(basic.idp.client_auth_methods(), ["client_secret_basic"]);
}

#[tokio::test]
async fn unauthenticated_redirect_and_deny_apply_to_every_client() {
    let redirect = setup_with("unauthenticated = \"redirect\"", "").await;
    assert_eq!(
        Browser::new()
            .get_api(&redirect.proxy.url("/"))
            .await
            .status(),
        StatusCode::FOUND
    );
    let deny = setup_with(
        "unauthenticated = \"deny\"\nunauthenticated_status = 403",
        "",
    )
    .await;
    let answer = Browser::new().get(&deny.proxy.url("/")).await;
    assert_eq!(
        answer.status(),
        StatusCode::FORBIDDEN,
        "even browsers are denied"
    );
    assert!(!answer.headers().contains_key("www-authenticate"));
}

/// `?set_cookie=…` for the echo upstream: it answers with that `Set-Cookie`.
fn set_cookie_query(cookies: &[&str]) -> String {
    cookies
        .iter()
        .map(|cookie| {
            let encoded: String = url::form_urlencoded::byte_serialize(cookie.as_bytes()).collect();
            format!("set_cookie={encoded}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn a_binding_planted_by_an_upstream_cannot_complete_an_attackers_login() {
    let setup = setup(Script::default()).await;
    // The attacker starts a login, completes it at the provider and keeps the callback URL.
    let attacker = Browser::new();
    let start = attacker.get(&setup.proxy.url("/app")).await;
    let binding = set_cookies(&start)
        .into_iter()
        .find_map(|cookie| {
            let value = cookie.strip_prefix("sess_auth_login=")?;
            Some(value.split(';').next().unwrap().to_owned())
        })
        .expect("a login binding cookie");
    let callback = location(&attacker.get(&location(&start)).await);

    // The victim visits a page whose upstream (on an auth = "none" route) plants that binding,
    // in every spelling.
    let victim = Browser::new();
    let planted = [
        format!("sess_auth_login={binding}; Path=/"),
        format!("SESS_AUTH_LOGIN={binding}; Path=/"),
        format!("__Host-sess_auth_login={binding}; Path=/"),
        format!("=sess_auth_login={binding}; Path=/"),
    ];
    let mut cookies: Vec<&str> = planted.iter().map(String::as_str).collect();
    cookies.push("theme=dark; Path=/");
    let page = victim
        .get(
            &setup
                .proxy
                .url(&format!("/public/news?{}", set_cookie_query(&cookies))),
        )
        .await;
    // The victim opens the attacker's callback link: not logged in as the attacker.
    let answer = victim.get(&callback).await;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert_no_session_cookie(&answer);
    assert_eq!(setup.idp.token_calls(), 0);
    assert_eq!(
        victim.get(&setup.proxy.url("/app")).await.status(),
        StatusCode::FOUND
    );

    // The planting itself was refused, and logged without the value.
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(set_cookies(&page), ["theme=dark; Path=/"]);
    let own = setup.log.own();
    let warning = own
        .lines()
        .find(|line| line.contains("Set-Cookie dropped"))
        .expect("the planting is logged");
    assert!(
        warning.contains("route=\"public\"") || warning.contains("route=public"),
        "{warning}"
    );
    // No test may log the planted value: read everything logged so far.
    let log = logs::text();
    let leaks: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" portcullis") && line.contains(&binding))
        .collect();
    assert!(
        leaks.is_empty(),
        "the planted value must not be logged: {leaks:#?}"
    );
}

#[tokio::test]
async fn a_logged_in_request_with_a_non_utf8_cookie_keeps_its_session_and_hides_the_cookie() {
    let setup = setup(Script::default()).await;
    let browser = Browser::new();
    let answer = login(&browser, &setup, "/app").await;
    let session = set_cookies(&answer)
        .into_iter()
        .find_map(|cookie| {
            let value = cookie.strip_prefix("sess_auth=")?;
            Some(value.split(';').next().unwrap().to_owned())
        })
        .expect("session cookie");
    for path in ["/app", "/public/page"] {
        let answer = support::get(
            &setup.proxy.url(path),
            &[("cookie", &format!("sess_auth={session}; l=fran\u{e7}ais"))],
        )
        .await;
        assert_eq!(answer.status, 200, "{path}");
        let report = answer.json();
        assert_eq!(
            received_headers(&report, "cookie"),
            ["l=fran\u{e7}ais"],
            "{path}"
        );
        let identity = received_header(&report, "x-auth-subject");
        let expected = (path == "/app").then(|| "alice".to_owned());
        assert_eq!(identity, expected, "{path}: the session is still read");
    }
}

/// Issue 17: with `discovery` pointing at a document that names another issuer, the proxy
/// retried for ever, refused every login, and `/readyz` said ready. Now `check` reports the
/// mismatch as a configuration error with the fix (`--offline` skips the provider), `/readyz`
/// answers 503 with the reason while a route needs a login and the provider is not discovered,
/// `/reload` shows the provider's state and last error, and once the provider's answer fits,
/// the proxy is ready.
#[tokio::test]
async fn readiness_says_why_logins_cannot_start_and_check_reports_another_issuer() {
    use support::binary::{RunningProxy, binary, http_get};
    let idp = HostileIdp::start(Script {
        discovery_issuer: Some("https://login.example.com".into()),
        ..Script::default()
    })
    .await;
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = support::closed_port();
    let text = config_with(&idp, echo, "")(addr).replace(
        &format!("listen = \"{addr}\""),
        &format!("listen = \"{addr}\"\nadmin_listen = \"127.0.0.1:0\""),
    );
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, text).unwrap();

    // Off the runtime: the provider answers on this test's thread.
    let check = |extra: &'static [&'static str]| {
        let config = config.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let output = binary()
                    .args(["check", "--config"])
                    .arg(&config)
                    .args(extra)
                    .output()
                    .unwrap();
                (
                    output.status.code(),
                    String::from_utf8_lossy(&output.stderr).into_owned(),
                )
            })
            .await
            .unwrap()
        }
    };
    let (code, stderr) = check(&[]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("oidc.discovery: configuration error")
            && stderr.contains("names the issuer \"https://login.example.com\"")
            && stderr.contains(
                "discovery = \"https://login.example.com/.well-known/openid-configuration\""
            ),
        "{stderr}"
    );
    assert_eq!(check(&["--offline"]).await.0, Some(0));

    let proxy = RunningProxy::start(&config);
    let admin = proxy.admin.unwrap();
    let readyz = || async move {
        support::raw(
            admin,
            "GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
        )
        .await
    };
    let wait_for = |what: &'static str, wanted: fn(u16, &str) -> bool| async move {
        let give_up = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = readyz().await;
            if wanted(status, &body) {
                return body;
            }
            assert!(
                std::time::Instant::now() < give_up,
                "{what}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let body = wait_for("not ready, with the reason", |status, body| {
        status == 503 && body.contains("configuration error")
    })
    .await;
    assert!(
        body.contains(&format!(
            "not ready: the identity provider {} is not discovered yet",
            idp.issuer
        )),
        "{body}"
    );
    let status: serde_json::Value = serde_json::from_str(&http_get(admin, "/reload")).unwrap();
    assert_eq!(status["provider"]["discovered"], false, "{status}");
    assert!(
        status["provider"]["last_error"]
            .as_str()
            .unwrap()
            .contains("names the issuer"),
        "{status}"
    );

    // The provider's name is corrected: a later attempt succeeds and the proxy is ready.
    idp.script(|s| s.discovery_issuer = None);
    wait_for("ready once discovered", |status, _| status == 200).await;
    let status: serde_json::Value = serde_json::from_str(&http_get(admin, "/reload")).unwrap();
    assert_eq!(status["provider"]["discovered"], true, "{status}");
}

/// Issue 17: with `cookie_secure = true` (the default) and a plain-HTTP `redirect_uri`, a
/// browser keeps the `Secure` login binding cookie to itself and every login failed with a
/// message about an expired link. The callback now says the cookie did not come back and why,
/// and the log tells the operator the fix.
#[tokio::test]
async fn a_binding_cookie_that_does_not_come_back_is_explained() {
    let log = logs::capture();
    let idp = HostileIdp::start(Script::default()).await;
    let echo = echo::spawn().await;
    let config = config_with(&idp, echo, "");
    let proxy = start_proxy_at(
        |addr| config(addr).replace("cookie_secure = false", "cookie_secure = true"),
        std::path::Path::new("."),
    )
    .await;
    wait_until_discovered(&proxy).await;
    let setup = Setup { idp, proxy, log };
    let browser = Browser::new();
    let start = browser.get(&setup.proxy.url("/")).await;
    assert!(
        set_cookies(&start)
            .iter()
            .any(|cookie| cookie.starts_with("sess_auth_login=") && cookie.contains("Secure"))
    );
    let approved = browser.get(&location(&start)).await;
    // A client that, like a browser, does not send a Secure cookie to an http:// address.
    let callback = reqwest::Client::new()
        .get(location(&approved))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(callback.status(), StatusCode::BAD_REQUEST);
    let page = callback.text().await.unwrap();
    assert!(
        page.contains("did not send back the cookie set when this login started"),
        "{page}"
    );
    assert!(
        setup
            .log
            .own()
            .contains("cookie_secure = false for plain-HTTP"),
        "{}",
        setup.log.own()
    );
}

/// Issue 17: the access log names the signed-in user by `sub`, and a request sent to log in is
/// logged with that decision.
#[tokio::test]
async fn the_access_log_names_the_user_and_the_login_decision() {
    let setup = setup(Script::default()).await;
    let browser = Browser::new();
    login(&browser, &setup, "/").await;
    assert_eq!(
        browser.get_api(&setup.proxy.url("/who")).await.status(),
        StatusCode::OK
    );
    let anonymous = Browser::new();
    assert_eq!(
        anonymous.get(&setup.proxy.url("/anonymous")).await.status(),
        StatusCode::FOUND
    );
    let log = setup.log.own();
    let line = |path: &str| {
        log.lines()
            .find(|line| line.contains("portcullis::access") && line.contains(path))
            .unwrap_or_else(|| panic!("no access line for {path}: {log}"))
            .to_owned()
    };
    let who = line("/who");
    assert!(who.contains("user=\"alice\""), "{who}");
    let sent = line("/anonymous");
    assert!(
        sent.contains("user=\"-\"")
            && sent.contains("decision=\"login\"")
            && sent.contains("reason=\"no session\""),
        "{sent}"
    );
}

/// Issue 17: `check` cannot know that a provider sends no group claim; `/.portcullis/whoami`
/// (off by default) shows the signed-in user their claims and the identity headers their route
/// sends, never a token, before the route's policy (so a refused user can see why), and is
/// never cached. Off, the path is the upstream's like any other.
#[tokio::test]
async fn whoami_shows_the_claims_and_identity_headers_when_turned_on() {
    let on = setup_with_oidc("whoami = true").await;
    let browser = Browser::new();
    login(&browser, &on, "/").await;
    let answer = browser.get_api(&on.proxy.url("/.portcullis/whoami")).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["cache-control"], "no-store");
    let body = answer.text().await.unwrap();
    let shown: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown["route"], "app");
    assert_eq!(shown["claims"]["sub"], "alice");
    assert_eq!(shown["identity_headers"]["x-auth-subject"], "alice");
    assert!(shown.get("uri").is_none(), "answered here, not upstream");
    for token in ["access_token", "id_token", "refresh_token", "eyJ"] {
        assert!(!body.contains(token), "{token} shown: {body}");
    }
    let anonymous = Browser::new()
        .get_api(&on.proxy.url("/.portcullis/whoami"))
        .await;
    assert_eq!(
        anonymous.status(),
        StatusCode::UNAUTHORIZED,
        "no session, no page"
    );

    let off = setup_with_oidc("").await;
    let browser = Browser::new();
    login(&browser, &off, "/").await;
    let report = json(browser.get_api(&off.proxy.url("/.portcullis/whoami")).await).await;
    assert_eq!(
        report["uri"], "/.portcullis/whoami",
        "off: the upstream's path"
    );
}

/// A proxy on the hostile provider with `oidc_extra` in `[oidc]`.
async fn setup_with_oidc(oidc_extra: &'static str) -> Setup {
    setup_scripted(Script::default(), oidc_extra).await
}

/// A proxy on the hostile provider playing `script`, with `oidc_extra` in `[oidc]`.
async fn setup_scripted(script: Script, oidc_extra: &'static str) -> Setup {
    let log = logs::capture();
    let idp = HostileIdp::start(script).await;
    let echo = echo::spawn().await;
    let proxy = start_proxy_at(
        config_with(&idp, echo, oidc_extra),
        std::path::Path::new("."),
    )
    .await;
    wait_until_discovered(&proxy).await;
    Setup { idp, proxy, log }
}

/// The configured `clock_skew` is the one applied, on `exp` as on `iat`, and no more: with 5 s,
/// a token expired 3 s ago is accepted and one expired 8 s ago refused (a doubled or ignored
/// setting would flip one of them).
#[tokio::test]
async fn the_configured_clock_skew_is_the_bound() {
    for (exp_in, iat_in, logged_in) in [
        (-3, 0, true),
        (-8, 0, false),
        (300, 3, true),
        (300, 8, false),
    ] {
        let mut script = Script::default();
        script.login.exp_in = exp_in;
        script.login.iat_in = iat_in;
        let setup = setup_scripted(script, "clock_skew = \"5s\"").await;
        let browser = Browser::new();
        let answer = login(&browser, &setup, "/app").await;
        let expected = if logged_in {
            StatusCode::FOUND
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(
            answer.status(),
            expected,
            "exp in {exp_in} s, iat in {iat_in} s"
        );
    }
}

/// A refreshed ID token is checked as a login's is (signature, issuer, audience, expiry): one
/// that fails ends the session, even when it names the same user — it could carry other groups.
#[tokio::test]
async fn a_refreshed_id_token_that_fails_a_check_ends_the_session() {
    type Spoiler = (&'static str, fn(&mut Recipe));
    let spoilers: [Spoiler; 4] = [
        ("tampered signature", |r| {
            r.signing = Signing::Rs256Tampered(Key::A)
        }),
        ("alg none", |r| r.signing = Signing::None),
        ("another audience", |r| {
            r.aud = Some(serde_json::json!("someone-else"))
        }),
        ("expired", |r| r.exp_in = -600),
    ];
    for (what, spoil) in spoilers {
        let setup = setup(Script {
            access_expires_in: 30,
            ..Script::default()
        })
        .await;
        let browser = Browser::new();
        login(&browser, &setup, "/").await;
        setup.idp.script(|s| {
            let mut refreshed = Recipe::good();
            refreshed.nonce = NonceChoice::Missing;
            refreshed.extra = serde_json::json!({ "groups": ["admins", "root"] });
            spoil(&mut refreshed);
            s.refresh = Some(refreshed);
        });
        let answer = browser.get(&setup.proxy.url("/")).await;
        assert_eq!(
            answer.status(),
            StatusCode::FOUND,
            "{what}: sent to log in again"
        );
        assert!(
            set_cookies(&answer)
                .iter()
                .any(|c| c.starts_with("sess_auth=;") && c.contains("Max-Age=0")),
            "{what}: the session cookie expired"
        );
        assert_eq!(setup.idp.refresh_calls(), 1, "{what}: the refresh happened");
    }
}

/// `revoke_tokens_on_logout = false` revokes nothing (on is the default, tested above).
#[tokio::test]
async fn logout_revokes_nothing_when_revocation_is_off() {
    let setup = setup_with_oidc("revoke_tokens_on_logout = false").await;
    let browser = Browser::new();
    login(&browser, &setup, "/").await;
    assert_eq!(
        browser.get(&setup.proxy.url("/logout")).await.status(),
        StatusCode::FOUND
    );
    assert!(setup.idp.revoked().is_empty(), "{:?}", setup.idp.revoked());
}

/// `logout_id_token_hint = false` sends the provider no `id_token_hint`.
#[tokio::test]
async fn logout_without_the_id_token_hint_when_it_is_off() {
    for (extra, hinted) in [("", true), ("logout_id_token_hint = false", false)] {
        let setup = setup_with_oidc(extra).await;
        let browser = Browser::new();
        login(&browser, &setup, "/").await;
        let end_session = location(&browser.get(&setup.proxy.url("/logout")).await);
        assert_eq!(
            end_session.contains("id_token_hint="),
            hinted,
            "{extra:?}: {end_session}"
        );
    }
}

/// A session cookie sent twice with different values names no session (security.md): the
/// request is anonymous and the cookie is expired, whichever of the two is valid; a logout with
/// both ends every session they name.
#[tokio::test]
async fn a_session_cookie_sent_twice_is_no_session_and_logout_ends_both() {
    let setup = setup(Script::default()).await;
    let first = Browser::new();
    let second = Browser::new();
    let one = issued_session(&login(&first, &setup, "/").await);
    let two = issued_session(&login(&second, &setup, "/").await);
    let both = format!("sess_auth={one}; sess_auth={two}");
    let answer = get_with_cookie(&setup.proxy.url("/"), &both).await;
    assert_eq!(answer.status(), StatusCode::FOUND, "two values: no session");
    let logout = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(setup.proxy.url("/logout"))
        .header("cookie", &both)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::FOUND);
    for (name, value) in [("first", &one), ("second", &two)] {
        let replay = get_with_cookie(&setup.proxy.url("/"), &format!("sess_auth={value}")).await;
        assert_eq!(replay.status(), StatusCode::FOUND, "{name} session ended");
    }
}

/// A callback whose login binding cookie comes with two different values is refused, whichever
/// of them is right (security.md: a planted duplicate wins nothing).
#[tokio::test]
async fn a_callback_with_two_binding_values_is_refused() {
    let setup = setup(Script::default()).await;
    let browser = Browser::new();
    let binding = |start: &reqwest::Response| {
        set_cookies(start)
            .iter()
            .find_map(|c| c.strip_prefix("sess_auth_login="))
            .and_then(|rest| rest.split(';').next())
            .map(str::to_owned)
    };
    // Two logins of one browser (one binding, two states): one callback for each order.
    let first = browser.get(&setup.proxy.url("/")).await;
    let right = binding(&first).expect("a binding cookie");
    let second = browser.get(&setup.proxy.url("/")).await;
    for (start, cookie) in [
        (
            first,
            format!("sess_auth_login={right}; sess_auth_login=planted"),
        ),
        (
            second,
            format!("sess_auth_login=planted; sess_auth_login={right}"),
        ),
    ] {
        let callback = location(&browser.get(&location(&start)).await);
        let answer = get_with_cookie(&callback, &cookie).await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{cookie}");
        assert!(
            setup.log.own().contains("binding_mismatch"),
            "refused for the binding, not a used state"
        );
    }
    // The same callback with the right binding alone logs in.
    let third = browser.get(&setup.proxy.url("/")).await;
    let callback = location(&browser.get(&location(&third)).await);
    let answer = get_with_cookie(&callback, &format!("sess_auth_login={right}")).await;
    assert_eq!(answer.status(), StatusCode::FOUND);
}
