//! `portcullis demo`: the quickstart — the development identity provider, the demo backend and the
//! proxy in one process, serving `examples/quickstart/portcullis.toml`.
//!
//! The provider and the backend take free loopback ports. The config is rewritten for those ports,
//! the proxy's `--listen` address and the data folder, and written into the data folder; its
//! policy paths point back at `examples/quickstart/policies/`, so editing them reloads live.

pub mod backend;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::app::{App, Listeners};
use crate::dev_idp::users::DEMO_USERS;

/// What `portcullis demo` was asked for.
pub struct DemoOptions {
    /// The quickstart config.
    pub config: PathBuf,
    /// The proxy's address.
    pub listen: SocketAddr,
    /// Sessions and the Wasm cache; a temporary folder (deleted at exit) when not given.
    pub data_dir: Option<PathBuf>,
}

/// Why the demo could not start: what went wrong, with what it was doing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DemoError(String);

impl DemoError {
    fn from_error(err: impl std::fmt::Display) -> Self {
        DemoError(err.to_string())
    }
}

/// Adds what the demo was doing to an error.
trait Context<T> {
    fn context(self, doing: impl std::fmt::Display) -> Result<T, DemoError>;
    fn with_context(self, doing: impl FnOnce() -> String) -> Result<T, DemoError>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn context(self, doing: impl std::fmt::Display) -> Result<T, DemoError> {
        self.map_err(|err| DemoError(format!("{doing}: {err}")))
    }
    fn with_context(self, doing: impl FnOnce() -> String) -> Result<T, DemoError> {
        self.map_err(|err| DemoError(format!("{}: {err}", doing())))
    }
}

/// Runs the demo until SIGINT/SIGTERM. Must run inside a tokio runtime.
pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    if !options.listen.ip().is_loopback() {
        return Err(DemoError(
            "the demo serves on loopback only (its provider has public demo passwords): use --listen 127.0.0.1:PORT".to_owned(),
        ));
    }
    let quickstart = std::fs::canonicalize(&options.config).with_context(|| {
        format!(
            "cannot find {}: run `demo` from the repository's root, or pass --config",
            options.config.display()
        )
    })?;
    let temporary;
    let data_dir = match &options.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::canonicalize(dir).with_context(|| format!("cannot open {}", dir.display()))?
        }
        None => {
            temporary = tempfile::Builder::new()
                .prefix("portcullis-demo-")
                .tempdir()
                .context("cannot create a temporary data folder")?;
            temporary.path().to_owned()
        }
    };
    let loopback = |what: &str| {
        std::net::TcpListener::bind((options.listen.ip(), 0))
            .with_context(|| format!("cannot find a free port for the {what}"))
    };
    let (idp_listener, backend_listener) = (loopback("identity provider")?, loopback("backend")?);
    let (idp_addr, backend_addr) = (
        idp_listener
            .local_addr()
            .context("identity provider listener")?,
        backend_listener.local_addr().context("backend listener")?,
    );
    let config_path = data_dir.join("portcullis.toml");
    let text = std::fs::read_to_string(&quickstart)
        .with_context(|| format!("cannot read {}", quickstart.display()))?;
    let rewritten = rewrite(
        &text,
        &quickstart,
        &options.listen,
        idp_addr,
        backend_addr,
        &data_dir,
    )
    .with_context(|| format!("{} is not a quickstart config", quickstart.display()))?;
    std::fs::write(&config_path, rewritten)
        .with_context(|| format!("cannot write {}", config_path.display()))?;

    let baseline = crate::reload::watch::Baseline::take(&config_path);
    let config = crate::config::load(&config_path).map_err(DemoError::from_error)?;
    let _log = crate::logging::init(&config.log.level);
    if config.dev_idp.is_none() {
        return Err(DemoError(
            "the quickstart config has no [dev_idp] section".to_owned(),
        ));
    }
    backend::start(backend_listener).context("cannot serve the demo backend")?;
    let listeners = Listeners {
        public: vec![crate::server::bind(options.listen).map_err(DemoError::from_error)?],
        admin: None,
        dev_idp: Some(idp_listener),
    };
    let app = App::start(config, listeners)
        .await
        .map_err(DemoError::from_error)?;
    app.watch(config_path.clone(), baseline);
    print_banner(
        &options.listen,
        app.dev_idp_issuer().unwrap_or_default(),
        backend_addr,
        &data_dir,
        &quickstart,
        options.data_dir.is_none(),
    );
    app.serve(crate::server::shutdown_signal()).await;
    Ok(())
}

