//! The conformance suite every [`SessionStore`] must pass, run against each backend below.
//! Time moves through a [`ManualClock`]; nothing sleeps.

use std::sync::Arc;

use portcullis_test_redis::{RedisCluster, RedisServer};

use super::memory::MemoryStore;
use super::redis_store::RedisStore;
use super::sealed_store::SealedStore;
use super::sealing::SealingKeys;
use super::sled_store::SledStore;
use super::store::{Clock, ManualClock, SessionStore};
use crate::config::{RedisConfig, RedisTarget, RedisUrl};

const T0: u64 = 1_700_000_000;

/// Runs every check against stores made by `make` (a fresh, empty store per call).
async fn conformance(make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>) {
    put_get_replace_remove(make).await;
    records_expire_at_their_expiry(make).await;
    take_is_single_use(make).await;
    sweep_removes_only_expired_records(make).await;
    concurrent_takes_yield_one_value(make).await;
    replace_never_revives_a_removed_record(make).await;
    replace_racing_remove_never_revives(make).await;
    put_new_is_a_lock(make).await;
}

async fn put_get_replace_remove(make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>) {
    let store = make(Arc::new(ManualClock::new(T0)));
    assert_eq!(store.get(b"k").await.unwrap(), None);
    store.put(b"k", b"one", T0 + 10).await.unwrap();
    assert_eq!(store.get(b"k").await.unwrap().as_deref(), Some(&b"one"[..]));
    store.put(b"k", b"two", T0 + 10).await.unwrap();
    assert_eq!(store.get(b"k").await.unwrap().as_deref(), Some(&b"two"[..]));
    store.put(b"empty", b"", T0 + 10).await.unwrap();
    assert_eq!(
        store.get(b"empty").await.unwrap().as_deref(),
        Some(&b""[..])
    );
    store.remove(b"k").await.unwrap();
    store.remove(b"never-there").await.unwrap();
    assert_eq!(store.get(b"k").await.unwrap(), None);
    store.flush().await.unwrap();
}

async fn records_expire_at_their_expiry(make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>) {
    let clock = Arc::new(ManualClock::new(T0));
    let store = make(clock.clone());
    store.put(b"k", b"v", T0 + 10).await.unwrap();
    clock.advance(9);
    assert!(
        store.get(b"k").await.unwrap().is_some(),
        "alive one second before expiry"
    );
    clock.advance(1);
    assert_eq!(store.get(b"k").await.unwrap(), None, "gone at its expiry");
    assert_eq!(
        store.take(b"k").await.unwrap(),
        None,
        "an expired record cannot be taken"
    );
}

async fn take_is_single_use(make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>) {
    let store = make(Arc::new(ManualClock::new(T0)));
    store.put(b"state", b"pending", T0 + 600).await.unwrap();
    assert_eq!(
        store.take(b"state").await.unwrap().as_deref(),
        Some(&b"pending"[..])
    );
    assert_eq!(store.take(b"state").await.unwrap(), None);
    assert_eq!(store.get(b"state").await.unwrap(), None);
}

async fn sweep_removes_only_expired_records(
    make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>,
) {
    let clock = Arc::new(ManualClock::new(T0));
    let store = make(clock.clone());
    store.put(b"short-1", b"v", T0 + 5).await.unwrap();
    store.put(b"short-2", b"v", T0 + 5).await.unwrap();
    store.put(b"long", b"v", T0 + 100).await.unwrap();
    assert_eq!(store.sweep().await.unwrap(), 0);
    clock.advance(5);
    // A store whose backend drops records at their expiry by itself (Redis, tested on its own
    // timer in `redis_drops_records_at_their_expiry`) has nothing left to sweep.
    let expected = if store.expires_records_itself() { 0 } else { 2 };
    assert_eq!(store.sweep().await.unwrap(), expected);
    assert_eq!(store.get(b"short-1").await.unwrap(), None);
    assert!(store.get(b"long").await.unwrap().is_some());
    assert_eq!(store.sweep().await.unwrap(), 0);
}

async fn concurrent_takes_yield_one_value(
    make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>,
) {
    let store: Arc<dyn SessionStore> = Arc::from(make(Arc::new(ManualClock::new(T0))));
    for round in 0..20u8 {
        let key = [b'r', round];
        store.put(&key, b"once", T0 + 600).await.unwrap();
        let winners = at_once(4, |_| {
            let store = store.clone();
            async move { store.take(&key).await.unwrap().is_some() }
        })
        .await;
        assert_eq!(
            winners, 1,
            "round {round}: a login state must be usable exactly once"
        );
    }
}

