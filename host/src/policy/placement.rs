//! Where a route's policy runs: on the worker serving the request, or on the policy threads.
//!
//! A decision made on the worker costs nothing but the run (a pooled Wasm decision ~1.6 µs); one
//! made on a policy thread adds a hop there and back (~10 µs here: two thread wake-ups). But a
//! worker serves many connections, and a policy that runs long holds them all. So a policy runs
//! on the worker, stopped after [`INLINE_BUDGET`]; a run stopped there (or failing after it) is
//! done again on the policy threads with the route's full limits. After [`STOPS_TO_MOVE`] such
//! stops in a row the policy always runs there ([`Placement::stopped`]), until a reload loads it
//! again. In a row, not one: a decision that normally takes microseconds can be stopped once by
//! the machine alone (a Wasm policy's clock is an epoch that ticks every 2 ms; a worker can be
//! descheduled), and one such moment must not cost a route the speed of the workers for good.
//!
//! Running a stopped decision again is safe: a Rhai script has no state, and a Wasm instance that
//! trapped is dropped (a pooled one too), so the second run starts from where the first did.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

/// The longest a policy runs on a worker. Rhai checks it every 256 operations; Wasm counts time in
/// 2 ms epoch ticks, so a Wasm policy is stopped after 2–4 ms (once per loaded policy).
pub const INLINE_BUDGET: Duration = Duration::from_millis(1);

/// Stops at the budget in a row after which a policy runs on the policy threads for good.
pub const STOPS_TO_MOVE: u32 = 3;

/// Whether a route's policy still runs on the workers.
#[derive(Debug, Default)]
pub struct Placement {
    on_policy_threads: AtomicBool,
    /// Decisions stopped at the budget since the last one that was not.
    stops_in_a_row: AtomicU32,
}

impl Placement {
    /// `true` while the policy runs on the workers.
    pub fn inline(&self) -> bool {
        !self.on_policy_threads.load(Ordering::Relaxed)
    }

    /// A decision finished within the budget.
    pub fn finished(&self) {
        if self.stops_in_a_row.load(Ordering::Relaxed) != 0 {
            self.stops_in_a_row.store(0, Ordering::Relaxed);
        }
    }

    /// A decision was stopped at the budget (it is made again on a policy thread). `true` for
    /// the stop that moves the policy there for good, to log it once.
    pub fn stopped(&self) -> bool {
        let stops = self.stops_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        stops >= STOPS_TO_MOVE && !self.on_policy_threads.swap(true, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_moves_after_three_stops_in_a_row_and_only_then() {
        let placement = Placement::default();
        assert!(!placement.stopped());
        assert!(!placement.stopped());
        placement.finished();
        assert!(!placement.stopped());
        assert!(!placement.stopped());
        assert!(placement.inline());
        assert!(placement.stopped(), "the third in a row moves it");
        assert!(!placement.inline());
        assert!(!placement.stopped(), "moved once, logged once");
    }
}
