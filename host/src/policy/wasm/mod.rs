//! Wasm policies: components written against `sdk/wit/policy.wit`, run by wasmtime.
//!
//! Lifetimes: one [`WasmRuntime`] per process (the engine, its pooling allocator and the epoch
//! ticker thread); one [`WasmPolicy`] per route, compiled at load (`Component` + `InstancePre`);
//! per decision either a fresh store and instance (`isolation = "per-request"`) or a store and
//! instance reused on the policy thread (`isolation = "pooled"`, the default; see
//! [`super::PolicyPool`]), dropped after any trap and after a bounded number of uses.
//!
//! The sandbox is what is linked: the world's `log` import and nothing else. A Rust std guest
//! built for `wasm32-wasip2` imports WASI interfaces it never calls (environment, clocks, stdio):
//! those are given stubs that trap when called, so ordinary Rust policies load, and a policy that
//! does try to read a file, the clock or the environment fails closed at that call. Bounds: the
//! epoch deadline (`policy_limits.timeout`), memory (`policy_limits.wasm_max_memory`, through a
//! resource limiter), and the wasm stack ([`MAX_WASM_STACK`]).

mod bindings;
mod host;
mod state;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bindings::portcullis::policy::types as wit;
use portcullis_wasm_cache::{CompiledCache, Source};
use state::HostState;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceType};
use wasmtime::{Engine, Store, Trap};

use super::decision::{Decision, PolicyError};
use super::identity::PolicyIdentity;
use super::input::PolicyRequest;
use super::limits::{MAX_WASM_MEMORY, PolicyLimits};
use super::output::OutputRules;

/// Wasm stack available to a policy (engine-wide).
pub const MAX_WASM_STACK: usize = 512 * 1024;
/// Memory of a freed instance slot that is reset in place (only its dirty pages, found with
/// Linux's `PAGEMAP_SCAN` where available) instead of being unmapped and faulted in again.
const KEEP_RESIDENT: usize = 2 * 1024 * 1024;
/// Table memory reset in place likewise.
const TABLE_KEEP_RESIDENT: usize = 64 * 1024;
/// How often the epoch advances; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(2);

/// How a route's Wasm policy instances are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// An instance reused on each policy thread (fast; a guest's state can be seen by later
    /// requests on that thread). Dropped after any trap and after `pooled_uses` decisions.
    Pooled,
    /// A fresh store and instance per decision (slower; nothing survives a request).
    PerRequest,
}

/// How long a compiled component stays in the in-memory cache after it was last asked for (live
/// policies keep their own reference; this only spares a recompile on the next reload).
const MEMORY_CACHE_TTL: Duration = Duration::from_secs(600);

/// Where compiled components are kept between runs (`[wasm] cache_dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDir {
    /// The folder.
    pub path: PathBuf,
    /// Set in the config (a folder that cannot be used is then a config error; the default
    /// folder only costs a warning and a compile).
    pub explicit: bool,
}

/// How a route's Wasm policy is compiled and run.
#[derive(Debug, Clone)]
pub struct WasmOptions {
    /// How instances are used.
    pub isolation: Isolation,
    /// Sandbox bounds.
    pub limits: PolicyLimits,
    /// The compiled-code cache, if any.
    pub cache: Option<CacheDir>,
}

/// Where a policy's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeOrigin {
    /// Compiled from the `.wasm` file now.
    Compiled,
    /// Loaded from the on-disk cache (written by an earlier compile).
    DiskCache,
    /// Compiled earlier in this process (a reload, or another route with the same file).
    MemoryCache,
}

impl CodeOrigin {
    /// For log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeOrigin::Compiled => "compiled",
            CodeOrigin::DiskCache => "disk cache",
            CodeOrigin::MemoryCache => "memory cache",
        }
    }
}

/// The process-wide wasmtime engine and base linker.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    /// Compiled components by the SHA-256 of their bytes, with when each was last asked for: a
    /// reload (or a second route using the same file) does not compile again.
    compiled: Mutex<HashMap<[u8; 32], (Component, Instant)>>,
}

