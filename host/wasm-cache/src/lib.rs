//! The on-disk cache of compiled Wasm components, so a restart or a reload does not recompile.
//!
//! wasmtime can only load compiled code back through an `unsafe` call (`Component::deserialize`):
//! it trusts the bytes to be its own output, unchanged. That call is why this is a crate of its own
//! (the rest of the workspace forbids `unsafe`), and this crate's whole job is to make the trust
//! hold — only files this code wrote itself are ever deserialized:
//!
//! - the cache folder is created `0700`, and refused when another user owns it or when it is
//!   writable by group or others (another account could otherwise plant code for us to run);
//! - an entry is written to a temporary file, synced and renamed into place, so a crash never
//!   leaves half an entry under a real name;
//! - every entry starts with [`MAGIC`] and a SHA-256 over its own name and what follows, checked
//!   before wasmtime sees a byte, so a truncated, corrupted, foreign or renamed file is recompiled,
//!   never loaded;
//! - entries are opened without following symlinks, and owner, mode and type are checked on the
//!   opened file itself, the one that is then read;
//! - an entry's name is the SHA-256 of the component's `.wasm` bytes and a hash of the engine
//!   (wasmtime's version and every compilation setting, `Engine::precompile_compatibility_hash`),
//!   so an entry is only ever looked up by the engine that could have written it; wasmtime checks
//!   that compatibility again when loading.
//!
//! Anything unexpected (unreadable, wrong digest, refused by wasmtime) is treated as a miss: the
//! component is compiled as if there were no cache, and the entry is rewritten.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The first bytes of every entry (the format's version is in it).
pub const MAGIC: &[u8; 16] = b"portcullis-cw1\n\0";
/// Entries end in this.
const EXTENSION: &str = "cwasm";

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Loaded from an entry written earlier.
    Disk,
    /// Compiled now (and written to the cache, if that worked).
    Compiled,
}

/// Why a cache folder cannot be used.
#[derive(Debug)]
pub struct OpenError {
    /// The folder.
    pub dir: PathBuf,
    /// What is wrong and what to do.
    pub reason: String,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wasm cache {}: {}", self.dir.display(), self.reason)
    }
}

impl std::error::Error for OpenError {}

/// A cache folder checked for use with one engine.
#[derive(Clone)]
pub struct CompiledCache {
    dir: PathBuf,
    engine: Engine,
    /// Hex of the engine's compatibility hash: the second half of every entry name.
    engine_key: String,
    /// Our user id, as the file system reports it for a file we created.
    uid: u32,
}

impl std::fmt::Debug for CompiledCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledCache")
            .field("dir", &self.dir)
            .field("engine_key", &self.engine_key)
            .finish_non_exhaustive()
    }
}

