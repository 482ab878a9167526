//! [`SledStore`]: sessions in a sled database on disk; they survive restarts and `kill -9` once
//! flushed.
//!
//! Record layout: 8 bytes big-endian expiry, then the value. A record too short to hold the expiry
//! (corruption) reads as absent and is removed.

use std::path::Path;
use std::sync::Arc;

use super::store::{Clock, SessionStore, StoreError, UnixTime};

/// A [`SessionStore`] backed by sled.
pub struct SledStore {
    db: sled::Db,
    clock: Arc<dyn Clock>,
}

impl SledStore {
    /// Ends the message of an open refused because another process holds the database's lock.
    pub const IN_USE_HINT: &'static str = "is another Portcullis using it? One process per folder; `portcullis run --takeover` replaces a running one";

    /// Whether opening failed only because another process holds the database (it may let go:
    /// a Portcullis being replaced releases it when its drain ends).
    pub fn is_in_use(err: &StoreError) -> bool {
        err.0.ends_with(&format!("({})", Self::IN_USE_HINT))
    }

    /// Opens (or creates) the database in folder `path`. The folder is created private (`0700`);
    /// an existing one that group or others can enter is refused with the `chmod` to run, and the
    /// files in it are made private (`0600`) whatever the umask was when they were written.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        private_folder(path)?;
        let db = sled::Config::new().path(path).open().map_err(|err| {
            // sled reports its file lock held elsewhere as an I/O error of its own wording.
            let held = matches!(&err, sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("could not acquire lock"));
            if held {
                StoreError(format!(
                    "cannot open the session database at {}: another process holds it ({})",
                    path.display(),
                    Self::IN_USE_HINT
                ))
            } else {
                StoreError(format!(
                    "cannot open the session database at {}: {err} (is another Portcullis using it?)",
                    path.display()
                ))
            }
        })?;
        make_private(path)
            .map_err(|err| StoreError(format!("cannot make {} private: {err}", path.display())))?;
        Ok(SledStore { db, clock })
    }

    /// Splits a stored record; `None` for a corrupted one.
    fn decode(record: &[u8]) -> Option<(UnixTime, &[u8])> {
        let (expiry, value) = record.split_first_chunk::<8>()?;
        Some((u64::from_be_bytes(*expiry), value))
    }

    fn live(&self, key: &[u8], record: Option<sled::IVec>) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(record) = record else {
            return Ok(None);
        };
        match Self::decode(&record) {
            Some((expires_at, value)) if expires_at > self.clock.now() => Ok(Some(value.to_vec())),
            Some(_) => Ok(None),
            None => {
                tracing::warn!("dropping a corrupted session-store record");
                self.db.remove(key).map_err(io)?;
                Ok(None)
            }
        }
    }
}

/// Creates the store's folder private, or checks that an existing one is.
fn private_folder(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError(format!(
                    "the session folder {} can be entered by group or others (mode {mode:o}), and it holds everyone's sessions; run `chmod 700 {}`",
                    path.display(),
                    path.display()
                )));
            }
            Ok(())
        }
        // Not a folder: sled says so when it tries to open it.
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|err| {
                StoreError(format!(
                    "cannot create the session folder {}: {err}",
                    path.display()
                ))
            }),
        Err(err) => Err(StoreError(format!(
            "cannot read the session folder {}: {err}",
            path.display()
        ))),
    }
}

/// Takes group and other permissions off everything under `folder`.
fn make_private(folder: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        // `DirEntry::metadata` does not follow symlinks: a link planted in the folder is left
        // alone, and neither it nor what it points to is changed.
        let meta = entry.metadata()?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let private = if meta.is_dir() { 0o700 } else { 0o600 };
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(private))?;
        }
        if meta.is_dir() {
            make_private(&entry.path())?;
        }
    }
    Ok(())
}

/// A stored record: 8 bytes big-endian expiry, then the value.
fn encode(value: &[u8], expires_at: UnixTime) -> Vec<u8> {
    let mut record = Vec::with_capacity(8 + value.len());
    record.extend_from_slice(&expires_at.to_be_bytes());
    record.extend_from_slice(value);
    record
}

fn io(err: sled::Error) -> StoreError {
    StoreError(err.to_string())
}

#[async_trait::async_trait]
impl SessionStore for SledStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let record = self.db.get(key).map_err(io)?;
        self.live(key, record)
    }

    async fn put(&self, key: &[u8], value: &[u8], expires_at: UnixTime) -> Result<(), StoreError> {
        self.db.insert(key, encode(value, expires_at)).map_err(io)?;
        Ok(())
    }

    async fn put_new(
        &self,
        key: &[u8],
        value: &[u8],
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let record = encode(value, expires_at);
        // Compare-and-swap against what was read: absent, or a record whose expiry passed.
        loop {
            let current = self.db.get(key).map_err(io)?;
            let live = current
                .as_deref()
                .and_then(Self::decode)
                .is_some_and(|(current_expiry, _)| current_expiry > self.clock.now());
            if live {
                return Ok(false);
            }
            let swapped = self
                .db
                .compare_and_swap(key, current, Some(record.as_slice()))
                .map_err(io)?;
            if swapped.is_ok() {
                return Ok(true);
            }
        }
    }

    async fn replace(
        &self,
        key: &[u8],
        value: &[u8],
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let record = encode(value, expires_at);
        // Compare-and-swap against the record read: a concurrent remove makes the swap fail, and
        // the next read finds nothing to replace.
        loop {
            let Some(current) = self.db.get(key).map_err(io)? else {
                return Ok(false);
            };
            let live = Self::decode(&current)
                .is_some_and(|(current_expiry, _)| current_expiry > self.clock.now());
            if !live {
                return Ok(false);
            }
            let swapped = self
                .db
                .compare_and_swap(key, Some(&current), Some(record.as_slice()))
                .map_err(io)?;
            if swapped.is_ok() {
                return Ok(true);
            }
        }
    }

    async fn take(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let record = self.db.remove(key).map_err(io)?;
        self.live(key, record)
    }

    async fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.db.remove(key).map_err(io)?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // A flush waits for the disk: off the async worker threads.
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush().map_err(io))
            .await
            .map_err(|err| StoreError(format!("flush task failed: {err}")))??;
        Ok(())
    }

    async fn sweep(&self) -> Result<usize, StoreError> {
        // A sweep reads every record: off the async worker threads.
        let db = self.db.clone();
        let now = self.clock.now();
        tokio::task::spawn_blocking(move || sweep(&db, now))
            .await
            .map_err(|err| StoreError(format!("sweep task failed: {err}")))?
    }
}

/// Removes the records of `db` whose expiry is at or before `now`; returns how many.
fn sweep(db: &sled::Db, now: UnixTime) -> Result<usize, StoreError> {
    let mut removed = 0;
    for entry in db.iter() {
        let (key, record) = entry.map_err(io)?;
        let expired = SledStore::decode(&record).is_none_or(|(expires_at, _)| expires_at <= now);
        // Remove only if unchanged since read: a concurrent renewal must not be lost.
        if expired
            && db
                .compare_and_swap(&key, Some(&record), None as Option<&[u8]>)
                .map_err(io)?
                .is_ok()
        {
            removed += 1;
        }
    }
    Ok(removed)
}
