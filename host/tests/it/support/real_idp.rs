//! The real, certified OpenID provider (`oidc-provider` from npm, `tests/idp/provider.js`) on a
//! loopback port, and a driver that logs in through its login and consent forms like a browser.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::json;

use super::browser::{Browser, location};

/// The client secret the provider knows Portcullis by.
pub const CLIENT_SECRET: &str = "real-idp-test-secret";

/// A running provider; stopped when dropped.
pub struct RealIdp {
    pub issuer: String,
    child: Child,
}

/// Provider settings a test may change.
pub struct IdpOptions {
    pub access_token_ttl: u64,
    /// How long the provider holds each refresh-token grant before answering it.
    pub refresh_delay_ms: u64,
}

impl Default for IdpOptions {
    fn default() -> Self {
        IdpOptions {
            access_token_ttl: 3600,
            refresh_delay_ms: 0,
        }
    }
}

fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp")
}

impl RealIdp {
    /// Starts the provider with one client, `portcullis`, whose redirect URI is `proxy`'s `/auth`.
    pub fn start(proxy: SocketAddr, options: IdpOptions) -> Self {
        let dir = idp_dir();
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "the test provider's npm packages are missing: run `scripts/test` (it runs `npm ci` in {})",
            dir.display()
        );
        let clients = json!([{
            "client_id": "portcullis",
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("http://{proxy}/auth")],
            "post_logout_redirect_uris": [format!("http://{proxy}/")],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }]);
        let mut child = Command::new("node")
            .arg("provider.js")
            .current_dir(&dir)
            .env("IDP_CLIENTS", clients.to_string())
            .env("IDP_ACCESS_TOKEN_TTL", options.access_token_ttl.to_string())
            .env("IDP_REFRESH_DELAY_MS", options.refresh_delay_ms.to_string())
            .env("IDP_AUTO_PROMPT_CONSENT", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start node tests/idp/provider.js (is Node.js installed? scripts/test installs it)",
            );
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let issuer = line
            .trim()
            .strip_prefix("idp listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the provider: {line:?}"))
            .to_owned();
        RealIdp { issuer, child }
    }

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// `(token requests, refresh requests)` seen by the provider.
    pub async fn stats(&self) -> (u64, u64) {
        let stats: serde_json::Value = serde_json::from_slice(
            &reqwest::get(format!("{}/test/stats", self.issuer))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        (
            stats["token_requests"].as_u64().unwrap(),
            stats["refresh_requests"].as_u64().unwrap(),
        )
    }
}

/// Tokens the provider's token endpoint issued in one answer.
#[derive(Debug, serde::Deserialize)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: String,
}

impl RealIdp {
    /// Every token the provider issued so far, in order.
    pub async fn issued_tokens(&self) -> Vec<IssuedTokens> {
        let body = reqwest::get(format!("{}/test/tokens", self.issuer))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// Whether the provider still accepts `refresh_token` from our client (a refresh grant).
    pub async fn accepts_refresh_token(&self, refresh_token: &str) -> bool {
        let answer = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth("portcullis", Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .unwrap();
        answer.status().is_success()
    }

    /// Whether the provider's userinfo endpoint still accepts `access_token`.
    pub async fn accepts_access_token(&self, access_token: &str) -> bool {
        let answer = reqwest::Client::new()
            .get(format!("{}/me", self.issuer))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        answer.status().is_success()
    }
}

impl Drop for RealIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until discovery finished: a browser request is then redirected to the provider.
pub async fn wait_for_login_page(url: &str) {
    let browser = Browser::new();
    for _ in 0..200 {
        if let Ok(answer) = browser
            .client
            .get(url)
            .header("accept", "text/html")
            .send()
            .await
            && answer.status() == StatusCode::FOUND
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the proxy at {url} never offered a login");
}

/// Logs `user` in starting from `path`; returns the callback's answer.
pub async fn log_in(browser: &Browser, proxy_url: &str, user: &str) -> reqwest::Response {
    let start = browser.get(proxy_url).await;
    assert_eq!(start.status(), StatusCode::FOUND, "not sent to log in");
    log_in_at_provider(browser, location(&start), user).await
}

/// Follows a login from the provider's authorization URL to Portcullis's callback answer, filling
/// in the provider's login form (as `user`) and consent form on the way. Returns the callback's
/// response (a redirect back to the app when the login succeeded).
pub async fn log_in_at_provider(browser: &Browser, authorize_url: String, user: &str) -> Response {
    let mut url = authorize_url;
    for _ in 0..12 {
        if url.contains("/auth?") && url.contains("code=") && !url.contains("client_id=") {
            return browser.get(&url).await; // the callback on the proxy
        }
        if url.contains("/interaction/") {
            let page = browser.get(&url).await;
            assert_eq!(page.status(), StatusCode::OK, "interaction page {url}");
            let html = page.text().await.unwrap();
            let form = if html.contains("name=\"login\"") {
                vec![("prompt", "login"), ("login", user), ("password", "any")]
            } else {
                vec![("prompt", "consent")]
            };
            let answer = browser.client.post(&url).form(&form).send().await.unwrap();
            url = location(&answer);
            continue;
        }
        let answer = browser.get(&url).await;
        url = location(&answer);
    }
    panic!("login did not reach the callback; last URL {url}");
}

/// Completes the provider's end-session page: submits its confirmation form. Returns where the
/// provider sends the browser afterwards.
pub async fn confirm_logout_at_provider(browser: &Browser, end_session_url: &str) -> String {
    let page = browser.get(end_session_url).await;
    assert_eq!(page.status(), StatusCode::OK, "end-session page");
    let html = page.text().await.unwrap();
    let xsrf = html
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("xsrf field on the end-session page")
        .to_owned();
    let action = end_session_url.split('?').next().unwrap().to_owned() + "/confirm";
    let answer = browser
        .client
        .post(&action)
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .send()
        .await
        .unwrap();
    location(&answer)
}
