//! The layers of `host/src`, kept by a test: each module imports only from the layers below it, and
//! no file imports, directly or through others, a file that imports it back.
//!
//! It reads the source as text: every `crate::…` and `super::…` path (in `use` lines and inline),
//! and every use of a file's own child modules, resolved to the file that defines the item. Test
//! modules (`#[cfg(test)] mod tests { … }` at the end of a file) are not read: tests may reach up.
//! `docs/architecture.md` draws the same table and says where each kind of change goes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. A module may import from any layer below its own and from nothing in its own
/// layer or above.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaves",
        &[
            "canonical",
            "claim_header",
            "cookies",
            "header_ownership",
            "logging",
            "response",
            "tls",
        ],
    ),
    ("policy", &["policy"]),
    ("config", &["config"]),
    ("stores and clients", &["routes", "session", "upstream"]),
    ("identity", &["oidc"]),
    ("snapshot", &["snapshot"]),
    ("pipeline", &["proxy"]),
    ("reload", &["reload"]),
    ("server", &["server"]),
    // Started by the app when `[dev_idp]` is configured, so below it; serves with the server's
    // accept loop, so above that.
    ("development provider", &["dev_idp"]),
    ("app", &["app"]),
    ("demo", &["demo"]),
];

/// This file names the layers; it imports nothing.
const NOT_READ: &[&str] = &["architecture_test"];

