//! [`App`]: Portcullis as one running whole, started in one place for the binary, the demo, the
//! tests and the benches alike.
//!
//! ```text
//! App::start(config, listeners)
//!   → the development provider, when configured (the proxy's discovery would wait for it)
//!   → snapshot::Builder: the first snapshot (opens the session store; discovery in the background)
//!   → Proxy (the pipeline, serving that snapshot) and its Reloader (generation 1)
//!   → Server on the bound listeners                          ── App::serve runs it
//! App::watch: file changes and SIGHUP reload through the same Reloader
//! ```
//! What outlives a snapshot — upstream pools and the session store ([`snapshot::Builder`]), the
//! reload status ([`Reloader`]) — is created here once and lives as long as the app.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{self, Config};
use crate::dev_idp::DevIdp;
use crate::proxy::Proxy;
use crate::reload::{Attempt, ReloadStatus, Reloader, StartedWith, watch};
use crate::server::{BindError, Server, bind, bind_joining};
use crate::snapshot::{self, BuildError};

/// The sockets an app serves on, bound by the caller so that it knows the addresses (port 0)
/// before anything starts.
#[derive(Default)]
pub struct Listeners {
    /// Public traffic (`server.listen`).
    pub public: Vec<std::net::TcpListener>,
    /// `/healthz`, `/readyz` and `/reload` (`server.admin_listen`).
    pub admin: Option<std::net::TcpListener>,
    /// The development provider (`[dev_idp] listen`); it is started only when this is given.
    pub dev_idp: Option<std::net::TcpListener>,
}

/// Where the sockets of `server.listen` and `server.admin_listen` come from.
pub enum SocketSource {
    /// Bound here; an address something else listens on is refused ("address in use").
    Bind,
    /// Bound here beside the sockets of a running Portcullis on the same addresses, which this
    /// process replaces (`portcullis run --takeover`).
    JoinRunning,
}

impl Listeners {
    /// Binds every address `config` names: `server.listen`, `server.admin_listen` and
    /// `[dev_idp] listen`.
    pub fn bind(config: &Config) -> Result<Self, StartError> {
        Self::bind_with(config, Vec::new(), SocketSource::Bind)
    }

    /// Like [`Listeners::bind`], but an address with a socket in `inherited` (passed by systemd
    /// socket activation) uses that socket, and the others are bound as `source` says. A passed
    /// socket on no configured address is refused: serving it would be a surprise.
    pub fn bind_with(
        config: &Config,
        mut inherited: Vec<std::net::TcpListener>,
        source: SocketSource,
    ) -> Result<Self, StartError> {
        let mut listener = |addr: SocketAddr| -> Result<std::net::TcpListener, StartError> {
            let passed = inherited
                .iter()
                .position(|socket| socket.local_addr().is_ok_and(|bound| bound == addr));
            match (passed, &source) {
                (Some(at), _) => Ok(inherited.swap_remove(at)),
                (None, SocketSource::Bind) => Ok(bind(addr)?),
                (None, SocketSource::JoinRunning) => Ok(bind_joining(addr)?),
            }
        };
        let public = config
            .server
            .listen
            .iter()
            .map(|&addr| listener(addr))
            .collect::<Result<_, _>>()?;
        let admin = config.server.admin_listen.map(&mut listener).transpose()?;
        if let Some(unused) = inherited.first() {
            return Err(StartError::UnusedSocket(unused.local_addr().map_or_else(
                |err| format!("(unknown: {err})"),
                |addr| addr.to_string(),
            )));
        }
        Ok(Listeners {
            public,
            admin,
            dev_idp: config
                .dev_idp
                .as_ref()
                .map(|dev| bind(dev.listen).map_err(StartError::DevIdpBind))
                .transpose()?,
        })
    }

    /// One public listener bound elsewhere (for configs that must name their own address, such
    /// as a login's `redirect_uri`); no admin listener, no development provider.
    pub fn public(listener: std::net::TcpListener) -> Self {
        Listeners {
            public: vec![listener],
            ..Listeners::default()
        }
    }
}

