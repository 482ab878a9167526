//! Rhai policies: one hardened [`PolicyEngine`] per config, scripts compiled at load into
//! [`RhaiPolicy`], run per request with a fresh scope.
//!
//! The sandbox is what is registered: the script sees four constants (`claims`, `request`, `route`,
//! `config`), the helpers below, and the pure part of Rhai's standard library ([`PolicyPackage`]:
//! arithmetic, logic, strings, arrays, maps, ranges, function pointers). Nothing that blocks,
//! tells the time or reaches outside: no `sleep`, no `eval`, no `import` (the crate is built with
//! `no_module`), no clock (`no_time`), and no file, network or environment function. Every
//! callable function is listed in `rhai_api.txt`, which a test compares with the engine.
//!
//! Every bound comes from [`PolicyLimits`]; the wall-clock cap is checked from the
//! progress callback every 256 operations.
//!
//! Helpers need the current request, which a shared engine cannot capture: it is put in a
//! thread-local for the length of one synchronous evaluation ([`CallGuard`]).

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicFnPackage, BasicIteratorPackage, BasicMapPackage,
    BasicMathPackage, BasicStringPackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{
    AST, Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position, Scope, def_package,
};

use super::decision::{Decision, PolicyError};
use super::identity::PolicyIdentity;
use super::input::PolicyRequest;
use super::limits::PolicyLimits;
use super::output::OutputRules;

/// The request while a policy runs.
struct Current {
    identity: PolicyIdentity,
    claims: Arc<Map>,
    request: Arc<RequestData>,
    /// Whether `request` is the real one (not copied for scripts judged not to read it).
    has_request: bool,
    /// Set when the script asked for a header without the real request: its code hid the call
    /// (a function called by a name built at run time), so the judgement was wrong.
    wanted_request: std::cell::Cell<bool>,
    route: ImmutableString,
    file: Arc<str>,
    deadline: Instant,
    /// Lines `print` and `debug` wrote in this decision (at most [`MAX_LOG_LINES`]).
    logged_lines: std::cell::Cell<u32>,
}

/// Lines one decision may write with `print`/`debug`; later ones are dropped, with one notice.
const MAX_LOG_LINES: u32 = 16;
/// Characters of one `print`/`debug` line kept in the log.
const MAX_LOG_LINE_CHARS: usize = 512;

