//! The conformance suite every [`SessionStore`] must pass, run against each backend below.
//! Time moves through a [`ManualClock`]; nothing sleeps.

use std::sync::Arc;

use super::memory::MemoryStore;
use super::sealed_store::SealedStore;
use super::sealing::SealingKeys;
use super::sled_store::SledStore;
use super::store::{Clock, ManualClock, SessionStore};

const T0: u64 = 1_700_000_000;

/// Runs every check against stores made by `make` (a fresh, empty store per call).
fn conformance(make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>) {
    put_get_replace_remove(make);
    records_expire_at_their_expiry(make);
    take_is_single_use(make);
    sweep_removes_only_expired_records(make);
    concurrent_takes_yield_one_value(make);
    replace_never_revives_a_removed_record(make);
    replace_racing_remove_never_revives(make);
}

fn put_get_replace_remove(make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>) {
    let store = make(Arc::new(ManualClock::new(T0)));
    assert_eq!(store.get(b"k").unwrap(), None);
    store.put(b"k", b"one", T0 + 10).unwrap();
    assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"one"[..]));
    store.put(b"k", b"two", T0 + 10).unwrap();
    assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"two"[..]));
    store.put(b"empty", b"", T0 + 10).unwrap();
    assert_eq!(store.get(b"empty").unwrap().as_deref(), Some(&b""[..]));
    store.remove(b"k").unwrap();
    store.remove(b"never-there").unwrap();
    assert_eq!(store.get(b"k").unwrap(), None);
    store.flush().unwrap();
}

fn records_expire_at_their_expiry(make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>) {
    let clock = Arc::new(ManualClock::new(T0));
    let store = make(clock.clone());
    store.put(b"k", b"v", T0 + 10).unwrap();
    clock.advance(9);
    assert!(
        store.get(b"k").unwrap().is_some(),
        "alive one second before expiry"
    );
    clock.advance(1);
    assert_eq!(store.get(b"k").unwrap(), None, "gone at its expiry");
    assert_eq!(
        store.take(b"k").unwrap(),
        None,
        "an expired record cannot be taken"
    );
}

fn take_is_single_use(make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>) {
    let store = make(Arc::new(ManualClock::new(T0)));
    store.put(b"state", b"pending", T0 + 600).unwrap();
    assert_eq!(
        store.take(b"state").unwrap().as_deref(),
        Some(&b"pending"[..])
    );
    assert_eq!(store.take(b"state").unwrap(), None);
    assert_eq!(store.get(b"state").unwrap(), None);
}

fn sweep_removes_only_expired_records(make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>) {
    let clock = Arc::new(ManualClock::new(T0));
    let store = make(clock.clone());
    store.put(b"short-1", b"v", T0 + 5).unwrap();
    store.put(b"short-2", b"v", T0 + 5).unwrap();
    store.put(b"long", b"v", T0 + 100).unwrap();
    assert_eq!(store.sweep().unwrap(), 0);
    clock.advance(5);
    assert_eq!(store.sweep().unwrap(), 2);
    assert!(store.get(b"long").unwrap().is_some());
    assert_eq!(store.sweep().unwrap(), 0);
}

fn concurrent_takes_yield_one_value(make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>) {
    let store: Arc<dyn SessionStore> = Arc::from(make(Arc::new(ManualClock::new(T0))));
    for round in 0..20u8 {
        let key = [b'r', round];
        store.put(&key, b"once", T0 + 600).unwrap();
        let winners: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| store.take(&key).unwrap().is_some() as usize))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(
            winners, 1,
            "round {round}: a login state must be usable exactly once"
        );
    }
}

fn replace_never_revives_a_removed_record(
    make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>,
) {
    let clock = Arc::new(ManualClock::new(T0));
    let store = make(clock.clone());
    assert!(
        !store.replace(b"k", b"v", T0 + 10).unwrap(),
        "nothing to replace"
    );
    assert_eq!(store.get(b"k").unwrap(), None, "replace does not create");
    store.put(b"k", b"one", T0 + 10).unwrap();
    assert!(store.replace(b"k", b"two", T0 + 20).unwrap());
    assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"two"[..]));
    store.remove(b"k").unwrap();
    assert!(!store.replace(b"k", b"three", T0 + 20).unwrap());
    assert_eq!(
        store.get(b"k").unwrap(),
        None,
        "a removed record stays removed"
    );
    store.put(b"taken", b"v", T0 + 10).unwrap();
    store.take(b"taken").unwrap();
    assert!(!store.replace(b"taken", b"v", T0 + 10).unwrap());
    store.put(b"old", b"v", T0 + 10).unwrap();
    clock.advance(10);
    assert!(
        !store.replace(b"old", b"v", T0 + 100).unwrap(),
        "an expired record is gone"
    );
    assert_eq!(store.get(b"old").unwrap(), None);
}

