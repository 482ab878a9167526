//! The request being decided.

use std::cell::OnceCell;

/// Where the values of a [`Request`] not yet read come from: the proxy, during a call.
pub(crate) trait RequestSource {
    fn method(&self) -> String;
    fn path(&self) -> String;
    fn query(&self) -> String;
    fn host(&self) -> String;
    fn header(&self, name: &str) -> Option<String>;
    fn headers(&self) -> Vec<(String, String)>;
    fn client_ip(&self) -> String;
    fn route(&self) -> String;
}

/// The request being decided.
///
/// In the proxy each value is fetched the first time it is read (then kept), so a policy pays
/// only for what it reads. [`Request::new`] builds one for unit tests.
#[derive(Clone)]
pub struct Request<'a> {
    source: Option<&'a dyn RequestSource>,
    method: OnceCell<String>,
    path: OnceCell<String>,
    query: OnceCell<String>,
    host: OnceCell<String>,
    headers: OnceCell<Vec<(String, String)>>,
    client_ip: OnceCell<String>,
    route: OnceCell<String>,
}

fn read(cell: &OnceCell<String>, fetch: impl FnOnce() -> Option<String>) -> &str {
    cell.get_or_init(|| fetch().unwrap_or_default())
}

impl<'a> Request<'a> {
    /// A request read from the proxy.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn from_source(source: &'a dyn RequestSource) -> Self {
        Request {
            source: Some(source),
            ..Request::empty()
        }
    }

    fn empty() -> Self {
        Request {
            source: None,
            method: OnceCell::new(),
            path: OnceCell::new(),
            query: OnceCell::new(),
            host: OnceCell::new(),
            headers: OnceCell::new(),
            client_ip: OnceCell::new(),
            route: OnceCell::new(),
        }
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> &str {
        read(&self.method, || self.source.map(|s| s.method()))
    }

    /// The canonical path routing decided on (decoded, no `..`, no `//`, no `;params`).
    pub fn path(&self) -> &str {
        read(&self.path, || self.source.map(|s| s.path()))
    }

    /// The raw query without `?`; empty when there is none.
    pub fn query(&self) -> &str {
        read(&self.query, || self.source.map(|s| s.query()))
    }

    /// The canonical host: lower case, without port.
    pub fn host(&self) -> &str {
        read(&self.host, || self.source.map(|s| s.host()))
    }

    /// Header `name` (any case), if present: every field of that name, in the order received,
    /// joined with `", "` (`"; "` for `cookie`), as RFC 9110 §5.3 combines repeated fields and
    /// nginx's `$http_<name>` reads them; Rhai's `header()` reads the same. A client that repeats
    /// a header cannot make a policy see one of its values while the backend reads another: an
    /// exact comparison fails on the combined text. Bytes that are not UTF-8 read as U+FFFD.
    ///
    /// Asks the proxy for that one header unless [`Request::headers`] was read already.
    pub fn header(&self, name: &str) -> Option<String> {
        match (self.headers.get(), self.source) {
            (None, Some(source)) => source.header(name),
            _ => {
                let separator = if name.eq_ignore_ascii_case("cookie") {
                    "; "
                } else {
                    ", "
                };
                let values: Vec<&str> = self
                    .headers()
                    .iter()
                    .filter(|(key, _)| key.eq_ignore_ascii_case(name))
                    .map(|(_, value)| value.as_str())
                    .collect();
                (!values.is_empty()).then(|| values.join(separator))
            }
        }
    }

    /// Every request header: lower-case names, one entry per field (a repeated header appears
    /// once per value), in order; bytes that are not UTF-8 read as U+FFFD.
    pub fn headers(&self) -> &[(String, String)] {
        self.headers
            .get_or_init(|| self.source.map(|s| s.headers()).unwrap_or_default())
    }

    /// The TCP peer's address, e.g. `10.0.0.7` or `::1`.
    pub fn client_ip(&self) -> &str {
        read(&self.client_ip, || self.source.map(|s| s.client_ip()))
    }

    /// The route's name.
    pub fn route(&self) -> &str {
        read(&self.route, || self.source.map(|s| s.route()))
    }
}

impl Request<'static> {
    /// A request with `method` and `path`, on host `localhost` from `127.0.0.1`, route `test`,
    /// no query and no headers; change any of them with the `with_` methods. For unit tests.
    pub fn new(method: &str, path: &str) -> Self {
        Request::empty()
            .set(|r| &mut r.method, method)
            .set(|r| &mut r.path, path)
            .with_query("")
            .with_host("localhost")
            .with_client_ip("127.0.0.1")
            .with_route("test")
            .with_headers(Vec::new())
    }

    fn set(mut self, cell: fn(&mut Self) -> &mut OnceCell<String>, value: &str) -> Self {
        *cell(&mut self) = OnceCell::from(value.to_owned());
        self
    }

    /// The same request with query `query` (without `?`).
    pub fn with_query(self, query: &str) -> Self {
        self.set(|r| &mut r.query, query)
    }

    /// The same request for host `host`.
    pub fn with_host(self, host: &str) -> Self {
        self.set(|r| &mut r.host, host)
    }

    /// The same request from `client_ip`.
    pub fn with_client_ip(self, client_ip: &str) -> Self {
        self.set(|r| &mut r.client_ip, client_ip)
    }

    /// The same request on route `route`.
    pub fn with_route(self, route: &str) -> Self {
        self.set(|r| &mut r.route, route)
    }

    /// The same request with one more header (`name` is lower-cased, as the proxy sends them).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let mut headers = self.headers.take().unwrap_or_default();
        headers.push((name.to_ascii_lowercase(), value.to_owned()));
        self.with_headers(headers)
    }

    fn with_headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.headers = OnceCell::from(headers);
        self
    }
}

impl std::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("path", &self.path())
            .field("host", &self.host())
            .field("route", &self.route())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_are_combined_as_the_proxy_combines_them() {
        let request = Request::new("GET", "/")
            .with_header("X-Tenant", "blue")
            .with_header("x-tenant", "")
            .with_header("x-tenant", "red")
            .with_header("Cookie", "a=1")
            .with_header("cookie", "b=2");
        assert_eq!(request.header("X-TENANT").as_deref(), Some("blue, , red"));
        assert_eq!(request.header("cookie").as_deref(), Some("a=1; b=2"));
        assert_eq!(request.header("x_tenant"), None);
        assert_eq!(request.headers().len(), 5);
    }
}
