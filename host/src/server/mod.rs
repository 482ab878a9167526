//! Listeners: accept connections (plain or TLS) on `server.workers` worker threads, serve
//! HTTP/1.1 and HTTP/2 on them through the [`Proxy`] ([`public`], [`worker`]), and shut down
//! gracefully.
//!
//! Shutdown: stop accepting, tell every open connection to finish (HTTP/1.1 closes after its
//! in-flight response, HTTP/2 sends GOAWAY), and wait up to `server.drain_timeout` for them.
//! `/readyz` on the admin listener answers 503 from the moment draining starts (and, with a reason,
//! while a route needs a login and the identity provider is not discovered); the admin listener
//! keeps accepting until the drain is over.

pub mod accept;
mod bind;
mod idle;
mod public;
mod unstarted;
mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::Proxy;
use crate::reload::Reloader;
use crate::response::{ProxyBody, full_body};
pub use bind::{BindError, bind, bind_joining};

/// Bound listeners, ready to serve. Binding and serving are separate so callers (tests, `run`)
/// learn the actual addresses (port 0) before traffic starts.
pub struct Server {
    proxy: Proxy,
    reloader: Arc<Reloader>,
    /// For each worker, its listening socket per public address (see [`worker`]).
    public: Vec<Vec<std::net::TcpListener>>,
    admin: Option<TcpListener>,
}

impl Server {
    /// Serves `proxy` on the `public` listeners with `workers` worker threads, and the admin
    /// endpoints (with `reloader`'s status) on `admin`. Must run inside a tokio runtime (the
    /// admin listener runs on it; the workers have their own).
    pub fn new(
        proxy: Proxy,
        reloader: Arc<Reloader>,
        public: Vec<std::net::TcpListener>,
        admin: Option<std::net::TcpListener>,
        workers: usize,
    ) -> std::io::Result<Self> {
        let admin = match admin {
            Some(listener) => {
                listener.set_nonblocking(true)?;
                Some(TcpListener::from_std(listener)?)
            }
            None => None,
        };
        Ok(Server {
            proxy,
            reloader,
            public: worker::sockets_per_worker(public, workers)?,
            admin,
        })
    }

    /// The bound public addresses, in config order.
    pub fn public_addrs(&self) -> Vec<SocketAddr> {
        self.public
            .first()
            .into_iter()
            .flatten()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Whether the public listeners terminate TLS.
    pub fn uses_tls(&self) -> bool {
        self.proxy.snapshot().server.tls.is_some()
    }

    /// The bound admin address, if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then drains in-flight requests for up to the configured
    /// drain timeout.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let ready = Arc::new(AtomicBool::new(true));
        // The admin listener outlives the public ones: probes opening a new connection while
        // the requests in flight drain must still reach `/healthz` (200) and `/readyz` (503).
        let (drained, admin_stop) = tokio::sync::oneshot::channel::<()>();
        if let Some(listener) = self.admin {
            let (reloader, ready, proxy) =
                (self.reloader.clone(), ready.clone(), self.proxy.clone());
            let stopped = async move {
                let _ = admin_stop.await;
            };
            tokio::spawn(accept::serve_http1(
                listener,
                move |request: Request<Incoming>| {
                    let response = admin_response(request.uri().path(), &reloader, &ready, &proxy);
                    async move { response }
                },
                stopped,
            ));
        }
        // One count of open connections for all workers and listeners.
        let open = public::OpenConnections::default();
        let mut workers = Vec::with_capacity(self.public.len());
        for (index, sockets) in self.public.into_iter().enumerate() {
            let started = worker::Worker::spawn(
                index,
                sockets,
                self.proxy.clone(),
                open.clone(),
                stop_rx.clone(),
            );
            match started {
                Ok(worker) => workers.push(worker),
                // The other workers serve the address; this one's sockets are closed.
                Err(err) => tracing::error!(worker = index, error = %err, "a worker did not start"),
            }
        }
        shutdown.await;
        ready.store(false, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        let drain_timeout = self.proxy.snapshot().server.drain_timeout;
        tracing::info!(
            ?drain_timeout,
            "stopped accepting; draining in-flight requests"
        );
        let finished =
            futures_util::future::join_all(workers.into_iter().map(worker::Worker::finished)).await;
        if finished.iter().all(|&drained| drained) {
            tracing::info!("all connections closed");
        } else {
            tracing::warn!(
                ?drain_timeout,
                "drain timeout passed; closing remaining connections"
            );
        }
        drop(drained);
    }
}

/// The admin listener's answers: `/healthz` (the process is up), `/readyz` (it can serve what its
/// config asks: not draining, and the identity provider discovered when a route needs a login)
/// and `/reload` (generation, last reload attempt and the provider's state, JSON).
fn admin_response(
    path: &str,
    reloader: &Reloader,
    ready: &AtomicBool,
    proxy: &Proxy,
) -> Response<ProxyBody> {
    let draining = !ready.load(Ordering::SeqCst);
    let (status, text) = match path {
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if draining => (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_owned()),
        "/readyz" => match proxy.snapshot().not_ready_because() {
            None => (StatusCode::OK, "ready\n".to_owned()),
            Some(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        "/reload" => {
            let mut status = serde_json::to_value(reloader.status()).unwrap_or_default();
            let provider = proxy
                .snapshot()
                .auth
                .as_ref()
                .map(|auth| auth.oidc.status());
            if let Some(fields) = status.as_object_mut() {
                fields.insert(
                    "provider".to_owned(),
                    serde_json::to_value(provider).unwrap_or_default(),
                );
            }
            let status = serde_json::to_string_pretty(&status)
                .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"));
            let mut response = Response::new(full_body(status + "\n"));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            return response;
        }
        _ => (
            StatusCode::NOT_FOUND,
            "not found: the admin listener serves /healthz, /readyz and /reload\n".to_owned(),
        ),
    };
    let mut response = Response::new(full_body(text));
    *response.status_mut() = status;
    response
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
