//! Idle client connections are closed: a connection with no request in flight that has sent and
//! received nothing for `server.connection_idle_timeout` is dropped. Without this, a client that
//! connects and stays silent (or keeps an HTTP/2 connection open with no streams) would hold one
//! of the `server.max_connections` places for ever; a few thousand such sockets would lock
//! everyone else out.
//!
//! Idleness is counted in requests, not bytes: [`Activity::request`] marks a request in flight
//! from its headers until its response body is done with (a slow upstream, a long upload or
//! download is not idleness). Bytes do not count: an HTTP/2 client sending a PING every few
//! seconds, or a slowloris trickling header bytes, is still idle.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::response::{BoxError, ProxyBody};

/// What a connection has been doing: when its last request started or ended, and how many are
/// open.
pub(super) struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` of the last request's start or end (0: none yet).
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

/// A request in flight on a connection; the connection is not idle while one exists.
pub(super) struct InFlight(Arc<Activity>);

/// A response body that keeps its request [`InFlight`] until it is sent or dropped. (A wrapper of
/// its own rather than `map_frame` + a box: one allocation and one indirection less per response.)
pub(super) struct CountedBody {
    body: ProxyBody,
    _in_flight: InFlight,
}

impl CountedBody {
    pub(super) fn new(body: ProxyBody, in_flight: InFlight) -> Self {
        CountedBody {
            body,
            _in_flight: in_flight,
        }
    }
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Activity {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub(super) fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        InFlight(self.clone())
    }

    /// Resolves once the connection has been idle for `limit`: no request in flight, and none
    /// started or ended within it.
    pub(super) async fn idle_for(&self, limit: Duration) {
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        loop {
            let idle_ms = if self.in_flight.load(Ordering::SeqCst) > 0 {
                0
            } else {
                self.now_ms()
                    .saturating_sub(self.last_ms.load(Ordering::Relaxed))
            };
            if idle_ms >= limit_ms {
                return;
            }
            tokio::time::sleep(Duration::from_millis(limit_ms - idle_ms)).await;
        }
    }
}
