//! The table of what a script can use beyond Rhai's pure library — the variables it is given
//! and every function registered for it — with what each reads ([`Reads`]): [`ApiTable`].
//!
//! Functions are registered only through a [`Registrar`], which records each in the table as it
//! registers it (a function cannot be added without saying what it reads), and the table is what
//! `remember.rs` judges scripts by: the two cannot drift.

use rhai::{Engine, RhaiNativeFunc};

/// What a name's value, or a call's result or effect, depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reads {
    /// Nothing but its arguments.
    Arguments,
    /// The user's claims: the same for every request of a session.
    Claims,
    /// The route's `policy_config`: the same for every request.
    Config,
    /// The request.
    Request,
    /// The route's name. The same for every request of one compiled policy, but counted as
    /// differing: nothing is lost, since scripts that name their route are rare.
    Route,
    /// Nothing, but it writes to the log, which must happen for every request.
    Log,
}

impl Reads {
    /// Whether a decision that used this is the same for every request of a session.
    pub(super) fn same_for_a_session(self) -> bool {
        matches!(self, Reads::Arguments | Reads::Claims | Reads::Config)
    }
}

/// The variables every script sees, in the order they are pushed.
pub(super) const VARIABLES: [(&str, Reads); 4] = [
    ("claims", Reads::Claims),
    ("request", Reads::Request),
    ("route", Reads::Route),
    ("config", Reads::Config),
];

/// Every name a script can use that Rhai's library does not define, with what it reads.
#[derive(Debug, Default)]
pub(super) struct ApiTable {
    names: Vec<(&'static str, Reads)>,
}

impl ApiTable {
    /// The names and what each reads (a function registered in several forms appears once per
    /// form).
    pub(super) fn names(&self) -> impl Iterator<Item = (&'static str, Reads)> + '_ {
        self.names.iter().copied()
    }
}

/// Registers on `engine` as it records in its table: the only way functions are added to a
/// policy engine.
pub(super) struct Registrar<'a> {
    engine: &'a mut Engine,
    table: ApiTable,
}

impl<'a> Registrar<'a> {
    /// Starts the table of `engine`, with the variables every script sees.
    pub(super) fn new(engine: &'a mut Engine) -> Self {
        Registrar {
            engine,
            table: ApiTable {
                names: VARIABLES.to_vec(),
            },
        }
    }

    /// The engine, for what adds no callable name: types, property getters and indexers (only
    /// reachable through a variable's value), and hooks. A test checks that every function a
    /// script can call is in the table or in Rhai's library.
    pub(super) fn engine(&mut self) -> &mut Engine {
        self.engine
    }

    /// The table of everything registered.
    pub(super) fn finish(self) -> ApiTable {
        self.table
    }

    /// Registers `function` as `name`, which reads `reads`.
    pub(super) fn function<A: 'static, const N: usize, const X: bool, R, const F: bool>(
        &mut self,
        name: &'static str,
        reads: Reads,
        function: impl RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
    ) -> &mut Self
    where
        R: std::any::Any + Clone + Send + Sync,
    {
        self.engine.register_fn(name, function);
        self.table.names.push((name, reads));
        self
    }

    /// Records `name`, which the engine provides itself (`print`, `debug`), as reading `reads`.
    pub(super) fn built_in(&mut self, name: &'static str, reads: Reads) {
        self.table.names.push((name, reads));
    }
}
