//! Restarts that refuse nobody (issue 17: after SIGTERM the listener closed while requests
//! drained, and a new instance could not start meanwhile). A client loop runs across each kind of
//! restart, through the real binary; every request must be answered, none refused or cut.

use crate::support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::binary::RunningProxy;
use support::echo;

/// One request after another, each on a new connection (a refused connection would show), until
/// stopped; what failed, and how many were answered.
struct ClientLoop {
    answered: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl ClientLoop {
    fn start(addr: SocketAddr) -> Self {
        let answered = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let task = tokio::spawn({
            let (answered, stop) = (answered.clone(), stop.clone());
            async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match client.get(format!("http://{addr}/loop")).send().await {
                        Ok(answer) if answer.status() == 200 => {}
                        Ok(answer) => failures.push(format!("status {}", answer.status())),
                        Err(err) => failures.push(format!("{err:?}")),
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                failures
            }
        });
        ClientLoop {
            answered,
            stop,
            task,
        }
    }

    /// Waits until `more` further requests were answered.
    async fn wait_for(&self, more: usize) {
        let wanted = self.answered.load(Ordering::SeqCst) + more;
        let give_up = Instant::now() + Duration::from_secs(60);
        while self.answered.load(Ordering::SeqCst) < wanted {
            assert!(Instant::now() < give_up, "the client loop stalled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the loop; every failure it saw.
    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

/// A route to `echo` on `addr`, with sessions in sled in `dir` (the store a takeover hands over;
/// `[oidc]` opens it at start, though its provider is never reached).
fn write_config(dir: &std::path::Path, addr: SocketAddr, echo: SocketAddr) -> std::path::PathBuf {
    let provider = support::closed_port();
    let config = dir.join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\ndrain_timeout = \"10s\"\n\n[oidc]\ndiscovery = \"http://{provider}/.well-known/openid-configuration\"\nclient_id = \"p\"\nclient_secret = \"s\"\nredirect_uri = \"http://{addr}/auth\"\n\n[session]\nstore = \"sled\"\npath = \"sessions\"\ncookie_secure = false\n\n[[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://{echo}\"\nauth = \"none\"\n"
        ),
    )
    .unwrap();
    config
}

/// systemd socket activation: the service manager holds the listening socket across the
/// restart, so connections made while no process runs wait in its queue for the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_socket_activation_refuses_no_one() {
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let config = write_config(dir.path(), addr, echo);
    let socket = Arc::new(socket);
    let start = || {
        let (config, socket) = (config.clone(), socket.clone());
        tokio::task::spawn_blocking(move || RunningProxy::start_activated(&config, &socket))
    };
    let first = start().await.unwrap();
    assert_eq!(first.addr, addr, "serves the socket it was given");
    let client = ClientLoop::start(addr);
    client.wait_for(50).await;
    first.terminate();
    assert!(first.exited().await.success());
    let second = start().await.unwrap();
    client.wait_for(100).await;
    let failures = client.stop().await;
    assert!(
        failures.is_empty(),
        "{} failed, first {:?}",
        failures.len(),
        failures.first()
    );
    drop(second);
}

/// `portcullis run --takeover`: the new process listens beside the running one
/// (`SO_REUSEPORT`), the running one is sent SIGTERM and drains, and the new one opens the
/// session store as soon as it is let go. Connections queued at the old process when it closes
/// its sockets move to the new one (`net.ipv4.tcp_migrate_req = 1`, which `scripts/test` sets,
/// as docs/operations.md tells operators to).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_refuses_no_one_and_the_new_process_gets_the_session_store() {
    let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").unwrap_or_default();
    assert_eq!(
        migrate.trim(),
        "1",
        "net.ipv4.tcp_migrate_req must be 1 (scripts/test sets it; as root: sysctl -w net.ipv4.tcp_migrate_req=1)"
    );
    let echo = echo::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = support::closed_port();
    let config = write_config(dir.path(), addr, echo);
    let started = config.clone();
    let old = tokio::task::spawn_blocking(move || RunningProxy::start(&started))
        .await
        .unwrap();
    let client = ClientLoop::start(addr);
    client.wait_for(50).await;

    let started = config.clone();
    let new = tokio::task::spawn_blocking(move || RunningProxy::start_takeover(&started, addr))
        .await
        .unwrap();
    // At once, as an operator's script does: connections the kernel gives the new process wait
    // in its queue until the old one has drained and let go of the store.
    old.terminate();
    assert!(old.exited().await.success());
    client.wait_for(100).await;
    let failures = client.stop().await;
    let log = support::binary::read_log(&config);
    assert!(
        failures.is_empty(),
        "{} failed, first {:?}; log: {log}",
        failures.len(),
        failures.first()
    );
    assert!(
        log.contains("the session store is open: taking over"),
        "{log}"
    );
    drop(new);
}
