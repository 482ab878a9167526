//! Hot reload: a changed config, policy, certificate or key is loaded into a new [`Snapshot`] and
//! swapped in, with nothing dropped and nothing bad served.
//!
//! ```text
//! trigger (file event, debounced │ SIGHUP)
//!   → config::load on a blocking thread: parse, validate, read certificates and CA bundles,
//!     compile every policy                        ── any error: keep serving, log, count
//!   → snapshot::Builder::build: [oidc] changed? new relying party, discovered before the swap
//!     (upstream pools and sessions are the process's, reused)  ── failure: keep serving
//!   → Proxy::swap: requests already running finish on the snapshot they took
//! ```
//! What cannot change without a restart — the listeners' addresses and the session store's
//! settings — is reported (`restart_required` in `GET /reload`, a warning in the log); everything
//! else in the same change still applies. `portcullis check` runs the same `config::load`.

mod restart;
pub mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::{self, Config, DevIdpConfig};
use crate::proxy::Proxy;
use crate::snapshot::{self, Snapshot};

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// A watched file changed.
    FileChange,
    /// SIGHUP.
    Signal,
    /// A config handed over in-process ([`Reloader::apply`]: tests, embedding).
    InProcess,
}

impl Trigger {
    /// Its name, as `GET /reload` shows it (`file-change`), for the log too.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::FileChange => "file-change",
            Trigger::Signal => "signal",
            Trigger::InProcess => "in-process",
        }
    }
}

/// The reload state shown by `GET /reload` on the admin listener.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    /// 1 at start, +1 per applied reload.
    pub generation: u64,
    /// When the serving generation was loaded (RFC 3339).
    pub loaded_at: String,
    /// Reloads refused since start.
    pub failed_reloads: u64,
    /// Changes in the serving config that wait for a restart (their old values still apply).
    pub restart_required: Vec<String>,
    /// The latest attempt, if there was one.
    pub last_attempt: Option<Attempt>,
}

/// One reload attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// When it finished (RFC 3339).
    pub at: String,
    /// What started it.
    pub trigger: Trigger,
    /// `"applied"` or `"failed"`.
    pub result: &'static str,
    /// Why it failed: every problem, with file and line where there is one.
    pub error: Option<String>,
    /// Changed settings that only take effect after a restart (the rest was applied).
    pub restart_required: Vec<String>,
}

impl ReloadStatus {
    fn new() -> Self {
        ReloadStatus {
            generation: 1,
            loaded_at: now(),
            failed_reloads: 0,
            restart_required: Vec::new(),
            last_attempt: None,
        }
    }
}

impl ReloadStatus {
    /// Records an applied reload; `restart_required` lists what still waits for a restart.
    fn applied(&mut self, trigger: Trigger, restart_required: Vec<String>) -> Attempt {
        self.generation += 1;
        self.loaded_at = now();
        self.restart_required = restart_required.clone();
        if restart_required.is_empty() {
            tracing::info!(
                generation = self.generation,
                trigger = trigger.as_str(),
                "config reloaded"
            );
        } else {
            tracing::warn!(
                generation = self.generation,
                trigger = trigger.as_str(),
                restart_required = restart_required.join(", "),
                "config reloaded; these changes take effect only after a restart"
            );
        }
        Attempt {
            at: now(),
            trigger,
            result: "applied",
            error: None,
            restart_required,
        }
    }

