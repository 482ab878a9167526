//! Test support: an echo upstream, a proxy on port 0, and small HTTP helpers. Loopback only.

pub mod binary;
pub mod browser;
pub mod echo;
pub mod hostile_idp;
pub mod logs;
pub mod real_idp;
pub mod tls;
pub mod wasm;
pub mod webdriver;

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis::{App, AppHandle, Listeners};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// A proxy serving on loopback port 0 until dropped.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<()>>,
    /// The proxy and its reloads, when the test needs more than its sockets.
    pub handle: Option<AppHandle>,
}

impl TestProxy {
    /// Starts the graceful shutdown; `done` finishes when draining has.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// Parses `config` (files relative to `base_dir`) and serves it. The config's listen addresses
/// should use port 0.
pub async fn start_proxy_in(config: &str, base_dir: &Path) -> TestProxy {
    let config = portcullis::config::parse(config, base_dir)
        .unwrap_or_else(|err| panic!("test config refused: {err:?}"));
    let listeners = Listeners::bind(&config).expect("bind on port 0");
    serve(start_app(config, listeners).await)
}

/// Starts Portcullis as `run` does, without serving yet.
async fn start_app(config: portcullis::Config, listeners: Listeners) -> App {
    App::start(config, listeners)
        .await
        .expect("start the proxy")
}

/// Serves a started `app` until the returned [`TestProxy`] is dropped.
fn serve(app: App) -> TestProxy {
    let addr = app.public_addrs()[0];
    let admin = app.admin_addr();
    let handle = Some(app.handle());
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(app.serve(async {
        let _ = stopped.await;
    }));
    TestProxy {
        addr,
        admin,
        stop: Some(stop),
        done: Some(done),
        handle,
    }
}

/// Starts a proxy whose config needs its own address (an OIDC `redirect_uri`): `config` receives
/// the reserved loopback address and returns the config text.
pub async fn start_proxy_at(
    config: impl FnOnce(SocketAddr) -> String,
    base_dir: &Path,
) -> TestProxy {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    start_proxy_on(listener, &config(addr), base_dir).await
}

/// Starts a proxy on an already bound listener.
pub async fn start_proxy_on(
    listener: std::net::TcpListener,
    config: &str,
    base_dir: &Path,
) -> TestProxy {
    let config = portcullis::config::parse(config, base_dir)
        .unwrap_or_else(|err| panic!("test config refused: {err:?}"));
    serve(start_app(config, Listeners::public(listener)).await)
}

/// Loads the config file at `path` and serves it as `portcullis run` does, reloading on changes
/// (file watcher and SIGHUP). Use `admin_listen = "127.0.0.1:0"` to read `GET /reload`.
pub async fn start_watching(path: &Path) -> TestProxy {
    start_watching_with(path, None).await
}

/// [`start_watching`], serving on `listener` instead of the config's `listen` (for configs that
/// must name their own address, such as a login's `redirect_uri`).
pub async fn start_watching_with(
    path: &Path,
    listener: Option<std::net::TcpListener>,
) -> TestProxy {
    let baseline = portcullis::reload::watch::Baseline::take(path);
    let config = portcullis::config::load(path).unwrap_or_else(|err| panic!("{err}"));
    let listeners = match listener {
        None => Listeners::bind(&config).expect("bind on port 0"),
        Some(listener) => Listeners::public(listener),
    };
    let app = start_app(config, listeners).await;
    app.watch(path.to_owned(), baseline);
    serve(app)
}

/// Starts Portcullis in-process without listeners, for tests that call the proxy directly
/// (`Proxy::handle`) but need what only a start builds (the session store, discovery).
pub async fn start_in_process(config: portcullis::Config) -> AppHandle {
    App::start(config, Listeners::default())
        .await
        .expect("start the proxy")
        .handle()
}

/// [`start_proxy_in`] for configs that name no files.
pub async fn start_proxy(config: &str) -> TestProxy {
    start_proxy_in(config, Path::new(".")).await
}

/// A config with `[server]` on port 0 and one host-less route `/` to `upstream`, plus `extra`.
pub fn one_route(upstream: SocketAddr, extra_server: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{extra_server}\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://{upstream}\"\nauth = \"none\"\n"
    )
}

/// A plain-HTTP client with no pooling surprises.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A finished response: status, headers and the whole body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (the echo upstream's report).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!("not JSON ({err}): {}", String::from_utf8_lossy(&self.body))
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Collects a response.
pub async fn answer<B>(response: Response<B>) -> Answer
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// GET `url` with extra headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client()
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("request through the proxy");
    answer(response).await
}

/// Sends raw bytes (for request targets an HTTP client would not send) and returns the status and
/// the rest of the response text.
pub async fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    raw_bytes(addr, request.as_bytes()).await
}

/// [`raw`] for requests that are not text (header values with bytes a `&str` cannot hold).
pub async fn raw_bytes(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut buf),
    )
    .await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (status, text)
}

/// A loopback address nothing listens on.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}
