//! What starts a reload: file-system events on everything the config reads, and SIGHUP.
//!
//! The watcher watches the *folders* of those files, not the files: editors that save by writing
//! a new file and renaming it over the old one, Kubernetes ConfigMaps that swap a `..data`
//! symlink, and files deleted then created again all show up as events in the folder, where a
//! watch on the file itself would be lost with its inode. Events are debounced (a quiet
//! [`QUIET`] after the last one, at most [`MAX_DELAY`]); then the files' contents are hashed and
//! a reload runs only when one changed since the last attempt — so a change that failed is tried
//! again when a file changes again, not in a loop. After each attempt the set of files is read
//! again from the config, so a newly named policy is watched too (even before it exists).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Trigger;
use crate::config;
use crate::proxy::Proxy;

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

/// Watches `config_path` and the files it names, and SIGHUP, reloading `proxy` on changes. Runs
/// until the process ends. `baseline` is what the served config was loaded from. Fails only when
/// no file watcher can be created.
pub fn spawn(proxy: Proxy, config_path: PathBuf, baseline: Baseline) -> notify::Result<()> {
    let (events, triggers) = mpsc::unbounded_channel();
    let sender = events.clone();
    let names = WatchedNames::default();
    let filter = names.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| event.paths.iter().any(|path| filter.matches(path))) {
            let _ = sender.send(Trigger::FileChange);
        }
    })?;
    let mut watcher = watcher;
    let mut watched_folders = HashSet::new();
    let files = config::referenced_files(&config_path);
    names.set(&files);
    watch_folders(&mut watcher, &files, &mut watched_folders);
    // Anything that changed since the baseline was taken is reloaded right away.
    let _ = events.send(Trigger::FileChange);
    tokio::spawn(forward_sighup(events));
    tokio::spawn(run(
        proxy,
        config_path,
        Watching {
            watcher,
            names,
            folders: watched_folders,
        },
        baseline.0,
        triggers,
    ));
    Ok(())
}

/// File names whose events matter: other files in the same folders (a log file next to the
/// config, say) change all the time and must not cost a look.
#[derive(Clone, Default)]
struct WatchedNames(Arc<Mutex<HashSet<OsString>>>);

impl WatchedNames {
    fn matches(&self, path: &Path) -> bool {
        let Some(name) = path.file_name() else {
            return false;
        };
        // Kubernetes' atomic writer swaps `..data` (and writes `..<timestamp>` folders).
        name.as_encoded_bytes().starts_with(b"..")
            || self
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(name)
    }

    fn set(&self, files: &[PathBuf]) {
        let mut names = HashSet::new();
        for file in files {
            names.extend(file.file_name().map(OsString::from));
            if let Ok(target) = std::fs::canonicalize(file) {
                names.extend(target.file_name().map(OsString::from));
            }
        }
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = names;
    }
}

async fn forward_sighup(events: mpsc::UnboundedSender<Trigger>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGHUP; reloads come from file changes only");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading");
        if events.send(Trigger::Signal).is_err() {
            return;
        }
    }
}

/// The watcher and what it watches.
struct Watching {
    watcher: notify::RecommendedWatcher,
    names: WatchedNames,
    folders: HashSet<PathBuf>,
}

async fn run(
    proxy: Proxy,
    config_path: PathBuf,
    mut watching: Watching,
    mut last_attempted: Fingerprints,
    mut triggers: mpsc::UnboundedReceiver<Trigger>,
) {
    while let Some(first) = triggers.recv().await {
        let Some(trigger) = debounce(first, &mut triggers).await else {
            return;
        };
        let current = fingerprints(&config::referenced_files(&config_path));
        if trigger == Trigger::Signal || current != last_attempted {
            last_attempted = current;
            super::reload(&proxy, &config_path, trigger).await;
        }
        // The config may name other files now (or, after a failed attempt, files that do not
        // exist yet): watch those.
        let files = config::referenced_files(&config_path);
        watching.names.set(&files);
        watch_folders(&mut watching.watcher, &files, &mut watching.folders);
    }
}

/// Waits until events stop for [`QUIET`] (at most [`MAX_DELAY`]); a SIGHUP in the burst wins.
/// `None` when the channel closed.
async fn debounce(
    first: Trigger,
    triggers: &mut mpsc::UnboundedReceiver<Trigger>,
) -> Option<Trigger> {
    let mut trigger = first;
    let give_up = Instant::now() + MAX_DELAY;
    loop {
        let quiet_until = (Instant::now() + QUIET).min(give_up);
        match tokio::time::timeout_at(quiet_until, triggers.recv()).await {
            Ok(Some(next)) => {
                if next == Trigger::Signal {
                    trigger = Trigger::Signal;
                }
                if Instant::now() >= give_up {
                    return Some(trigger);
                }
            }
            Ok(None) => return None,
            Err(_) => return Some(trigger),
        }
    }
}

/// Adds watches on the folders of `files` (and of their symlink targets) and removes those no
/// longer needed.
fn watch_folders(
    watcher: &mut notify::RecommendedWatcher,
    files: &[PathBuf],
    watched: &mut HashSet<PathBuf>,
) {
    let mut wanted = HashSet::new();
    for file in files {
        wanted.insert(folder_of(file));
        if let Ok(target) = std::fs::canonicalize(file) {
            wanted.insert(folder_of(&target));
        }
    }
    for gone in watched.difference(&wanted).cloned().collect::<Vec<_>>() {
        let _ = watcher.unwatch(&gone);
        watched.remove(&gone);
    }
    for folder in wanted {
        if watched.contains(&folder) {
            continue;
        }
        match watcher.watch(&folder, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(folder);
            }
            Err(err) => {
                tracing::warn!(folder = %folder.display(), error = %err, "cannot watch for changes; use SIGHUP to reload what is in it")
            }
        }
    }
}

fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
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
