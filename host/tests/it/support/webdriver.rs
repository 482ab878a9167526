//! A real browser for tests: Debian's `chromium`, headless, driven by `chromedriver` over the W3C
//! WebDriver protocol (a few JSON calls on loopback; no client crate needed for that much).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session; the driver (and its browser) are stopped when dropped.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium. Panics with the install command when either
    /// is missing (scripts/test installs both).
    pub async fn start() -> Self {
        let port = super::closed_port().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // A group of its own, with the browser it starts: stopping the group stops them all,
            // even when a test panics before the session is closed.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start chromedriver ({err}): apt-get install chromium chromium-driver (scripts/test does)")
            });
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let give_up = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{base}/status")).send().await.is_ok();
            if ready {
                break;
            }
            assert!(Instant::now() < give_up, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1100,800", "--no-first-run", "--password-store=basic"]
            }
        }}});
        let mut browser = Browser {
            http,
            session: String::new(),
            driver,
        };
        let created = browser
            .call("POST", &format!("{base}/session"), Some(capabilities))
            .await;
        browser.session = format!(
            "{base}/session/{}",
            created["sessionId"]
                .as_str()
                .expect("a WebDriver session id")
        );
        browser
    }

    async fn call(&self, method: &str, url: &str, body: Option<Value>) -> Value {
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let answer = request.send().await.expect("chromedriver answers");
        let status = answer.status();
        let value: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
        assert!(status.is_success(), "WebDriver {method} {url}: {value}");
        value["value"].clone()
    }

    async fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("{}{path}", self.session), body)
            .await
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The address of the page shown.
    pub async fn url(&self) -> String {
        self.session_call("GET", "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The page's HTML.
    pub async fn source(&self) -> String {
        self.session_call("GET", "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The element matching the CSS `selector`, waiting up to 10 s for it.
    async fn element(&self, selector: &str) -> String {
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .http
                .post(format!("{}/element", self.session))
                .header("content-type", "application/json")
                .body(json!({ "using": "css selector", "value": selector }).to_string())
                .send()
                .await
                .expect("chromedriver answers");
            if found.status().is_success() {
                let value: Value = serde_json::from_slice(&found.bytes().await.unwrap()).unwrap();
                return value["value"][ELEMENT]
                    .as_str()
                    .unwrap_or_else(|| panic!("an element reference in {value}"))
                    .to_owned();
            }
            assert!(
                Instant::now() < give_up,
                "no element {selector:?} on {}: {}",
                self.url().await,
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into the field matching `selector`.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let element = self.element(selector).await;
        self.session_call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks the element matching `selector`.
    pub async fn click(&self, selector: &str) {
        let element = self.element(selector).await;
        self.session_call("POST", &format!("/element/{element}/click"), None)
            .await;
    }

    /// The visible text of the element matching `selector`.
    pub async fn text(&self, selector: &str) -> String {
        let element = self.element(selector).await;
        self.session_call("GET", &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The browser's cookies for the page shown, as a `Cookie` header value (`HttpOnly` ones too):
    /// what an attacker who copied them from the browser would replay.
    pub async fn cookie_header(&self) -> String {
        let cookies = self.session_call("GET", "/cookie", None).await;
        cookies
            .as_array()
            .expect("a list of cookies")
            .iter()
            .map(|cookie| {
                format!(
                    "{}={}",
                    cookie["name"].as_str().unwrap(),
                    cookie["value"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Saves a PNG screenshot of the page.
    pub async fn screenshot(&self, path: &std::path::Path) {
        let encoded = self.session_call("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Ends the session (closing Chromium) and the driver.
    pub async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
        // Dropping stops whatever is left.
    }
}

impl Drop for Browser {
    /// Stops the driver and every browser process it started (its process group), so no
    /// Chromium outlives the test, passed or failed.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
