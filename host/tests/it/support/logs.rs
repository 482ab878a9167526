//! Captures the log output of the test process so tests can assert what was (and was not) logged.
//!
//! All integration tests share one process, so they share one global subscriber and one buffer:
//! a line another test logged must never satisfy an assertion. Each event is kept with the thread
//! that logged it, and a test reads only what it owns:
//! - [`Capture::own`]: what the test's own thread logged since [`capture`], and the proxy's worker
//!   threads it started afterwards (they log through the dispatcher of the thread that started
//!   them, here the test's own). Under `#[tokio::test]` (a `current_thread` runtime) that is
//!   everything its in-process proxy, provider and client did while serving its requests.
//! - [`events_with`]: events from threads the proxy starts itself (policy threads, the reload
//!   thread), found by something only that test uses, such as a path in its own temporary folder.
//! - [`text`]: everything, for "never logged" checks (token material, a planted cookie value),
//!   which only get stronger with more lines.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;

/// Every event logged in this process, in order, with the thread that logged it.
static EVENTS: OnceLock<Mutex<Vec<(ThreadId, String)>>> = OnceLock::new();

/// One event's formatted text; kept when the formatter is done with it.
struct Sink {
    thread: ThreadId,
    text: Vec<u8>,
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(events) = EVENTS.get() {
            let text = String::from_utf8_lossy(&self.text).into_owned();
            events.lock().unwrap().push((self.thread, text));
        }
    }
}

/// What one test captures: the events its thread (and the workers it starts) log from now on.
pub struct Capture {
    thread: ThreadId,
    from: usize,
    /// This thread's own subscriber, attributing events to it wherever they are logged.
    _scoped: tracing::subscriber::DefaultGuard,
}

/// A subscriber writing every event into [`EVENTS`], attributed to `owner` (`None`: the thread
/// that logs it).
fn subscriber(owner: Option<ThreadId>) -> impl tracing::Subscriber + Send + Sync {
    // Every test's events land here once one test captures, the Wasm tests' too: the
    // compiler's debug output (cranelift, wasmtime; 90% of all lines) is left out.
    let filter = "debug,hyper=info,h2=info,reqwest=info,rustls=info,sled=info,\
                  cranelift=info,wasmtime=info,regalloc2=info";
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        // Called on the thread that logs, once per event.
        .with_writer(move || Sink {
            thread: owner.unwrap_or_else(|| std::thread::current().id()),
            text: Vec::new(),
        })
        .finish()
}

/// Installs the capturing subscriber (once per process) and starts a capture for the calling
/// test's thread.
pub fn capture() -> Capture {
    let events = EVENTS.get_or_init(|| {
        tracing::subscriber::set_global_default(subscriber(None))
            .expect("no other subscriber in the test process");
        Mutex::new(Vec::new())
    });
    let thread = std::thread::current().id();
    Capture {
        thread,
        from: events.lock().unwrap().len(),
        _scoped: tracing::subscriber::set_default(subscriber(Some(thread))),
    }
}

impl Capture {
    /// What the capturing test's thread logged since [`capture`], one event per line.
    pub fn own(&self) -> String {
        events()
            .lock()
            .unwrap()
            .iter()
            .skip(self.from)
            .filter(|(thread, _)| *thread == self.thread)
            .map(|(_, text)| text.as_str())
            .collect()
    }
}

/// The events logged by any thread whose text contains `owned`: something only the asking test
/// uses, such as its own temporary folder or its provider's address.
pub fn events_with(owned: &str) -> Vec<String> {
    events()
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, text)| text.contains(owned))
        .map(|(_, text)| text.clone())
        .collect()
}

/// Everything logged in this process so far, by every test.
pub fn text() -> String {
    events()
        .lock()
        .unwrap()
        .iter()
        .map(|(_, text)| text.as_str())
        .collect()
}

fn events() -> &'static Mutex<Vec<(ThreadId, String)>> {
    EVENTS.get().expect("logs::capture() first")
}
