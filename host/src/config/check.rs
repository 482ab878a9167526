//! What every section's validation shares: the list of [`Problem`]s it adds to, and the parsers of
//! the value kinds many keys take (durations, sizes, socket addresses).
//!
//! A parser returns the message that follows the key path; [`Problems::check`] files it under the
//! key. Nothing here knows a section, so every section file may use it.

use std::net::SocketAddr;
use std::time::Duration;

use super::Problem;

/// Collects problems while validation goes on.
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    /// An empty list.
    pub(super) fn new() -> Self {
        Problems(Vec::new())
    }

    pub(super) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Records the error of `result` under `key` and returns its value, if any.
    pub(super) fn check<T>(
        &mut self,
        key: impl Into<String>,
        result: Result<T, String>,
    ) -> Option<T> {
        result.map_err(|message| self.add(key, message)).ok()
    }

    /// Whether nothing was found wrong.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every problem, in the order found.
    pub(super) fn into_vec(self) -> Vec<Problem> {
        self.0
    }
}

/// The duration at `key`: `text` when written, else `default` (written the same way).
pub(super) fn duration(
    problems: &mut Problems,
    key: &str,
    text: Option<&str>,
    default: &str,
) -> Option<Duration> {
    problems.check(key, parse_duration(text.unwrap_or(default)))
}

/// The duration at `key` as [`duration`] reads it, which must also lie in `range`; the message
/// says the range as written in `bounds` ("between 1s and 24h").
pub(super) fn duration_within(
    problems: &mut Problems,
    key: &str,
    text: Option<&str>,
    default: &str,
    range: std::ops::RangeInclusive<Duration>,
    bounds: &str,
) -> Option<Duration> {
    let value = duration(problems, key, text, default)?;
    if !range.contains(&value) {
        problems.add(key, format!("must be {bounds}: {value:?}"));
        return None;
    }
    Some(value)
}

/// The size in bytes at `key`: `text` when written, else `default` (written the same way).
pub(super) fn size(
    problems: &mut Problems,
    key: &str,
    text: Option<&str>,
    default: &str,
) -> Option<u64> {
    problems.check(key, parse_size(text.unwrap_or(default)))
}

pub(super) fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("not an address like \"127.0.0.1:8080\" or \"[::1]:8080\": {text:?}"))
}

pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err(format!("must be longer than zero: {text:?}")),
        Ok(duration) => Ok(duration),
        Err(_) => Err(format!(
            "not a duration like \"500ms\", \"30s\" or \"1h\": {text:?}"
        )),
    }
}

pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    match text.parse::<bytesize::ByteSize>() {
        Ok(size) if size.as_u64() == 0 => Err(format!("must be larger than zero: {text:?}")),
        Ok(size) => Ok(size.as_u64()),
        Err(_) => Err(format!(
            "not a size like \"512KiB\", \"10MiB\" or \"1GiB\": {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10MiB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("ten").is_err());
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("0s").is_err());
    }
}
