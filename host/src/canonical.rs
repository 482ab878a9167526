//! Canonical hosts and paths: the one place the raw request target is interpreted.
//!
//! Routing (and, later, policies) decide on the canonical form only; the upstream receives the same
//! canonical form, so the proxy and the backend can never disagree about which resource was asked for.
//! Canonicalising a path:
//! - percent-escapes of unreserved characters (`A–Z a–z 0–9 - . _ ~`) are decoded, other escapes are
//!   kept with upper-case hex digits;
//! - an escape that is not two hex digits, an encoded NUL, and (unless allowed) an encoded `/` or `\`
//!   are refused: servers disagree on what they mean;
//! - repeated slashes are merged, `.` segments dropped, `..` segments remove their parent; `..` above
//!   the root is refused;
//! - `;parameters` on a segment (Tomcat/Jetty "matrix" parameters) are not part of the segment's
//!   name: the decision path drops them, so `/admin;x` is decided as `/admin` and `/..;/` counts as
//!   `..`, as such servers do. The forwarded path keeps them on ordinary segments.

use std::fmt;

/// Why a request target has no canonical form. Every variant answers 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The target is not an absolute path (`*`, authority-form, empty).
    #[error("request target is not an absolute path")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-escape in path")]
    BadEscape,
    /// `%00` in the path.
    #[error("encoded NUL in path")]
    EncodedNul,
    /// `%2F` or `%5C` while `server.allow_encoded_slashes` is false.
    #[error("encoded slash in path (set server.allow_encoded_slashes to accept it)")]
    EncodedSlash,
    /// More `..` segments than there are parents.
    #[error("path climbs above the root")]
    AboveRoot,
}

/// Why a `Host` (or `:authority`) has no canonical form. Answers 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid Host header")]
pub struct HostError;

/// A request path in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// What routing and policies decide on: no matrix parameters.
    decision: String,
    /// What the upstream receives: the decision path with ordinary segments' parameters kept.
    forward: String,
}

impl CanonicalPath {
    /// Canonicalises the path part of a request target (no query).
    pub fn parse(raw: &str, allow_encoded_slashes: bool) -> Result<Self, PathError> {
        let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        if is_already_canonical(rest) {
            return Ok(CanonicalPath {
                decision: raw.to_owned(),
                forward: raw.to_owned(),
            });
        }
        // (name, params) of each kept segment; names and params already escape-normalised.
        let mut segments: Vec<(String, String)> = Vec::new();
        let mut trailing_slash = false;
        for raw_segment in rest.split('/') {
            let segment = normalise_escapes(raw_segment, allow_encoded_slashes)?;
            let (name, params) = match segment.find(';') {
                Some(at) => (&segment[..at], &segment[at..]),
                None => (segment.as_str(), ""),
            };
            // A segment that ends the path decides whether the result ends in `/`, as in RFC 3986
            // remove_dot_segments: `/a/` and `/a/b/..` both name the directory `/a/`.
            trailing_slash = matches!(name, "" | "." | "..");
            match name {
                "" | "." => {}
                ".." => {
                    segments.pop().ok_or(PathError::AboveRoot)?;
                }
                _ => segments.push((name.to_owned(), params.to_owned())),
            }
        }
        let mut decision = String::with_capacity(raw.len());
        let mut forward = String::with_capacity(raw.len());
        for (name, params) in &segments {
            decision.push('/');
            decision.push_str(name);
            forward.push('/');
            forward.push_str(name);
            forward.push_str(params);
        }
        if trailing_slash || segments.is_empty() {
            decision.push('/');
            forward.push('/');
        }
        Ok(CanonicalPath { decision, forward })
    }

    /// The path routing and policies decide on (no matrix parameters).
    pub fn decision(&self) -> &str {
        &self.decision
    }

    /// The path sent upstream (matrix parameters kept on ordinary segments).
    pub fn forward(&self) -> &str {
        &self.forward
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.decision)
    }
}