impl WasmRuntime {
    /// The runtime, created (with its epoch ticker thread) on first use.
    pub fn get() -> Result<&'static WasmRuntime, String> {
        static RUNTIME: OnceLock<Result<WasmRuntime, String>> = OnceLock::new();
        RUNTIME
            .get_or_init(WasmRuntime::new)
            .as_ref()
            .map_err(Clone::clone)
    }

    fn new() -> Result<Self, String> {
        let mut pooling = wasmtime::PoolingAllocationConfig::default();
        pooling
            .total_component_instances(512)
            .total_core_instances(1024)
            .total_memories(512)
            .total_tables(1024)
            .max_memory_size(MAX_WASM_MEMORY as usize);
        if kernel_has_pagemap_scan() {
            // A freed slot's dirty pages (up to KEEP_RESIDENT) are copied back to their initial
            // contents in place: no `madvise`, no TLB shootdown, no page faults on the next
            // instance. Halves per-request isolation (benches/README.md). Without the ioctl the
            // same setting would memset the first 2 MiB of every slot, which is slower than
            // letting the kernel drop the pages, so it is only set where the scan exists.
            pooling
                .pagemap_scan(wasmtime::Enabled::Auto)
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(TABLE_KEEP_RESIDENT);
        }
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
        let engine =
            Engine::new(&config).map_err(|err| format!("cannot start the Wasm engine: {err}"))?;
        let mut linker = Linker::new(&engine);
        bindings::Policy::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| {
            state
        })
        .map_err(|err| format!("cannot link the policy API: {err}"))?;
        // The world's `use types.{request, identity}` also appears as type imports at the root
        // of a component (bound equal to the interface's). Defined here as the same host types;
        // left undefined, `define_unknown_imports_as_traps` would give them a placeholder type
        // and instantiation would fail with "mismatched resource types".
        let mut root = linker.root();
        root.resource(
            "request",
            ResourceType::host::<state::RequestHandle>(),
            |_, _| Ok(()),
        )
        .and_then(|()| {
            root.resource(
                "identity",
                ResourceType::host::<state::IdentityHandle>(),
                |_, _| Ok(()),
            )
        })
        .map_err(|err| format!("cannot link the policy API: {err}"))?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|err| format!("cannot start the epoch ticker: {err}"))?;
        Ok(WasmRuntime {
            engine,
            linker,
            compiled: Mutex::new(HashMap::new()),
        })
    }
}

impl WasmRuntime {
    /// The component compiled from `bytes`: compiled earlier in this process, loaded from the
    /// disk cache, or compiled now (and then cached). `Err` is a message for the config.
    fn component(
        &self,
        bytes: &[u8],
        cache: Option<&CacheDir>,
    ) -> Result<(Component, CodeOrigin), String> {
        use sha2::Digest;
        // Opened (and so checked) even when memory has the component: a config naming an
        // unusable folder is refused the same way every time.
        let disk = match cache.map(|dir| (dir, CompiledCache::open(&dir.path, &self.engine))) {
            None => None,
            Some((_, Ok(disk))) => Some(disk),
            Some((dir, Err(err))) if dir.explicit => {
                return Err(format!("{err} (or set `[wasm] cache = false`)"));
            }
            Some((_, Err(err))) => {
                tracing::warn!(
                    "{err}; compiling without a cache (set `[wasm] cache_dir` or `cache = false`)"
                );
                None
            }
        };
        let key: [u8; 32] = sha2::Sha256::digest(bytes).into();
        let now = Instant::now();
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((component, last_used)) = compiled.get_mut(&key) {
            *last_used = now;
            return Ok((component.clone(), CodeOrigin::MemoryCache));
        }
        // Compiling under the lock: two routes naming one new file compile it once.
        let (component, origin) = self.compile_or_load(bytes, disk.as_ref())?;
        compiled.retain(|_, (_, last_used)| now.duration_since(*last_used) < MEMORY_CACHE_TTL);
        compiled.insert(key, (component.clone(), now));
        Ok((component, origin))
    }