    /// Records a refused reload: the serving generation stays.
    fn failed(&mut self, trigger: Trigger, error: String) -> Attempt {
        self.failed_reloads += 1;
        tracing::error!(
            generation = self.generation,
            trigger = trigger.as_str(),
            "reload refused, still serving generation {}: {error}",
            self.generation
        );
        Attempt {
            at: now(),
            trigger,
            result: "failed",
            error: Some(error),
            restart_required: Vec::new(),
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What the process started with that a reload cannot change: the bound listeners' addresses and
/// the development provider.
#[derive(Debug, Clone)]
pub struct StartedWith {
    /// `server.listen` as bound.
    pub listen: Vec<SocketAddr>,
    /// `server.admin_listen` as bound.
    pub admin_listen: Option<SocketAddr>,
    /// `server.workers` as started.
    pub workers: usize,
    /// `[dev_idp]` as started.
    pub dev_idp: Option<DevIdpConfig>,
    /// Started with `--dev`: a `[dev_idp]` beside another provider's discovery is allowed.
    pub dev: bool,
}

/// Applies new configs to a running [`Proxy`]: builds the snapshot with the process's
/// [`snapshot::Builder`], swaps it in, and keeps the [`ReloadStatus`]. Shared by the file watcher
/// ([`watch`]), SIGHUP and in-process callers.
pub struct Reloader {
    proxy: Proxy,
    builder: Arc<snapshot::Builder>,
    started_with: StartedWith,
    status: Mutex<ReloadStatus>,
}

impl Reloader {
    /// A reloader for `proxy`, whose serving snapshot is generation 1.
    pub fn new(proxy: Proxy, builder: Arc<snapshot::Builder>, started_with: StartedWith) -> Self {
        Reloader {
            proxy,
            builder,
            started_with,
            status: Mutex::new(ReloadStatus::new()),
        }
    }

    /// Reload generation and history (what `GET /reload` on the admin listener shows).
    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads `config_path` and, if everything in it is good, serves it. Never panics, never leaves
    /// the proxy without a working snapshot; the outcome is logged and recorded in the status.
    pub async fn reload(&self, config_path: &Path, trigger: Trigger) -> Attempt {
        let path = config_path.to_owned();
        let loaded = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|err| format!("the config loader crashed: {err}"))
            .and_then(|loaded| loaded.map_err(|err| err.to_string()));
        self.attempt(loaded, trigger).await
    }

    /// Serves a config that was loaded (validated) in-process, as a reload would.
    pub async fn apply(&self, config: Config) -> Attempt {
        self.attempt(Ok(config), Trigger::InProcess).await
    }

    async fn attempt(&self, loaded: Result<Config, String>, trigger: Trigger) -> Attempt {
        let prepared = match loaded {
            Ok(config) => self.prepare(config).await,
            Err(err) => Err(err),
        };
        // The swap and the status change under one lock: `GET /reload` never shows a generation
        // other than the one serving.
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let attempt = match prepared {
            Ok((snapshot, restart_required)) => {
                self.proxy.swap(snapshot);
                status.applied(trigger, restart_required)
            }
            Err(error) => status.failed(trigger, error),
        };
        status.last_attempt = Some(attempt.clone());
        attempt
    }

    /// Builds the snapshot of `config` (nothing is swapped yet). Also returns the changes that
    /// need a restart; those settings keep their running values.
    async fn prepare(&self, mut config: Config) -> Result<(Snapshot, Vec<String>), String> {
        let serving = self.proxy.snapshot();
        let started = &self.started_with;
        // As `check` and `run` refuse it: a reload must not accept what a start would not.
        if let (Some(problem), false) = (config.dev_idp_beside_a_real_provider(), started.dev) {
            return Err(format!("dev_idp: {problem}"));
        }
        let mut restart_required = restart::listeners(
            &started.listen,
            started.admin_listen,
            started.workers,
            &config.server,
        );
        restart_required.extend(restart::dev_idp(&started.dev_idp, &config.dev_idp));
        if serving.server.tls.is_some() != config.server.tls.is_some() {
            // Turning TLS on or off under connected clients would break every one of them; a new
            // certificate for TLS that stays on is fine.
            restart_required.push("server.tls (on/off)".to_owned());
            config.server.tls = serving.server.tls.clone();
        }
        let log_level = config.log.level.clone();
        let wanted_sessions = config.session.clone();
        let snapshot = self
            .builder
            .build(config, Some(&serving))
            .await
            .map_err(|err| err.to_string())?;
        if let Some(opened_with) = self.builder.sessions_opened_with() {
            restart_required.extend(restart::sessions(&opened_with, &wanted_sessions));
        }
        crate::logging::set_level(&log_level);
        Ok((snapshot, restart_required))
    }
}
