//! The one table of request headers Portcullis owns, and what owning each means: which are removed
//! from clients, which a policy may not set, which cannot carry a claim. The early phase's
//! stripping, the hop-by-hop removal, the check on a policy's output headers and the validation of
//! configured identity header names all ask this module, so they cannot disagree.
//!
//! Names are matched the way a backend may read them: ASCII case ignored and `_` equal to `-`.
//! nginx (`underscores_in_headers on`), CGI, PHP, WSGI and Rack all turn `X-Auth-User` and
//! `x_auth_user` into the same `HTTP_X_AUTH_USER`, so a spelling that survived stripping would be
//! as good as the header itself.
//!
//! A leaf: it imports nothing from the crate, so config, policy and proxy can all use it.

/// What Portcullis does with a header it owns. Headers in no class are the client's and pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderClass {
    /// Describes one connection (RFC 9110 §7.6.1; `HTTP2-Settings` of an `h2c` upgrade, RFC 7540
    /// §3.2.1), or must never be passed on at all (`Proxy`: CGI turns it into `HTTP_PROXY`,
    /// "httpoxy"). Removed before forwarding, both ways.
    HopByHop,
    /// Tells a backend the client's address, scheme, host, port, path prefix, original URL or
    /// method, or the client's TLS certificate (headers a front proxy that terminates TLS sets).
    /// Believed only from `trusted_proxies`; from anyone else removed, and the ones Portcullis
    /// writes (`X-Forwarded-For/-Proto/-Host`, `X-Real-IP`) rebuilt from the connection.
    Forwarding,
    /// Says who the user is: `X-Auth-*` here, the names other auth proxies use (`Remote-User`,
    /// `X-WEBAUTH-USER`, `X-MS-CLIENT-PRINCIPAL`, oauth2-proxy's `X-Forwarded-User` and friends —
    /// listed exactly, so they win over the `X-Forwarded-` prefix and are removed even from
    /// trusted proxies), plus the configured identity header names the caller adds. Always
    /// removed from clients; set from the session only.
    Identity,
    /// `Cookie`: Portcullis's own cookies in it are removed before the policy and the upstream see
    /// the request; the client's other cookies pass.
    OwnCookies,
    /// `Authorization`: the client's credentials, passed on as sent unless the route's
    /// `forward_access_token` replaces them. A policy may set it; a claim cannot.
    Credentials,
    /// Set by Portcullis alone (routing, framing, the request id): passed or rewritten by the
    /// proxy, never set by a policy or a claim. Their `_` spellings (`X_Request_Id`) are removed
    /// from clients early: a backend merging `_` with `-` would read them beside the proxy's.
    ProxySet,
}

impl HeaderClass {
    /// Whether the early phase removes this header from a client's request (`peer_trusted`: the
    /// peer is one of `trusted_proxies`). Hop-by-hop headers are removed later, just before
    /// forwarding, because `Connection` decides what else is hop-by-hop.
    pub fn removed_early(self, peer_trusted: bool) -> bool {
        match self {
            HeaderClass::Identity => true,
            HeaderClass::Forwarding => !peer_trusted,
            _ => false,
        }
    }

    /// Whether a policy may set this header (`identity_allowed`: the route's
    /// `policy_may_set_identity_headers`).
    pub fn policy_may_set(self, identity_allowed: bool) -> bool {
        match self {
            HeaderClass::Identity => identity_allowed,
            HeaderClass::Credentials => true,
            _ => false,
        }
    }

    /// Whether a configured identity header of this class may carry a claim.
    pub fn may_carry_claim(self) -> bool {
        self == HeaderClass::Identity
    }
}