async fn put_new_is_a_lock(make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>) {
    let clock = Arc::new(ManualClock::new(T0));
    let store: Arc<dyn SessionStore> = Arc::from(make(clock.clone()));
    assert!(store.put_new(b"lock", b"a", T0 + 20).await.unwrap());
    assert!(
        !store.put_new(b"lock", b"b", T0 + 20).await.unwrap(),
        "held"
    );
    assert_eq!(
        store.get(b"lock").await.unwrap().as_deref(),
        Some(&b"a"[..])
    );
    store.remove(b"lock").await.unwrap();
    assert!(
        store.put_new(b"lock", b"c", T0 + 20).await.unwrap(),
        "given back"
    );
    clock.advance(20);
    assert!(
        store.put_new(b"lock", b"d", T0 + 40).await.unwrap(),
        "a lease that lapsed is free"
    );
    assert_eq!(
        store.get(b"lock").await.unwrap().as_deref(),
        Some(&b"d"[..])
    );
    for round in 0..20u8 {
        let key = [b'l', round];
        let winners = at_once(4, |contender| {
            let store = store.clone();
            let value = [b'v', contender as u8];
            async move { store.put_new(&key, &value, T0 + 600).await.unwrap() }
        })
        .await;
        assert_eq!(winners, 1, "round {round}: one lock holder at a time");
    }
}

/// Runs `count` tasks made by `task` at once (on the test's worker threads) and counts the
/// ones that answered `true`.
async fn at_once<F>(count: usize, task: impl Fn(usize) -> F) -> usize
where
    F: std::future::Future<Output = bool> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(count));
    let handles: Vec<_> = (0..count)
        .map(|at| {
            let barrier = barrier.clone();
            let task = task(at);
            tokio::spawn(async move {
                barrier.wait().await;
                task.await
            })
        })
        .collect();
    let mut winners = 0;
    for handle in handles {
        winners += usize::from(handle.await.unwrap());
    }
    winners
}

async fn replace_never_revives_a_removed_record(
    make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>,
) {
    let clock = Arc::new(ManualClock::new(T0));
    let store = make(clock.clone());
    assert!(
        !store.replace(b"k", b"v", T0 + 10).await.unwrap(),
        "nothing to replace"
    );
    assert_eq!(
        store.get(b"k").await.unwrap(),
        None,
        "replace does not create"
    );
    store.put(b"k", b"one", T0 + 10).await.unwrap();
    assert!(store.replace(b"k", b"two", T0 + 20).await.unwrap());
    assert_eq!(store.get(b"k").await.unwrap().as_deref(), Some(&b"two"[..]));
    store.remove(b"k").await.unwrap();
    assert!(!store.replace(b"k", b"three", T0 + 20).await.unwrap());
    assert_eq!(
        store.get(b"k").await.unwrap(),
        None,
        "a removed record stays removed"
    );
    store.put(b"taken", b"v", T0 + 10).await.unwrap();
    store.take(b"taken").await.unwrap();
    assert!(!store.replace(b"taken", b"v", T0 + 10).await.unwrap());
    store.put(b"old", b"v", T0 + 10).await.unwrap();
    clock.advance(10);
    assert!(
        !store.replace(b"old", b"v", T0 + 100).await.unwrap(),
        "an expired record is gone"
    );
    assert_eq!(store.get(b"old").await.unwrap(), None);
}

