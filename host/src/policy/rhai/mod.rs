//! Rhai policies: one hardened [`PolicyEngine`] per config, scripts compiled at load into
//! [`RhaiPolicy`], run per request with a fresh scope.
//!
//! The sandbox is what is registered (`functions.rs`, `guards.rs`, each function recorded with
//! what it reads in the table of `api.rs`): the script sees four variables (`claims`, `request`,
//! `route`, `config`), the helpers, and the pure part of Rhai's standard library: arithmetic,
//! logic, strings, arrays, maps, ranges, function pointers. Nothing that blocks, tells the time
//! or reaches outside: no `sleep`, no `eval`, no `import` (the crate is built with `no_module`),
//! no clock (`no_time`), and no file, network or environment function. Every callable function
//! is listed in `rhai_api.txt`, which a test compares with the engine; a call to any other
//! function (a typo) refuses the script when it is compiled (`unknown_calls.rs`).
//!
//! Every bound comes from [`PolicyLimits`]; the wall-clock cap is checked from the progress
//! callback every 256 operations. Which decisions are remembered per session is judged by
//! `remember.rs`; what a run reads is in `call.rs`.

mod api;
mod call;
mod functions;
mod guards;
mod remember;
mod unknown_calls;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use rhai::{AST, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position, Scope};

use self::api::{ApiTable, Registrar, VARIABLES};
use self::call::{CallGuard, Current, ReadOnlyMap, RequestData, RequestView, ScriptDecision};
use super::decision::{Decision, PolicyError};
use super::identity::PolicyIdentity;
use super::input::PolicyRequest;
use super::limits::PolicyLimits;
use super::output::OutputRules;

/// A Rhai engine configured with the sandbox and the policy API.
#[derive(Clone)]
pub struct PolicyEngine {
    engine: Arc<Engine>,
    /// What the engine's API reads, name by name.
    api: Arc<ApiTable>,
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
    /// Whether the script may read the request ([`remember::judge`]): if not, the request is not
    /// copied for it. Turned on for good if a run shows the judgement was wrong.
    reads_request: AtomicBool,
    /// Whether its decision depends on the claims and config alone ([`remember::judge`]), so it
    /// is remembered per session. Turned off for good if a run shows the judgement was wrong.
    claims_only: AtomicBool,
    /// Identifies this compiled policy among remembered decisions.
    id: u64,
    /// How many times the script ran (for tests of what is remembered).
    runs: AtomicU64,
    /// The route name as a script string, made on first use.
    route: std::sync::OnceLock<ImmutableString>,
    file: Arc<str>,
    config: Dynamic,
    engine: PolicyEngine,
}

impl PolicyEngine {
    /// An engine with `limits` and the policy API.
    pub fn new(limits: PolicyLimits) -> Self {
        // Raw: only what is registered exists (`Engine::new()` would add `sleep`, `exit` and the
        // rest of Rhai's standard library).
        let mut engine = Engine::new_raw();
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
            call::with_current(None, |current| {
                (Instant::now() > current.deadline).then(|| Dynamic::from("wall-clock cap"))
            })
        });
        let mut api = Registrar::new(&mut engine);
        functions::register(&mut api);
        guards::register(&mut api, limits.max_string_size);
        let api = api.finish();
        PolicyEngine {
            engine: Arc::new(engine),
            api: Arc::new(api),
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

    /// Compiles script text (tests).
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
        if let Some(unknown) = unknown_calls::first_unknown_call(&ast) {
            return Err(PolicyError {
                file: shown.to_owned(),
                position: line_column(unknown.position),
                message: unknown.message(),
            });
        }
        let verdict = remember::judge(text, &self.api);
        Ok(RhaiPolicy {
            ast,
            file: shown.into(),
            config: Dynamic::from_map(config),
            reads_request: verdict.reads_request.into(),
            claims_only: verdict.claims_only.into(),
            id: NEXT_POLICY_ID.fetch_add(1, Relaxed),
            runs: AtomicU64::new(0),
            route: std::sync::OnceLock::new(),
            engine: self.clone(),
        })
    }
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
static NEXT_POLICY_ID: AtomicU64 = AtomicU64::new(1);

