//! Header hygiene: hop-by-hop removal, identity-header stripping, forwarding headers, request ids.
//!
//! Which headers are whose is decided in [`crate::header_ownership`]; this module applies it to
//! requests and responses. Names are matched there the way a backend might read them.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::header_ownership::{HeaderClass, classify, classify_with};

/// Names headers carrying request ids.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Whether the request asks for a protocol upgrade the proxy tunnels: `Connection: upgrade`
/// together with an `Upgrade` header offering WebSocket and nothing else.
///
/// Only WebSocket is tunnelled. After any other switch (`h2c`, `h2`, a made-up protocol) the
/// backend would read raw bytes of another protocol from the client — every later request on the
/// connection past routing, policies and header stripping. Such a request is forwarded as a plain
/// one: its `Upgrade` (and `HTTP2-Settings`) are hop-by-hop and removed, which HTTP allows (a server
/// may ignore an upgrade offer).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    let mut offers = headers
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(connection_tokens)
        .peekable();
    let websocket_only = offers.peek().is_some()
        && offers.all(|token| {
            let protocol = token.split('/').next().unwrap_or(token).trim();
            protocol.eq_ignore_ascii_case("websocket")
        });
    websocket_only
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

/// Whether `name` is hop-by-hop by itself (in the ownership table; `Upgrade` included).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    classify(name.as_str()) == Some(HeaderClass::HopByHop)
}

/// Removes hop-by-hop headers, including every header the `Connection` header names.
///
/// Returns the `Upgrade` value when `keep_upgrade` is set and one was present, so the caller can
/// re-add `Connection: upgrade` + `Upgrade` for a tunnel.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) -> Option<HeaderValue> {
    // Runs twice per request. `Connection` goes first, and what it names by name, one lookup per
    // token; then one pass over the names present finds the listed ones, and a list of them is
    // made only when there is one (rare once `Connection` is gone).
    let mut upgrade = None;
    if let Some(first) = headers.get(header::CONNECTION).cloned() {
        // Nearly always one field; more are collected (an empty Vec allocates nothing).
        let more: Vec<HeaderValue> = headers
            .get_all(header::CONNECTION)
            .iter()
            .skip(1)
            .cloned()
            .collect();
        headers.remove(header::CONNECTION);
        for token in std::iter::once(&first)
            .chain(&more)
            .flat_map(connection_tokens)
        {
            // A token that is no header name removes nothing; one named twice, nothing the second
            // time.
            let removed = headers.remove(token);
            if removed.is_some() && token.eq_ignore_ascii_case(header::UPGRADE.as_str()) {
                upgrade = removed;
            }
        }
    }
    // `Upgrade` is hop-by-hop itself; its value is kept aside for a tunnel.
    if let Some(value) = headers.remove(header::UPGRADE) {
        upgrade = Some(value);
    }
    remove_every(headers, is_hop_by_hop);
    if keep_upgrade {
        let upgrade = upgrade?;
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade.clone());
        return Some(upgrade);
    }
    None
}

/// Removes what the early phase owns in a client's request, in every spelling: identity headers
/// (always: every `X-Auth-*` and every configured identity header), forwarding headers (unless
/// the peer is a trusted proxy), and `_` spellings of the headers the proxy sets (`X_Request_Id`).
/// `identity_names` are [`crate::header_ownership::normalise`]d.
pub fn remove_untrusted(headers: &mut HeaderMap, peer_trusted: bool, identity_names: &[String]) {
    let unwanted = |name: &HeaderName| {
        classify_with(name.as_str(), identity_names).is_some_and(|class| {
            class.removed_early(peer_trusted)
                // Another spelling of a header the proxy sets (`X_Request_Id`, `Content_Length`):
                // a backend that merges `_` with `-` would read the client's beside the proxy's.
                || (class == HeaderClass::ProxySet && name.as_str().contains('_'))
        })
    };
    remove_every(headers, unwanted);
}

