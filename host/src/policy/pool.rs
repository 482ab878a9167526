//! [`PolicyPool`]: the threads policy scripts run on, off the async workers.
//!
//! A script never runs on a thread that serves connections: whatever it does — spin until its
//! operation budget or wall-clock cap stops it, or hold its thread in a native call — requests on
//! other routes are served meanwhile. The pool has a fixed number of threads
//! (`policy_limits.threads`, default: the machine's cores), started on first use and ended when
//! the pool is dropped (with the snapshot that owns it) and its queue is drained.
//!
//! The request waits asynchronously, with a deadline of its own: the policy timeout plus
//! [`DEADLINE_GRACE`], counted from when the decision was queued. Past it the request fails
//! closed, even if a thread is still busy with it. The job is handed that deadline too, so a
//! script stops when its caller stopped waiting, and a job whose caller is gone is not started.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::limits::PolicyLimits;

/// What the caller waits beyond `policy_limits.timeout`: time to be scheduled onto a policy
/// thread and back, on a busy machine.
pub const DEADLINE_GRACE: Duration = Duration::from_millis(100);

/// Decisions that may wait for a thread, per thread; more are refused at once.
const QUEUED_PER_THREAD: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

/// Why the pool gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The deadline passed first: the threads were busy or the policy did not stop in time.
    #[error(
        "no decision within {0:?} (policy_limits.timeout plus grace): the policy threads were busy or the policy did not stop"
    )]
    Overdue(Duration),
    /// Too many decisions already wait for a thread.
    #[error("{0} decisions already wait for a policy thread (policy_limits.threads)")]
    Saturated(usize),
    /// The job panicked, or no thread could be started.
    #[error("the policy thread failed unexpectedly")]
    Failed,
}

/// A bounded pool of policy threads. Cheap to create: threads start with the first job.
pub struct PolicyPool {
    threads: usize,
    /// How long a caller waits for a result.
    wait: Duration,
    queue: OnceLock<SyncSender<Job>>,
}

impl std::fmt::Debug for PolicyPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyPool")
            .field("threads", &self.threads)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl PolicyPool {
    /// A pool of `limits.threads` threads whose callers wait `limits.timeout` plus
    /// [`DEADLINE_GRACE`].
    pub fn new(limits: &PolicyLimits) -> Self {
        PolicyPool {
            threads: limits.threads.max(1),
            wait: limits.timeout + DEADLINE_GRACE,
            queue: OnceLock::new(),
        }
    }

    /// How many threads it runs.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `job` on a policy thread and waits for its result, at most until the deadline, which
    /// `job` is given (it should stop by then: nobody waits for it afterwards).
    pub async fn run<T, F>(&self, job: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(Instant) -> T + Send + 'static,
    {
        let deadline = Instant::now() + self.wait;
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if reply.is_closed() {
                return;
            }
            // A panic costs this decision (the caller sees `Failed`), not the thread.
            if let Ok(value) = std::panic::catch_unwind(AssertUnwindSafe(|| job(deadline))) {
                let _ = reply.send(value);
            }
        });
        match self.queue().try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(PoolError::Saturated(self.threads * QUEUED_PER_THREAD));
            }
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::Failed),
        }
        match tokio::time::timeout_at(deadline.into(), result).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(PoolError::Failed),
            Err(_) => Err(PoolError::Overdue(self.wait)),
        }
    }

    fn queue(&self) -> &SyncSender<Job> {
        self.queue.get_or_init(|| {
            let (sender, receiver) =
                std::sync::mpsc::sync_channel(self.threads * QUEUED_PER_THREAD);
            let receiver = Arc::new(Mutex::new(receiver));
            for index in 0..self.threads {
                let receiver = receiver.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("policy-{index}"))
                    .spawn(move || serve(&receiver));
                if let Err(err) = spawned {
                    tracing::error!("cannot start policy thread {index}: {err}");
                }
            }
            // With no thread started the receiver is gone: every send fails (`Failed`).
            sender
        })
    }
}

/// A policy thread: runs jobs until the pool is dropped and its queue drained.
fn serve(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let receiver = receiver.lock().unwrap_or_else(|p| p.into_inner());
            receiver.recv()
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize, timeout: Duration) -> PolicyPool {
        PolicyPool::new(&PolicyLimits {
            threads,
            timeout,
            ..PolicyLimits::default()
        })
    }

    #[tokio::test]
    async fn a_job_runs_off_the_caller_thread_and_returns_its_value() {
        let pool = pool(2, Duration::from_secs(5));
        let caller = std::thread::current().id();
        let (value, thread) = pool
            .run(|_| (42, std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(value, 42);
        assert_ne!(thread, caller);
    }

    /// A job that holds its thread past the deadline (as a native call that blocks would) does
    /// not hold its caller: the caller gets `Overdue` at the deadline.
    #[tokio::test]
    async fn the_caller_stops_waiting_at_the_deadline_even_if_the_thread_is_still_busy() {
        let pool = pool(1, Duration::from_millis(50));
        let started = Instant::now();
        let result = pool
            .run(|_| std::thread::sleep(Duration::from_secs(3)))
            .await;
        assert_eq!(result, Err(PoolError::Overdue(Duration::from_millis(150))));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // The thread is still held: a queued job's caller is answered at its own deadline too.
        let started = Instant::now();
        assert_eq!(
            pool.run(|_| ()).await,
            Err(PoolError::Overdue(Duration::from_millis(150)))
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_its_call_and_the_thread_serves_the_next() {
        let pool = pool(1, Duration::from_secs(5));
        assert_eq!(
            pool.run(|_| -> u8 { panic!("boom") }).await,
            Err(PoolError::Failed)
        );
        assert_eq!(pool.run(|_| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn a_job_is_given_its_callers_deadline() {
        let pool = pool(1, Duration::from_millis(500));
        let before = Instant::now();
        let deadline = pool.run(|deadline| deadline).await.unwrap();
        assert!(deadline >= before + Duration::from_millis(600));
        assert!(deadline <= Instant::now() + Duration::from_millis(600));
    }
}
