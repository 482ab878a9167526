//! [`PolicyRequest`]: the request as every policy sees it (canonical path, lower-case header
//! names, client address). The user is a
//! `PolicyIdentity` (`identity.rs`).

use std::net::IpAddr;

use http::HeaderMap;

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

/// The value of header `name` (any case) as a policy reads it, `None` when absent: its text
/// values (not visible ASCII: left out) joined with `", "`.
pub fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name.to_ascii_lowercase().as_str())
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}
