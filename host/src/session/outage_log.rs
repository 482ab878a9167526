//! [`OutageLog`]: what the log says of a shared store's failures. A flood of requests during an
//! outage (or reads that work while writes fail, in a full Redis) must not flood the log: at most
//! a line per [`OUTAGE_LOG_INTERVAL`] each way, with the count of failures not yet told.

use std::time::{Duration, Instant};

use super::store::StoreError;

/// The longest the log goes without a line about a store that keeps failing (or about one that
/// works again after failing).
pub(super) const OUTAGE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The failures not yet told, and when the log last spoke of them.
#[derive(Default)]
pub(super) struct OutageLog {
    untold: u64,
    failing: bool,
    failure_said: Option<Instant>,
    recovery_said: Option<Instant>,
}

impl OutageLog {
    pub(super) fn failed(&mut self, err: &StoreError) {
        self.failing = true;
        self.untold += 1;
        if self
            .failure_said
            .is_none_or(|said| said.elapsed() >= OUTAGE_LOG_INTERVAL)
        {
            tracing::warn!(error = %err, failures = self.untold, "the session store failed; what needs it gets a 503 (or, for a session's activity, waits for the next request)");
            self.untold = 0;
            self.failure_said = Some(Instant::now());
        }
    }

    pub(super) fn worked(&mut self) {
        if self.failing
            && self
                .recovery_said
                .is_none_or(|said| said.elapsed() >= OUTAGE_LOG_INTERVAL)
        {
            tracing::info!("the session store works again");
            self.recovery_said = Some(Instant::now());
        }
        self.failing = false;
    }
}
