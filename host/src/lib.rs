//! Portcullis: an identity-aware reverse proxy.
//!
//! The library builds everything the binary runs, so tests and benches drive the same code:
//! [`config::load`] → [`snapshot::Snapshot::new`] → [`proxy::Proxy`] (callable in-process) →
//! [`server::Server`] (sockets). `docs/architecture.md` has the map.

pub mod canonical;
pub mod claim_header;
pub mod config;
pub mod cookies;
pub mod demo;
pub mod dev_idp;
pub mod response;
pub mod header_ownership;
pub mod logging;
pub mod oidc;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod tls;
pub mod upstream;

pub use config::Config;
pub use proxy::Proxy;
pub use server::Server;
pub use snapshot::Snapshot;