/// The quickstart config with the demo's addresses and folders filled in.
fn rewrite(
    text: &str,
    quickstart: &Path,
    listen: &SocketAddr,
    idp: SocketAddr,
    backend: SocketAddr,
    data_dir: &Path,
) -> Result<String, DemoError> {
    let base = quickstart.parent().unwrap_or(Path::new("."));
    let mut config: Table = toml::from_str(text).context("not TOML")?;
    let table = |config: &mut Table, name: &str| -> Result<Table, DemoError> {
        match config.remove(name) {
            Some(Value::Table(table)) => Ok(table),
            None => Ok(Table::new()),
            Some(_) => Err(DemoError(format!("[{name}] is not a table"))),
        }
    };
    let mut server = table(&mut config, "server")?;
    server.insert("listen".into(), listen.to_string().into());
    server.remove("admin_listen");
    config.insert("server".into(), server.into());
    let mut dev_idp = table(&mut config, "dev_idp")?;
    dev_idp.insert("listen".into(), idp.to_string().into());
    config.insert("dev_idp".into(), dev_idp.into());
    let mut oidc = table(&mut config, "oidc")?;
    oidc.remove("discovery");
    for key in ["redirect_uri", "post_logout_redirect_uri"] {
        if let Some(Value::String(url)) = oidc.get(key) {
            let path = url::Url::parse(url)
                .with_context(|| format!("oidc.{key}"))?
                .path()
                .to_owned();
            oidc.insert(key.into(), format!("http://{listen}{path}").into());
        }
    }
    config.insert("oidc".into(), oidc.into());
    let mut session = table(&mut config, "session")?;
    session.insert(
        "path".into(),
        data_dir.join("sessions").display().to_string().into(),
    );
    config.insert("session".into(), session.into());
    let mut wasm = table(&mut config, "wasm")?;
    wasm.insert(
        "cache_dir".into(),
        data_dir.join("wasm-cache").display().to_string().into(),
    );
    config.insert("wasm".into(), wasm.into());
    if let Some(Value::Array(routes)) = config.get_mut("routes") {
        for route in routes.iter_mut().filter_map(Value::as_table_mut) {
            if let Some(Value::String(upstream)) = route.get("upstream") {
                let path = url::Url::parse(upstream)
                    .context("a route's upstream")?
                    .path()
                    .to_owned();
                route.insert("upstream".into(), format!("http://{backend}{path}").into());
            }
            if let Some(Value::String(policy)) = route.get("policy") {
                let absolute = base.join(policy).display().to_string();
                route.insert("policy".into(), absolute.into());
            }
        }
    }
    Ok(format!(
        "# Written by `portcullis demo` from {} — edit that file, not this one.\n{}",
        quickstart.display(),
        toml::to_string(&config).context("cannot write the config")?
    ))
}

fn print_banner(
    listen: &SocketAddr,
    idp: &str,
    backend: SocketAddr,
    data_dir: &Path,
    quickstart: &Path,
    temporary: bool,
) {
    let policies = quickstart
        .parent()
        .map(|dir| dir.join("policies"))
        .unwrap_or_default();
    println!("Portcullis demo (development only)");
    println!();
    println!("  open       http://{listen}/");
    println!(
        "  try        /admin (admins only)   /api (401 JSON without a session)   /public (no login)   /logout"
    );
    for (i, user) in DEMO_USERS.iter().enumerate() {
        let groups = if user.groups.is_empty() {
            "no groups".to_owned()
        } else {
            user.groups.join(", ")
        };
        let label = if i == 0 { "users" } else { "" };
        let credentials = format!("{} / {}", user.username, user.password);
        println!("  {label:<10} {credentials:<16} ({groups})");
    }
    println!("  provider   {idp}   (development identity provider)");
    println!("  backend    http://{backend}   (shows the identity headers it receives)");
    let lifetime = if temporary { ", deleted on exit" } else { "" };
    println!("  data       {}   (sessions{lifetime})", data_dir.display());
    println!(
        "  edit       {}/*.rhai: saved changes apply to the next request",
        policies.display()
    );
    println!();
    // The line tests wait for, as with `run`.
    println!("portcullis: listening on http://{listen}");
    println!("Ctrl-C stops.");
}
