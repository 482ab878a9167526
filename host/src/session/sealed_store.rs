//! [`SealedStore`]: any [`SessionStore`] with its records sealed ([`SealingKeys`]) on the way in
//! and opened on the way out. The store below sees only sealed bytes; expiry stays its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::sealing::SealingKeys;
use super::store::{SessionStore, StoreError, UnixTime};

/// A store whose records are sealed at rest.
pub struct SealedStore {
    inner: Arc<dyn SessionStore>,
    keys: SealingKeys,
    /// Whether a record that does not open was reported (once: after a secret change, every
    /// record does not).
    reported: AtomicBool,
}

impl SealedStore {
    /// Seals what goes into `inner` with `keys`.
    pub fn new(inner: Arc<dyn SessionStore>, keys: SealingKeys) -> Self {
        SealedStore {
            inner,
            keys,
            reported: AtomicBool::new(false),
        }
    }

    /// The record in `sealed`, or `None` (no record: the user logs in again) when it does not
    /// open.
    fn open(&self, key: &[u8], sealed: Option<Vec<u8>>) -> Option<Vec<u8>> {
        let opened = self.keys.open(key, &sealed?);
        if opened.is_none() && !self.reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "a session record does not open with the session secrets configured (the secret changed, or the record was altered on disk); it counts as no session (that user logs in again). After a secret change, add the old one to session.previous_secret_files to keep the sessions it sealed"
            );
        }
        opened
    }
}

#[async_trait::async_trait]
impl SessionStore for SealedStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.open(key, self.inner.get(key).await?))
    }

    async fn put(&self, key: &[u8], value: &[u8], expires_at: UnixTime) -> Result<(), StoreError> {
        self.inner
            .put(key, &self.keys.seal(key, value), expires_at)
            .await
    }

    async fn put_new(
        &self,
        key: &[u8],
        value: &[u8],
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        self.inner
            .put_new(key, &self.keys.seal(key, value), expires_at)
            .await
    }

    async fn replace(
        &self,
        key: &[u8],
        value: &[u8],
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        self.inner
            .replace(key, &self.keys.seal(key, value), expires_at)
            .await
    }

    async fn take(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.open(key, self.inner.take(key).await?))
    }

    async fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.inner.remove(key).await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }

    async fn sweep(&self) -> Result<usize, StoreError> {
        self.inner.sweep().await
    }

    fn expires_records_itself(&self) -> bool {
        self.inner.expires_records_itself()
    }

    async fn check_setup(&self) -> Result<(), StoreError> {
        self.inner.check_setup().await
    }
}
