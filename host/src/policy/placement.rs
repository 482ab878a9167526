//! Where a route's policy runs: on the worker serving the request, or on the policy threads.
//!
//! A decision made on the worker costs nothing but the run (a pooled Wasm decision ~1.6 µs); one
//! made on a policy thread adds a hop there and back (~10 µs here: two thread wake-ups). But a
//! worker serves many connections, and a policy that runs long holds them all. So a policy runs
//! on the worker, stopped after [`INLINE_BUDGET`]; a run stopped there (or failing after it) is
//! done again on the policy threads with the route's full limits, and from then on the policy
//! always runs there ([`Placement::moved`]), until a reload loads it again.
//!
//! Running a stopped decision again is safe: a Rhai script has no state, and a Wasm instance that
//! trapped is dropped (a pooled one too), so the second run starts from where the first did.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The longest a policy runs on a worker. Rhai checks it every 256 operations; Wasm counts time in
/// 2 ms epoch ticks, so a Wasm policy is stopped after 2–4 ms (once per loaded policy).
pub const INLINE_BUDGET: Duration = Duration::from_millis(1);

/// Whether a route's policy still runs on the workers.
#[derive(Debug, Default)]
pub struct Placement {
    on_policy_threads: AtomicBool,
}

impl Placement {
    /// `true` while the policy runs on the workers.
    pub fn inline(&self) -> bool {
        !self.on_policy_threads.load(Ordering::Relaxed)
    }

    /// The policy needed more than [`INLINE_BUDGET`]: it runs on the policy threads from now on.
    /// `true` for the call that moved it (to log it once).
    pub fn moved(&self) -> bool {
        !self.on_policy_threads.swap(true, Ordering::Relaxed)
    }
}
