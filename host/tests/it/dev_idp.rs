//! The development identity provider: Portcullis's ordinary OIDC client logs in against it through
//! its login page; its token endpoint insists on PKCE and rotates refresh tokens; it redirects only
//! to registered addresses.

use crate::support;

use std::collections::HashMap;
use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis::dev_idp::{DevClient, DevIdp};
use reqwest::StatusCode;
use sha2::Digest;
use support::browser::{Browser, location};
use support::echo::{self, received_header};

const SECRET: &str = "demo-secret";

fn client(proxy: SocketAddr) -> DevClient {
    DevClient {
        id: "portcullis-demo".into(),
        secret: Some(SECRET.into()),
        redirect_uri: format!("http://{proxy}/auth").parse().unwrap(),
        post_logout_redirect_uri: Some(format!("http://{proxy}/public").parse().unwrap()),
    }
}

fn start_idp(proxy: SocketAddr) -> DevIdp {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    DevIdp::start(listener, client(proxy)).unwrap()
}

/// Fills in the login form of `authorize_url` (the page's hidden fields are the URL's query).
async fn sign_in(
    browser: &Browser,
    authorize_url: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let page = browser.get(authorize_url).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("<form method=\"post\""));
    let url = url::Url::parse(authorize_url).unwrap();
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(url.query_pairs());
    form.append_pair("username", user)
        .append_pair("password", password);
    browser
        .client
        .post(format!("{}authorize", url.join("/").unwrap()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn portcullis_logs_alice_in_through_the_login_page_and_sees_her_groups() {
    let echo = echo::spawn().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let idp = start_idp(proxy_addr);
    let config = format!(
        r#"
[server]
listen = "{proxy_addr}"

[dev_idp]
listen = "{idp}"

[oidc]
client_id = "portcullis-demo"
client_secret = "{SECRET}"
redirect_uri = "http://{proxy_addr}/auth"

[session]
store = "memory"
cookie_secure = false

[[routes]]
name = "app"
path = "/"
upstream = "http://{echo}"
"#,
        idp = idp.addr
    );
    let proxy = support::start_proxy_on(listener, &config, std::path::Path::new(".")).await;
    let browser = Browser::new();
    let mut start = browser.get(&proxy.url("/hello")).await;
    for _ in 0..100 {
        if start.status() != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        start = browser.get(&proxy.url("/hello")).await;
    }
    let authorize = location(&start);
    assert!(authorize.starts_with(&idp.issuer), "{authorize}");

    let refused = sign_in(&browser, &authorize, "alice", "wrong").await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("Wrong user name or password")
    );

    let signed_in = sign_in(&browser, &authorize, "alice", "alice").await;
    let callback = location(&signed_in);
    assert!(
        callback.starts_with(&format!("http://{proxy_addr}/auth?")),
        "{callback}"
    );
    let back = browser.get(&callback).await;
    assert_eq!(location(&back), proxy.url("/hello"));
    let report = support::browser::json(browser.get(&proxy.url("/hello")).await).await;
    assert_eq!(
        received_header(&report, "x-auth-username").as_deref(),
        Some("alice")
    );
    assert_eq!(
        received_header(&report, "x-auth-groups").as_deref(),
        Some("admins,staff")
    );
}

/// The code flow by hand, to check what the relying party cannot show: PKCE is enforced, codes
/// are single-use, refresh tokens rotate, and unregistered addresses are refused.
#[tokio::test]
async fn the_token_endpoint_enforces_pkce_and_rotates_refresh_tokens() {
    let proxy = support::closed_port();
    let idp = start_idp(proxy);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let redirect_uri = format!("http://{proxy}/auth");
    let form = |pairs: &[(&str, &str)]| {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(pairs);
        form.finish()
    };
    let post = |path: &str, body: String| {
        http.post(format!("{}{path}", idp.issuer))
            .header("content-type", "application/x-www-form-urlencoded")
            .basic_auth("portcullis-demo", Some(SECRET))
            .body(body)
            .send()
    };
    let authorize_form = |state: &str| {
        form(&[
            ("client_id", "portcullis-demo"),
            ("redirect_uri", &redirect_uri),
            ("response_type", "code"),
            ("scope", "openid profile"),
            ("state", state),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("username", "bob"),
            ("password", "bob"),
        ])
    };
    let code_of = |answer: reqwest::Response, state: &str| {
        assert_eq!(answer.status(), StatusCode::FOUND);
        let target = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
        assert!(target.as_str().starts_with(&redirect_uri));
        let query: HashMap<String, String> = target.query_pairs().into_owned().collect();
        assert_eq!(query["state"], state);
        query["code"].clone()
    };

    let first = code_of(
        post("/authorize", authorize_form("s1")).await.unwrap(),
        "s1",
    );
    let wrong_verifier = post(
        "/token",
        form(&[
            ("grant_type", "authorization_code"),
            ("code", &first),
            ("redirect_uri", &redirect_uri),
            (
                "code_verifier",
                "another-verifier-another-verifier-0123456789",
            ),
        ]),
    )
    .await
    .unwrap();
    assert_eq!(wrong_verifier.status(), StatusCode::BAD_REQUEST);

    let second = code_of(
        post("/authorize", authorize_form("s2")).await.unwrap(),
        "s2",
    );
    let redeem = form(&[
        ("grant_type", "authorization_code"),
        ("code", &second),
        ("redirect_uri", &redirect_uri),
        ("code_verifier", verifier),
    ]);
    let tokens: serde_json::Value = serde_json::from_slice(
        &post("/token", redeem.clone())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert!(tokens["id_token"].as_str().unwrap().split('.').count() == 3);
    let replayed = post("/token", redeem).await.unwrap();
    assert_eq!(
        replayed.status(),
        StatusCode::BAD_REQUEST,
        "codes are single-use"
    );

    let userinfo: serde_json::Value = serde_json::from_slice(
        &http
            .get(format!("{}/userinfo", idp.issuer))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(userinfo["preferred_username"], "bob");
    assert_eq!(userinfo["groups"], serde_json::json!(["staff"]));

    let refreshed = post(
        "/token",
        form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]),
    )
    .await
    .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let reused = post(
        "/token",
        form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]),
    )
    .await
    .unwrap();
    assert_eq!(
        reused.status(),
        StatusCode::BAD_REQUEST,
        "refresh tokens rotate"
    );

    // Never a redirect to an address nobody registered.
    let elsewhere = http
        .get(format!(
            "{}/authorize?client_id=portcullis-demo&redirect_uri=https%3A%2F%2Fevil.example%2F&response_type=code&scope=openid&state=x&code_challenge={challenge}&code_challenge_method=S256",
            idp.issuer
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);
    let logout_elsewhere = http
        .get(format!(
            "{}/logout?post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F",
            idp.issuer
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(logout_elsewhere.status(), StatusCode::BAD_REQUEST);
}