async fn replace_racing_remove_never_revives(
    make: &dyn Fn(Arc<ManualClock>) -> Box<dyn SessionStore>,
) {
    let store: Arc<dyn SessionStore> = Arc::from(make(Arc::new(ManualClock::new(T0))));
    for round in 0..20u8 {
        let key = [b'x', round];
        store.put(&key, b"live", T0 + 600).await.unwrap();
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    store.replace(&key, b"refreshed", T0 + 600).await.unwrap();
                }
            })
        };
        let remover = {
            let store = store.clone();
            tokio::spawn(async move { store.remove(&key).await.unwrap() })
        };
        writer.await.unwrap();
        remover.await.unwrap();
        assert_eq!(
            store.get(&key).await.unwrap(),
            None,
            "round {round}: a replace racing a remove revived the record"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conforms() {
    conformance(&|clock| Box::new(MemoryStore::new(clock))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_store_conforms() {
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance(&|clock| {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("sessions"), clock).unwrap();
        dirs.lock().unwrap().push(dir);
        Box::new(store)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealed_stores_conform() {
    let keys = || SealingKeys::from_secrets(b"a sealing secret of 32 bytes.....", &[]);
    conformance(&|clock| Box::new(SealedStore::new(Arc::new(MemoryStore::new(clock)), keys())))
        .await;
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance(&|clock| {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("sessions"), clock).unwrap();
        dirs.lock().unwrap().push(dir);
        Box::new(SealedStore::new(Arc::new(store), keys()))
    })
    .await;
}

/// A Redis store on `target`, under a key prefix of its own (a fresh, empty store per call).
fn redis_store(target: &RedisTarget, clock: Arc<ManualClock>) -> RedisStore {
    let config = RedisConfig {
        target: target.clone(),
        key_prefix: format!("conformance-{}:", crate::session::random_token()),
        timeout: std::time::Duration::from_secs(5),
        ca: None,
    };
    RedisStore::open(&config, clock).unwrap()
}

fn server(redis: &RedisServer) -> RedisTarget {
    RedisTarget::Server(RedisUrl::parse(&redis.url()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_conforms() {
    let redis = RedisServer::start();
    let target = server(&redis);
    conformance(&|clock| Box::new(redis_store(&target, clock))).await;
    let keys = || SealingKeys::from_secrets(b"a sealing secret of 32 bytes.....", &[]);
    conformance(&|clock| {
        Box::new(SealedStore::new(
            Arc::new(redis_store(&target, clock)),
            keys(),
        ))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_store_conforms() {
    let cluster = RedisCluster::start();
    let target = RedisTarget::Cluster(
        cluster
            .urls()
            .iter()
            .map(|url| RedisUrl::parse(url).unwrap())
            .collect(),
    );
    conformance(&|clock| Box::new(redis_store(&target, clock))).await;
    // The records are spread over the three masters (the keys hash to different slots).
    let holding = cluster
        .nodes()
        .iter()
        .filter(|node| node.cli_text(&["DBSIZE"]) != "0")
        .count();
    assert!(holding >= 2, "records on {holding} master(s) only");
}

/// A lock script sent again after its reply was lost (the same bytes: the client resends the
/// command) finds its own record and says yes again; anyone else's lock is still refused.
#[tokio::test]
async fn a_redis_lock_sent_twice_is_taken_once_and_known_as_its_own() {
    let redis = RedisServer::start();
    let store = redis_store(&server(&redis), Arc::new(ManualClock::new(T0)));
    assert!(store.put_new(b"lock", b"mine", T0 + 20).await.unwrap());
    assert!(
        store.put_new(b"lock", b"mine", T0 + 20).await.unwrap(),
        "the same command again"
    );
    assert!(!store.put_new(b"lock", b"theirs", T0 + 20).await.unwrap());
}

/// Redis's own timer drops a record at its expiry (the conformance suite moves only the store's
/// clock): no sweeper is needed, and a record never outlives its session in Redis.
#[tokio::test]
async fn redis_drops_records_at_their_expiry() {
    let redis = RedisServer::start();
    let clock: Arc<dyn Clock> = Arc::new(super::store::SystemClock);
    let config = RedisConfig {
        target: server(&redis),
        key_prefix: "expiry:".into(),
        timeout: std::time::Duration::from_secs(5),
        ca: None,
    };
    let store = RedisStore::open(&config, clock.clone()).unwrap();
    store.put(b"k", b"v", clock.now() + 1).await.unwrap();
    store.put(b"day", b"v", clock.now() + 86_400).await.unwrap();
    let day_ttl: i64 = redis
        .cli_text(&["TTL", "expiry:646179"])
        .parse()
        .expect("a TTL");
    assert!(
        (86_398..=86_400).contains(&day_ttl),
        "Redis keeps the record as long as the session: {day_ttl}s"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while redis.cli_text(&["EXISTS", "expiry:6b"]) != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "Redis did not drop the expired record"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sled_records_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(T0));
    {
        let store = SledStore::open(&dir.path().join("sessions"), clock.clone()).unwrap();
        store.put(b"k", b"kept", T0 + 60).await.unwrap();
        store.flush().await.unwrap();
    }
    let store = reopen(&dir.path().join("sessions"), &clock);
    assert_eq!(
        store.get(b"k").await.unwrap().as_deref(),
        Some(&b"kept"[..])
    );
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