/// The common case, checked without allocating: nothing to decode, merge, resolve or strip.
fn is_already_canonical(rest: &str) -> bool {
    let bytes = rest.as_bytes();
    if bytes.iter().any(|&b| b == b'%' || b == b';') {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." | ".." => return false,
            "" if !last => return false, // only a trailing slash (or the root itself) may be empty
            _ => {}
        }
    }
    true
}

/// Decodes escapes of unreserved characters, upper-cases the rest, refuses the dangerous ones.
fn normalise_escapes(segment: &str, allow_encoded_slashes: bool) -> Result<String, PathError> {
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            if bytes[i].is_ascii_graphic() {
                out.push(bytes[i] as char);
            } else {
                // Never reached through hyper, which refuses such targets; kept encoded regardless.
                push_escaped(&mut out, bytes[i]);
            }
            i += 1;
            continue;
        }
        let hi = bytes.get(i + 1).and_then(|b| hex_value(*b));
        let lo = bytes.get(i + 2).and_then(|b| hex_value(*b));
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err(PathError::BadEscape);
        };
        let byte = hi << 4 | lo;
        match byte {
            0 => return Err(PathError::EncodedNul),
            b'/' | b'\\' if !allow_encoded_slashes => return Err(PathError::EncodedSlash),
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                out.push(b as char)
            }
            b => push_escaped(&mut out, b),
        }
        i += 3;
    }
    Ok(out)
}

