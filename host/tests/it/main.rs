//! The integration tests, as one test binary: the crate and its dependencies are linked once, not
//! once per file, and `cargo test` runs one process in which slow tests of one area overlap with
//! quick ones of another. Each module is one area; `support` is shared by all of them.
//!
//! One process means that what a process has once is shared by every test:
//! - the log subscriber and its buffer: a test asserts only on lines it owns ([`support::logs`]);
//! - signal handlers: the first watched config installs the SIGHUP handler for the whole process,
//!   and a SIGHUP would reload every watching proxy in it (reload tests assert exact
//!   generations). So no test signals its own process: SIGHUP and SIGTERM go to `portcullis`
//!   child processes ([`support::binary::RunningProxy`]);
//! - the Wasm engine and its in-memory cache of compiled components (`WasmRuntime::get`): a
//!   sample one test compiled is reused by the next. Where code came from (compiled, disk cache)
//!   is asserted only of child processes (`wasm_policies::disk_cache`);
//! - environment and current directory: tests only read variables (`UPDATE_GOLDEN`,
//!   `PROPTEST_CASES`) and set a directory only for child processes;
//! - the sample Wasm policies, built once ([`support::wasm`]).

mod support;

mod binary;
mod config;
mod dev_idp;
mod oidc_hostile;
mod oidc_provider;
mod pipeline;
mod policies;
mod proxy;
mod quickstart;
mod reload;
mod restarts;
mod shared_sessions;
mod wasm_policies;