impl CompiledCache {
    /// Opens (creating it `0700` if missing) the cache folder `dir` for `engine`. Entries written
    /// by other engine versions or settings are removed: they can never be used again.
    pub fn open(dir: &Path, engine: &Engine) -> Result<Self, OpenError> {
        let fail = |reason: String| OpenError {
            dir: dir.to_owned(),
            reason,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|err| fail(format!("cannot create it: {err}")))?;
        let uid = own_uid(dir).map_err(|err| fail(format!("cannot write in it: {err}")))?;
        let meta = fs::metadata(dir).map_err(|err| fail(format!("cannot read it: {err}")))?;
        if meta.uid() != uid {
            return Err(fail(format!(
                "owned by uid {}, not by this process (uid {uid}); use a folder of our own",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(fail(format!(
                "writable by group or others (mode {:o}); run `chmod go-w {}`",
                meta.mode() & 0o777,
                dir.display()
            )));
        }
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let cache = CompiledCache {
            dir: dir.to_owned(),
            engine: engine.clone(),
            engine_key: format!("{:016x}", hasher.finish()),
            uid,
        };
        cache.remove_stale_entries();
        Ok(cache)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The component compiled from `wasm`: from its entry when there is a good one, otherwise
    /// compiled now and written to the cache (a failed write is not an error: the cache is only
    /// an optimisation). Compilation errors are wasmtime's.
    pub fn get_or_compile(&self, wasm: &[u8]) -> wasmtime::Result<(Component, Source)> {
        let name = self.entry_name(wasm);
        let path = self.dir.join(&name);
        if let Some(component) = self.load(&path, &name) {
            return Ok((component, Source::Disk));
        }
        let component = Component::new(&self.engine, wasm)?;
        if let Ok(compiled) = component.serialize() {
            let _ = self.store(&path, &name, &compiled);
        }
        Ok((component, Source::Compiled))
    }

    fn entry_name(&self, wasm: &[u8]) -> String {
        let wasm_hash = Sha256::digest(wasm);
        format!("{}-{}.{EXTENSION}", hex(&wasm_hash), self.engine_key)
    }

    /// The entry `name` at `path`, if it is ours, intact, and accepted by wasmtime; a bad entry is
    /// removed.
    fn load(&self, path: &Path, name: &str) -> Option<Component> {
        let entry = self.read_own_file(path);
        let component = entry
            .as_deref()
            .and_then(|entry| verified_payload(entry, name))
            .and_then(|payload| self.deserialize(payload).ok());
        if component.is_none() {
            let _ = fs::remove_file(path);
        }
        component
    }

    /// The bytes of `path` if it is a regular file owned by us that nobody else can write —
    /// checked on the opened file (no symlink followed), which is the one read.
    fn read_own_file(&self, path: &Path) -> Option<Vec<u8>> {
        use std::io::Read;
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.uid() != self.uid || meta.mode() & 0o022 != 0 {
            return None;
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// Loads compiled code that [`Self::load`] has verified to be an entry this crate wrote.
    #[allow(unsafe_code)]
    fn deserialize(&self, verified_payload: &[u8]) -> wasmtime::Result<Component> {
        // SAFETY: wasmtime requires the bytes to come from its own `serialize` for a compatible
        // engine, unmodified. `verified_payload` is the payload of an entry that (1) sits in a
        // folder only this user can write (checked in `open`), (2) was opened without following
        // a symlink and, as opened, is a regular file owned by this user and not writable by
        // others, (3) carries our magic and a SHA-256 over its name and exactly these bytes,
        // written by `store` right after `Component::serialize`, and (4) is named after this
        // engine's compatibility hash; wasmtime also rechecks the compatibility.
        unsafe { Component::deserialize(&self.engine, verified_payload) }
    }

    /// Writes an entry: temporary file, sync, rename.
    fn store(&self, path: &Path, name: &str, compiled: &[u8]) -> std::io::Result<()> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let temporary = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(MAGIC)?;
            file.write_all(&entry_digest(name, compiled))?;
            file.write_all(compiled)?;
            file.sync_all()?;
            fs::rename(&temporary, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written
    }

    /// Removes entries of other engines and temporary files left by a crash.
    fn remove_stale_entries(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let suffix = format!("-{}.{EXTENSION}", self.engine_key);
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let stale_entry = name.ends_with(EXTENSION) && !name.ends_with(&suffix);
            let old_temporary = name.starts_with(".tmp-")
                && entry
                    .metadata()
                    .and_then(|meta| meta.modified())
                    .is_ok_and(|modified| modified.elapsed().unwrap_or_default().as_secs() > 3600);
            if stale_entry || old_temporary {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The digest an entry carries: over its name (which holds the `.wasm` hash and the engine key)
/// and its payload, so an entry copied under another name does not verify.
fn entry_digest(name: &str, payload: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((name.len() as u64).to_be_bytes());
    hash.update(name.as_bytes());
    hash.update(payload);
    hash.finalize().into()
}

/// The payload of the entry `name` whose magic and digest check out.
fn verified_payload<'a>(entry: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let rest = entry.strip_prefix(MAGIC.as_slice())?;
    let (digest, payload) = rest.split_at_checked(32)?;
    (entry_digest(name, payload).as_slice() == digest).then_some(payload)
}

/// The uid the file system gives files this process creates in `dir`. The probe is created new
/// (`O_EXCL`: a planted file or symlink of that name makes this fail rather than be written).
fn own_uid(dir: &Path) -> std::io::Result<u32> {
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let probe = dir.join(format!(
        ".probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)?;
    let uid = file.metadata().map(|meta| meta.uid());
    drop(file);
    let _ = fs::remove_file(&probe);
    uid
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The smallest valid component: the header and no sections.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn engine() -> Engine {
        Engine::new(wasmtime::Config::new().wasm_component_model(true)).unwrap()
    }

    fn entries(dir: &Path) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == EXTENSION))
            .collect();
        paths.sort();
        paths
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_restart_loads_what_an_earlier_process_compiled() {
        let dir = tempfile::tempdir().unwrap();
        let first = CompiledCache::open(dir.path(), &engine()).unwrap();
        assert_eq!(
            first.get_or_compile(EMPTY_COMPONENT).unwrap().1,
            Source::Compiled
        );
        let restarted = CompiledCache::open(dir.path(), &engine()).unwrap();
        assert_eq!(
            restarted.get_or_compile(EMPTY_COMPONENT).unwrap().1,
            Source::Disk
        );
        let [entry] = entries(dir.path()).try_into().unwrap();
        let mode = fs::metadata(&entry).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "entries are private");
    }

    #[test]
    fn a_missing_folder_is_created_private() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("a/b");
        CompiledCache::open(&dir, &engine()).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_corrupted_entry_is_recompiled_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompiledCache::open(dir.path(), &engine()).unwrap();
        cache.get_or_compile(EMPTY_COMPONENT).unwrap();
        let [entry] = entries(dir.path()).try_into().unwrap();
        let mut bytes = fs::read(&entry).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(&entry, &bytes).unwrap();
        assert_eq!(
            cache.get_or_compile(EMPTY_COMPONENT).unwrap().1,
            Source::Compiled
        );
        assert_eq!(
            cache.get_or_compile(EMPTY_COMPONENT).unwrap().1,
            Source::Disk
        );
    }

    #[test]
    fn a_truncated_entry_is_recompiled() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompiledCache::open(dir.path(), &engine()).unwrap();
        cache.get_or_compile(EMPTY_COMPONENT).unwrap();
        let [entry] = entries(dir.path()).try_into().unwrap();
        let bytes = fs::read(&entry).unwrap();
        fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(
            cache.get_or_compile(EMPTY_COMPONENT).unwrap().1,
            Source::Compiled
        );
    }

    #[test]
    fn a_file_planted_under_an_entry_name_is_never_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompiledCache::open(dir.path(), &engine()).unwrap();
        cache.get_or_compile(EMPTY_COMPONENT).unwrap();
        let [entry] = entries(dir.path()).try_into().unwrap();
        // Raw wasmtime output, without our header: what someone copying a `.cwasm` in would do.
        let raw = Component::new(&engine(), EMPTY_COMPONENT)
            .unwrap()
            .serialize()
            .unwrap();
        fs::write(&entry, raw).unwrap();
        assert_eq!(
            cache.get_or_compile(EMPTY_COMPONENT).unwrap().1,
            Source::Compiled
        );
    }

    #[test]
    fn an_entry_behind_a_symlink_or_under_another_name_is_never_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompiledCache::open(dir.path(), &engine()).unwrap();
        cache.get_or_compile(EMPTY_COMPONENT).unwrap();
        let [entry] = entries(dir.path()).try_into().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::rename(&entry, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
        assert_eq!(
            cache.get_or_compile(EMPTY_COMPONENT).unwrap().1,
            Source::Compiled
        );
        // A genuine entry copied under the name of another module does not verify either.
        let other_module = b"another module"; // only its entry name is needed
        let other_name = cache.entry_name(other_module);
        fs::copy(&entry, dir.path().join(&other_name)).unwrap();
        assert!(
            cache
                .load(&dir.path().join(&other_name), &other_name)
                .is_none()
        );
    }

    #[test]
    fn a_planted_probe_symlink_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        for n in 0..4 {
            let probe = dir
                .path()
                .join(format!(".probe-{}-{n}", std::process::id()));
            let _ = std::os::unix::fs::symlink(&victim, probe);
        }
        let _ = CompiledCache::open(dir.path(), &engine());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn an_entry_others_can_write_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompiledCache::open(dir.path(), &engine()).unwrap();
        cache.get_or_compile(EMPTY_COMPONENT).unwrap();
        let [entry] = entries(dir.path()).try_into().unwrap();
        chmod(&entry, 0o666);
        assert_eq!(
            cache.get_or_compile(EMPTY_COMPONENT).unwrap().1,
            Source::Compiled
        );
    }

    #[test]
    fn a_folder_others_can_write_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o777);
        let err = CompiledCache::open(dir.path(), &engine()).unwrap_err();
        assert!(err.to_string().contains("chmod go-w"), "{err}");
    }

    #[test]
    fn another_engine_setting_never_uses_the_entry_and_stale_entries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CompiledCache::open(dir.path(), &engine()).unwrap();
        cache.get_or_compile(EMPTY_COMPONENT).unwrap();
        let other_engine = Engine::new(
            wasmtime::Config::new()
                .wasm_component_model(true)
                .epoch_interruption(true),
        )
        .unwrap();
        let other = CompiledCache::open(dir.path(), &other_engine).unwrap();
        assert!(
            entries(dir.path()).is_empty(),
            "the first engine's entry is stale"
        );
        assert_eq!(
            other.get_or_compile(EMPTY_COMPONENT).unwrap().1,
            Source::Compiled
        );
        assert_eq!(
            other.get_or_compile(EMPTY_COMPONENT).unwrap().1,
            Source::Disk
        );
    }
}