/// Headers owned by their exact name, lower case with `-`, sorted (so a name is listed once).
pub const EXACT: &[(&str, HeaderClass)] = &[
    ("authorization", HeaderClass::Credentials),
    ("cf-connecting-ip", HeaderClass::Forwarding),
    ("client-cert", HeaderClass::Forwarding),
    ("client-cert-chain", HeaderClass::Forwarding),
    ("client-ip", HeaderClass::Forwarding),
    ("connection", HeaderClass::HopByHop),
    ("content-length", HeaderClass::ProxySet),
    ("cookie", HeaderClass::OwnCookies),
    ("expect", HeaderClass::ProxySet),
    ("fastly-client-ip", HeaderClass::Forwarding),
    ("forwarded", HeaderClass::Forwarding),
    ("forwarded-for", HeaderClass::Forwarding),
    ("front-end-https", HeaderClass::Forwarding),
    ("host", HeaderClass::ProxySet),
    ("http2-settings", HeaderClass::HopByHop),
    ("keep-alive", HeaderClass::HopByHop),
    ("proxy", HeaderClass::HopByHop),
    ("proxy-authenticate", HeaderClass::HopByHop),
    ("proxy-authorization", HeaderClass::HopByHop),
    ("proxy-connection", HeaderClass::HopByHop),
    ("remote-email", HeaderClass::Identity),
    ("remote-groups", HeaderClass::Identity),
    ("remote-name", HeaderClass::Identity),
    ("remote-user", HeaderClass::Identity),
    ("request-uri", HeaderClass::Forwarding),
    ("script-name", HeaderClass::Forwarding),
    ("ssl-client-cert", HeaderClass::Forwarding),
    ("ssl-client-verify", HeaderClass::Forwarding),
    ("te", HeaderClass::HopByHop),
    ("trailer", HeaderClass::HopByHop),
    ("transfer-encoding", HeaderClass::HopByHop),
    ("true-client-ip", HeaderClass::Forwarding),
    ("upgrade", HeaderClass::HopByHop),
    ("x-appengine-user-ip", HeaderClass::Forwarding),
    ("x-arr-clientcert", HeaderClass::Forwarding),
    ("x-arr-ssl", HeaderClass::Forwarding),
    ("x-azure-clientip", HeaderClass::Forwarding),
    ("x-azure-socketip", HeaderClass::Forwarding),
    ("x-client-cert", HeaderClass::Forwarding),
    ("x-client-cert-chain", HeaderClass::Forwarding),
    ("x-client-certificate", HeaderClass::Forwarding),
    ("x-client-dn", HeaderClass::Forwarding),
    ("x-client-ip", HeaderClass::Forwarding),
    ("x-client-verify", HeaderClass::Forwarding),
    ("x-cluster-client-ip", HeaderClass::Forwarding),
    ("x-envoy-external-address", HeaderClass::Forwarding),
    ("x-envoy-original-path", HeaderClass::Forwarding),
    ("x-forwarded", HeaderClass::Forwarding),
    ("x-forwarded-access-token", HeaderClass::Identity),
    ("x-forwarded-email", HeaderClass::Identity),
    ("x-forwarded-groups", HeaderClass::Identity),
    ("x-forwarded-preferred-username", HeaderClass::Identity),
    ("x-forwarded-user", HeaderClass::Identity),
    ("x-host", HeaderClass::Forwarding),
    ("x-http-host-override", HeaderClass::Forwarding),
    ("x-http-method", HeaderClass::Forwarding),
    ("x-http-method-override", HeaderClass::Forwarding),
    ("x-http-verb", HeaderClass::Forwarding),
    ("x-method", HeaderClass::Forwarding),
    ("x-method-override", HeaderClass::Forwarding),
    ("x-ms-client-principal", HeaderClass::Identity),
    ("x-ms-client-principal-id", HeaderClass::Identity),
    ("x-ms-client-principal-idp", HeaderClass::Identity),
    ("x-ms-client-principal-name", HeaderClass::Identity),
    ("x-original-forwarded-for", HeaderClass::Forwarding),
    ("x-original-host", HeaderClass::Forwarding),
    ("x-original-method", HeaderClass::Forwarding),
    ("x-original-remote-addr", HeaderClass::Forwarding),
    ("x-original-request-uri", HeaderClass::Forwarding),
    ("x-original-uri", HeaderClass::Forwarding),
    ("x-original-url", HeaderClass::Forwarding),
    ("x-originating-ip", HeaderClass::Forwarding),
    ("x-proxyuser-ip", HeaderClass::Forwarding),
    ("x-real-ip", HeaderClass::Forwarding),
    ("x-remote-addr", HeaderClass::Forwarding),
    ("x-remote-ip", HeaderClass::Forwarding),
    ("x-remote-user", HeaderClass::Identity),
    ("x-request-id", HeaderClass::ProxySet),
    ("x-request-uri", HeaderClass::Forwarding),
    ("x-rewrite-url", HeaderClass::Forwarding),
    ("x-scheme", HeaderClass::Forwarding),
    ("x-script-name", HeaderClass::Forwarding),
    ("x-ssl-cert", HeaderClass::Forwarding),
    ("x-ssl-client-cert", HeaderClass::Forwarding),
    ("x-ssl-client-dn", HeaderClass::Forwarding),
    ("x-ssl-client-escaped-cert", HeaderClass::Forwarding),
    ("x-ssl-client-s-dn", HeaderClass::Forwarding),
    ("x-ssl-client-subject", HeaderClass::Forwarding),
    ("x-ssl-client-verify", HeaderClass::Forwarding),
    ("x-ssl-issuer", HeaderClass::Forwarding),
    ("x-url-scheme", HeaderClass::Forwarding),
    ("x-verb", HeaderClass::Forwarding),
    ("x-webauth-email", HeaderClass::Identity),
    ("x-webauth-user", HeaderClass::Identity),
];