/// Removes every header whose name `unwanted` picks. The common message has none: the names are
/// listed (an allocation) only when one is found.
fn remove_every(headers: &mut HeaderMap, unwanted: impl Fn(&HeaderName) -> bool) {
    if !headers.keys().any(&unwanted) {
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
    /// The TCP peer's address as a header value ([`ip_text`]), made once per connection.
    pub peer_header: &'a HeaderValue,
    /// Whether the client connection was TLS.
    pub tls: bool,
    /// The Host the client asked for, as sent.
    pub host: &'a HeaderValue,
    /// Whether the peer is a trusted proxy whose forwarding headers were kept.
    pub peer_trusted: bool,
    /// `server.trusted_proxies`: hops of a trusted proxy's `X-Forwarded-For` that are proxies too.
    pub trusted_proxies: &'a [IpNet],
}

/// Sets `X-Forwarded-For`, `-Proto`, `-Host` and `X-Real-IP`. From an untrusted peer (every
/// forwarding header already removed) they describe the peer: `X-Real-IP` is the peer's address,
/// as nginx's `$remote_addr`. From a trusted proxy the `X-Forwarded-For` chain is extended, its
/// `-Proto`, `-Host` and `X-Real-IP` are kept, and when it sent no `X-Real-IP` that is the client
/// its chain names (see [`client_in_chain`]).
pub fn set_forwarded(headers: &mut HeaderMap, forwarded: &Forwarded<'_>) {
    let peer = forwarded.peer_header;
    let (chain, real_ip) = if forwarded.peer_trusted {
        behind_trusted_proxy(headers, forwarded)
    } else {
        (Some(peer.clone()), Some(peer.clone()))
    };
    if let Some(chain) = chain {
        headers.insert(X_FORWARDED_FOR.clone(), chain);
    }
    if let Some(real_ip) = real_ip {
        headers.insert(X_REAL_IP.clone(), real_ip);
    }
    // From an untrusted peer the early phase removed every copy: no need to look.
    let keep = |headers: &HeaderMap, name: &HeaderName| {
        forwarded.peer_trusted && headers.contains_key(name)
    };
    if !keep(headers, &X_FORWARDED_PROTO) {
        let proto = if forwarded.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !keep(headers, &X_FORWARDED_HOST) {
        headers.insert(X_FORWARDED_HOST.clone(), forwarded.host.clone());
    }
}

/// `X-Forwarded-For` and `X-Real-IP` for a request from a trusted proxy: its chain with the peer
/// appended, and (when it sent none) the client its chain names. `None`: leave as sent.
fn behind_trusted_proxy(
    headers: &HeaderMap,
    forwarded: &Forwarded<'_>,
) -> (Option<HeaderValue>, Option<HeaderValue>) {
    let peer = forwarded.peer_header;
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    let real_ip = if headers.contains_key(&X_REAL_IP) {
        None
    } else {
        match client_in_chain(&prior, forwarded.trusted_proxies) {
            Some(client) => HeaderValue::from_str(&ip_text(client)).ok(),
            None => Some(peer.clone()),
        }
    };
    let chain = if prior.is_empty() {
        Some(peer.clone())
    } else {
        let peer = peer.to_str().unwrap_or_default();
        HeaderValue::from_str(&format!("{}, {peer}", prior.join(", "))).ok()
    };
    (chain, real_ip)
}

/// The client a trusted proxy's `X-Forwarded-For` chain names: the right-most hop that is not
/// itself a trusted proxy (hops to its right were appended by proxies we trust; hops to its left
/// were written by the client and prove nothing), or the left-most hop when every hop is trusted.
/// `None` when the chain is empty or that hop is not an address.
fn client_in_chain(chain: &[&str], trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let mut leftmost = None;
    for hop in chain.iter().rev().flat_map(|value| value.rsplit(',')) {
        let hop = hop.trim();
        // Some proxies (Azure's) write the client's port too: `1.2.3.4:443`, `[2001:db8::1]:443`.
        let ip = hop
            .parse::<IpAddr>()
            .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|addr| addr.ip()))
            .ok()?
            .to_canonical();
        if !trusted_proxies.iter().any(|net| net.contains(&ip)) {
            return Some(ip);
        }
        leftmost = Some(ip);
    }
    leftmost
}

