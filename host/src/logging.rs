//! Log set-up: tracing to stderr, filtered by `RUST_LOG` when set, else by `[log] level` — which a
//! reload can change ([`set_level`]).
//!
//! The access log is the target `portcullis::access` at `info`; silence it with
//! `level = "info,portcullis::access=off"`.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Swaps the filter of the installed subscriber; absent when `RUST_LOG` fixed the filter.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber. `level` is a validated filter directive from the config.
pub fn init(level: &str) {
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let (filter, handle) = reload::Layer::new(from_env.unwrap_or_else(|| EnvFilter::new(level)));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // Colours only for a person at a terminal, not in files or journald.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .try_init()
        .is_ok();
    if installed && !fixed {
        let _ = FILTER.set(handle);
    }
}

/// Applies a reloaded `[log] level` (a validated directive). Does nothing when `RUST_LOG` is set
/// or logging was not set up by [`init`].
pub fn set_level(level: &str) {
    if let (Some(handle), Ok(filter)) = (FILTER.get(), EnvFilter::try_new(level)) {
        let _ = handle.reload(filter);
    }
}