impl Current {
    /// The text to log for one `print`/`debug`, or `None` once this decision used its lines: a
    /// script printing 60 KiB in a loop must not write megabytes of log per request.
    fn log_line(&self, text: &str) -> Option<String> {
        let used = self.logged_lines.get();
        if used > MAX_LOG_LINES {
            return None;
        }
        self.logged_lines.set(used + 1);
        if used == MAX_LOG_LINES {
            return Some(format!(
                "(further print/debug output of this decision dropped: at most {MAX_LOG_LINES} lines)"
            ));
        }
        let mut line: String = text.chars().take(MAX_LOG_LINE_CHARS).collect();
        if line.len() < text.len() {
            line.push_str("… (cut)");
        }
        Some(line)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
    static SCOPE: RefCell<Scope<'static>> = RefCell::new(Scope::new());
    /// What scripts that never read the request get: made once per thread.
    static NO_REQUEST: Arc<RequestData> = Arc::new(RequestData::default());
}

/// Clears the thread-local when an evaluation ends, however it ends.
struct CallGuard;

impl CallGuard {
    fn set(current: Current) -> Self {
        CURRENT.with(|c| *c.borrow_mut() = Some(current));
        CallGuard
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

fn with_current<T>(default: T, f: impl FnOnce(&Current) -> T) -> T {
    CURRENT.with(|c| c.borrow().as_ref().map(f).unwrap_or(default))
}

/// The request fields, owned, behind the script's `request` value.
#[derive(Debug, Default)]
struct RequestData {
    method: ImmutableString,
    path: ImmutableString,
    query: ImmutableString,
    host: ImmutableString,
    client_ip: ImmutableString,
    headers: http::HeaderMap,
}

/// `request` in a script: properties `method`, `path`, `query`, `host`, `client_ip`, `headers`.
#[derive(Debug, Clone)]
struct RequestView(Arc<RequestData>);

impl RequestData {
    fn header(&self, name: &str) -> Dynamic {
        let values: Vec<&str> = self
            .headers
            .get_all(name.to_ascii_lowercase().as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            Dynamic::UNIT
        } else {
            values.join(", ").into()
        }
    }

    fn headers_map(&self) -> Map {
        let mut map = Map::new();
        for name in self.headers.keys() {
            map.insert(name.as_str().into(), self.header(name.as_str()));
        }
        map
    }
}

/// `claims` and `config` in a script: a map that can be read (`m.key`, `m["key"]`, `"key" in m`,
/// `m.keys()`, `m.len()`) but not changed. Values read out of it are copies.
#[derive(Debug, Clone)]
struct ReadOnlyMap(Arc<Map>);

impl ReadOnlyMap {
    fn get(&mut self, key: &str) -> Dynamic {
        self.0.get(key).cloned().unwrap_or(Dynamic::UNIT)
    }
}

/// What a script's `allow()`, `deny()` and `login()` return.
#[derive(Debug, Clone)]
enum ScriptDecision {
    Allow(Vec<(String, String)>),
    Deny(i64, Option<String>),
    Login,
}

def_package! {
    /// The part of Rhai's standard library a policy gets: pure computation on the values it
    /// sees. Left out, and so not callable: the language core package (`sleep`, which would
    /// block the thread; `exit`; `parse_json`; `take`; `tag`), byte blobs and bit fields; the
    /// clock is compiled out (`no_time`). `rhai_api.txt` lists every function this and
    /// [`register_api`] make callable; a test keeps it current.
    PolicyPackage(lib):
        ArithmeticPackage,
        LogicPackage,
        BasicMathPackage,
        BasicStringPackage,
        MoreStringPackage,
        BasicArrayPackage,
        BasicMapPackage,
        BasicIteratorPackage,
        BasicFnPackage
    {}
}

/// A Rhai engine configured with the sandbox and the policy API.
#[derive(Clone)]
pub struct PolicyEngine {
    engine: Arc<Engine>,
    limits: PolicyLimits,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("limits", &self.limits)
            .finish()
    }
}

/// A compiled Rhai policy.
#[derive(Debug)]
pub struct RhaiPolicy {
    ast: AST,
    /// Whether the script can see the request at all (a conservative text check): if not, the
    /// request is not copied for it. Turned on for good if a run shows the check was wrong.
    reads_request: std::sync::atomic::AtomicBool,
    /// Whether its decision depends on the claims and config alone (a conservative text check:
    /// no request, no route, no print or debug), so it can be remembered per session. Turned off
    /// for good with `reads_request`.
    claims_only: std::sync::atomic::AtomicBool,
    /// Identifies this compiled policy among remembered decisions.
    id: u64,
    /// How many times the script ran (for tests of what is remembered).
    runs: std::sync::atomic::AtomicU64,
    /// The route name as a script string, made on first use.
    route: std::sync::OnceLock<ImmutableString>,
    file: Arc<str>,
    config: Dynamic,
    engine: PolicyEngine,
}

impl PolicyEngine {
    /// An engine with `limits` and the policy API.
    pub fn new(limits: PolicyLimits) -> Self {
        // Raw: only what is registered below exists (`Engine::new()` would add `sleep`, `exit`
        // and the rest of Rhai's standard library).
        let mut engine = Engine::new_raw();
        engine.register_global_module(PolicyPackage::new().as_shared_module());
        // What `Engine::new()` sets: repeated property names and strings are shared, not copied.
        engine.set_max_strings_interned(256);
        engine
            .set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_depth)
            .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
            .set_max_string_size(limits.max_string_size)
            .set_max_array_size(limits.max_array_size)
            .set_max_map_size(limits.max_map_size)
            .set_strict_variables(true);
        engine.disable_symbol("eval");
        engine.on_progress(|operations| {
            if operations % 256 != 0 {
                return None;
            }
            with_current(None, |current| {
                (Instant::now() > current.deadline).then(|| Dynamic::from("wall-clock cap"))
            })
        });
        engine.on_print(|text| {
            with_current((), |current| {
                if let Some(text) = current.log_line(text) {
                    tracing::info!(target: "portcullis::policy", route = %current.route, file = %current.file, "print: {text}")
                }
            })
        });
        engine.on_debug(|text, _, position| {
            with_current((), |current| {
                if let Some(text) = current.log_line(text) {
                    tracing::debug!(target: "portcullis::policy", route = %current.route, file = %current.file, line = position.line(), "debug: {text}")
                }
            })
        });
        register_api(&mut engine);
        super::rhai_guards::register(&mut engine, limits.max_string_size);
        PolicyEngine {
            engine: Arc::new(engine),
            limits,
        }
    }