/// Headers owned by a name prefix (lower case with `-`): every `X-Forwarded-*` (`-For`, `-Proto`,
/// `-Host`, `-Port`, `-Prefix`, `-Uri`, `-Ssl`, …) and `X-SSL-Client-*`, every `X-Auth-*`, and the
/// identity headers other auth proxies set (AWS ALB's `X-Amzn-Oidc-*`, Google IAP's
/// `X-Goog-Authenticated-User-*`).
pub const PREFIXES: &[(&str, HeaderClass)] = &[
    ("x-amzn-oidc-", HeaderClass::Identity),
    ("x-auth-", HeaderClass::Identity),
    ("x-forwarded-", HeaderClass::Forwarding),
    ("x-goog-authenticated-user-", HeaderClass::Identity),
    ("x-ssl-client-", HeaderClass::Forwarding),
];

/// The longest name in [`EXACT`]; longer names can only match a prefix.
const LONGEST_EXACT: usize = 32;

/// One byte as a backend folds it: lower case, `_` as `-`.
fn fold(byte: u8) -> u8 {
    if byte == b'_' {
        b'-'
    } else {
        byte.to_ascii_lowercase()
    }
}

/// Whether two header names are one to a backend: ASCII case ignored, `_` equal to `-`.
pub fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// `name` in the form the table uses: lower case, `-` for `_`. For config validation and for
/// keeping configured identity names; the request path compares with [`same_name`] instead.
pub fn normalise(name: &str) -> String {
    name.bytes().map(|b| char::from(fold(b))).collect()
}

/// The class of a header name, in any spelling; `None` for the client's own headers.
///
/// Runs for every header of every request and response, so it does the least it can: the name is
/// folded once into a buffer on the stack and compared only with the exact names of its length,
/// and every prefix starts with `x-`, so other names are done after two bytes.
pub fn classify(name: &str) -> Option<HeaderClass> {
    let bytes = name.as_bytes();
    if bytes.len() <= LONGEST_EXACT {
        let mut folded = [0u8; LONGEST_EXACT];
        for (out, byte) in folded.iter_mut().zip(bytes) {
            *out = fold(*byte);
        }
        let folded = &folded[..bytes.len()];
        let same_length = &EXACT_BY_LENGTH[bytes.len()];
        if let Some((_, class)) = same_length.iter().find(|(entry, _)| *entry == folded) {
            return Some(*class);
        }
    }
    if !matches!(bytes, [x, b'-' | b'_', ..] if fold(*x) == b'x') {
        return None;
    }
    PREFIXES.iter().find_map(|(prefix, class)| {
        (bytes.len() > prefix.len() && same_name(&name[..prefix.len()], prefix)).then_some(*class)
    })
}

