//! Header hygiene: hop-by-hop removal, identity-header stripping, forwarding headers, request ids.
//!
//! Header names are matched the way a backend might read them: `X-Auth-User`, `x_auth_user` and
//! `X-AUTH-USER` are one name to a CGI or PHP backend, so they are one name here too.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one connection and must not be forwarded (RFC 9110 §7.6.1), besides those
/// a `Connection` header names.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether a header is set by the proxy itself and so cannot be configured to carry a claim.
pub fn is_reserved_for_upstream(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
        || [
            header::HOST,
            header::CONTENT_LENGTH,
            header::COOKIE,
            header::AUTHORIZATION,
            header::UPGRADE,
        ]
        .contains(name)
        || name == X_REQUEST_ID
        || is_forwarding_header(name.as_str())
}

/// Names headers carrying request ids.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Compares a (lower-case) header name with a lower-case, dash-separated name, treating `_` as `-`.
fn same_name(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// `x-forwarded-*` in any spelling, or `forwarded`.
fn is_forwarding_header(name: &str) -> bool {
    name == "forwarded" || (name.len() > 12 && same_name(&name[..12], "x-forwarded-"))
}

/// `x-auth-*` in any spelling, or one of the configured identity header names.
fn is_identity_header(name: &str, configured: &[String]) -> bool {
    (name.len() > 7 && same_name(&name[..7], "x-auth-"))
        || configured.iter().any(|identity| same_name(name, identity))
}

/// Whether the request asks for a protocol upgrade (WebSocket and others): `Connection: upgrade`
/// together with an `Upgrade` header.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers.get_all(header::CONNECTION).iter().any(|value| {
            connection_tokens(value).any(|token| token.eq_ignore_ascii_case("upgrade"))
        })
}

fn connection_tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Whether `name` is hop-by-hop by itself (the [`HOP_BY_HOP`] list, or `Upgrade`). A match on the
/// text: one length switch and a compare, where a lookup per listed name would hash each of them.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes hop-by-hop headers, including every header the `Connection` header names.
///
/// Returns the `Upgrade` value when `keep_upgrade` is set and one was present, so the caller can
/// re-add `Connection: upgrade` + `Upgrade` for a tunnel.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) -> Option<HeaderValue> {
    // Runs twice per request: one pass over the names present finds what to remove (usually
    // nothing, or just `Connection`), instead of a removal attempt per possible name.
    let connection = headers.get_all(header::CONNECTION);
    let named_by_connection = |name: &HeaderName| {
        connection
            .iter()
            .flat_map(connection_tokens)
            .any(|token| token.eq_ignore_ascii_case(name.as_str()))
    };
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name) || named_by_connection(name))
        .cloned()
        .collect();
    let mut upgrade = None;
    for name in doomed {
        if name == header::UPGRADE {
            upgrade = headers.remove(name);
        } else {
            headers.remove(name);
        }
    }
    if keep_upgrade {
        let upgrade = upgrade?;
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade.clone());
        return Some(upgrade);
    }
    None
}

/// Removes client-sent identity headers (always: every `X-Auth-*` and every configured identity
/// header) and forwarding headers (unless the peer is a trusted proxy), in every spelling.
/// `identity_names` are lower-case with `-`.
pub fn remove_untrusted(headers: &mut HeaderMap, peer_trusted: bool, identity_names: &[String]) {
    let unwanted = |name: &HeaderName| {
        let name = name.as_str();
        is_identity_header(name, identity_names) || (!peer_trusted && is_forwarding_header(name))
    };
    // The common request has none: check before allocating the list.
    if !headers.keys().any(unwanted) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| unwanted(name))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// What the upstream is told about the original request.