#[test]
fn every_module_imports_only_from_the_layers_below() {
    let graph = Graph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let layer_of = layer_table();
    let mut problems = Vec::new();
    for module in graph.files.keys() {
        let top = top_module(module);
        if !layer_of.contains_key(top) {
            problems.push(format!(
                "src/{} is in no layer: add `{top}` to LAYERS in src/architecture_test.rs and to docs/architecture.md",
                graph.files[module]
            ));
        }
    }
    for import in &graph.imports {
        let (from, to) = (top_module(&import.from), top_module(&import.to));
        let (Some(&from_layer), Some(&to_layer)) = (layer_of.get(from), layer_of.get(to)) else {
            continue;
        };
        if from != to && to_layer >= from_layer {
            problems.push(format!(
                "src/{}:{} imports `{}`: `{from}` ({}) may not import `{to}` ({}), which is not below it",
                graph.files[&import.from],
                import.line,
                import.text,
                LAYERS[from_layer].0,
                LAYERS[to_layer].0,
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "layer violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let graph = Graph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for import in &graph.imports {
        edges
            .entry(import.from.as_str())
            .or_default()
            .insert(import.to.as_str());
    }
    let mut cycles = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if let Some(back) = path(&edges, to, from) {
                // `back` runs from `to` to `from`: with `from` first, the ring closes.
                let cycle: Vec<String> = std::iter::once(*from)
                    .chain(back)
                    .map(str::to_owned)
                    .collect();
                cycles.push(describe_cycle(&graph, &cycle));
            }
        }
    }
    cycles.sort();
    cycles.dedup();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// The modules of a cycle with the import that links each to the next.
fn describe_cycle(graph: &Graph, cycle: &[String]) -> String {
    // One canonical rotation, so the same cycle found from each of its files reads the same.
    let start = (0..cycle.len() - 1).min_by_key(|&i| &cycle[i]).unwrap_or(0);
    let ring: Vec<&String> = cycle[start..cycle.len() - 1]
        .iter()
        .chain(&cycle[..start])
        .collect();
    let mut out = String::new();
    for (i, from) in ring.iter().enumerate() {
        let to = ring[(i + 1) % ring.len()];
        let import = graph
            .imports
            .iter()
            .find(|import| &import.from == *from && &import.to == to)
            .expect("an edge of the cycle");
        out.push_str(&format!(
            "  src/{}:{} `{}` →\n",
            graph.files[*from], import.line, import.text
        ));
    }
    out
}

/// A path of modules from `from` to `to` (both included), if `to` can be reached.
fn path<'a>(
    edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    from: &'a str,
    to: &'a str,
) -> Option<Vec<&'a str>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([from]);
    let mut seen = BTreeSet::from([from]);
    while let Some(at) = queue.pop_front() {
        if at == to {
            let mut path = vec![to];
            let mut step = to;
            while step != from {
                step = came_from[step];
                path.push(step);
            }
            path.reverse();
            return Some(path);
        }
        for &next in edges.get(at).into_iter().flatten() {
            if seen.insert(next) {
                came_from.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    None
}

fn layer_table() -> BTreeMap<&'static str, usize> {
    let mut table = BTreeMap::new();
    for (index, (_, modules)) in LAYERS.iter().enumerate() {
        for module in *modules {
            assert!(
                table.insert(*module, index).is_none(),
                "`{module}` is in two layers"
            );
        }
    }
    table
}

fn top_module(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// One import of one file: `from` and `to` are file modules (`policy::wasm`, `config`).
struct Import {
    from: String,
    to: String,
    line: usize,
    text: String,
}

struct Graph {
    /// File module → its path under `src/`.
    files: BTreeMap<String, String>,
    imports: Vec<Import>,
}

impl Graph {
    fn read(src: &Path) -> Graph {
        let mut files = BTreeMap::new();
        collect_files(src, src, &mut files);
        let mut imports = Vec::new();
        for (module, relative) in &files {
            let text = std::fs::read_to_string(src.join(relative)).expect("read a source file");
            let code = without_tests(&strip_comments_and_strings(&text));
            let children = child_modules(&code);
            for (line, path) in paths(&code, module, &children) {
                if let Some(to) = resolve(&files, &path)
                    && &to != module
                {
                    let text = text.lines().nth(line - 1).unwrap_or("").trim().to_owned();
                    imports.push(Import {
                        from: module.clone(),
                        to,
                        line,
                        text,
                    });
                }
            }
        }
        Graph { files, imports }
    }
}

/// Every `.rs` file under `dir` as its module path (`policy/wasm/mod.rs` → `policy::wasm`),
/// without `lib.rs`, `main.rs` and this file.
fn collect_files(src: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_files(src, &path, files);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let relative = path
            .strip_prefix(src)
            .expect("under src/")
            .to_string_lossy()
            .into_owned();
        let mut parts: Vec<&str> = relative.trim_end_matches(".rs").split('/').collect();
        if parts.last() == Some(&"mod") {
            parts.pop();
        }
        let module = parts.join("::");
        if ["lib", "main"].contains(&module.as_str()) || NOT_READ.contains(&module.as_str()) {
            continue;
        }
        files.insert(module, relative);
    }
}

/// `text` with comments removed and string and char literals emptied (their quotes kept), line
/// breaks kept so line numbers stay right.
fn strip_comments_and_strings(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep_newlines = |slice: &[u8], out: &mut String| {
        for &b in slice {
            if b == b'\n' {
                out.push('\n');
            }
        }
    };
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(rest.len(), |at| at + 4);
            keep_newlines(&rest[..end], &mut out);
            i += end;
        } else if rest.starts_with(b"r#") || rest.starts_with(b"r\"") {
            let hashes = rest[1..].iter().take_while(|&&b| b == b'#').count();
            let closing = format!("\"{}", "#".repeat(hashes));
            let body_start = 1 + hashes + 1;
            let end = text[i + body_start..]
                .find(&closing)
                .map_or(rest.len(), |at| body_start + at + closing.len());
            keep_newlines(&rest[..end], &mut out);
            out.push_str("\"\"");
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            keep_newlines(&rest[..j.min(rest.len())], &mut out);
            out.push_str("\"\"");
            i += j + 1;
        } else if rest[0] == b'\'' && rest.len() > 2 && (rest[2] == b'\'' || rest[1] == b'\\') {
            // A char literal ('x' or '\n'); lifetimes ('a) are left alone.
            let end = rest[1..]
                .iter()
                .skip(1)
                .position(|&b| b == b'\'')
                .map_or(rest.len(), |at| at + 3);
            out.push_str("' '");
            i += end;
        } else {
            let c = text[i..].chars().next().expect("a char");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `code` up to its `#[cfg(test)]` module, which the layers do not govern.
fn without_tests(code: &str) -> String {
    let mut kept = String::new();
    let mut lines = code.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

/// The child modules a file declares (`mod pool;`, `pub mod accept;`).
fn child_modules(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line
                .strip_prefix("pub ")
                .or_else(|| line.strip_prefix("pub(crate) "))
                .unwrap_or(line);
            let name = line.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_owned())
        })
        .collect()
}

/// Every path `code` (the file of `module`) names in the crate, absolute (`["policy", "Decision"]`),
/// with its line: `crate::…`, `super::…`, and paths through its own child modules.
fn paths(code: &str, module: &str, children: &[String]) -> Vec<(usize, Vec<String>)> {
    let parent: Vec<String> = module
        .split("::")
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .split_last()
        .map(|(_, parent)| parent.to_vec())
        .unwrap_or_default();
    let own: Vec<String> = module.split("::").map(str::to_owned).collect();
    let mut found = Vec::new();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    // `use` statements, with their `{…}` groups expanded.
    let mut search = 0;
    while let Some(at) = find_word(code, "use", search) {
        let Some(end) = code[at..].find(';') else {
            break;
        };
        let tree = code[at + 3..at + end].trim();
        // `pub use child::Item` in a parent is the module's public face, not a dependency of the
        // parent's code: a re-export of a child's item is not an import (its users import the
        // child).
        let re_export =
            code[..at].trim_end().ends_with("pub") || code[..at].trim_end().ends_with(')');
        for path in expand(tree) {
            let through_child = match path.first().map(String::as_str) {
                Some("self") => path.get(1),
                _ => path.first(),
            };
            if re_export && through_child.is_some_and(|first| children.contains(first)) {
                continue;
            }
            let absolute = match path.first().map(String::as_str) {
                Some("crate") => Some(path[1..].to_vec()),
                Some("super") => Some(
                    parent
                        .iter()
                        .cloned()
                        .chain(path[1..].iter().cloned())
                        .collect(),
                ),
                Some("self") => Some(
                    own.iter()
                        .cloned()
                        .chain(path[1..].iter().cloned())
                        .collect(),
                ),
                Some(first) if children.iter().any(|child| child == first) => {
                    Some(own.iter().cloned().chain(path.iter().cloned()).collect())
                }
                _ => None,
            };
            if let Some(absolute) = absolute {
                found.push((line_of(at), absolute));
            }
        }
        search = at + end;
    }
    // Inline paths (`crate::logging::set_level(…)`, `super::Trigger`, `pool::ConnectionPool`).
    let mut roots: Vec<(&str, Vec<String>)> =
        vec![("crate", Vec::new()), ("super", parent.clone())];
    for child in children {
        let mut base = own.clone();
        base.push(child.clone());
        roots.push((child.as_str(), base));
    }
    for (root, base) in roots {
        let needle = format!("{root}::");
        let mut search = 0;
        while let Some(at) = find_word(code, &needle, search) {
            let rest = &code[at + needle.len()..];
            let segments = path_segments(rest);
            if !segments.is_empty() && !in_use_statement(code, at) {
                let mut path = base.clone();
                if root != "crate" && root != "super" {
                    path.truncate(own.len());
                    path.push(root.to_owned());
                }
                path.extend(segments);
                found.push((line_of(at), path));
            }
            search = at + needle.len();
        }
    }
    found
}

/// The segments of the path `rest` starts with: `a::b::C::new(x); d::e` → `a`, `b`, `C`, `new`.
fn path_segments(rest: &str) -> Vec<String> {
    let mut segments = Vec::new();
    for part in rest.split("::") {
        let name: String = part
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            break;
        }
        let whole = name.len() == part.len();
        segments.push(name);
        if !whole {
            break;
        }
    }
    segments
}

