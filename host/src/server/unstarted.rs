//! Connections accepted that have not begun a request yet. At shutdown a worker stops accepting,
//! lets these send their first request (up to [`FIRST_REQUEST_GRACE`]), and only then tells its
//! connections to close: hyper closes a connection with no request under way at once, so a
//! client whose connection was accepted an instant before the stop would otherwise get the
//! connection closed under its first request, which no client retries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a worker waits at shutdown for accepted connections to begin their first request.
pub(super) const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// One worker's count of connections without a request yet.
#[derive(Clone, Default)]
pub(super) struct Unstarted(Arc<(AtomicUsize, Notify)>);

impl Unstarted {
    /// Counts a connection just accepted until its first request begins (or it ends).
    pub(super) fn enter(&self) -> FirstRequest {
        self.0.0.fetch_add(1, Ordering::SeqCst);
        FirstRequest(Arc::new(Mutex::new(Some(self.clone()))))
    }

    /// Resolves once no connection is waiting for its first request.
    pub(super) async fn none_left(&self) {
        loop {
            let notified = self.0.1.notified();
            if self.0.0.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    fn leave(&self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
        self.0.1.notify_waiters();
    }
}

/// A connection's place in [`Unstarted`], given up when its first request begins or when it is
/// dropped (the connection ended). Cheap to clone into a connection's service.
#[derive(Clone)]
pub(super) struct FirstRequest(Arc<Mutex<Option<Unstarted>>>);

impl FirstRequest {
    /// A request began on the connection.
    pub(super) fn began(&self) {
        let left = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(unstarted) = left {
            unstarted.leave();
        }
    }
}

impl Drop for FirstRequest {
    fn drop(&mut self) {
        // The last clone going away: the connection ended, begun or not.
        if Arc::strong_count(&self.0) == 1 {
            self.began();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_connections_until_their_first_request_or_their_end() {
        let unstarted = Unstarted::default();
        let first = unstarted.enter();
        let second = unstarted.enter();
        let in_service = first.clone();
        let waiting = tokio::spawn({
            let unstarted = unstarted.clone();
            async move { unstarted.none_left().await }
        });
        in_service.began();
        in_service.began();
        drop(first);
        assert!(!waiting.is_finished());
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("none left once both began or ended")
            .unwrap();
        assert_eq!(unstarted.0.0.load(Ordering::SeqCst), 0);
    }
}