    /// The limits this engine enforces.
    pub fn limits(&self) -> &PolicyLimits {
        &self.limits
    }

    /// Compiles a script file. `shown` is the path as written in the config (used in messages);
    /// `config` is the route's `policy_config`.
    pub fn compile(
        &self,
        path: &Path,
        shown: &str,
        config: Map,
    ) -> Result<RhaiPolicy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|err| PolicyError {
            file: shown.to_owned(),
            position: None,
            message: format!("cannot read the policy: {err}"),
        })?;
        self.compile_text(&text, shown, config)
    }

    /// Compiles script text (tests, `policy test`).
    pub fn compile_text(
        &self,
        text: &str,
        shown: &str,
        config: Map,
    ) -> Result<RhaiPolicy, PolicyError> {
        let ast = self
            .engine
            .compile_with_scope(&compile_scope(), text)
            .map_err(|err| PolicyError {
                file: shown.to_owned(),
                position: line_column(err.position()),
                message: err.err_type().to_string(),
            })?;
        // What the script can read is judged on its code without comments (a comment saying
        // "request" must not cost a copy of every request). String literals stay: a name in
        // one (`Fn("print")`) counts as used.
        // (A raw engine: the policy engine's strict variables would refuse `config` here.)
        let code = Engine::new_raw()
            .compact_script(text)
            .unwrap_or_else(|_| text.to_owned());
        Ok(RhaiPolicy {
            ast,
            file: shown.into(),
            config: Dynamic::from_map(config),
            reads_request: reads_request(&code).into(),
            claims_only: (!reads_request(&code)
                && !["route", "print", "debug"]
                    .iter()
                    .any(|word| code.contains(word)))
            .into(),
            id: NEXT_POLICY_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            runs: std::sync::atomic::AtomicU64::new(0),
            route: std::sync::OnceLock::new(),
            engine: self.clone(),
        })
    }
}

/// Whether a script's code (without comments) may read the request: it names `request` or
/// `header`, or calls through a function pointer (`Fn("hea" + "der")` names nothing). Conservative:
/// an identifier or string containing these words counts too.
fn reads_request(code: &str) -> bool {
    ["request", "header", "Fn", "call"]
        .iter()
        .any(|word| code.contains(word))
}

/// The claims as script values (made once per user, see [`PolicyIdentity`]); a value Rhai cannot
/// hold is left out.
fn script_claims(claims: &serde_json::Map<String, serde_json::Value>) -> Map {
    claims
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().into(), rhai::serde::to_dynamic(value).ok()?))
        })
        .collect()
}

/// Identifies compiled policies (a reload's are new).
static NEXT_POLICY_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The names every script sees, for compiling with strict variables. Pushed as variables with
/// placeholder values, never as constants: the optimizer would fold constants into the compiled
/// script (and Rhai 1.27 then panics on a script that assigns to such a folded name).
fn compile_scope() -> Scope<'static> {
    let mut scope = Scope::new();
    for name in ["claims", "request", "route", "config"] {
        scope.push(name, ());
    }
    scope
}

fn line_column(position: Position) -> Option<(usize, usize)> {
    Some((position.line()?, position.position().unwrap_or(0)))
}