fn push_escaped(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 0xF)] as char);
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Canonicalises a `Host` header or URI authority: lower case, no port, no trailing dot.
///
/// IPv6 literals keep their brackets (`[::1]`). Anything but letters, digits, `-`, `.` and `_` in a
/// name is refused, so a host can never smuggle a path or a second header into a decision.
pub fn canonical_host(authority: &str) -> Result<String, HostError> {
    let host = if authority.starts_with('[') {
        let end = authority.find(']').ok_or(HostError)?;
        let (literal, rest) = authority.split_at(end + 1);
        if !(rest.is_empty() || is_port(rest)) {
            return Err(HostError);
        }
        if literal[1..end].parse::<std::net::Ipv6Addr>().is_err() {
            return Err(HostError);
        }
        literal
    } else {
        match authority.rfind(':') {
            Some(colon) if is_port(&authority[colon..]) => &authority[..colon],
            Some(_) => return Err(HostError),
            None => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid_name = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if host.is_empty() || !(valid_name || host.starts_with('[')) {
        return Err(HostError);
    }
    Ok(host.to_ascii_lowercase())
}

/// `:` followed by 1–5 digits.
fn is_port(text: &str) -> bool {
    text.strip_prefix(':').is_some_and(|digits| {
        (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(raw: &str) -> Result<String, PathError> {
        CanonicalPath::parse(raw, false).map(|p| p.decision().to_owned())
    }

    #[test]
    fn plain_paths_are_kept_as_they_are() {
        for raw in ["/", "/a", "/a/", "/a/b.txt", "/~user/x-y_z"] {
            assert_eq!(decision(raw).unwrap(), raw);
        }
    }

    #[test]
    fn slashes_merge_and_dot_segments_resolve() {
        assert_eq!(decision("//admin").unwrap(), "/admin");
        assert_eq!(decision("/a//b///c").unwrap(), "/a/b/c");
        assert_eq!(decision("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(decision("/a/b/../c").unwrap(), "/a/c");
        assert_eq!(decision("/a/b/..").unwrap(), "/a/");
        assert_eq!(decision("/public/../admin").unwrap(), "/admin");
    }

    #[test]
    fn unreserved_escapes_decode_and_others_upper_case() {
        assert_eq!(decision("/%61dmin").unwrap(), "/admin");
        assert_eq!(decision("/%2e%2E/x").unwrap_err(), PathError::AboveRoot);
        assert_eq!(decision("/a/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(decision("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(decision("/a%20b").unwrap(), "/a%20b");
    }

    #[test]
    fn dangerous_escapes_are_refused() {
        assert_eq!(
            decision("/public/..%2fadmin").unwrap_err(),
            PathError::EncodedSlash
        );
        assert_eq!(decision("/a%5Cb").unwrap_err(), PathError::EncodedSlash);
        assert_eq!(decision("/a%00").unwrap_err(), PathError::EncodedNul);
        assert_eq!(decision("/a%zz").unwrap_err(), PathError::BadEscape);
        assert_eq!(decision("/a%4").unwrap_err(), PathError::BadEscape);
        assert_eq!(decision("/..").unwrap_err(), PathError::AboveRoot);
        assert_eq!(decision("*").unwrap_err(), PathError::NotAbsolute);
    }

    #[test]
    fn encoded_slashes_stay_encoded_when_allowed() {
        let path = CanonicalPath::parse("/files/a%2fb", true).unwrap();
        assert_eq!(path.decision(), "/files/a%2Fb");
        assert_eq!(path.forward(), "/files/a%2Fb");
    }

    #[test]
    fn matrix_parameters_do_not_hide_the_segment_name() {
        let path = CanonicalPath::parse("/admin;x", false).unwrap();
        assert_eq!(path.decision(), "/admin");
        assert_eq!(path.forward(), "/admin;x");
        // Tomcat resolves `..;` as `..`: so do we.
        assert_eq!(decision("/public/..;/admin").unwrap(), "/admin");
        assert_eq!(decision("/;x/admin").unwrap(), "/admin");
        let jsession = CanonicalPath::parse("/app/page;jsessionid=1", false).unwrap();
        assert_eq!(jsession.forward(), "/app/page;jsessionid=1");
    }

    /// Every string of up to 6 pieces from an alphabet of the troublesome parts: canonicalising never
    /// panics, is idempotent, and never leaves a dot segment, an empty segment or an encoded slash.
    #[test]
    fn canonical_form_invariants_hold_for_every_small_input() {
        const PIECES: [&str; 10] = ["/", ".", "..", "%2e", "%2f", "%5c", ";x", "a", "%41", "%zz"];
        let mut inputs = vec![String::from("/")];
        for _ in 0..5 {
            let longer: Vec<String> = inputs
                .iter()
                .flat_map(|prefix| PIECES.iter().map(move |piece| format!("{prefix}{piece}")))
                .collect();
            inputs.extend(longer);
        }
        for input in &inputs {
            let Ok(path) = CanonicalPath::parse(input, false) else {
                continue;
            };
            let decision = path.decision();
            let again =
                CanonicalPath::parse(decision, false).expect("a canonical path stays valid");
            assert_eq!(again.decision(), decision, "not idempotent for {input:?}");
            assert!(decision.starts_with('/'), "{input:?} -> {decision:?}");
            let inner = decision.trim_end_matches('/');
            for segment in inner.split('/').skip(1) {
                assert!(
                    !matches!(segment, "" | "." | ".."),
                    "{input:?} -> {decision:?}"
                );
            }
            for forbidden in ["%2F", "%5C", "%2E", ";", "%41"] {
                assert!(!decision.contains(forbidden), "{input:?} -> {decision:?}");
            }
        }
    }

    #[test]
    fn hosts_lose_case_port_and_trailing_dot() {
        assert_eq!(
            canonical_host("App.Example.COM:8443").unwrap(),
            "app.example.com"
        );
        assert_eq!(canonical_host("example.com.").unwrap(), "example.com");
        assert_eq!(canonical_host("[::1]:8080").unwrap(), "[::1]");
        assert_eq!(canonical_host("127.0.0.1").unwrap(), "127.0.0.1");
        for bad in [
            "",
            "a b",
            "a/b",
            "a:b:c",
            "[::1",
            "[zz]",
            "a:99999999",
            "ex@mple",
        ] {
            assert_eq!(canonical_host(bad), Err(HostError), "{bad:?}");
        }
    }
}
