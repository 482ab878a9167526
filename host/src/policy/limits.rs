//! [`PolicyLimits`]: every bound a policy runs under, defined once, with its default.
//!
//! Configured in `[policy_limits]`; each has a test in `tests/it/policies.rs` that exceeds it (the
//! policy threads and the caller's deadline: `tests/it/proxy.rs`).

use std::time::Duration;

/// Most policy threads a config may ask for.
pub const MAX_THREADS: usize = 1024;

/// Most linear memory a config may give a Wasm policy (the pooling allocator reserves this much
/// address space per instance slot).
pub const MAX_WASM_MEMORY: u64 = 256 * 1024 * 1024;

/// The sandbox bounds of policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLimits {
    /// Rhai operations per decision (loops are stopped by this). Default 100,000 (about 1–5 ms).
    pub max_operations: u64,
    /// Nested function calls. Default 32.
    pub max_call_depth: usize,
    /// Nesting of expressions (at global level; functions get the same). Default 64.
    pub max_expr_depth: usize,
    /// Bytes in one string. Default 64 KiB.
    pub max_string_size: usize,
    /// Items in one array. Default 10,000.
    pub max_array_size: usize,
    /// Entries in one map. Default 10,000.
    pub max_map_size: usize,
    /// Wall-clock cap per decision. Default 20 ms.
    pub timeout: Duration,
    /// Headers one decision may set. Default 16.
    pub max_headers: usize,
    /// Bytes in one header value a policy sets. Default 4 KiB.
    pub max_header_value_size: usize,
    /// Linear memory of a Wasm policy. Default 32 MiB (at most 256 MiB).
    pub wasm_max_memory: u64,
    /// Decisions a pooled Wasm instance serves before it is replaced. Default 10,000.
    pub wasm_pooled_uses: u64,
    /// Threads that run policy scripts, off the threads serving connections (a request waits
    /// for its decision at most `timeout` plus a grace). Default: the machine's cores.
    pub threads: usize,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        PolicyLimits {
            max_operations: 100_000,
            max_call_depth: 32,
            max_expr_depth: 64,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
            timeout: Duration::from_millis(20),
            max_headers: 16,
            max_header_value_size: 4096,
            wasm_max_memory: 32 * 1024 * 1024,
            wasm_pooled_uses: 10_000,
            threads: default_threads(),
        }
    }
}

/// The default `threads`: the cores this process may use.
fn default_threads() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, usize::from))
}