/// Why Portcullis could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A bound listener could not be served.
    #[error("cannot serve on a listener: {0}")]
    Listener(#[from] std::io::Error),
    /// The first snapshot could not be built (the session store did not open).
    #[error(transparent)]
    Snapshot(#[from] BuildError),
    /// The service manager passed a socket whose address the config does not name.
    #[error(
        "the service manager passed a socket on {0}, which is neither in server.listen nor server.admin_listen; name that address in the config (exactly: 0.0.0.0:443 and [::]:443 differ), or remove it from the .socket unit"
    )]
    UnusedSocket(String),
    /// `[dev_idp] listen` could not be bound.
    #[error("cannot listen on {} ([dev_idp]): {}", .0.addr, .0.source)]
    DevIdpBind(BindError),
    /// `[dev_idp]` is configured but the development provider did not start.
    #[error("the development identity provider did not start: {0}")]
    DevIdp(String),
}

/// A started Portcullis: bound, not yet serving until [`App::serve`].
pub struct App {
    handle: AppHandle,
    server: Server,
    dev_idp: Option<DevIdp>,
}

/// What callers keep of a running app after [`App::serve`] took it: the proxy (callable
/// in-process) and its reloads. Cheap to clone.
#[derive(Clone)]
pub struct AppHandle {
    proxy: Proxy,
    reloader: Arc<Reloader>,
}

/// How a process starts, beyond its config.
#[derive(Debug, Default, Clone)]
pub struct StartOptions {
    /// How long the session store may be held by another process at start (a takeover: the
    /// process being replaced holds it until its drain ends). Zero: refuse to start at once.
    pub store_wait: std::time::Duration,
    /// `--dev`: a `[dev_idp]` beside another provider's discovery is allowed, at start and at
    /// reloads.
    pub dev: bool,
}

impl App {
    /// Starts everything `config` asks for on `listeners`. Must run inside a tokio runtime.
    pub async fn start(config: Config, listeners: Listeners) -> Result<App, StartError> {
        Self::start_with(config, listeners, StartOptions::default()).await
    }

    /// [`App::start`] with `options`.
    pub async fn start_with(
        config: Config,
        listeners: Listeners,
        options: StartOptions,
    ) -> Result<App, StartError> {
        // First: the proxy's discovery would otherwise wait for it.
        let dev_idp = match (&config.dev_idp, listeners.dev_idp) {
            (Some(dev), Some(listener)) => {
                Some(DevIdp::start(listener, dev.client.clone()).map_err(StartError::DevIdp)?)
            }
            _ => None,
        };
        log_wasm_policies(&config);
        let started_with = StartedWith {
            listen: config.server.listen.clone(),
            admin_listen: config.server.admin_listen,
            workers: config.server.workers,
            dev_idp: config.dev_idp.clone(),
            dev: options.dev,
        };
        let builder = Arc::new(snapshot::Builder::waiting_for_the_store(options.store_wait));
        let proxy = Proxy::new(builder.build(config, None).await?);
        let workers = started_with.workers;
        let reloader = Arc::new(Reloader::new(proxy.clone(), builder, started_with));
        let server = Server::new(
            proxy.clone(),
            reloader.clone(),
            listeners.public,
            listeners.admin,
            workers,
        )?;
        Ok(App {
            handle: AppHandle { proxy, reloader },
            server,
            dev_idp,
        })
    }

    /// Reloads from `config_path` whenever it or a file it names changes, and on SIGHUP, for as
    /// long as the process runs. `baseline` is what the served config was loaded from.
    pub fn watch(&self, config_path: PathBuf, baseline: watch::Baseline) {
        watch::spawn(self.handle.reloader.clone(), config_path, baseline);
    }

    /// The proxy and its reloads, for use after [`App::serve`].
    pub fn handle(&self) -> AppHandle {
        self.handle.clone()
    }

    /// The bound public addresses, in config order.
    pub fn public_addrs(&self) -> Vec<SocketAddr> {
        self.server.public_addrs()
    }

    /// The bound admin address, if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.server.admin_addr()
    }

    /// Whether the public listeners terminate TLS.
    pub fn uses_tls(&self) -> bool {
        self.server.uses_tls()
    }

    /// The development provider's issuer URL, when one was started.
    pub fn dev_idp_issuer(&self) -> Option<&str> {
        self.dev_idp.as_ref().map(|dev| dev.issuer.as_str())
    }

    /// Serves until `shutdown` completes, then drains in-flight requests for up to
    /// `server.drain_timeout`.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        self.server.serve(shutdown).await;
        // Whatever the drain wrote (a login, a logout, a pending login) is on disk before the
        // process lets go of the store: a restart or a takeover continues from it.
        if let Some(auth) = &self.handle.proxy.snapshot().auth
            && let Err(err) = auth.sessions.flush().await
        {
            tracing::warn!(error = %err, "the session store could not be flushed at shutdown");
        }
    }
}