    fn compile_or_load(
        &self,
        bytes: &[u8],
        disk: Option<&CompiledCache>,
    ) -> Result<(Component, CodeOrigin), String> {
        let compiled = match disk {
            Some(disk) => disk.get_or_compile(bytes).map(|(component, source)| {
                let origin = match source {
                    Source::Disk => CodeOrigin::DiskCache,
                    Source::Compiled => CodeOrigin::Compiled,
                };
                (component, origin)
            }),
            None => Component::new(&self.engine, bytes)
                .map(|component| (component, CodeOrigin::Compiled)),
        };
        compiled.map_err(|err| {
            let cause = err.root_cause().to_string();
            format!(
                "not a valid WebAssembly component: {}",
                cause.lines().next().unwrap_or_default()
            )
        })
    }
}

/// Compiles `bytes` (or loads them from the disk cache `cache`), bypassing the in-memory cache:
/// what a start-up or reload costs per policy. For the benches.
#[cfg(feature = "bench")]
pub fn compile_uncached(bytes: &[u8], cache: Option<&Path>) -> Result<CodeOrigin, String> {
    let runtime = WasmRuntime::get()?;
    let disk = cache
        .map(|dir| CompiledCache::open(dir, &runtime.engine))
        .transpose()
        .map_err(|err| err.to_string())?;
    runtime
        .compile_or_load(bytes, disk.as_ref())
        .map(|(_, origin)| origin)
}

/// Whether Linux's `PAGEMAP_SCAN` ioctl exists here (kernel 6.7 or later).
fn kernel_has_pagemap_scan() -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (6, 7)
}

/// How often (in uses of one pooled instance) a policy thread also sweeps instances of policies
/// that no longer exist; the sweep is a pass over that thread's few entries.
const SWEEP_EVERY: u64 = 256;

/// Identifies a compiled policy in the per-thread pools.
static NEXT_POLICY_ID: AtomicU64 = AtomicU64::new(1);

/// A compiled Wasm policy, ready to instantiate.
pub struct WasmPolicy {
    id: u64,
    pre: bindings::PolicyPre<HostState>,
    file: Arc<str>,
    config_json: String,
    isolation: Isolation,
    limits: PolicyLimits,
    origin: CodeOrigin,
    /// From reading the file to a linked, ready-to-instantiate component.
    load_time: Duration,
    /// Dropped with the policy: pooled instances of a dropped policy are discarded.
    alive: Arc<()>,
}

impl std::fmt::Debug for WasmPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPolicy")
            .field("file", &self.file)
            .field("isolation", &self.isolation)
            .finish_non_exhaustive()
    }
}

/// What one decision hands to the policy.
struct CallInput<'a> {
    request: &'a PolicyRequest<'a>,
    identity: Option<PolicyIdentity>,
    /// Epoch ticks the call may run.
    ticks: u64,
}

/// A reused instance on one policy thread (kept in a thread-local: the policy threads live as
/// long as their snapshot, so an instance is reused by every request that thread decides).
struct Pooled {
    store: Store<HostState>,
    instance: bindings::Policy,
    uses: u64,
    owner: Weak<()>,
}

thread_local! {
    static POOL: RefCell<HashMap<u64, Pooled>> = RefCell::new(HashMap::new());
}