/// The names every script sees, for compiling with strict variables. Pushed as variables with
/// placeholder values, never as constants: the optimizer would fold constants into the compiled
/// script (and Rhai 1.27 then panics on a script that assigns to such a folded name).
fn compile_scope() -> Scope<'static> {
    let mut scope = Scope::new();
    for (name, _) in VARIABLES {
        scope.push(name, ());
    }
    scope
}

fn line_column(position: Position) -> Option<(usize, usize)> {
    Some((position.line()?, position.position().unwrap_or(0)))
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
        // A run that found the judgement wrong turned `claims_only` off.
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

    /// Turns remembering off for good: every later decision runs the script, as the first
    /// request of each session does. For the benches, which time the run apart from the
    /// remembered lookup.
    #[cfg(feature = "bench")]
    pub fn never_remember(&self) {
        self.claims_only.store(false, Relaxed);
    }

    /// How many times the script ran (decisions remembered per session are not runs).
    pub fn runs(&self) -> u64 {
        self.runs.load(Relaxed)
    }

    /// One evaluation. If it shows the judgement of the code wrong — a header read without the
    /// request, or a log line from a script judged claims-only — the judgement is corrected for
    /// good, and in the first case the script runs again, with the request.
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
            Arc::new(RequestData::of(request))
        } else {
            call::no_request()
        };
        let current = Current {
            identity: identity.clone(),
            claims: identity.script_claims(script_claims).clone(),
            request: data,
            has_request,
            wanted_request: std::cell::Cell::new(false),
            logged_lines: std::cell::Cell::new(0),
            route: self.route_name(request.route),
            file: self.file.clone(),
            deadline,
        };
        let mut scope = self.scope(&current);
        // Cleared when dropped: at the end of this run, or before running again below.
        let guard = CallGuard::set(current);
        let result = self.evaluate(&mut scope);
        call::return_scope(scope);
        let (wanted_request, logged) = call::with_current((false, false), |current| {
            (current.wanted_request.get(), current.logged())
        });
        drop(guard);
        if wanted_request || logged {
            self.claims_only.store(false, Relaxed);
        }
        if wanted_request {
            // It read a header it was not given: from now on it gets the request, every time.
            self.reads_request.store(true, Relaxed);
            return self.run(request, identity, rules, deadline);
        }
        self.decision(result.map_err(|err| self.runtime_error(*err))?, rules)
    }

    /// The route's name as a script string (made once for the route this policy serves).
    fn route_name(&self, route: &str) -> ImmutableString {
        let cached = self.route.get_or_init(|| route.into());
        if cached.as_str() == route {
            cached.clone()
        } else {
            route.into()
        }
    }

    /// This thread's scope, with the variables of the call `current`.
    fn scope(&self, current: &Current) -> Scope<'static> {
        let mut scope = call::take_scope();
        // `claims` (possibly large, shared by a session's requests) and `request` are read-only
        // views: handing them over costs a reference count, they have no setters, and what a
        // script reads out of them is a copy. `config` is small: this decision's own copy is
        // cheaper than a view's property lookups. Either way no request can change what the next
        // one sees. (Plain variables, not constants: Rhai re-marks constants value by value.)
        scope.push("claims", ReadOnlyMap(current.claims.clone()));
        scope.push("request", RequestView(current.request.clone()));
        scope.push("route", current.route.clone());
        scope.push_dynamic("config", self.config.clone());
        scope
    }

    /// Evaluates the script in `scope` (the call in progress set).
    fn evaluate(&self, scope: &mut Scope<'static>) -> Result<Dynamic, Box<EvalAltResult>> {
        // A panic inside the script engine (a Rhai bug) must cost this request, not the
        // connection or the worker: it becomes a policy error like any other failure.
        let engine = &self.engine.engine;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            engine.eval_ast_with_scope::<Dynamic>(scope, &self.ast)
        }))
        .unwrap_or_else(|_| {
            Err(Box::new(EvalAltResult::ErrorRuntime(
                "the script engine failed unexpectedly".into(),
                Position::NONE,
            )))
        })
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

    /// Where the reviewed list lives, relative to the crate.
    const API_LIST: &str = "src/policy/rhai/rhai_api.txt";

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
                 # `scripts_can_call_only_the_reviewed_rhai_api` in policy/rhai/mod.rs.\n",
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
             `PolicyPackage` / `functions.rs` in policy/rhai/.",
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
