//! The policy API: the part of Rhai's library a script gets ([`PolicyPackage`]), the types of
//! its variables, the helpers, the decisions, and `print`/`debug` to the log — each function
//! registered through a [`Registrar`], so it is in the table `remember.rs` judges by.

use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicFnPackage, BasicIteratorPackage, BasicMapPackage,
    BasicMathPackage, BasicStringPackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{Array, Dynamic, EvalAltResult, Map, def_package};

use super::api::{Reads, Registrar};
use super::call::{ReadOnlyMap, RequestView, ScriptDecision, with_current};

def_package! {
    /// The part of Rhai's standard library a policy gets: pure computation on the values it
    /// sees. Left out, and so not callable: the language core package (`sleep`, which would
    /// block the thread; `exit`; `parse_json`; `take`; `tag`), byte blobs and bit fields; the
    /// clock is compiled out (`no_time`). `rhai_api.txt` lists every function this and
    /// [`register`] make callable; a test keeps it current.
    pub(super) PolicyPackage(lib):
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

/// Gives the engine the policy API: the library package, the variables' types, the helpers,
/// the decisions, and `print`/`debug` to the log.
pub(super) fn register(api: &mut Registrar<'_>) {
    api.engine()
        .register_global_module(PolicyPackage::new().as_shared_module());
    register_types(api);
    log_to_tracing(api);
    register_claims_map(api);
    register_helpers(api);
    register_decisions(api);
}

/// The types of `request` (whose properties can only be reached through that variable, so
/// they need no entry of their own) and of decisions.
fn register_types(api: &mut Registrar<'_>) {
    let engine = api.engine();
    engine
        .register_type_with_name::<RequestView>("Request")
        .register_get("method", |r: &mut RequestView| r.0.method.clone())
        .register_get("path", |r: &mut RequestView| r.0.path.clone())
        .register_get("query", |r: &mut RequestView| r.0.query.clone())
        .register_get("host", |r: &mut RequestView| r.0.host.clone())
        .register_get("client_ip", |r: &mut RequestView| r.0.client_ip.clone())
        .register_get("headers", |r: &mut RequestView| r.0.headers_map());
    engine.register_type_with_name::<ScriptDecision>("Decision");
}

/// `print` and `debug` write to the proxy's log, with the route and the file, within the
/// decision's line budget.
fn log_to_tracing(api: &mut Registrar<'_>) {
    api.built_in("print", Reads::Log);
    api.built_in("debug", Reads::Log);
    let engine = api.engine();
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
}

/// The methods of `claims` (a read-only map).
fn register_claims_map(api: &mut Registrar<'_>) {
    api.engine()
        .register_type_with_name::<ReadOnlyMap>("map")
        .register_indexer_get(|m: &mut ReadOnlyMap, key: &str| m.get(key));
    api.function(
        "contains",
        Reads::Claims,
        |m: &mut ReadOnlyMap, key: &str| m.0.contains_key(key),
    )
    .function("keys", Reads::Claims, |m: &mut ReadOnlyMap| -> Array {
        m.0.keys().map(|k| k.as_str().into()).collect()
    })
    .function("values", Reads::Claims, |m: &mut ReadOnlyMap| -> Array {
        m.0.values().cloned().collect()
    })
    .function("len", Reads::Claims, |m: &mut ReadOnlyMap| m.0.len() as i64)
    .function("to_map", Reads::Claims, |m: &mut ReadOnlyMap| {
        (*m.0).clone()
    })
    .function("to_string", Reads::Claims, |m: &mut ReadOnlyMap| {
        Dynamic::from_map((*m.0).clone()).to_string()
    })
    .function("to_debug", Reads::Claims, |m: &mut ReadOnlyMap| {
        format!("{:?}", *m.0)
    });
}

/// `has_group`, `has_any_group`, `claim` and `header`.
fn register_helpers(api: &mut Registrar<'_>) {
    api.function("has_group", Reads::Claims, |name: &str| {
        with_current(false, |c| c.identity.has_group(name))
    })
    .function("has_any_group", Reads::Claims, |names: &mut Array| {
        with_current(false, |c| {
            names
                .iter()
                .filter_map(|n| n.clone().into_immutable_string().ok())
                .any(|n| c.identity.has_group(&n))
        })
    })
    .function("claim", Reads::Claims, |name: &str| {
        with_current(Dynamic::UNIT, |c| {
            c.claims.get(name).cloned().unwrap_or(Dynamic::UNIT)
        })
    })
    .function("header", Reads::Request, |name: &str| {
        with_current(Dynamic::UNIT, |c| c.header(name))
    });
}

/// `allow`, `deny` and `login`.
fn register_decisions(api: &mut Registrar<'_>) {
    api.function("allow", Reads::Arguments, || {
        ScriptDecision::Allow(Vec::new())
    })
    .function("allow", Reads::Arguments, allow_with_headers)
    .function("deny", Reads::Arguments, |status: i64| {
        ScriptDecision::Deny(status, None)
    })
    .function("deny", Reads::Arguments, |status: i64, reason: &str| {
        ScriptDecision::Deny(status, Some(reason.to_owned()))
    })
    .function("login", Reads::Arguments, || ScriptDecision::Login);
}

/// `allow(#{ "X-Name": value })`: string, number and bool values, as text.
fn allow_with_headers(headers: Map) -> Result<ScriptDecision, Box<EvalAltResult>> {
    let mut pairs = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let value = match value.clone().into_immutable_string() {
            Ok(text) => text.to_string(),
            Err(_) if value.is_int() || value.is_bool() || value.is_float() => value.to_string(),
            Err(kind) => {
                return Err(format!(
                    "allow(): the value of header {name:?} is a {kind}, not a string"
                )
                .into());
            }
        };
        pairs.push((name.to_string(), value));
    }
    Ok(ScriptDecision::Allow(pairs))
}