/// The [`EXACT`] names of one length, as bytes.
type SameLength = Vec<(&'static [u8], HeaderClass)>;

/// [`EXACT`] by name length: `EXACT_BY_LENGTH[n]` holds the names `n` bytes long.
static EXACT_BY_LENGTH: std::sync::LazyLock<[SameLength; LONGEST_EXACT + 1]> =
    std::sync::LazyLock::new(|| {
        let mut by_length: [SameLength; LONGEST_EXACT + 1] = std::array::from_fn(|_| Vec::new());
        for (name, class) in EXACT {
            by_length[name.len()].push((name.as_bytes(), *class));
        }
        by_length
    });

/// The class of a header name with the configured identity header names (`configured`, in the
/// [`normalise`]d form) counted as [`HeaderClass::Identity`].
pub fn classify_with(name: &str, configured: &[String]) -> Option<HeaderClass> {
    classify(name).or_else(|| {
        configured
            .iter()
            .any(|identity| same_name(name, identity))
            .then_some(HeaderClass::Identity)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exact_table_is_sorted_normalised_and_within_the_length_bound() {
        for pair in EXACT.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (name, _) in EXACT.iter().chain(PREFIXES) {
            assert_eq!(normalise(name), *name);
            assert!(name.len() <= LONGEST_EXACT, "{name}");
        }
        for (prefix, _) in PREFIXES {
            assert!(
                prefix.starts_with("x-"),
                "classify skips names not starting with x-: {prefix}"
            );
        }
    }

    #[test]
    fn every_listed_name_and_prefix_is_found_in_every_spelling() {
        let spellings = |name: &str| {
            [
                name.to_owned(),
                name.to_ascii_uppercase(),
                name.replace('-', "_"),
            ]
        };
        for (name, class) in EXACT {
            for spelling in spellings(name) {
                assert_eq!(classify(&spelling), Some(*class), "{spelling}");
            }
            // One byte more or less is another name (unless a prefix owns it).
            let longer = format!("{name}s");
            let expected = PREFIXES
                .iter()
                .find(|(prefix, _)| name.starts_with(prefix))
                .map(|(_, class)| *class);
            assert_eq!(classify(&longer), expected, "{longer}");
        }
        for (prefix, class) in PREFIXES {
            for spelling in spellings(&format!("{prefix}anything")) {
                assert_eq!(classify(&spelling), Some(*class), "{spelling}");
            }
        }
    }

    #[test]
    fn every_spelling_a_backend_merges_is_one_name() {
        for name in ["X-Real-IP", "x_real_ip", "X_REAL-ip", "x-real-ip"] {
            assert_eq!(classify(name), Some(HeaderClass::Forwarding), "{name}");
        }
        for name in ["X-Auth-User", "x_auth_user", "X_AUTH-Groups"] {
            assert_eq!(classify(name), Some(HeaderClass::Identity), "{name}");
        }
        assert_eq!(
            classify("X_Forwarded_Prefix"),
            Some(HeaderClass::Forwarding)
        );
        assert_eq!(classify("Transfer_Encoding"), Some(HeaderClass::HopByHop));
        assert_eq!(classify("x-auth-"), None, "a bare prefix names nothing");
        assert_eq!(classify("x-realip"), None);
        assert_eq!(classify("accept"), None);
        assert_eq!(
            classify(&"x".repeat(LONGEST_EXACT + 1)),
            None,
            "longer than every exact name"
        );
    }

    #[test]
    fn every_header_that_can_name_the_client_or_the_original_url_is_forwarding() {
        for name in [
            "X-Forwarded-For",
            "X-Forwarded-Proto",
            "X-Forwarded-Host",
            "X-Forwarded-Port",
            "X-Forwarded-Prefix",
            "X-Forwarded-Uri",
            "X-Forwarded-Ssl",
            "Forwarded",
            "X-Real-IP",
            "True-Client-IP",
            "X-Client-IP",
            "CF-Connecting-IP",
            "X-Cluster-Client-IP",
            "Fastly-Client-IP",
            "X-Original-URL",
            "X-Original-URI",
            "X-Rewrite-URL",
            "X-Original-Host",
        ] {
            assert_eq!(classify(name), Some(HeaderClass::Forwarding), "{name}");
        }
    }

    #[test]
    fn configured_identity_names_match_in_every_spelling() {
        let configured = [normalise("X_Remote_User")];
        for name in ["x-remote-user", "X_Remote_User", "X-REMOTE_user"] {
            assert_eq!(
                classify_with(name, &configured),
                Some(HeaderClass::Identity),
                "{name}"
            );
        }
        assert_eq!(classify_with("x-remote-users", &configured), None);
    }
}
