//! The session store contract: opaque bytes with an expiry, under opaque keys.
//!
//! Backends know nothing about sessions, cookies or tokens; [`super::SessionManager`] owns all of
//! that. Every backend passes the one conformance suite in `conformance.rs`, driven by a
//! [`ManualClock`] so expiry is tested without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub type UnixTime = u64;

/// The time source of a store and of the manager. Injected so tests can move time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> UnixTime;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: UnixTime) -> Self {
        ManualClock(AtomicU64::new(now))
    }

    /// Moves the clock forward.
    pub fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// A store operation failed (I/O, a locked database). Never carries record content.
#[derive(Debug, thiserror::Error)]
#[error("session store: {0}")]
pub struct StoreError(pub String);

/// Bytes with an expiry. A record whose expiry has passed is gone for every reader, whether or not
/// a sweep has removed it yet.
///
/// Async because a store may be across the network (Redis); local stores answer at once.
#[async_trait::async_trait]
pub trait SessionStore: Send + Sync {
    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` under `key` until `expires_at`, replacing what was there.
    async fn put(&self, key: &[u8], value: &[u8], expires_at: UnixTime) -> Result<(), StoreError>;
    /// Stores `value` under `key` only when no live record is there, and says whether it did.
    /// Atomic: of two concurrent calls for one key, each with its own value, at most one succeeds
    /// (a lease lock). A store across the network may also say yes to the very record it holds
    /// (the same call sent again after its reply was lost).
    async fn put_new(
        &self,
        key: &[u8],
        value: &[u8],
        expires_at: UnixTime,
    ) -> Result<bool, StoreError>;
    /// Replaces the value under `key` only while a live record is there, and says whether it did.
    /// Atomic against [`remove`](Self::remove) and [`take`](Self::take): once a record is removed
    /// no `replace` brings it back (a refresh finishing after a logout must not revive the
    /// session).
    async fn replace(
        &self,
        key: &[u8],
        value: &[u8],
        expires_at: UnixTime,
    ) -> Result<bool, StoreError>;
    /// Removes `key` and returns its value if it was present and not expired. Atomic: of two
    /// concurrent takes of one key, at most one gets the value (single-use login states).
    async fn take(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Removes `key` (no error when absent).
    async fn remove(&self, key: &[u8]) -> Result<(), StoreError>;
    /// Makes every completed write durable (a no-op for memory, and for Redis, whose writes are
    /// as durable as its persistence settings make them once acknowledged).
    async fn flush(&self) -> Result<(), StoreError>;
    /// Removes expired records; returns how many. A store whose backend expires records by
    /// itself (Redis) removes none here: see [`Self::expires_records_itself`].
    async fn sweep(&self) -> Result<usize, StoreError>;
    /// Whether the backend drops expired records by itself (no sweeper needed).
    fn expires_records_itself(&self) -> bool {
        false
    }
    /// Checks what the backend needs beyond the record operations a probe makes (Redis: that its
    /// scripts can be loaded, which a probe cannot see while Redis still has them cached).
    async fn check_setup(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
