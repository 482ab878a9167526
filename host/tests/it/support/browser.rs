//! A browser stand-in: an HTTP client with a cookie jar that asks for HTML and follows redirects
//! one hop at a time, so tests can look at every hop.

use std::sync::Arc;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::{Response, header};

/// A cookie-keeping client that never follows redirects by itself.
pub struct Browser {
    pub client: reqwest::Client,
    jar: Arc<Jar>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let jar = Arc::new(Jar::default());
        Browser {
            client: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(reqwest::redirect::Policy::none())
                // No pooled connections: tests restart servers on the same port.
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            jar,
        }
    }

    /// Plants a cookie for `url`, as an attacker on a sibling subdomain or a shared computer can
    /// (session fixation).
    pub fn plant_cookie(&self, url: &str, cookie: &str) {
        self.jar.add_cookie_str(cookie, &url.parse().unwrap());
    }

    /// The `Cookie` header this browser would send to `url` now: what an attacker who copied the
    /// cookies would replay.
    pub fn cookie_header(&self, url: &str) -> String {
        let url = url.parse().unwrap();
        self.jar
            .cookies(&url)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// GET as a browser does (Accept: text/html).
    pub async fn get(&self, url: &str) -> Response {
        self.client
            .get(url)
            .header(header::ACCEPT, "text/html,application/xhtml+xml")
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {url}: {err}"))
    }

    /// GET as an API client does (Accept: application/json).
    pub async fn get_api(&self, url: &str) -> Response {
        self.client
            .get(url)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .unwrap()
    }
}

/// GET as a browser does, from a client with no cookie jar sending `cookie` as given: replays a
/// cookie the browser has since dropped (logout sets it to expire; a thief's copy does not).
pub async fn get_with_cookie(url: &str, cookie: &str) -> Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .header(header::ACCEPT, "text/html,application/xhtml+xml")
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"))
}

/// The absolute URL a redirect points to.
pub fn location(response: &Response) -> String {
    assert!(
        response.status().is_redirection(),
        "expected a redirect from {}, got {}",
        response.url(),
        response.status()
    );
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    response.url().join(location).unwrap().to_string()
}

/// Every `Set-Cookie` of a response.
pub fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The body as JSON.
pub async fn json(response: Response) -> serde_json::Value {
    let bytes = response.bytes().await.unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", String::from_utf8_lossy(&bytes)))
}
