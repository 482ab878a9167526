//! Log set-up: tracing to stderr, filtered by `RUST_LOG` when set, else by `[log] level` — which a
//! reload can change ([`set_level`]).
//!
//! The access log is the target `portcullis::access` at `info`; silence it with
//! `level = "info,portcullis::access=off"`. Its lines are formatted on the thread that served the
//! request and written by a log thread of their own, in batches, so no request waits for a write
//! to stderr (a pipe to journald or a terminal can be slow). Nothing is dropped: when the log
//! thread falls behind by [`ACCESS_LOG_BACKLOG`] lines, requests wait for it. Other events are
//! written at once, as before: they are rare, and a warning should be on record before the request
//! it concerns is answered.

use std::io::BufWriter;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The access log's target.
pub const ACCESS: &str = "portcullis::access";

/// Access-log lines waiting for the log thread before a request has to wait.
pub const ACCESS_LOG_BACKLOG: usize = 64 * 1024;

/// Dependencies kept at `warn` when `[log] level` is `info`, `debug` or `trace` without naming
/// them: their lines describe their own internals (sled's pages, hyper's connections), not the
/// proxy's work. Naming one (`"debug,hyper=debug"`) gives it the level written.
const QUIET_DEPENDENCIES: [&str; 10] = [
    "sled",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tokio_rustls",
    "reqwest",
    "wasmtime",
    "cranelift_codegen",
    "notify",
];

/// Dependencies kept silent unless named, whatever the level: the Redis client logs every failed
/// reconnect of an outage (hundreds of lines a second under load); the session store logs the
/// outage itself, sparingly ("the session store failed", "… works again").
const SILENT_DEPENDENCIES: [&str; 1] = ["redis"];

/// The filter of a `[log] level` directive list, with [`QUIET_DEPENDENCIES`] at `warn` and
/// [`SILENT_DEPENDENCIES`] off unless named.
fn config_filter(level: &str) -> EnvFilter {
    let directives: Vec<&str> = level.split(',').map(str::trim).collect();
    let global = directives.iter().rev().find(|d| !d.contains('='));
    let chatty = global
        .is_some_and(|g| matches!(g.to_ascii_lowercase().as_str(), "info" | "debug" | "trace"));
    let named = |dependency: &str| {
        directives.iter().any(|directive| {
            let target = directive
                .split('=')
                .next()
                .unwrap_or("")
                .split('[')
                .next()
                .unwrap_or("");
            target == dependency || target.starts_with(&format!("{dependency}::"))
        })
    };
    let mut filter = EnvFilter::new(level);
    for dependency in SILENT_DEPENDENCIES.into_iter().filter(|d| !named(d)) {
        if let Ok(directive) = format!("{dependency}=off").parse() {
            filter = filter.add_directive(directive);
        }
    }
    if chatty {
        for dependency in QUIET_DEPENDENCIES.into_iter().filter(|d| !named(d)) {
            if let Ok(directive) = format!("{dependency}=warn").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

/// Swaps the filter of the installed subscriber; absent when `RUST_LOG` fixed the filter.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Keeps the access-log thread running; dropping it writes what is still queued. Hold it until
/// the process ends (`main` does).
#[must_use = "dropping the guard stops the access log"]
pub struct LogGuard {
    _access: Option<WorkerGuard>,
}

/// Installs the global subscriber. `level` is a validated filter directive from the config.
pub fn init(level: &str) -> LogGuard {
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let (filter, handle) = reload::Layer::new(from_env.unwrap_or_else(|| config_filter(level)));
    let (access_writer, access_guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(ACCESS_LOG_BACKLOG)
        .thread_name("portcullis-access-log")
        .finish(BufWriter::new(std::io::stderr()));
    // Colours only for a person at a terminal, not in files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let events = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_filter(filter_fn(|meta| meta.target() != ACCESS));
    let access = tracing_subscriber::fmt::layer()
        .with_writer(access_writer)
        .with_ansi(ansi)
        .with_filter(filter_fn(|meta| meta.target() == ACCESS));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(events)
        .with(access)
        .try_init()
        .is_ok();
    if installed && !fixed {
        let _ = FILTER.set(handle);
    }
    LogGuard {
        _access: installed.then_some(access_guard),
    }
}

/// Applies a reloaded `[log] level` (a validated directive). Does nothing when `RUST_LOG` is set
/// or logging was not set up by [`init`].
pub fn set_level(level: &str) {
    if let (Some(handle), Ok(_)) = (FILTER.get(), EnvFilter::try_new(level)) {
        let _ = handle.reload(config_filter(level));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_stay_at_warn_unless_named() {
        let shown = |level: &str| config_filter(level).to_string();
        let info = shown("info");
        assert!(
            info.contains("sled=warn") && info.contains("hyper=warn"),
            "{info}"
        );
        let named = shown("debug,hyper=debug");
        assert!(
            named.contains("hyper=debug") && !named.contains("hyper=warn"),
            "{named}"
        );
        assert!(
            named.contains("hyper_util=warn"),
            "only the one named: {named}"
        );
        assert!(!shown("error").contains("sled="), "never louder than asked");
    }

    #[test]
    fn the_redis_client_is_silent_unless_named() {
        let shown = |level: &str| config_filter(level).to_string();
        assert!(shown("warn").contains("redis=off"), "{}", shown("warn"));
        assert!(shown("info").contains("redis=off"));
        let named = shown("info,redis=debug");
        assert!(
            named.contains("redis=debug") && !named.contains("redis=off"),
            "{named}"
        );
    }
}