fn replace_racing_remove_never_revives(make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>) {
    let store: Arc<dyn SessionStore> = Arc::from(make(Arc::new(ManualClock::new(T0))));
    for round in 0..20u8 {
        let key = [b'x', round];
        store.put(&key, b"live", T0 + 600).unwrap();
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                for _ in 0..50 {
                    store.replace(&key, b"refreshed", T0 + 600).unwrap();
                }
            });
            scope.spawn(|| store.remove(&key).unwrap());
            writer.join().unwrap();
        });
        assert_eq!(
            store.get(&key).unwrap(),
            None,
            "round {round}: a replace racing a remove revived the record"
        );
    }
}

#[test]
fn memory_store_conforms() {
    conformance(&|clock| Box::new(MemoryStore::new(clock)));
}

#[test]
fn sled_store_conforms() {
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance(&|clock| {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("sessions"), clock).unwrap();
        dirs.lock().unwrap().push(dir);
        Box::new(store)
    });
}

#[test]
fn sealed_stores_conform() {
    let keys = || SealingKeys::from_secrets(b"a sealing secret of 32 bytes.....", &[]);
    conformance(&|clock| Box::new(SealedStore::new(Arc::new(MemoryStore::new(clock)), keys())));
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance(&|clock| {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("sessions"), clock).unwrap();
        dirs.lock().unwrap().push(dir);
        Box::new(SealedStore::new(Arc::new(store), keys()))
    });
}

#[test]
fn sled_records_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(T0));
    {
        let store = SledStore::open(&dir.path().join("sessions"), clock.clone()).unwrap();
        store.put(b"k", b"kept", T0 + 60).unwrap();
        store.flush().unwrap();
    }
    let store = reopen(&dir.path().join("sessions"), &clock);
    assert_eq!(store.get(b"k").unwrap().as_deref(), Some(&b"kept"[..]));
}

/// Opens the store at `folder` again after it was dropped. sled's background flusher lets go of
/// the folder's lock a moment after the store is dropped: reopen as a restarted process would,
/// retrying for a bounded time while the lock is held.
fn reopen(folder: &std::path::Path, clock: &Arc<dyn Clock>) -> SledStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match SledStore::open(folder, clock.clone()) {
            Ok(store) => return store,
            Err(err) if err.0.contains("lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(err) => panic!("the store did not reopen: {err}"),
        }
    }
}

#[test]
fn a_file_where_the_database_folder_should_be_gets_a_clear_error() {
    // A second process opening a folder in use is tested through the binary (`it::binary`).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let Err(err) = SledStore::open(&file, Arc::new(ManualClock::new(T0))) else {
        panic!("opening a file as a database must fail");
    };
    assert!(
        err.to_string()
            .contains("cannot open the session database at"),
        "{err}"
    );
}

#[test]
fn the_sled_folder_is_made_private_and_a_loose_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("data/sessions");
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(T0));
    drop(SledStore::open(&folder, clock.clone()).unwrap());
    assert_eq!(mode(&folder), 0o700, "created private");

    // Files an earlier version left readable are made private at the next open; a link planted
    // in the folder is not followed (what it points to keeps its mode).
    let db = folder.join("db");
    chmod(&db, 0o644);
    let outside = dir.path().join("someone-elses.txt");
    std::fs::write(&outside, "x").unwrap();
    chmod(&outside, 0o644);
    std::os::unix::fs::symlink(&outside, folder.join("planted")).unwrap();
    drop(reopen(&folder, &clock));
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&outside), 0o644, "a link's target left alone");

    chmod(&folder, 0o750);
    let Err(err) = SledStore::open(&folder, clock) else {
        panic!("a folder the group can enter must be refused");
    };
    assert!(
        err.0
            .contains(&format!("run `chmod 700 {}`", folder.display())),
        "{err}"
    );
}