/// An address as text. IPv4 (nearly every peer) is written by hand: `Display` goes through the
/// formatting machinery, which costs more than the rest of `set_forwarded`.
pub fn ip_text(ip: IpAddr) -> String {
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

/// Sets the headers a route's policy decided on, each replacing the client's fields of that name
/// in every spelling (`X-Role`, `x_role`, `X_ROLE`): backends that read headers as CGI variables
/// (`HTTP_X_ROLE`: PHP, WSGI, Rack) see `-` and `_` alike, so a client's `X_Role` must not sit
/// beside the value the policy set.
pub fn set_policy_headers(headers: &mut HeaderMap, decided: Vec<(HeaderName, HeaderValue)>) {
    for (name, value) in decided {
        let spellings: Vec<HeaderName> = headers
            .keys()
            .filter(|key| crate::header_ownership::same_name(key.as_str(), name.as_str()))
            .cloned()
            .collect();
        for spelling in spellings {
            headers.remove(spelling);
        }
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a client's `X_Role: admin` reached the upstream beside the policy's
    /// `X-Role: user`, and a CGI-style backend read the client's.
    #[test]
    fn a_policy_header_replaces_every_spelling_the_client_sent() {
        let mut headers = map(&[
            ("x_role", "admin"),
            ("X_ROLE", "admin"),
            ("x-role", "admin"),
            ("x-other", "kept"),
        ]);
        set_policy_headers(
            &mut headers,
            vec![(
                HeaderName::from_static("x-role"),
                HeaderValue::from_static("user"),
            )],
        );
        let mut left: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ("x-other".to_owned(), "kept".to_owned()),
                ("x-role".to_owned(), "user".to_owned())
            ]
        );
    }

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
    fn every_connection_field_counts_and_an_upgrade_named_twice_is_kept_for_the_tunnel() {
        let mut headers = map(&[
            ("connection", "Upgrade"),
            ("connection", "x-first-hop, upgrade"),
            ("connection", "X-Second-Hop"),
            ("x-first-hop", "1"),
            ("x-second-hop", "2"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        let upgrade = remove_hop_by_hop(&mut headers, true);
        assert_eq!(upgrade, Some(HeaderValue::from_static("websocket")));
        let mut left: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.to_str().unwrap()))
            .collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                ("accept", "*/*"),
                ("connection", "upgrade"),
                ("upgrade", "websocket")
            ]
        );
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
    fn only_websocket_is_tunnelled_and_h2c_settings_never_pass() {
        for offer in ["h2c", "H2C", "websocket, h2c", "h2", "HTTP/2.0", "foo"] {
            let mut headers = map(&[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", offer),
                ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
                ("accept", "*/*"),
            ]);
            assert!(!is_upgrade_request(&headers), "{offer}");
            assert_eq!(remove_hop_by_hop(&mut headers, false), None);
            let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
            assert_eq!(left, ["accept"], "{offer}");
        }
    }

    #[test]
    fn a_chain_entry_with_a_port_still_names_the_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_in_chain(&["1.2.3.4:443, 10.0.0.2"], &trusted),
            Some("1.2.3.4".parse().unwrap())
        );
        assert_eq!(
            client_in_chain(&["[2001:db8::1]:443"], &trusted),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(client_in_chain(&["not-an-address"], &trusted), None);
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
            ("x-real-ip", "6.6.6.6"),
            ("true-client-ip", "6.6.6.6"),
            ("x-original-url", "/admin"),
            ("x_rewrite_url", "/admin"),
            ("x-forwarded-prefix", "/evil"),
        ];
        let mut untrusted = map(&sent);
        remove_untrusted(&mut untrusted, false, &[]);
        assert!(untrusted.is_empty());
        let mut trusted = map(&sent);
        remove_untrusted(&mut trusted, true, &[]);
        assert_eq!(trusted.len(), sent.len());
    }

    #[test]
    fn forwarded_chain_extends_only_for_trusted_peers() {
        let mut headers = map(&[("x-forwarded-for", "1.2.3.4")]);
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let forwarded = Forwarded {
            peer_header: &HeaderValue::from_static("10.0.0.1"),
            tls: true,
            host: &HeaderValue::from_static("app.example.com"),
            peer_trusted: true,
            trusted_proxies: &trusted,
        };
        set_forwarded(&mut headers, &forwarded);
        assert_eq!(headers["x-forwarded-for"], "1.2.3.4, 10.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "app.example.com");
        assert_eq!(headers["x-real-ip"], "1.2.3.4");
    }

    #[test]
    fn x_real_ip_from_a_trusted_proxy_is_its_own_or_the_client_its_chain_names() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let forwarded = Forwarded {
            peer_header: &HeaderValue::from_static("10.0.0.1"),
            tls: false,
            host: &HeaderValue::from_static("app.example.com"),
            peer_trusted: true,
            trusted_proxies: &trusted,
        };
        let real_ip = |sent: &[(&str, &str)]| {
            let mut headers = map(sent);
            set_forwarded(&mut headers, &forwarded);
            headers["x-real-ip"].to_str().unwrap().to_owned()
        };
        assert_eq!(
            real_ip(&[
                ("x-real-ip", "198.51.100.1"),
                ("x-forwarded-for", "203.0.113.5")
            ]),
            "198.51.100.1",
            "the trusted proxy's own"
        );
        assert_eq!(
            real_ip(&[("x-forwarded-for", "6.6.6.6, 203.0.113.5, 10.0.0.9")]),
            "203.0.113.5",
            "the right-most hop that is not a trusted proxy; the client wrote the rest"
        );
        assert_eq!(
            real_ip(&[
                ("x-forwarded-for", "10.0.0.8"),
                ("x-forwarded-for", "10.0.0.9")
            ]),
            "10.0.0.8",
            "every hop trusted: the left-most"
        );
        assert_eq!(real_ip(&[]), "10.0.0.1", "no chain: the peer");
        assert_eq!(
            real_ip(&[("x-forwarded-for", "unknown")]),
            "10.0.0.1",
            "not an address: the peer"
        );
    }

    #[test]
    fn x_real_ip_from_an_untrusted_peer_is_the_peer() {
        let mut headers = HeaderMap::new();
        let forwarded = Forwarded {
            peer_header: &HeaderValue::from_static("192.0.2.7"),
            tls: false,
            host: &HeaderValue::from_static("app.example.com"),
            peer_trusted: false,
            trusted_proxies: &[],
        };
        set_forwarded(&mut headers, &forwarded);
        assert_eq!(headers["x-real-ip"], "192.0.2.7");
        assert_eq!(headers["x-forwarded-for"], "192.0.2.7");
    }

    /// The users of the ownership table agree with it for every name in it, in the spellings a
    /// backend merges: the early phase strips identity and (from untrusted peers) forwarding
    /// headers, hop-by-hop removal strips hop-by-hop ones, a policy may set only what its class
    /// allows, and only identity headers may be configured to carry a claim.
    #[test]
    fn every_owned_header_is_stripped_refused_and_rejected_as_its_class_says() {
        use crate::header_ownership::{EXACT, PREFIXES};
        use crate::policy::{OutputRules, PolicyLimits};

        let names = EXACT
            .iter()
            .map(|(name, class)| ((*name).to_owned(), *class))
            .chain(
                PREFIXES
                    .iter()
                    .map(|(prefix, class)| (format!("{prefix}probe"), *class)),
            );
        let rules = |may_set_identity_headers| OutputRules {
            limits: PolicyLimits::default(),
            identity_headers: Vec::new(),
            may_set_identity_headers,
        };
        for (name, class) in names {
            for spelling in [
                name.clone(),
                name.to_ascii_uppercase(),
                name.replace('-', "_"),
            ] {
                let header = HeaderName::from_bytes(spelling.as_bytes()).unwrap();
                let sent = || {
                    let mut headers = HeaderMap::new();
                    headers.insert(header.clone(), HeaderValue::from_static("forged"));
                    headers
                };

                let mut untrusted = sent();
                remove_untrusted(&mut untrusted, false, &[]);
                let mut trusted = sent();
                remove_untrusted(&mut trusted, true, &[]);
                let mut hop = sent();
                remove_hop_by_hop(&mut hop, false);
                let proxy_set_respelled = class == HeaderClass::ProxySet && spelling.contains('_');
                assert_eq!(
                    (untrusted.is_empty(), trusted.is_empty(), hop.is_empty()),
                    (
                        matches!(class, HeaderClass::Identity | HeaderClass::Forwarding)
                            || proxy_set_respelled,
                        class == HeaderClass::Identity || proxy_set_respelled,
                        class == HeaderClass::HopByHop,
                    ),
                    "{spelling} ({class:?}): stripped from untrusted, trusted, as hop-by-hop"
                );

                for may_set in [false, true] {
                    let refused = rules(may_set)
                        .check(vec![(spelling.clone(), "v".to_owned())])
                        .is_err();
                    assert_eq!(
                        refused,
                        !class.policy_may_set(may_set),
                        "{spelling} ({class:?}) set by a policy, identity allowed: {may_set}"
                    );
                }

                let config = format!(
                    "[server]\nlisten = \"127.0.0.1:0\"\n\n[headers]\n\"{spelling}\" = \"sub\"\n\n\
                     [[routes]]\nname = \"app\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n"
                );
                let refused = match crate::config::parse(&config, std::path::Path::new(".")) {
                    Ok(_) => false,
                    Err(crate::config::ParseError::Invalid(problems)) => problems
                        .iter()
                        .any(|p| p.to_string().contains("cannot carry a claim")),
                    Err(err) => panic!("{spelling}: {err:?}"),
                };
                assert_eq!(
                    refused,
                    !class.may_carry_claim(),
                    "{spelling} ({class:?}) configured as an identity header"
                );
            }
        }
    }

    #[test]
    fn configured_identity_headers_are_removed_in_both_spellings() {
        let configured = [crate::header_ownership::normalise("X_Remote_User")];
        for sent in ["x-remote-user", "x_remote_user", "X-REMOTE_USER"] {
            let mut headers = map(&[(sent, "admin"), ("x-other", "kept")]);
            remove_untrusted(&mut headers, true, &configured);
            let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
            assert_eq!(left, ["x-other"], "{sent}");
        }
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_generated_otherwise() {
        assert_eq!(request_id(&map(&[("x-request-id", "abc-123")])), "abc-123");
        let generated = request_id(&map(&[("x-request-id", "has space")]));
        assert_eq!(generated.len(), 32);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }
}
