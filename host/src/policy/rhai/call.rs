//! One evaluation of a script: what the registered functions read while it runs ([`Current`],
//! in a thread-local for the length of one synchronous evaluation: a shared engine cannot
//! capture it), and the values a script holds (`request`, `claims`, its decision).

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Instant;

use rhai::{Dynamic, ImmutableString, Map, Scope};

use crate::policy::identity::PolicyIdentity;
use crate::policy::input;

/// The call in progress, as the registered functions and the engine's hooks see it.
pub(super) struct Current {
    pub(super) identity: PolicyIdentity,
    /// The claims as script values.
    pub(super) claims: Arc<Map>,
    pub(super) request: Arc<RequestData>,
    /// Whether `request` is the real one (not copied for scripts judged not to read it).
    pub(super) has_request: bool,
    /// Set when the script asked for a header without the real request: its code hid the call
    /// (a function called by a name built at run time), so the judgement was wrong.
    pub(super) wanted_request: Cell<bool>,
    pub(super) route: ImmutableString,
    pub(super) file: Arc<str>,
    pub(super) deadline: Instant,
    /// Lines `print` and `debug` wrote in this decision (at most [`MAX_LOG_LINES`]).
    pub(super) logged_lines: Cell<u32>,
}

/// Lines one decision may write with `print`/`debug`; later ones are dropped, with one notice.
pub(super) const MAX_LOG_LINES: u32 = 16;
/// Characters of one `print`/`debug` line kept in the log.
pub(super) const MAX_LOG_LINE_CHARS: usize = 512;

impl Current {
    /// The header `name` of the request (see [`input::header_text`]). Reading it without the
    /// real request marks the judgement wrong, and the script is run again with it.
    pub(super) fn header(&self, name: &str) -> Dynamic {
        if !self.has_request {
            self.wanted_request.set(true);
        }
        self.request.header(name)
    }

    /// Whether the script wrote to the log in this decision.
    pub(super) fn logged(&self) -> bool {
        self.logged_lines.get() > 0
    }

    /// The text to log for one `print`/`debug`, or `None` once this decision used its lines: a
    /// script printing 60 KiB in a loop must not write megabytes of log per request.
    pub(super) fn log_line(&self, text: &str) -> Option<String> {
        let used = self.logged_lines.get();
        if used > MAX_LOG_LINES {
            return None;
        }
        self.logged_lines.set(used + 1);
        if used == MAX_LOG_LINES {
            return Some(format!(
                "(further print/debug output of this decision dropped: at most {MAX_LOG_LINES} lines)"
            ));
        }
        // Control characters shown escaped: a newline from a claim must not forge a log line.
        let mut line = String::with_capacity(text.len().min(MAX_LOG_LINE_CHARS));
        for c in text.chars().take(MAX_LOG_LINE_CHARS) {
            if c.is_control() {
                line.extend(c.escape_default());
            } else {
                line.push(c);
            }
        }
        if text.chars().nth(MAX_LOG_LINE_CHARS).is_some() {
            line.push_str("… (cut)");
        }
        Some(line)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
    /// The scope, reused across decisions on this thread (cleared each time): no allocation.
    static SCOPE: RefCell<Scope<'static>> = RefCell::new(Scope::new());
    /// What scripts that never read the request get: made once per thread.
    static NO_REQUEST: Arc<RequestData> = Arc::new(RequestData::default());
}

/// Makes `current` the call in progress until dropped, however the evaluation ends.
pub(super) struct CallGuard;

impl CallGuard {
    pub(super) fn set(current: Current) -> Self {
        CURRENT.with(|c| *c.borrow_mut() = Some(current));
        CallGuard
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

/// `f` of the call in progress, or `default` outside one.
pub(super) fn with_current<T>(default: T, f: impl FnOnce(&Current) -> T) -> T {
    CURRENT.with(|c| c.borrow().as_ref().map(f).unwrap_or(default))
}

/// This thread's scope, cleared; hand it back with [`return_scope`].
pub(super) fn take_scope() -> Scope<'static> {
    let mut scope = SCOPE.with(|cached| std::mem::take(&mut *cached.borrow_mut()));
    scope.clear();
    scope
}

/// Gives the scope back for the next decision on this thread (cleared first).
pub(super) fn return_scope(mut scope: Scope<'static>) {
    scope.clear();
    SCOPE.with(|cached| *cached.borrow_mut() = scope);
}

/// The empty request scripts judged not to read one get.
pub(super) fn no_request() -> Arc<RequestData> {
    NO_REQUEST.with(Arc::clone)
}

/// The request fields, owned, behind the script's `request` value.
#[derive(Debug, Default)]
pub(super) struct RequestData {
    pub(super) method: ImmutableString,
    pub(super) path: ImmutableString,
    pub(super) query: ImmutableString,
    pub(super) host: ImmutableString,
    pub(super) client_ip: ImmutableString,
    pub(super) headers: http::HeaderMap,
}

impl RequestData {
    /// A copy of `request` for one decision.
    pub(super) fn of(request: &input::PolicyRequest<'_>) -> Self {
        RequestData {
            method: request.method.into(),
            path: request.path.into(),
            query: request.query.into(),
            host: request.host.into(),
            client_ip: request.client_ip.to_string().into(),
            headers: request.headers.clone(),
        }
    }

