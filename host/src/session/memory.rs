//! [`MemoryStore`]: sessions in a hash map. Lost on restart; for tests and trials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::store::{Clock, SessionStore, StoreError, UnixTime};

/// Key → (expiry, value).
type Records = HashMap<Vec<u8>, (UnixTime, Vec<u8>)>;

/// An in-memory [`SessionStore`].
pub struct MemoryStore {
    records: Mutex<Records>,
    clock: Arc<dyn Clock>,
}

impl MemoryStore {
    /// An empty store reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryStore {
            records: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        // A panic while holding the lock cannot leave a half-written map: every operation is a
        // single map call. Keep serving.
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl SessionStore for MemoryStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .records()
            .get(key)
            .filter(|(expires_at, _)| *expires_at > now)
            .map(|(_, value)| value.clone()))
    }

    async fn put(&self, key: &[u8], value: &[u8], expires_at: UnixTime) -> Result<(), StoreError> {
        self.records()
            .insert(key.to_vec(), (expires_at, value.to_vec()));
        Ok(())
    }

    async fn put_new(
        &self,
        key: &[u8],
        value: &[u8],
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut records = self.records();
        if records.get(key).is_some_and(|record| record.0 > now) {
            return Ok(false);
        }
        records.insert(key.to_vec(), (expires_at, value.to_vec()));
        Ok(true)
    }

    async fn replace(
        &self,
        key: &[u8],
        value: &[u8],
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut records = self.records();
        match records.get_mut(key) {
            Some(record) if record.0 > now => {
                *record = (expires_at, value.to_vec());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn take(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .records()
            .remove(key)
            .filter(|(expires_at, _)| *expires_at > now)
            .map(|(_, value)| value))
    }

    async fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.records().remove(key);
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn sweep(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut records = self.records();
        let before = records.len();
        records.retain(|_, (expires_at, _)| *expires_at > now);
        Ok(before - records.len())
    }
}