/// Whether the text at `at` is inside a `use …;` statement (already read with its groups).
fn in_use_statement(code: &str, at: usize) -> bool {
    let statement_start = code[..at].rfind([';', '{', '}']).map_or(0, |i| i + 1);
    let before = code[statement_start..at].trim_start();
    let before = before
        .strip_prefix("pub(crate) ")
        .or_else(|| before.strip_prefix("pub "))
        .unwrap_or(before);
    before.starts_with("use ")
        || code[..at].trim_end().ends_with("use")
        || inside_use_group(code, at)
}

/// Whether `at` is inside the `{…}` group of a `use` statement.
fn inside_use_group(code: &str, at: usize) -> bool {
    let mut depth = 0usize;
    for (i, c) in code[..at].char_indices().rev() {
        match c {
            '}' => depth += 1,
            '{' if depth > 0 => depth -= 1,
            '{' => {
                let head = code[..i].rfind([';', '}']).map_or(0, |j| j + 1);
                let head = code[head..i].trim_start();
                return head.starts_with("use ")
                    || head.starts_with("pub use ")
                    || head.starts_with("pub(crate) use ");
            }
            ';' if depth == 0 => return false,
            _ => {}
        }
    }
    false
}

/// The byte offset of `word` in `code` from `from` on, where it is not part of a longer name.
fn find_word(code: &str, word: &str, from: usize) -> Option<usize> {
    let mut search = from;
    while let Some(found) = code[search..].find(word) {
        let at = search + found;
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        let boundary_before = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
        let boundary_after =
            word.ends_with("::") || after.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if boundary_before && boundary_after {
            return Some(at);
        }
        search = at + word.len();
    }
    None
}

/// The paths of a use tree: `a::{b, c::{d, e as f}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    if tree.is_empty() {
        return Vec::new();
    }
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        return vec![
            path.split("::")
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty() && s != "*")
                .collect(),
        ];
    };
    let prefix: Vec<String> = tree[..open]
        .split("::")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .flat_map(expand)
        .map(|rest| {
            if rest.first().is_some_and(|s| s == "self") {
                prefix.clone()
            } else {
                prefix.iter().cloned().chain(rest).collect()
            }
        })
        .collect()
}

/// The file module that defines `path`: its longest prefix that is a file.
fn resolve(files: &BTreeMap<String, String>, path: &[String]) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|len| path[..len].join("::"))
        .find(|candidate| files.contains_key(candidate))
}

#[test]
fn the_reader_sees_grouped_inline_and_relative_imports() {
    let code = strip_comments_and_strings(
        "use crate::config::{self, Config, auth::{A, B as C}};\nuse super::Trigger;\n\
         // use crate::nope::X;\nlet s = \"crate::nope::Y\";\nmod pool;\n\
         fn f() { crate::logging::set_level(x); pool::ConnectionPool::new(); }\n",
    );
    let mut found: Vec<String> = paths(&code, "reload::watch", &child_modules(&code))
        .into_iter()
        .map(|(line, path)| format!("{line}:{}", path.join("::")))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "1:config",
            "1:config::Config",
            "1:config::auth::A",
            "1:config::auth::B",
            "2:reload::Trigger",
            "6:logging::set_level",
            "6:reload::watch::pool::ConnectionPool::new",
        ]
    );
}