fn register_api(engine: &mut Engine) {
    engine
        .register_type_with_name::<RequestView>("Request")
        .register_get("method", |r: &mut RequestView| r.0.method.clone())
        .register_get("path", |r: &mut RequestView| r.0.path.clone())
        .register_get("query", |r: &mut RequestView| r.0.query.clone())
        .register_get("host", |r: &mut RequestView| r.0.host.clone())
        .register_get("client_ip", |r: &mut RequestView| r.0.client_ip.clone())
        .register_get("headers", |r: &mut RequestView| r.0.headers_map());
    engine.register_type_with_name::<ScriptDecision>("Decision");
    engine
        .register_type_with_name::<ReadOnlyMap>("map")
        .register_indexer_get(|m: &mut ReadOnlyMap, key: &str| m.get(key))
        .register_fn("contains", |m: &mut ReadOnlyMap, key: &str| {
            m.0.contains_key(key)
        })
        .register_fn("keys", |m: &mut ReadOnlyMap| -> Array {
            m.0.keys().map(|k| k.as_str().into()).collect()
        })
        .register_fn("values", |m: &mut ReadOnlyMap| -> Array {
            m.0.values().cloned().collect()
        })
        .register_fn("len", |m: &mut ReadOnlyMap| m.0.len() as i64)
        .register_fn("to_map", |m: &mut ReadOnlyMap| (*m.0).clone())
        .register_fn("to_string", |m: &mut ReadOnlyMap| {
            Dynamic::from_map((*m.0).clone()).to_string()
        })
        .register_fn("to_debug", |m: &mut ReadOnlyMap| format!("{:?}", *m.0));

    engine
        .register_fn("has_group", |name: &str| {
            with_current(false, |c| c.identity.has_group(name))
        })
        .register_fn("has_any_group", |names: &mut Array| {
            with_current(false, |c| {
                names
                    .iter()
                    .filter_map(|n| n.clone().into_immutable_string().ok())
                    .any(|n| c.identity.has_group(&n))
            })
        })
        .register_fn("claim", |name: &str| {
            with_current(Dynamic::UNIT, |c| {
                c.claims.get(name).cloned().unwrap_or(Dynamic::UNIT)
            })
        })
        .register_fn("header", |name: &str| {
            with_current(Dynamic::UNIT, |c| {
                if !c.has_request {
                    c.wanted_request.set(true);
                }
                c.request.header(name)
            })
        })
        .register_fn("allow", || ScriptDecision::Allow(Vec::new()))
        .register_fn(
            "allow",
            |headers: Map| -> Result<ScriptDecision, Box<EvalAltResult>> {
                let mut pairs = Vec::with_capacity(headers.len());
                for (name, value) in headers {
                    let value =
                        match value.clone().into_immutable_string() {
                            Ok(text) => text.to_string(),
                            Err(_) if value.is_int() || value.is_bool() || value.is_float() => {
                                value.to_string()
                            }
                            Err(kind) => return Err(format!(
                                "allow(): the value of header {name:?} is a {kind}, not a string"
                            )
                            .into()),
                        };
                    pairs.push((name.to_string(), value));
                }
                Ok(ScriptDecision::Allow(pairs))
            },
        )
        .register_fn("deny", |status: i64| ScriptDecision::Deny(status, None))
        .register_fn("deny", |status: i64, reason: &str| {
            ScriptDecision::Deny(status, Some(reason.to_owned()))
        })
        .register_fn("login", || ScriptDecision::Login);
}

impl RhaiPolicy {
    /// The file, as written in the config.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Runs the script for one request. Never panics and never blocks longer than the limits allow.
    pub fn decide(
        &self,
        request: &PolicyRequest<'_>,
        identity: &PolicyIdentity,
        rules: &OutputRules,
    ) -> Result<Decision, PolicyError> {
        self.decide_by(request, identity, rules, None)
    }

    /// [`RhaiPolicy::decide`], stopping at `deadline` too if that comes first.
    pub fn decide_by(
        &self,
        request: &PolicyRequest<'_>,
        identity: &PolicyIdentity,
        rules: &OutputRules,
        deadline: Option<Instant>,
    ) -> Result<Decision, PolicyError> {
        // Read the clock only for a run (a remembered decision is served without it).
        let until = || {
            let timeout = Instant::now() + self.engine.limits.timeout;
            deadline.map_or(timeout, |deadline| deadline.min(timeout))
        };
        if !self.claims_only.load(Relaxed) {
            return self.run(request, identity, rules, until());
        }
        if let Some(decision) = identity.decisions().get(self.id) {
            return Ok(decision);
        }
        let decision = self.run(request, identity, rules, until())?;
        // A run that found the script reading the request turned `claims_only` off.
        if self.claims_only.load(Relaxed) {
            identity.decisions().remember(self.id, &decision);
        }
        Ok(decision)
    }

    /// The decision remembered for this user, if the script's decisions are remembered per
    /// session and it already decided for them.
    pub fn remembered(&self, identity: &PolicyIdentity) -> Option<Decision> {
        if self.claims_only.load(Relaxed) {
            identity.decisions().get(self.id)
        } else {
            None
        }
    }

