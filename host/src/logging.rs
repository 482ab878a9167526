//! Log set-up: tracing to stderr, filtered by `RUST_LOG` when set, else by `[log] level`.
//!
//! The access log is the target `portcullis::access` at `info`; silence it with
//! `level = "info,portcullis::access=off"`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `level` is a validated filter directive from the config.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in files or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
