//! Calls to functions that do not exist, found when a script is compiled (by `check` and by a
//! reload alike) instead of failing every request of its route at run time.
//!
//! Rhai resolves a call when it runs, so `hsa_group("admins")` compiles. Here the compiled
//! script is walked and each call is looked up by name among the functions a policy can call —
//! the reviewed list `rhai_api.txt`, which a test keeps equal to what the engine registers —, the
//! words Rhai's parser makes calls of (`print`, `Fn`, …) and the functions the script defines.
//! The first call that is none of these refuses the script, at its line and column, with the
//! nearest known name.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use rhai::{AST, ASTNode, Expr, Position, Stmt};

/// Every function a policy can call, one signature per line (`name(args) -> type`).
const REVIEWED_API: &str = include_str!("rhai_api.txt");

/// Calls Rhai's parser handles itself; not registered functions, so not in the reviewed list.
const KEYWORD_CALLS: [&str; 9] = [
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "is_def_var",
    "is_def_fn",
    "is_shared",
];

/// The names of every function a policy can call.
static KNOWN: LazyLock<BTreeSet<&'static str>> = LazyLock::new(|| {
    REVIEWED_API
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|signature| signature.split_once('(').map(|(name, _)| name))
        .chain(KEYWORD_CALLS)
        .collect()
});

/// A call to a function that does not exist.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct UnknownCall {
    /// The name called.
    pub(super) name: String,
    /// Where.
    pub(super) position: Position,
    /// The nearest known name, when one is near enough to be a typo.
    pub(super) nearest: Option<String>,
}

impl UnknownCall {
    /// What to tell the policy's author.
    pub(super) fn message(&self) -> String {
        let mut message = format!("there is no function `{}`", self.name);
        if let Some(nearest) = &self.nearest {
            message.push_str(&format!("; did you mean `{nearest}`?"));
        }
        message
    }
}

/// The first call in `ast` (script statements, then the script's functions) to a function that
/// neither the policy API nor the script defines.
pub(super) fn first_unknown_call(ast: &AST) -> Option<UnknownCall> {
    let defined: BTreeSet<String> = ast.iter_functions().map(|f| f.name.to_owned()).collect();
    let properties = property_names(ast);
    let mut found = None;
    ast.walk(&mut |path: &[ASTNode]| {
        let call = match path.last() {
            // A call on its own as a statement is a `Stmt::FnCall`.
            Some(ASTNode::Expr(Expr::FnCall(call, position)))
            | Some(ASTNode::Expr(Expr::MethodCall(call, position)))
            | Some(ASTNode::Stmt(Stmt::FnCall(call, position))) => Some((call, *position)),
            _ => None,
        };
        if let Some((call, position)) = call {
            let name = call.name.as_str();
            let method = matches!(path.last(), Some(ASTNode::Expr(Expr::MethodCall(..))));
            // Operators (`a + b`) are calls too; they always exist. A method named as a property
            // of the script's maps may call a function stored there (`m.f(2)` with
            // `m = #{ f: |x| x * 2 }`).
            let known = call.op_token.is_some()
                || KNOWN.contains(name)
                || defined.contains(name)
                || (method && properties.contains(name));
            if !known {
                found = Some(UnknownCall {
                    name: name.to_owned(),
                    position,
                    nearest: nearest(name, &defined),
                });
                return false;
            }
        }
        true
    });
    found
}

/// Every property name the script writes: map literal keys and `x.name` accesses.
fn property_names(ast: &AST) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Expr(Expr::Map(map, _))) => {
                names.extend(map.0.iter().map(|(key, _)| key.name.to_string()));
                names.extend(map.1.keys().map(|key| key.to_string()));
            }
            // A map literal the optimizer made a constant.
            Some(ASTNode::Expr(Expr::DynamicConstant(value, _))) => {
                if let Some(map) = value.read_lock::<rhai::Map>() {
                    names.extend(map.keys().map(|key| key.to_string()));
                }
            }
            Some(ASTNode::Expr(Expr::Property(property, _))) => {
                names.insert(property.2.to_string());
            }
            _ => {}
        }
        true
    });
    names
}

/// The known name nearest `name`, if it is within a typo's distance.
fn nearest(name: &str, defined: &BTreeSet<String>) -> Option<String> {
    let candidates = KNOWN
        .iter()
        .copied()
        .chain(defined.iter().map(String::as_str))
        .filter(|candidate| candidate.starts_with(|c: char| c.is_alphabetic() || c == '_'));
    let (distance, best) = candidates
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .min()?;
    let typo = distance <= (name.chars().count() / 3).max(1);
    typo.then(|| best.to_owned())
}

/// Levenshtein distance, where swapping two neighbouring letters (`hsa` for `has`) counts as one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j].
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitution = rows[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            let mut best = substitution.min(rows[i - 1][j] + 1).min(rows[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::limits::PolicyLimits;
    use crate::policy::rhai::PolicyEngine;

    fn compile(text: &str) -> Result<(), String> {
        PolicyEngine::new(PolicyLimits::default())
            .compile_text(text, "p.rhai", rhai::Map::new())
            .map(drop)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn a_misspelt_function_is_refused_at_its_place_with_the_name_meant() {
        assert_eq!(
            compile("if hsa_group(\"admins\") { allow() } else { deny(403) }"),
            Err("p.rhai:1:4: there is no function `hsa_group`; did you mean `has_group`?".into())
        );
        assert_eq!(
            compile("let g = claims.groups;\nif g.contans(\"x\") { allow() } else { deny(403) }"),
            Err("p.rhai:2:6: there is no function `contans`; did you mean `contains`?".into())
        );
        assert_eq!(
            compile(
                "fn admins() { has_group(\"admins\") }\nif admin() { allow() } else { deny(403) }"
            ),
            Err("p.rhai:2:4: there is no function `admin`; did you mean `admins`?".into()),
            "a function of the script's own"
        );
        assert_eq!(
            compile("fn check() { frobnicate(1) }\nallow()"),
            Err("p.rhai:1:14: there is no function `frobnicate`".into()),
            "inside a function, and nothing near"
        );
    }

    #[test]
    fn registered_defined_and_keyword_calls_compile() {
        for text in [
            "if has_group(\"a\") { allow() } else { deny(403) }",
            "fn ok(x) { x > 1 }\nif ok(2) { allow() } else { deny(403) }",
            "let f = |x| x + 1;\nlet n = f.call(1);\nprint(type_of(n));\nallow()",
            "let a = [1, 2];\nif a.contains(1) && a.len() == 2 { allow() } else { login() }",
            "let up = Fn(\"to_upper\");\nallow()",
            "let m = #{ f: |x| x * 2 };\nif m.f(2) == 4 { allow() } else { deny(403) }",
            "let m = #{};\nm.g = |x| x + 1;\nif m.g(1) == 2 { allow() } else { deny(403) }",
        ] {
            assert_eq!(compile(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn edit_distance_counts_a_swap_as_one() {
        assert_eq!(edit_distance("hsa_group", "has_group"), 1);
        assert_eq!(edit_distance("contans", "contains"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