impl WasmPolicy {
    /// Compiles the component at `path` (`shown` as written in the config) with the route's config.
    pub fn compile(
        path: &Path,
        shown: &str,
        config: &serde_json::Map<String, serde_json::Value>,
        options: WasmOptions,
    ) -> Result<Self, PolicyError> {
        let error = |message: String| PolicyError {
            file: shown.to_owned(),
            position: None,
            message,
        };
        let runtime = WasmRuntime::get().map_err(&error)?;
        let started = Instant::now();
        let bytes =
            std::fs::read(path).map_err(|err| error(format!("cannot read the policy: {err}")))?;
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', _, _, 1, 0]) => {}
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
                return Err(error(
                    "a core Wasm module, not a component: build for --target wasm32-wasip2 (see docs/policies-wasm.md)".into(),
                ));
            }
            _ => {
                return Err(error(
                    "not a WebAssembly component (no \"\\0asm\" header)".into(),
                ));
            }
        }
        let (component, origin) = runtime
            .component(&bytes, options.cache.as_ref())
            .map_err(error)?;
        let mut linker = runtime.linker.clone();
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|err| error(format!("cannot link: {err:#}")))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|err| error(format!("cannot be instantiated: {err:#}")))?;
        let pre = bindings::PolicyPre::new(pre).map_err(|err| {
            error(format!(
                "does not export `decide` as portcullis:policy@0.1.0 says: {err:#}"
            ))
        })?;
        Ok(WasmPolicy {
            id: NEXT_POLICY_ID.fetch_add(1, Ordering::Relaxed),
            pre,
            file: shown.into(),
            config_json: serde_json::Value::Object(config.clone()).to_string(),
            isolation: options.isolation,
            limits: options.limits,
            origin,
            load_time: started.elapsed(),
            alive: Arc::new(()),
        })
    }

    /// The file, as written in the config.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Where its machine code came from.
    pub fn origin(&self) -> CodeOrigin {
        self.origin
    }

    /// How long loading it took (read, compile or load, link).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Creates a store and an instance and drops them: what `per-request` pays besides the
    /// call. For the benches.
    #[cfg(feature = "bench")]
    pub fn instantiate_once(&self) -> Result<(), String> {
        let mut store = self.new_store("bench");
        store.set_epoch_deadline(self.deadline_ticks(None));
        store.epoch_deadline_trap();
        self.pre
            .instantiate(&mut store)
            .map(drop)
            .map_err(|err| self.explain(&store, err))
    }

    fn new_store(&self, route: &str) -> Store<HostState> {
        let runtime = WasmRuntime::get().expect("a compiled policy implies a runtime");
        let mut store = Store::new(
            &runtime.engine,
            HostState::new(
                route,
                self.file.clone(),
                self.limits.wasm_max_memory as usize,
            ),
        );
        store.limiter(|state| &mut state.limiter);
        store
    }

    /// Epoch ticks a call may run: `policy_limits.timeout`, or less when `deadline` is nearer.
    fn deadline_ticks(&self, deadline: Option<Instant>) -> u64 {
        let allowed = deadline.map_or(self.limits.timeout, |deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .min(self.limits.timeout)
        });
        (allowed.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
    }

    /// Runs the policy for one request.
    pub fn decide(
        &self,
        request: &PolicyRequest<'_>,
        identity: Option<&PolicyIdentity>,
        rules: &OutputRules,
    ) -> Result<Decision, PolicyError> {
        self.decide_by(request, identity, rules, None)
    }

    /// [`WasmPolicy::decide`], stopping at `deadline` too if that comes first.
    pub fn decide_by(
        &self,
        request: &PolicyRequest<'_>,
        identity: Option<&PolicyIdentity>,
        rules: &OutputRules,
        deadline: Option<Instant>,
    ) -> Result<Decision, PolicyError> {
        let call = CallInput {
            request,
            identity: identity.cloned(),
            ticks: self.deadline_ticks(deadline),
        };
        let outcome = match self.isolation {
            Isolation::PerRequest => {
                let mut store = self.new_store(request.route);
                self.call(&mut store, None, call)
            }
            Isolation::Pooled => self.call_pooled(request.route, call),
        };
        let decision = outcome.map_err(|message| PolicyError {
            file: self.file.to_string(),
            position: None,
            message,
        })?;
        self.convert(decision, rules)
    }

    /// One call on `store` (instantiating into it unless `instance` is given). The error text says
    /// which limit stopped the guest, when one did.
    fn call(
        &self,
        store: &mut Store<HostState>,
        instance: Option<&bindings::Policy>,
        input: CallInput<'_>,
    ) -> Result<wit::Decision, String> {
        store.set_epoch_deadline(input.ticks);
        store.epoch_deadline_trap();
        let fresh;
        let instance = match instance {
            Some(instance) => instance,
            None => {
                fresh = self
                    .pre
                    .instantiate(&mut *store)
                    .map_err(|err| self.explain(store, err))?;
                &fresh
            }
        };
        let state = store.data_mut();
        state.request.fill(input.request);
        let identity = input.identity.map(|identity| {
            state.identity = Some(identity);
            Resource::new_borrow(state::CURRENT)
        });
        let request = Resource::new_borrow(state::CURRENT);
        let decided = instance.call_decide(&mut *store, request, identity, &self.config_json);
        let state = store.data_mut();
        state.request.clear();
        state.identity = None;
        decided.map_err(|err| self.explain(store, err))
    }

    fn call_pooled(&self, route: &str, input: CallInput<'_>) -> Result<wit::Decision, String> {
        let mut pooled = POOL.with(|pool| pool.borrow_mut().remove(&self.id));
        let mut entry = match pooled.take() {
            Some(entry) if entry.store.data().route == route => entry,
            _ => {
                let mut store = self.new_store(route);
                store.set_epoch_deadline(input.ticks);
                store.epoch_deadline_trap();
                let instance = self
                    .pre
                    .instantiate(&mut store)
                    .map_err(|err| self.explain(&store, err))?;
                Pooled {
                    store,
                    instance,
                    uses: 0,
                    owner: Arc::downgrade(&self.alive),
                }
            }
        };
        let instance = entry.instance;
        let result = self.call(&mut entry.store, Some(&instance), input);
        entry.instance = instance;
        entry.uses += 1;
        // A trapped instance cannot be entered again; a worn one is replaced.
        if result.is_ok() && entry.uses < self.limits.wasm_pooled_uses {
            POOL.with(|pool| {
                let mut pool = pool.borrow_mut();
                if entry.uses == 1 || entry.uses % SWEEP_EVERY == 0 {
                    // Drop the instances of policies that no longer exist (a reload replaced
                    // them): on every new entry, and every SWEEP_EVERY uses, since a policy still
                    // held by a slow request at the first chance is only gone later.
                    pool.retain(|_, other| other.owner.strong_count() > 0);
                }
                pool.insert(self.id, entry)
            });
        }
        result
    }

    fn explain(&self, store: &Store<HostState>, err: wasmtime::Error) -> String {
        if store.data().limiter.refused {
            return format!(
                "memory limit of {} bytes exceeded (policy_limits.wasm_max_memory)",
                self.limits.wasm_max_memory
            );
        }
        let trap = err
            .chain()
            .find_map(|cause| cause.downcast_ref::<Trap>())
            .copied();
        match trap.as_ref() {
            Some(Trap::Interrupt) => format!(
                "stopped after {:?} of wall-clock time (policy_limits.timeout)",
                self.limits.timeout
            ),
            Some(Trap::StackOverflow) => {
                format!("wasm stack of {MAX_WASM_STACK} bytes exhausted (runaway recursion)")
            }
            Some(Trap::UnreachableCodeReached) => {
                "the policy panicked or aborted (trap: unreachable)".to_owned()
            }
            Some(trap) => format!("trap: {trap}"),
            // Not a trap of the guest's own: the root cause, without wasmtime's backtrace context.
            // A trapping WASI stub is what a Rust panic usually reaches first (it reads the
            // environment and writes stderr while reporting itself).
            None => {
                let cause = err.root_cause().to_string();
                if cause.starts_with("unknown import") {
                    format!(
                        "the policy panicked or called a function outside its sandbox ({cause})"
                    )
                } else {
                    cause
                }
            }
        }
    }

    fn convert(
        &self,
        decision: wit::Decision,
        rules: &OutputRules,
    ) -> Result<Decision, PolicyError> {
        let error = |message: String| PolicyError {
            file: self.file.to_string(),
            position: None,
            message,
        };
        match decision {
            wit::Decision::Allow(headers) => {
                let headers = rules
                    .check(headers.into_iter().map(|h| (h.name, h.value)).collect())
                    .map_err(error)?;
                Ok(Decision::Allow { headers })
            }
            wit::Decision::Deny(denial) => rules
                .denial(i64::from(denial.status), denial.reason)
                .map_err(error),
            wit::Decision::Login => Ok(Decision::Login),
        }
    }
}