    /// How many times the script ran (decisions remembered per session are not runs).
    pub fn runs(&self) -> u64 {
        self.runs.load(Relaxed)
    }

    fn run(
        &self,
        request: &PolicyRequest<'_>,
        identity: &PolicyIdentity,
        rules: &OutputRules,
        deadline: Instant,
    ) -> Result<Decision, PolicyError> {
        self.runs.fetch_add(1, Relaxed);
        let has_request = self.reads_request.load(Relaxed);
        let data = if has_request {
            Arc::new(RequestData {
                method: request.method.into(),
                path: request.path.into(),
                query: request.query.into(),
                host: request.host.into(),
                client_ip: request.client_ip.to_string().into(),
                headers: request.headers.clone(),
            })
        } else {
            NO_REQUEST.with(Arc::clone)
        };
        let cached = self.route.get_or_init(|| request.route.into());
        let route = if cached.as_str() == request.route {
            cached.clone()
        } else {
            request.route.into()
        };
        // The scope is reused across decisions on this thread (cleared each time): no allocation.
        let mut scope = SCOPE.with(|cached| std::mem::take(&mut *cached.borrow_mut()));
        scope.clear();
        // `claims` (possibly large, shared by a session's requests) and `request` are read-only
        // views: handing them over costs a reference count, they have no setters, and what a
        // script reads out of them is a copy. `config` is small: this decision's own copy is
        // cheaper than a view's property lookups. Either way no request can change what the next
        // one sees. (Plain variables, not constants: Rhai re-marks constants value by value.)
        let claims = identity.script_claims(script_claims).clone();
        scope.push("claims", ReadOnlyMap(claims.clone()));
        scope.push("request", RequestView(data.clone()));
        scope.push("route", route.clone());
        scope.push_dynamic("config", self.config.clone());
        // Cleared when dropped: at the end of this run, or before running again below.
        let guard = CallGuard::set(Current {
            identity: identity.clone(),
            claims,
            request: data,
            has_request,
            wanted_request: std::cell::Cell::new(false),
            logged_lines: std::cell::Cell::new(0),
            route,
            file: self.file.clone(),
            deadline,
        });
        // A panic inside the script engine (a Rhai bug) must cost this request, not the
        // connection or the worker: it becomes a policy error like any other failure.
        let engine = &self.engine.engine;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.eval_ast_with_scope::<Dynamic>(&mut scope, &self.ast)
        }))
        .unwrap_or_else(|_| {
            Err(Box::new(EvalAltResult::ErrorRuntime(
                "the script engine failed unexpectedly".into(),
                Position::NONE,
            )))
        });
        scope.clear();
        SCOPE.with(|cached| *cached.borrow_mut() = scope);
        if with_current(false, |current| current.wanted_request.get()) {
            // It read a header it was not given: from now on it gets the request, every time.
            self.reads_request.store(true, Relaxed);
            self.claims_only.store(false, Relaxed);
            drop(guard);
            return self.run(request, identity, rules, deadline);
        }
        self.decision(result.map_err(|err| self.runtime_error(*err))?, rules)
    }

    fn error(&self, position: Option<(usize, usize)>, message: String) -> PolicyError {
        PolicyError {
            file: self.file.to_string(),
            position,
            message,
        }
    }

    fn runtime_error(&self, err: EvalAltResult) -> PolicyError {
        let limits = &self.engine.limits;
        let position = line_column(err.position());
        let message = match &err {
            EvalAltResult::ErrorTooManyOperations(_) => format!(
                "stopped after {} operations (policy_limits.max_operations)",
                limits.max_operations
            ),
            EvalAltResult::ErrorTerminated(_, _) => format!(
                "stopped after {:?} of wall-clock time (policy_limits.timeout)",
                limits.timeout
            ),
            EvalAltResult::ErrorStackOverflow(_) => format!(
                "more than {} nested calls (policy_limits.max_call_depth)",
                limits.max_call_depth
            ),
            EvalAltResult::ErrorDataTooLarge(what, _) => format!(
                "{what} larger than allowed (policy_limits.max_string_size / max_array_size / max_map_size)"
            ),
            other => other.to_string(),
        };
        self.error(position, message)
    }

    fn decision(&self, result: Dynamic, rules: &OutputRules) -> Result<Decision, PolicyError> {
        let type_name = result.type_name();
        let Some(decision) = result.try_cast::<ScriptDecision>() else {
            return Err(self.error(
                None,
                format!("the policy returned {type_name}; it must end with allow(), deny(status) or login()"),
            ));
        };
        match decision {
            ScriptDecision::Allow(headers) => {
                let headers = rules
                    .check(headers)
                    .map_err(|message| self.error(None, message))?;
                Ok(Decision::Allow { headers })
            }
            ScriptDecision::Deny(status, reason) => rules
                .denial(status, reason)
                .map_err(|message| self.error(None, message)),
            ScriptDecision::Login => Ok(Decision::Login),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// A script printing 60 KiB in a loop wrote megabytes of log per request: each decision gets
    /// [`MAX_LOG_LINES`] lines of at most [`MAX_LOG_LINE_CHARS`] characters, then one notice.
    #[test]
    fn print_and_debug_output_is_bounded_per_decision() {
        let current = Current {
            identity: PolicyIdentity::anonymous(),
            claims: Arc::new(Map::new()),
            request: Arc::new(RequestData::default()),
            has_request: false,
            wanted_request: std::cell::Cell::new(false),
            route: "r".into(),
            file: "f.rhai".into(),
            deadline: Instant::now(),
            logged_lines: std::cell::Cell::new(0),
        };
        let long = "x".repeat(60_000);
        let lines: Vec<String> = (0..1000).filter_map(|_| current.log_line(&long)).collect();
        assert_eq!(lines.len(), MAX_LOG_LINES as usize + 1);
        assert!(lines[0].len() < MAX_LOG_LINE_CHARS + 20 && lines[0].ends_with("(cut)"));
        assert!(lines.last().unwrap().contains("dropped"));
        let total: usize = lines.iter().map(String::len).sum();
        assert!(total < 10_000, "{total} bytes of log for one decision");
    }

    /// Where the reviewed list lives, relative to the crate.
    const API_LIST: &str = "src/policy/rhai_api.txt";

    /// Every function a policy script can call, as Rhai prints its signature, is in the reviewed
    /// list: a Rhai upgrade or a new registration cannot widen the sandbox unnoticed.
    #[test]
    fn scripts_can_call_only_the_reviewed_rhai_api() {
        let engine = PolicyEngine::new(PolicyLimits::default());
        let callable: BTreeSet<String> =
            engine.engine.gen_fn_signatures(true).into_iter().collect();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(API_LIST);
        if std::env::var_os("PORTCULLIS_WRITE_RHAI_API").is_some() {
            let mut text = String::from(
                "# Every function a Rhai policy can call (signatures as Rhai prints them), reviewed:\n\
                 # none blocks, reads the clock, randomness, files, network or environment, or\n\
                 # changes anything but the script's own values. Checked by\n\
                 # `scripts_can_call_only_the_reviewed_rhai_api` in policy/rhai.rs.\n",
            );
            for signature in &callable {
                text.push_str(signature);
                text.push('\n');
            }
            std::fs::write(&path, text).expect("write the API list");
        }
        let reviewed: BTreeSet<String> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_owned)
            .collect();
        let unreviewed: Vec<&String> = callable.difference(&reviewed).collect();
        let gone: Vec<&String> = reviewed.difference(&callable).collect();
        assert!(
            unreviewed.is_empty() && gone.is_empty(),
            "the functions a Rhai policy can call differ from the reviewed list {API_LIST}.\n\
             New, not reviewed ({}):\n  {}\nListed but gone ({}):\n  {}\n\
             Review every new one: a policy must not be able to block (sleep, I/O), read the \
             clock, randomness, files, network or environment, or change anything outside its \
             own values. If each is harmless, rewrite the list with\n  \
             PORTCULLIS_WRITE_RHAI_API=1 cargo test -p portcullis --lib scripts_can_call_only_the_reviewed_rhai_api\n\
             and commit it saying what was reviewed; otherwise leave the function out of \
             `PolicyPackage` / `register_api` in policy/rhai.rs.",
            unreviewed.len(),
            unreviewed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  "),
            gone.len(),
            gone.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  "),
        );
    }
}
