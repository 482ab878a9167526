//! Per-route policies: a script that receives the request and the user and returns a
//! [`Decision`]. A deny is a value; a policy that fails (syntax, runtime error, exceeded limit, bad
//! output) is a [`PolicyError`], which the proxy answers with 500 — fail closed.
//!
//! A policy is loaded once, when the config is ([`Policy::load`], also used by
//! `portcullis policy test`), and never on the request path: Rhai scripts (`rhai.rs`) and Wasm
//! components (`wasm/`) behind one [`Policy`] type. Both engines read the same inputs: a
//! [`PolicyRequest`] and a [`PolicyIdentity`] (built once per session). The proxy runs a policy on
//! the worker serving the request while it decides within a short budget, and on the policy
//! threads ([`PolicyPool`]) once it has needed longer ([`placement`]).
//!
//! This module imports only the crate's leaves (`canonical`, `header_ownership`); the config
//! builds on it.

mod compiled;
mod decision;
mod identity;
pub mod input;
pub mod limits;
pub mod output;
pub mod placement;
pub mod pool;
mod rhai;
pub mod tester;
pub mod wasm;

pub use self::rhai::{PolicyEngine, RhaiPolicy};
pub use compiled::{DEFAULT_ISOLATION, LoadError, Policy, PolicyLoader, PolicySource};
pub use decision::{Decision, PolicyError};
pub use identity::PolicyIdentity;
pub use input::PolicyRequest;
pub use limits::PolicyLimits;
pub use output::OutputRules;
pub use placement::{INLINE_BUDGET, Placement};
pub use pool::{PolicyPool, PoolError};
pub use wasm::{Isolation, WasmPolicy};
