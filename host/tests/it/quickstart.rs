//! The quickstart as a newcomer meets it: `portcullis demo` (the real binary) and a real browser
//! (headless Chromium over WebDriver) on the provider's real login page.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use support::webdriver::Browser;

/// A running `portcullis demo`, killed when dropped.
struct Demo {
    child: Child,
    url: String,
    _data: tempfile::TempDir,
}

impl Demo {
    /// Starts the demo from the repository's root on a free loopback port.
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let addr = support::closed_port();
        let mut child = support::binary::binary()
            .args(["demo", "--listen", &addr.to_string(), "--data-dir"])
            .arg(data.path())
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start portcullis demo");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut banner = String::new();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("the demo exited; it printed:\n{banner}"))
                .unwrap();
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("portcullis: listening on http://") {
                break;
            }
        }
        for expected in [
            "alice / alice",
            "bob / bob",
            "carol / carol",
            "provider",
            "backend",
            "policies/*.rhai",
        ] {
            assert!(
                banner.contains(expected),
                "the banner names {expected:?}:\n{banner}"
            );
        }
        std::thread::spawn(move || lines.for_each(drop));
        Demo {
            child,
            url: format!("http://{addr}"),
            _data: data,
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Signs in on the provider's page the browser was sent to.
async fn sign_in(browser: &Browser, user: &str) {
    assert!(
        browser.source().await.contains("Sign in"),
        "the provider's login page: {}",
        browser.url().await
    );
    browser.type_into("#username", user).await;
    browser.type_into("#password", user).await;
    browser.click("#sign-in").await;
}

#[tokio::test]
async fn alice_logs_in_sees_her_headers_and_admin_bob_is_refused_and_logout_ends_it() {
    let demo = Demo::start();
    let browser = Browser::start().await;

    // alice: login page, then the backend's page with her identity headers.
    browser.goto(&format!("{}/", demo.url)).await;
    sign_in(&browser, "alice").await;
    assert_eq!(browser.text("#user").await, "alice");
    let page = browser.text("#identity").await;
    assert!(page.contains("x-auth-groups admins,staff"), "{page}");
    assert!(page.contains("x-role admin"), "{page}");
    assert!(browser.url().await.starts_with(&demo.url));
    let screenshot = screenshot_path("quickstart-alice.png");
    browser.screenshot(&screenshot).await;
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);

    browser.goto(&format!("{}/admin", demo.url)).await;
    assert_eq!(
        browser.text("#user").await,
        "alice",
        "admins may open /admin"
    );

    // Logout ends the session: the next visit asks for the password again, and the cookies copied
    // before the logout no longer open anything (the session is gone from the store, not only
    // from the browser).
    let copied_cookies = browser.cookie_header().await;
    let replay = || async {
        reqwest::Client::new()
            .get(format!("{}/", demo.url))
            .header("cookie", &copied_cookies)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(
        replay().await,
        200,
        "the copied cookies are alice's session"
    );
    browser.click("#logout").await;
    assert!(
        browser
            .url()
            .await
            .starts_with(&format!("{}/public", demo.url)),
        "back on the public page: {}",
        browser.url().await
    );
    browser.goto(&format!("{}/", demo.url)).await;
    assert!(
        browser.source().await.contains("id=\"password\""),
        "asked to log in again"
    );
    assert_eq!(replay().await, 401, "the session ended at logout");

    // bob is refused at /admin with a readable page.
    sign_in(&browser, "bob").await;
    assert_eq!(browser.text("#user").await, "bob");
    browser.goto(&format!("{}/admin", demo.url)).await;
    assert_eq!(browser.text("h1").await, "403 Forbidden");
    assert_eq!(
        browser.text("p").await,
        "only members of admins may open /admin"
    );
    browser.quit().await;

    // An API client (here without any Accept header) and no session: 401 JSON, not a login page.
    let api = reqwest::Client::new()
        .get(format!("{}/api/items", demo.url))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    let body: serde_json::Value = serde_json::from_slice(&api.bytes().await.unwrap()).unwrap();
    assert_eq!(body["status"], 401);
    // And /public needs no login.
    let public = reqwest::get(format!("{}/public", demo.url)).await.unwrap();
    assert_eq!(public.status(), 200);
}