pub struct Forwarded<'a> {
    /// The TCP peer's address.
    pub peer: IpAddr,
    /// Whether the client connection was TLS.
    pub tls: bool,
    /// The Host the client asked for, as sent.
    pub host: &'a str,
    /// Whether the peer is a trusted proxy whose forwarding headers were kept.
    pub peer_trusted: bool,
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host`. From a trusted proxy the existing chain is extended
/// and its `-Proto`/`-Host` kept; otherwise (their copies already removed) they describe our peer.
pub fn set_forwarded(headers: &mut HeaderMap, forwarded: &Forwarded<'_>) {
    let peer = ip_text(forwarded.peer);
    let prior: Vec<&str> = if forwarded.peer_trusted {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect()
    } else {
        Vec::new()
    };
    let chain = if prior.is_empty() {
        peer
    } else {
        format!("{}, {peer}", prior.join(", "))
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    // From an untrusted peer the early phase removed every copy: no need to look.
    let keep = |headers: &HeaderMap, name: &HeaderName| {
        forwarded.peer_trusted && headers.contains_key(name)
    };
    if !keep(headers, &X_FORWARDED_PROTO) {
        let proto = if forwarded.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !keep(headers, &X_FORWARDED_HOST)
        && let Ok(value) = HeaderValue::from_str(forwarded.host)
    {
        headers.insert(X_FORWARDED_HOST.clone(), value);
    }
}

/// An address as text. IPv4 (nearly every peer) is written by hand: `Display` goes through the
/// formatting machinery, which costs more than the rest of `set_forwarded`.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// HTTP/2 lets a client split `Cookie` into several fields; an HTTP/1.1 upstream expects one
/// (RFC 9113 §8.2.3), joined with `; `.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if let Ok(value) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, value);
    }
}

/// The client's `X-Request-Id` when it is a sane token (1–128 characters of `A–Z a–z 0–9 - _ . :`),
/// else a fresh random one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    let client = headers.get(&X_REQUEST_ID).filter(|value| {
        let bytes = value.as_bytes();
        (1..=128).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    });
    match client {
        Some(value) => value.clone(),
        None => {
            // Hex by hand: `format!` costs several times the random number.
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let id: u128 = rand::random();
            let mut text = [0u8; 32];
            for (i, byte) in id.to_be_bytes().into_iter().enumerate() {
                text[2 * i] = HEX[usize::from(byte >> 4)];
                text[2 * i + 1] = HEX[usize::from(byte & 0xf)];
            }
            HeaderValue::from_bytes(&text).expect("hex digits are a valid header value")
        }
    }
}

/// Sets the identity headers (`X-Auth-*` by default) from the session's claims as header values
/// ([`crate::session::Session::header_values`], converted once per session); a claim the user does
/// not have sets nothing (the client's own copies were stripped in the early phase).
pub fn set_identity(
    headers: &mut HeaderMap,
    identity: &crate::config::IdentityHeaders,
    claim_values: &std::collections::HashMap<String, HeaderValue>,
) {
    for (name, claim) in &identity.0 {
        if let Some(value) = claim_values.get(claim) {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("accept", "*/*"),
        ]);
        assert_eq!(remove_hop_by_hop(&mut headers, false), None);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn a_message_without_hop_by_hop_headers_is_left_alone() {
        let mut headers = map(&[("accept", "*/*"), ("x-te", "not te"), ("cookie", "a=1")]);
        assert_eq!(remove_hop_by_hop(&mut headers, true), None);
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "10.0.0.7",
            "127.0.0.1",
            "192.168.100.255",
            "1.20.255.9",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn upgrade_is_kept_for_tunnels() {
        let mut headers = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade_request(&headers));
        assert_eq!(remove_hop_by_hop(&mut headers, true).unwrap(), "websocket");
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["upgrade"], "websocket");
    }

    #[test]
    fn identity_headers_are_removed_in_every_spelling() {
        let mut headers = map(&[
            ("x-auth-subject", "a"),
            ("x_auth_groups", "admins"),
            ("x-auth_username", "b"),
            ("x-auth-anything", "any X-Auth- header"),
            ("x_user", "configured identity header, other spelling"),
            ("x-other", "kept"),
        ]);
        remove_untrusted(&mut headers, true, &["x-user".to_owned()]);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-other"]);
    }

    #[test]
    fn forwarding_headers_are_kept_only_from_trusted_peers() {
        let sent = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x_forwarded_proto", "https"),
            ("forwarded", "for=1.1.1.1"),
        ];
        let mut untrusted = map(&sent);
        remove_untrusted(&mut untrusted, false, &[]);
        assert!(untrusted.is_empty());
        let mut trusted = map(&sent);
        remove_untrusted(&mut trusted, true, &[]);
        assert_eq!(trusted.len(), 3);
    }

    #[test]
    fn forwarded_chain_extends_only_for_trusted_peers() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let mut headers = map(&[("x-forwarded-for", "1.2.3.4")]);
        let forwarded = Forwarded {
            peer,
            tls: true,
            host: "app.example.com",
            peer_trusted: true,
        };
        set_forwarded(&mut headers, &forwarded);
        assert_eq!(headers["x-forwarded-for"], "1.2.3.4, 10.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "app.example.com");
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_generated_otherwise() {
        assert_eq!(request_id(&map(&[("x-request-id", "abc-123")])), "abc-123");
        let generated = request_id(&map(&[("x-request-id", "has space")]));
        assert_eq!(generated.len(), 32);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn split_cookies_are_joined() {
        let mut headers = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut headers);
        assert_eq!(headers.get_all("cookie").iter().count(), 1);
        assert_eq!(headers["cookie"], "a=1; b=2");
    }
}
