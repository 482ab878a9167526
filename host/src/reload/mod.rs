//! Hot reload: a changed config, policy, certificate or key is loaded into a new [`Snapshot`] and
//! swapped in, with nothing dropped and nothing bad served.
//!
//! ```text
//! trigger (file event, debounced │ SIGHUP)
//!   → config::load on a blocking thread: parse, validate, read certificates and CA bundles,
//!     compile every policy                        ── any error: keep serving, log, count
//!   → [oidc] changed? new relying party, discovery before the swap ── failure: keep serving
//!   → Snapshot::build (upstream pools and sessions are the process's, reused)
//!   → ArcSwap::store: requests already running finish on the snapshot they took
//! ```
//! What cannot change without a restart — the listeners' addresses and the session store's
//! settings — is reported (`restart_required` in `GET /reload`, a warning in the log); everything
//! else in the same change still applies. `portcullis check` runs the same `config::load`.

mod restart;
pub mod watch;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::{self, Config};
use crate::oidc::{Auth, Oidc};
use crate::proxy::Proxy;
use crate::snapshot::Snapshot;

/// How long a changed `[oidc]`'s discovery may take before the reload is refused.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// A watched file changed.
    FileChange,
    /// SIGHUP.
    Signal,
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
    pub(crate) fn new() -> Self {
        ReloadStatus {
            generation: 1,
            loaded_at: now(),
            failed_reloads: 0,
            restart_required: Vec::new(),
            last_attempt: None,
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Loads `config_path` and, if everything in it is good, serves it. Never panics, never leaves the
/// proxy without a working snapshot; the outcome is logged and recorded in the status.
pub async fn reload(proxy: &Proxy, config_path: &Path, trigger: Trigger) -> Attempt {
    let path = config_path.to_owned();
    let loaded = tokio::task::spawn_blocking(move || config::load(&path))
        .await
        .map_err(|err| format!("the config loader crashed: {err}"))
        .and_then(|loaded| loaded.map_err(|err| err.to_string()));
    let prepared = match loaded {
        Ok(config) => prepare(proxy, config).await,
        Err(err) => Err(err),
    };
    // The swap and the status change under one lock: `GET /reload` never shows a generation
    // other than the one serving.
    let mut status = proxy
        .lasting
        .status
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let attempt = match prepared {
        Ok((snapshot, restart_required)) => {
            proxy.current.store(Arc::new(snapshot));
            status.generation += 1;
            status.loaded_at = now();
            status.restart_required = restart_required.clone();
            if restart_required.is_empty() {
                tracing::info!(generation = status.generation, ?trigger, "config reloaded");
            } else {
                tracing::warn!(
                    generation = status.generation,
                    ?trigger,
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
        Err(error) => {
            status.failed_reloads += 1;
            tracing::error!(
                generation = status.generation,
                ?trigger,
                "reload refused, still serving generation {}: {error}",
                status.generation
            );
            Attempt {
                at: now(),
                trigger,
                result: "failed",
                error: Some(error),
                restart_required: Vec::new(),
            }
        }
    };
    status.last_attempt = Some(attempt.clone());
    attempt
}

/// Builds the snapshot of `config` (nothing is swapped yet). Also returns the changes that need a
/// restart; those settings keep their running values.
async fn prepare(proxy: &Proxy, mut config: Config) -> Result<(Snapshot, Vec<String>), String> {
    let lasting = &proxy.lasting;
    let current = proxy.snapshot();
    let mut restart_required = restart::listeners(&lasting.listen, &config.server);
    restart_required.extend(restart::dev_idp(&lasting.dev_idp, &config.dev_idp));
    if current.server.tls.is_some() != config.server.tls.is_some() {
        // Turning TLS on or off under connected clients would break every one of them; a new
        // certificate for TLS that stays on is fine.
        restart_required.push("server.tls (on/off)".to_owned());
        config.server.tls = current.server.tls.clone();
    }
    let auth = match (&config.oidc, &current.auth) {
        (None, _) => None,
        (Some(wanted), Some(running)) if running.oidc.config() == wanted => Some(running.clone()),
        (Some(wanted), _) => {
            // Discovery first: a refused reload must leave no trace (such as an opened store).
            let oidc = relying_party(wanted).await?;
            let sessions = lasting
                .sessions(&config.session)
                .map_err(|err| format!("cannot open the session store: {err}"))?;
            Some(Arc::new(Auth::new(oidc, sessions)))
        }
    };
    if let Some((_, opened_with)) = &*lasting.sessions.lock().unwrap_or_else(|p| p.into_inner()) {
        restart_required.extend(restart::sessions(opened_with, &config.session));
    }
    crate::logging::set_level(&config.log.level);
    let snapshot = Snapshot::build(
        config,
        auth,
        &mut lasting.pools.lock().unwrap_or_else(|p| p.into_inner()),
    );
    Ok((snapshot, restart_required))
}

/// A relying party for a changed `[oidc]`, discovered before anything is swapped.
async fn relying_party(config: &crate::config::OidcConfig) -> Result<Arc<Oidc>, String> {
    let oidc = Arc::new(Oidc::new(config.clone()));
    match tokio::time::timeout(DISCOVERY_TIMEOUT, oidc.discover_now()).await {
        Ok(Ok(())) => Ok(oidc),
        Ok(Err(err)) => Err(format!(
            "[oidc] changed, but discovery at {} failed: {err}; the previous provider settings stay",
            config.discovery_url
        )),
        Err(_) => Err(format!(
            "[oidc] changed, but discovery at {} did not answer within {DISCOVERY_TIMEOUT:?}; the previous provider settings stay",
            config.discovery_url
        )),
    }
}
