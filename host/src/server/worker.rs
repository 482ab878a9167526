//! Workers: `server.workers` threads, each running a current-thread tokio runtime with its own
//! listening socket per public address (`SO_REUSEPORT`: the kernel spreads new connections over
//! them). A connection lives on the worker that accepted it from start to end — its requests,
//! their upstream connections (see `upstream::pool`) and their timers — so no request moves
//! between threads or waits for a task on another one: one event loop per core, as nginx runs
//! (`docs/performance.md`, "Runtime model").
//!
//! Shared by all workers, behind `Arc`s: the serving snapshot (an `ArcSwap` read once per
//! request), the session store and its cache, the OIDC relying party, the policy threads, and the
//! count of open connections (`server.max_connections` is one limit for the process). Everything
//! else a worker touches per request is its own.

use std::net::TcpListener as StdListener;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;

use super::unstarted::{FIRST_REQUEST_GRACE, Unstarted};
use tokio::sync::{oneshot, watch};

use super::public::{OpenConnections, accept_loop};
use crate::proxy::Proxy;

/// How long a worker's runtime waits, after its drain, for blocking work (a session-store write)
/// still running.
const BLOCKING_GRACE: Duration = Duration::from_secs(1);

/// The listening sockets of `workers` workers: for each worker, one per address of `public`. The
/// first worker serves the sockets given; the others get their own, bound to the same address
/// with `SO_REUSEPORT` when the given socket has it (as [`super::bind`] sets it), or else a
/// duplicate of the given socket (a listener bound by an embedding program: the workers then
/// take turns accepting on it).
pub(super) fn sockets_per_worker(
    public: Vec<StdListener>,
    workers: usize,
) -> std::io::Result<Vec<Vec<StdListener>>> {
    let mut per_worker: Vec<Vec<StdListener>> = (0..workers.max(1)).map(|_| Vec::new()).collect();
    for listener in public {
        for worker in per_worker.iter_mut().skip(1) {
            worker.push(sibling(&listener)?);
        }
        per_worker[0].push(listener);
    }
    Ok(per_worker)
}

/// Another socket accepting the connections of `listener`'s address.
fn sibling(listener: &StdListener) -> std::io::Result<StdListener> {
    let socket = socket2::SockRef::from(listener);
    if !socket.reuse_port()? {
        return listener.try_clone();
    }
    let addr = listener.local_addr()?;
    let own = super::bind::bind_sibling(addr).map_err(|err| err.source)?;
    Ok(own)
}

/// A worker thread serving its sockets until told to stop, then draining its connections.
pub(super) struct Worker {
    /// Resolves when the worker has drained (`true`) or cut connections at the drain timeout
    /// (`false`); an error if the thread ended otherwise (a panic, logged by Rust).
    finished: oneshot::Receiver<bool>,
}

impl Worker {
    /// Starts worker `index` on its own thread and runtime.
    pub(super) fn spawn(
        index: usize,
        sockets: Vec<StdListener>,
        proxy: Proxy,
        open: OpenConnections,
        stop: watch::Receiver<bool>,
    ) -> std::io::Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (finished_tx, finished) = oneshot::channel();
        // Logs go where the starting thread's go (an embedding program's, or a test's, scoped
        // subscriber; the global one otherwise).
        let log = tracing::dispatcher::get_default(Clone::clone);
        std::thread::Builder::new()
            .name(format!("portcullis-worker-{index}"))
            .spawn(move || {
                let _log = tracing::dispatcher::set_default(&log);
                let drained = runtime.block_on(serve(sockets, proxy, open, stop));
                // Connections still open past the drain timeout are dropped with the runtime.
                runtime.shutdown_timeout(BLOCKING_GRACE);
                let _ = finished_tx.send(drained);
            })?;
        Ok(Worker { finished })
    }

    /// Waits for the worker's drain: `true` when every connection finished in time.
    pub(super) async fn finished(self) -> bool {
        self.finished.await.unwrap_or(false)
    }
}

/// One worker's life: accept on every socket until `stop`, then wait up to the drain timeout for
/// its connections. `true` when they all finished.
async fn serve(
    sockets: Vec<StdListener>,
    proxy: Proxy,
    open: OpenConnections,
    stop: watch::Receiver<bool>,
) -> bool {
    let graceful = GracefulShutdown::new();
    let unstarted = Unstarted::default();
    let mut listeners = Vec::with_capacity(sockets.len());
    for socket in sockets {
        match socket
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(socket))
        {
            Ok(listener) => listeners.push(listener),
            Err(err) => tracing::error!(error = %err, "a worker cannot serve a listening socket"),
        }
    }
    futures_util::future::join_all(listeners.into_iter().map(|listener| {
        accept_loop(
            listener,
            proxy.clone(),
            &graceful,
            &unstarted,
            open.clone(),
            stop.clone(),
        )
    }))
    .await;
    // Not accepting any more; connections accepted just before may still send their request.
    let _ = tokio::time::timeout(FIRST_REQUEST_GRACE, unstarted.none_left()).await;
    let drain_timeout = proxy.snapshot().server.drain_timeout;
    tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_gets_its_own_socket_on_the_same_port() {
        let first = super::super::bind::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let sockets = sockets_per_worker(vec![first], 3).unwrap();
        assert_eq!(sockets.len(), 3);
        for worker in &sockets {
            assert_eq!(worker.len(), 1);
            assert_eq!(worker[0].local_addr().unwrap(), addr);
            assert!(socket2::SockRef::from(&worker[0]).reuse_port().unwrap());
        }
    }

    #[test]
    fn a_listener_bound_elsewhere_is_shared_by_the_workers() {
        let given = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = given.local_addr().unwrap();
        let sockets = sockets_per_worker(vec![given], 2).unwrap();
        assert_eq!(sockets[1][0].local_addr().unwrap(), addr);
        // A connection made now is accepted on either: they are one socket.
        let _client = std::net::TcpStream::connect(addr).unwrap();
        assert!(sockets[1][0].accept().is_ok());
    }
}
