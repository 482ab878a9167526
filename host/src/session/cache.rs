//! [`SessionCache`]: the sessions this instance read or wrote lately, in front of the store.
//!
//! Bounded (`cache_entries`), and each entry used for at most `cache_lifetime`: with a store
//! shared by several instances, that is how long a change another instance made (a logout) takes
//! to reach this one. A deletion here is never undone by a read or write that raced it (see
//! [`SessionCache::epoch`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Session;

/// Cached sessions by store key.
pub(super) struct SessionCache {
    entries: Mutex<HashMap<Vec<u8>, Cached>>,
    capacity: usize,
    lifetime: Duration,
    /// Counts deletions, so a read or write that raced one does not put the deleted session back
    /// (bumped under the entries' lock, after the store removed the record).
    deletions: AtomicU64,
}

/// A session in the cache, and when it was read or written.
struct Cached {
    session: Arc<Session>,
    at: Instant,
}

/// What [`SessionCache::epoch`] returns: the deletions seen before a store read or write began.
#[derive(Clone, Copy)]
pub(super) struct Epoch(u64);

impl SessionCache {
    /// An empty cache of at most `capacity` sessions, each used for at most `lifetime`.
    pub(super) fn new(capacity: usize, lifetime: Duration) -> Self {
        SessionCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
            lifetime,
            deletions: AtomicU64::new(0),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Cached>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The session under `key`, if it was read or written within the lifetime.
    pub(super) fn get(&self, key: &[u8]) -> Option<Arc<Session>> {
        let entries = self.entries();
        let cached = entries.get(key)?;
        (cached.at.elapsed() < self.lifetime).then(|| cached.session.clone())
    }

    /// Taken before a store read or write whose result is to be cached.
    pub(super) fn epoch(&self) -> Epoch {
        Epoch(self.deletions.load(Ordering::SeqCst))
    }

    /// Caches what was read or written since `epoch`, unless a deletion came in between (then
    /// the entry is dropped: the store is the truth).
    pub(super) fn insert(&self, epoch: Epoch, key: Vec<u8>, session: Arc<Session>) {
        let mut entries = self.entries();
        if self.deletions.load(Ordering::SeqCst) != epoch.0 {
            entries.remove(&key);
            return;
        }
        if entries.len() >= self.capacity
            && !entries.contains_key(&key)
            && let Some(evicted) = entries.keys().next().cloned()
        {
            entries.remove(&evicted);
        }
        if self.capacity > 0 {
            let at = Instant::now();
            entries.insert(key, Cached { session, at });
        }
    }

    /// Forgets `key` (the store no longer has it, or has something newer).
    pub(super) fn forget(&self, key: &[u8]) {
        self.entries().remove(key);
    }

    /// Forgets `key` for good after the store deleted it: a read or write that began before
    /// does not put it back.
    pub(super) fn deleted(&self, key: &[u8]) {
        let mut entries = self.entries();
        self.deletions.fetch_add(1, Ordering::SeqCst);
        entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Arc<Session> {
        Arc::new(serde_json::from_str(r#"{"claims": {"sub": "alice"}, "id_token": "", "access_token": "", "refresh_token": null, "access_expires_at": null, "created_at": 0, "last_seen": 0, "cookie_issued_at": 0}"#).unwrap())
    }

    #[test]
    fn an_entry_is_used_for_its_lifetime_only() {
        // Half a second: the first look comes microseconds after the insert, however busy the
        // machine.
        let cache = SessionCache::new(10, Duration::from_millis(500));
        cache.insert(cache.epoch(), b"k".to_vec(), session());
        assert!(cache.get(b"k").is_some());
        std::thread::sleep(Duration::from_millis(600));
        assert!(
            cache.get(b"k").is_none(),
            "past its lifetime: read the store"
        );
    }

    #[test]
    fn a_deletion_is_not_undone_by_a_read_that_began_before_it() {
        let cache = SessionCache::new(10, Duration::from_secs(60));
        let before = cache.epoch();
        cache.deleted(b"k");
        cache.insert(before, b"k".to_vec(), session());
        assert!(cache.get(b"k").is_none());
        cache.insert(cache.epoch(), b"k".to_vec(), session());
        assert!(cache.get(b"k").is_some(), "a read after it is cached");
    }

    #[test]
    fn it_holds_at_most_its_capacity() {
        let cache = SessionCache::new(2, Duration::from_secs(60));
        for key in [b"a", b"b", b"c"] {
            cache.insert(cache.epoch(), key.to_vec(), session());
        }
        let held = [b"a", b"b", b"c"]
            .iter()
            .filter(|key| cache.get(&key[..]).is_some())
            .count();
        assert_eq!(held, 2);
        let none = SessionCache::new(0, Duration::from_secs(60));
        none.insert(none.epoch(), b"a".to_vec(), session());
        assert!(none.get(b"a").is_none(), "cache_entries = 0: no cache");
    }
}