impl AppHandle {
    /// The proxy, callable in-process.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Reload generation and history (what `GET /reload` on the admin listener shows).
    pub fn reload_status(&self) -> ReloadStatus {
        self.reloader.status()
    }

    /// Serves `config` from the next request on, exactly as a reload from a file would (tests,
    /// embedding): what needs a restart is reported, a failure keeps the serving snapshot.
    pub async fn apply(&self, config: Config) -> Attempt {
        self.reloader.apply(config).await
    }
}

/// One line per Wasm policy: where its code came from and how long loading took (logging starts
/// after the config is loaded, so the compile itself could not say).
fn log_wasm_policies(config: &Config) {
    for route in &config.routes {
        if let Some(config::RoutePolicy {
            policy: crate::policy::Policy::Wasm(policy),
            ..
        }) = &route.policy
        {
            tracing::info!(
                route = %route.name,
                policy = policy.file(),
                code = policy.origin().as_str(),
                load_ms = policy.load_time().as_millis() as u64,
                "wasm policy ready"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    use super::*;
    use crate::proxy::ConnInfo;

    /// A config whose only route refuses with `reason`, so an answer tells which config served it.
    fn refusing(reason: &str, oidc: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("policy.rhai"),
            format!("deny(403, \"{reason}\")\n"),
        )
        .unwrap();
        let text = format!(
            "{oidc}\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\npolicy = \"policy.rhai\"\n"
        );
        crate::config::parse(&text, dir.path()).unwrap()
    }

    async fn served(app: &AppHandle) -> String {
        let request = http::Request::get("/")
            .header("host", "app")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let conn = ConnInfo::new("127.0.0.1:1".parse().unwrap(), false);
        let response = app.proxy().handle(request, conn).await;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    #[test]
    fn a_busy_development_provider_port_is_named_with_its_section() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[dev_idp]\nlisten = \"127.0.0.1:{port}\"\n\
             [oidc]\nclient_id = \"app\"\nclient_secret = \"secret\"\nredirect_uri = \"http://127.0.0.1/auth\"\n\
             [session]\nstore = \"memory\"\n\
             [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n"
        );
        let config = crate::config::parse(&text, std::path::Path::new(".")).unwrap();
        let err = Listeners::bind(&config).err().expect("the port is taken");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot listen on 127.0.0.1:{port} ([dev_idp]): ")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_config_applied_in_process_serves_the_next_request_and_counts_as_a_reload() {
        let app = App::start(refusing("first", ""), Listeners::default())
            .await
            .unwrap()
            .handle();
        assert!(served(&app).await.contains("first"));
        assert_eq!(app.reload_status().generation, 1);

        let attempt = app.apply(refusing("second", "")).await;
        assert_eq!(attempt.result, "applied", "{:?}", attempt.error);
        assert!(served(&app).await.contains("second"));
        let status = app.reload_status();
        assert_eq!(status.generation, 2);
        assert_eq!(
            status.last_attempt.unwrap().trigger,
            crate::reload::Trigger::InProcess
        );
    }

    #[tokio::test]
    async fn an_applied_config_whose_provider_cannot_be_discovered_keeps_the_serving_one() {
        let app = App::start(refusing("first", ""), Listeners::default())
            .await
            .unwrap()
            .handle();
        // Nothing listens on port 9 of loopback: discovery fails at once.
        let unreachable = "[oidc]\ndiscovery = \"http://127.0.0.1:9/.well-known/openid-configuration\"\nclient_id = \"app\"\nclient_secret = \"secret\"\nredirect_uri = \"http://app/auth\"\n[session]\nstore = \"memory\"\n";
        let attempt = app.apply(refusing("second", unreachable)).await;
        assert_eq!(attempt.result, "failed");
        assert!(
            attempt.error.as_deref().unwrap_or("").contains("discovery"),
            "{:?}",
            attempt.error
        );
        assert!(served(&app).await.contains("first"));
        let status = app.reload_status();
        assert_eq!((status.generation, status.failed_reloads), (1, 1));
    }
}
