//! Captures this test binary's log output so tests can assert what was (and was not) logged.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once per test binary).
pub fn capture() {
    BUFFER.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,h2=info,reqwest=info,rustls=info,sled=info")
            .with_ansi(false)
            .with_writer(move || Sink(writer.clone()))
            .init();
        buffer
    });
}

/// Everything logged so far by this test binary.
pub fn text() -> String {
    let buffer = BUFFER.get().expect("logs::capture() first");
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}
