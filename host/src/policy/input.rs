//! [`PolicyRequest`]: the request as every policy sees it (canonical path, lower-case header
//! names, client address), and what a header reads as ([`header_text`]), decided here once for
//! both engines. The user is a `PolicyIdentity` (`identity.rs`).

use std::borrow::Cow;
use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};

/// The request as a policy sees it.
pub struct PolicyRequest<'a> {
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Canonical (decision) path.
    pub path: &'a str,
    /// Raw query, without `?` (empty when none).
    pub query: &'a str,
    /// Canonical host.
    pub host: &'a str,
    /// Request headers (after identity and forwarding headers were stripped).
    pub headers: &'a HeaderMap,
    /// The client's address (the TCP peer).
    pub client_ip: IpAddr,
    /// The route's name.
    pub route: &'a str,
}

/// Header `name` (any case) as every policy reads it (`header(name)` in Rhai and Wasm alike):
/// `None` when the request has no such field; otherwise every field of that name, in the order
/// received, each value read as [`value_text`], joined as RFC 9110 §5.3 combines them: with
/// `", "`, and with `"; "` for `Cookie` (RFC 9113 §8.2.3). This is what nginx (1.23 and later)
/// gives in `$http_<name>`.
///
/// Why not the first value (as Go's `Header.Get`): backends differ in which of repeated fields
/// they read — the first, the last, or all joined — so a policy that saw only one could allow a
/// request whose backend reads another value the client added. Combined, an added field is always
/// in what the policy sees, and an exact comparison fails on it: fail closed. A policy that needs
/// the fields one by one has the list of headers (Wasm `headers()`).
pub fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    combine(name, headers.get_all(name))
}

/// `values`, the fields named `name`, combined as [`header_text`] says; `None` when there are
/// none.
pub fn combine<'a>(
    name: &str,
    values: impl IntoIterator<Item = &'a HeaderValue>,
) -> Option<String> {
    let separator = if name.eq_ignore_ascii_case("cookie") {
        "; "
    } else {
        ", "
    };
    let mut values = values.into_iter();
    let mut combined = value_text(values.next()?).into_owned();
    for value in values {
        combined.push_str(separator);
        combined.push_str(&value_text(value));
    }
    Some(combined)
}

/// A header value as a policy reads it: its bytes as UTF-8, with U+FFFD for anything that is
/// not (RFC 9110 allows other bytes in a field value; leaving such a value out would hide from the
/// policy a field the backend receives).
pub fn value_text(value: &HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(value.as_bytes())
}
