//! What starts a reload: file-system events on everything the config reads, and SIGHUP.
//!
//! The watcher watches the *folders* of those files (and their parents), not the files: editors
//! that save by writing a new file and renaming it over the old one, Kubernetes ConfigMaps that
//! swap a `..data` symlink, files deleted then created again, and a folder replaced by another all
//! show up as events there, where a watch on the file itself would be lost with its inode. A folder
//! whose inode changed is watched again. Events are debounced (a quiet [`QUIET`] after the last
//! one, at most [`MAX_DELAY`]); then the files' contents are hashed and a reload runs only when one
//! changed since the last attempt — so a change that failed is tried again when a file changes
//! again, not in a loop. After each attempt the set of files is read again from the config, so a
//! newly named policy is watched too (even before it exists), and hashed once more in case it
//! appeared while the reload ran. An event queue overflow or a watcher error counts as a change.
//!
//! All of this runs on its own thread: hashing files, resolving paths and (un)watching block, and
//! must not stall the runtime serving requests. SIGHUP works even when no watcher can be created
//! (inotify instance limits are low on some hosts).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

use super::{Reloader, Trigger};
use crate::config;

/// A reload waits for this long without events, so a burst of writes is read once, complete.
pub const QUIET: Duration = Duration::from_millis(50);
/// …but never longer than this after the first event of a burst.
pub const MAX_DELAY: Duration = Duration::from_millis(500);

/// Content hashes of the watched files (`None`: missing or unreadable).
type Fingerprints = BTreeMap<PathBuf, Option<[u8; 32]>>;

/// The contents of the config and the files it names, taken *before* loading the config: a change
/// made while the proxy starts is then seen as a change, not mistaken for what is served.
pub struct Baseline(Fingerprints);

impl Baseline {
    /// Hashes `config_path` and every file it names now.
    pub fn take(config_path: &Path) -> Self {
        Baseline(fingerprints(&config::referenced_files(config_path)))
    }
}

/// Reloads from `config_path` on SIGHUP and whenever the config or a file it names
/// changes, until the process ends. `baseline` is what the served config was loaded from. Must be
/// called inside the tokio runtime (the reloads run on it). Without a file watcher (logged),
/// SIGHUP still works.
pub fn spawn(reloader: Arc<Reloader>, config_path: PathBuf, baseline: Baseline) {
    let (triggers, received) = mpsc::channel();
    // First, so that SIGHUP never falls back to its default action (ending the process).
    tokio::spawn(forward_sighup(triggers.clone()));
    let names = WatchedNames::default();
    let filter = names.clone();
    let sender = triggers.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            // A watcher error or a queue overflow may hide anything: look.
            Err(_) => true,
            // Reads (ours included: hashing a file opens it) change nothing.
            Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => false,
            Ok(event) => {
                event.need_rescan()
                    || event.paths.is_empty()
                    || event.paths.iter().any(|path| filter.matches(path))
            }
        };
        if relevant {
            let _ = sender.send(Trigger::FileChange);
        }
    });
    let watching = match watcher {
        Ok(watcher) => Some(Watching {
            watcher,
            names,
            folders: HashMap::new(),
        }),
        Err(err) => {
            tracing::error!(error = %err, "cannot watch files for changes; reload with SIGHUP");
            None
        }
    };
    // Whatever changed since the baseline was taken is reloaded right away.
    let _ = triggers.send(Trigger::FileChange);
    let runtime = tokio::runtime::Handle::current();
    let thread = WatchThread {
        reloader,
        config_path,
        watching,
        last_attempted: baseline.0,
        triggers,
    };
    let spawned = std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || thread.run(&runtime, received));
    if let Err(err) = spawned {
        tracing::error!(error = %err, "cannot start the reload thread; changes need a restart");
    }
}

async fn forward_sighup(triggers: Sender<Trigger>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGHUP; reloads come from file changes only");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading");
        if triggers.send(Trigger::Signal).is_err() {
            return;
        }
    }
}

/// The reload thread's state.
struct WatchThread {
    reloader: Arc<Reloader>,
    config_path: PathBuf,
    watching: Option<Watching>,
    /// The files' contents at the last attempt (or at start).
    last_attempted: Fingerprints,
    /// To trigger ourselves when a file appeared during a reload.
    triggers: Sender<Trigger>,
}

