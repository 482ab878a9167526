//! Portcullis: an identity-aware reverse proxy.
//!
//! The library builds everything the binary runs, so tests and benches drive the same code:
//! [`config::load`] → [`app::App::start`] (the first [`snapshot::Snapshot`], the
//! [`proxy::Proxy`] serving it, reloads, listeners) → [`app::App::serve`]. A [`Proxy`] can also
//! serve a snapshot in-process, without sockets. `docs/architecture.md` has the map and the
//! layers; `architecture_test` keeps them.

pub mod app;
#[cfg(test)]
mod architecture_test;
pub mod canonical;
pub mod claim_header;
pub mod config;
pub mod cookies;
pub mod demo;
pub mod dev_idp;
pub mod header_ownership;
pub mod logging;
pub mod oidc;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod response;
pub mod routes;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod tls;
pub mod upstream;

pub use app::{App, AppHandle, Listeners, SocketSource, StartOptions};
pub use config::Config;
pub use proxy::Proxy;
pub use snapshot::Snapshot;
