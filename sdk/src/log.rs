//! Writing to the proxy's log: the only thing a policy can do besides computing.
//!
//! Lines are tagged with the route and policy file. Natively (unit tests) they go to stderr.

/// Logs at debug level.
pub fn debug(message: &str) {
    write(Level::Debug, message)
}

/// Logs at info level.
pub fn info(message: &str) {
    write(Level::Info, message)
}

/// Logs at warn level.
pub fn warn(message: &str) {
    write(Level::Warn, message)
}

/// Logs at error level.
pub fn error(message: &str) {
    write(Level::Error, message)
}

#[derive(Debug, Clone, Copy)]
enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

#[cfg(target_arch = "wasm32")]
fn write(level: Level, message: &str) {
    use crate::__bindings::portcullis::policy::types::Level as WitLevel;
    let level = match level {
        Level::Debug => WitLevel::Debug,
        Level::Info => WitLevel::Info,
        Level::Warn => WitLevel::Warn,
        Level::Error => WitLevel::Error,
    };
    crate::__bindings::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
fn write(level: Level, message: &str) {
    eprintln!("[policy {level:?}] {message}");
}