impl WatchThread {
    fn run(mut self, runtime: &tokio::runtime::Handle, received: Receiver<Trigger>) {
        while let Ok(first) = received.recv() {
            let Some(trigger) = debounce(first, &received) else {
                return;
            };
            let current = fingerprints(&config::referenced_files(&self.config_path));
            if trigger == Trigger::Signal || current != self.last_attempted {
                self.last_attempted = current;
                runtime.block_on(self.reloader.reload(&self.config_path, trigger));
            }
            // The config may name other files now (or, after a failed attempt, files that do not
            // exist yet), and folders may have been replaced: watch what is there now.
            let files = config::referenced_files(&self.config_path);
            if let Some(watching) = &mut self.watching {
                watching.update(&files);
            }
            // A file that changed while the reload ran, before its folder or name was watched,
            // sent no event we kept: compare once more.
            if fingerprints(&files) != self.last_attempted {
                let _ = self.triggers.send(Trigger::FileChange);
            }
        }
    }
}

/// Waits until events stop for [`QUIET`] (at most [`MAX_DELAY`]); a SIGHUP in the burst wins.
/// `None` when the channel closed.
fn debounce(first: Trigger, received: &Receiver<Trigger>) -> Option<Trigger> {
    let mut trigger = first;
    let give_up = Instant::now() + MAX_DELAY;
    loop {
        let now = Instant::now();
        if now >= give_up {
            return Some(trigger);
        }
        match received.recv_timeout(QUIET.min(give_up - now)) {
            Ok(Trigger::Signal) => trigger = Trigger::Signal,
            Ok(Trigger::FileChange | Trigger::InProcess) => {}
            Err(RecvTimeoutError::Timeout) => return Some(trigger),
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// The watcher and what it watches.
struct Watching {
    watcher: notify::RecommendedWatcher,
    names: WatchedNames,
    /// Watched folders and the (device, inode) each had when its watch was added.
    folders: HashMap<PathBuf, (u64, u64)>,
}

impl Watching {
    /// Watches the folders of `files` (and of their symlink targets) and those folders' parents,
    /// re-watches a folder that was replaced, and drops watches no longer needed.
    fn update(&mut self, files: &[PathBuf]) {
        let mut folders = HashSet::new();
        for file in files {
            let target = std::fs::canonicalize(file).ok();
            for path in std::iter::once(file).chain(target.as_ref()) {
                let folder = folder_of(path);
                // The parent sees the folder itself being replaced or created.
                if let Some(parent) = folder.parent().filter(|p| !p.as_os_str().is_empty()) {
                    folders.insert(parent.to_owned());
                }
                folders.insert(folder);
            }
        }
        self.names.set(files, &folders);
        let stale: Vec<PathBuf> = self
            .folders
            .iter()
            .filter(|(folder, identity)| {
                !folders.contains(*folder) || folder_identity(folder) != Some(**identity)
            })
            .map(|(folder, _)| folder.clone())
            .collect();
        for folder in stale {
            let _ = self.watcher.unwatch(&folder);
            self.folders.remove(&folder);
        }
        for folder in folders {
            if self.folders.contains_key(&folder) {
                continue;
            }
            let Some(identity) = folder_identity(&folder) else {
                continue; // not there (yet): its parent's watch will see it appear
            };
            match self.watcher.watch(&folder, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.folders.insert(folder, identity);
                }
                Err(err) => tracing::warn!(
                    folder = %folder.display(),
                    error = %err,
                    "cannot watch for changes; use SIGHUP to reload what is in it"
                ),
            }
        }
    }
}

/// File and folder names whose events matter: other files in the same folders (a log file next to
/// the config, say) change all the time and must not cost a look.
#[derive(Clone, Default)]
struct WatchedNames(Arc<Mutex<HashSet<OsString>>>);

impl WatchedNames {
    fn matches(&self, path: &Path) -> bool {
        let Some(name) = path.file_name() else {
            return true;
        };
        // Kubernetes' atomic writer swaps `..data` (and writes `..<timestamp>` folders).
        name.as_encoded_bytes().starts_with(b"..")
            || self
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(name)
    }

    fn set(&self, files: &[PathBuf], folders: &HashSet<PathBuf>) {
        let mut names = HashSet::new();
        for path in files.iter().chain(folders) {
            names.extend(path.file_name().map(OsString::from));
            if let Ok(target) = std::fs::canonicalize(path) {
                names.extend(target.file_name().map(OsString::from));
            }
        }
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = names;
    }
}

fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// (device, inode) of a folder, following symlinks; `None` when it is not there.
fn folder_identity(folder: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(folder)
        .ok()
        .filter(|meta| meta.is_dir())
        .map(|meta| (meta.dev(), meta.ino()))
}

fn fingerprints(files: &[PathBuf]) -> Fingerprints {
    files
        .iter()
        .map(|file| {
            let hash = std::fs::read(file)
                .ok()
                .map(|bytes| Sha256::digest(&bytes).into());
            (file.clone(), hash)
        })
        .collect()
}
