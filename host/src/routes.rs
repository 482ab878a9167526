//! The route table: which route serves a canonical host and path.
//!
//! Precedence, most specific first: routes for the exact host, then wildcard hosts (longest suffix
//! first), then host-less routes; within each, the longest path prefix on whole segments wins.
//! A lookup costs one hash probe per path segment and allocates nothing.

use std::collections::HashMap;

use crate::config::{HostPattern, RouteConfig};

/// Index of a route in the snapshot's route list.
pub type RouteId = usize;

/// Path prefixes of the routes sharing one host pattern.
#[derive(Debug, Default)]
struct PrefixTable {
    by_prefix: HashMap<String, RouteId>,
}

impl PrefixTable {
    /// The route with the longest prefix of `path` on a segment boundary.
    fn longest_match(&self, path: &str) -> Option<RouteId> {
        // Try `/a/b/c`, `/a/b`, `/a`, then `/`. Prefixes are stored without a trailing slash.
        let mut candidate = path.trim_end_matches('/');
        loop {
            if candidate.is_empty() {
                return self.by_prefix.get("/").copied();
            }
            if let Some(&id) = self.by_prefix.get(candidate) {
                return Some(id);
            }
            candidate = &candidate[..candidate.rfind('/').unwrap_or(0)];
        }
    }
}

/// All routes, indexed for lookup. Built once per snapshot.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<String, PrefixTable>,
    /// `(".example.com", table)`, longest suffix first.
    wildcard: Vec<(String, PrefixTable)>,
    any_host: PrefixTable,
}

impl RouteTable {
    /// Indexes routes; their ids are their positions in `routes`. Config validation has already
    /// refused two routes with the same host and path.
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut table = RouteTable::default();
        let mut wildcard: HashMap<String, PrefixTable> = HashMap::new();
        for (id, route) in routes.iter().enumerate() {
            let prefixes = match &route.host {
                None => &mut table.any_host,
                Some(HostPattern::Exact(host)) => table.exact.entry(host.clone()).or_default(),
                Some(HostPattern::Wildcard(suffix)) => wildcard.entry(suffix.clone()).or_default(),
            };
            prefixes.by_prefix.insert(route.path.clone(), id);
        }
        table.wildcard = wildcard.into_iter().collect();
        table
            .wildcard
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        table
    }

    /// The route for a canonical (lower-case, port-less) host and a canonical decision path.
    pub fn lookup(&self, host: &str, path: &str) -> Option<RouteId> {
        if let Some(id) = self.exact.get(host).and_then(|t| t.longest_match(path)) {
            return Some(id);
        }
        for (suffix, table) in &self.wildcard {
            // `*.example.com` needs at least one label before `.example.com`.
            if host.len() > suffix.len()
                && host.ends_with(suffix.as_str())
                && let Some(id) = table.longest_match(path)
            {
                return Some(id);
            }
        }
        self.any_host.longest_match(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(spec: &[(Option<&str>, &str)]) -> RouteTable {
        let text: String = spec
            .iter()
            .enumerate()
            .map(|(i, (host, path))| {
                let host = host.map(|h| format!("host = {h:?}\n")).unwrap_or_default();
                format!("[[routes]]\nname = \"r{i}\"\n{host}path = {path:?}\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n")
            })
            .collect();
        let config = crate::config::parse(&text, std::path::Path::new(".")).unwrap();
        RouteTable::new(&config.routes)
    }

    #[test]
    fn longest_prefix_wins_on_whole_segments() {
        let t = table(&[(None, "/"), (None, "/api"), (None, "/api/v2")]);
        assert_eq!(t.lookup("h", "/"), Some(0));
        assert_eq!(t.lookup("h", "/apix"), Some(0));
        assert_eq!(t.lookup("h", "/api"), Some(1));
        assert_eq!(t.lookup("h", "/api/"), Some(1));
        assert_eq!(t.lookup("h", "/api/v1/x"), Some(1));
        assert_eq!(t.lookup("h", "/api/v2"), Some(2));
        assert_eq!(t.lookup("h", "/api/v2/deep/er"), Some(2));
    }

    #[test]
    fn no_route_without_a_matching_prefix() {
        let t = table(&[(None, "/api")]);
        assert_eq!(t.lookup("h", "/"), None);
        assert_eq!(t.lookup("h", "/other"), None);
    }

    #[test]
    fn host_specific_routes_beat_host_less_ones() {
        let t = table(&[
            (None, "/app/long/prefix"),
            (Some("app.example.com"), "/"),
            (Some("*.example.com"), "/"),
            (Some("*.deep.example.com"), "/"),
        ]);
        assert_eq!(t.lookup("app.example.com", "/app/long/prefix"), Some(1));
        assert_eq!(t.lookup("x.example.com", "/app/long/prefix"), Some(2));
        assert_eq!(t.lookup("a.b.example.com", "/"), Some(2));
        assert_eq!(t.lookup("x.deep.example.com", "/"), Some(3));
        assert_eq!(
            t.lookup("example.com", "/"),
            None,
            "a wildcard needs a label before the suffix"
        );
        assert_eq!(t.lookup("other.org", "/app/long/prefix/x"), Some(0));
    }

    #[test]
    fn a_host_without_a_matching_path_falls_back_to_host_less_routes() {
        let t = table(&[(Some("app.example.com"), "/only"), (None, "/")]);
        assert_eq!(t.lookup("app.example.com", "/only/x"), Some(0));
        assert_eq!(t.lookup("app.example.com", "/elsewhere"), Some(1));
    }
}