    /// `header(name)` and `request.headers[name]`: the value, or `()` when absent.
    pub(super) fn header(&self, name: &str) -> Dynamic {
        match input::header_text(&self.headers, name) {
            Some(text) => text.into(),
            None => Dynamic::UNIT,
        }
    }

    /// `request.headers`: every header, by lower-case name.
    pub(super) fn headers_map(&self) -> Map {
        self.headers
            .keys()
            .map(|name| (name.as_str().into(), self.header(name.as_str())))
            .collect()
    }
}

/// `request` in a script: properties `method`, `path`, `query`, `host`, `client_ip`, `headers`.
#[derive(Debug, Clone)]
pub(super) struct RequestView(pub(super) Arc<RequestData>);

/// `claims` in a script: a map that can be read (`m.key`, `m["key"]`, `"key" in m`, `m.keys()`,
/// `m.len()`) but not changed. Values read out of it are copies.
#[derive(Debug, Clone)]
pub(super) struct ReadOnlyMap(pub(super) Arc<Map>);

impl ReadOnlyMap {
    pub(super) fn get(&mut self, key: &str) -> Dynamic {
        self.0.get(key).cloned().unwrap_or(Dynamic::UNIT)
    }
}

/// What a script's `allow()`, `deny()` and `login()` return.
#[derive(Debug, Clone)]
pub(super) enum ScriptDecision {
    Allow(Vec<(String, String)>),
    Deny(i64, Option<String>),
    Login,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decision's state for an anonymous request, as the log budget sees it.
    fn anonymous_current() -> Current {
        Current {
            identity: PolicyIdentity::anonymous(),
            claims: Arc::new(Map::new()),
            request: Arc::new(RequestData::default()),
            has_request: false,
            wanted_request: Cell::new(false),
            route: "r".into(),
            file: "f.rhai".into(),
            deadline: Instant::now(),
            logged_lines: Cell::new(0),
        }
    }

    /// A script printing 60 KiB in a loop wrote megabytes of log per request: each decision gets
    /// [`MAX_LOG_LINES`] lines of at most [`MAX_LOG_LINE_CHARS`] characters, then one notice.
    #[test]
    fn print_and_debug_output_is_bounded_per_decision() {
        let current = anonymous_current();
        let long = "x".repeat(60_000);
        let lines: Vec<String> = (0..1000).filter_map(|_| current.log_line(&long)).collect();
        assert_eq!(lines.len(), MAX_LOG_LINES as usize + 1);
        assert!(lines[0].len() < MAX_LOG_LINE_CHARS + 20 && lines[0].ends_with("(cut)"));
        assert!(lines.last().unwrap().contains("dropped"));
        let total: usize = lines.iter().map(String::len).sum();
        assert!(total < 10_000, "{total} bytes of log for one decision");
    }

    /// A claim with a newline printed by a policy must not start a forged log line.
    #[test]
    fn control_characters_in_print_output_are_escaped() {
        let current = anonymous_current();
        let line = current
            .log_line("user alice\n2026-11-30T00:00:00Z  INFO portcullis::access: forged")
            .unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("alice\\n2026"), "{line}");
        assert_eq!(current.log_line("plain text é").unwrap(), "plain text é");
    }
}
