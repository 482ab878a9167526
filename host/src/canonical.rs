//! Canonical hosts and paths: the one place the raw request target is interpreted.
//!
//! Routing (and, later, policies) decide on the canonical form only; the upstream receives the same
//! canonical form, so the proxy and the backend can never disagree about which resource was asked for.
//! Canonicalising a path:
//! - percent-escapes of unreserved characters (`A–Z a–z 0–9 - . _ ~`) are decoded, other escapes are
//!   kept with upper-case hex digits;
//! - raw bytes a URI path may not hold (non-ASCII, `"`, `[`, `]`, `^`, `{`, `|`, `}`, …) are
//!   percent-encoded, so `/données` and `/donn%C3%A9es` are one path;
//! - an escape that is not two hex digits, an encoded NUL, and (unless allowed) an encoded `/` or `\`
//!   are refused: servers disagree on what they mean. A raw `\` is refused the same way (some
//!   servers read it as `/`); when allowed it is passed on as `%5C`;
//! - repeated slashes are merged, `.` segments dropped, `..` segments remove their parent; `..` above
//!   the root is refused;
//! - `;parameters` on a segment (Tomcat/Jetty "matrix" parameters) are not part of the segment's
//!   name: the decision path drops them, so `/admin;x` is decided as `/admin` and `/..;/` counts as
//!   `..`, as such servers do. The forwarded path keeps them on ordinary segments.
//!
//! Paths are case-sensitive. For backends that are not (IIS), [`CanonicalPath::fold_case`] lower-cases
//! a path; the proxy then decides on *and forwards* the folded path, so the backend can never read a
//! different resource into it than the one the route was chosen for.

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
    /// A raw `\` while `server.allow_encoded_slashes` is false: some servers read it as `/`.
    #[error("backslash in path (set server.allow_encoded_slashes to accept it)")]
    Backslash,
    /// More `..` segments than there are parents.
    #[error("path climbs above the root")]
    AboveRoot,
    /// With `server.case_insensitive_routes`: a segment a Windows backend reads as another name
    /// (a trailing `.`, space or tab, or an NTFS stream `::$`), so `/admin.` could be `/admin`.
    #[error("path segment a Windows backend reads as another name (trailing dot or space, or ::$)")]
    WindowsAlias,
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

    /// For `server.case_insensitive_routes` (Windows/IIS backends): refuses a path with a segment
    /// Windows reads as another name, which would otherwise be routed as something else:
    /// - a trailing `.`, space or tab (`admin.`, `admin%20` are `admin` to NTFS);
    /// - an NTFS stream or a DOS wildcard: `:` (`admin::$DATA`, `admin:stream`), `<`, `>`, `"`,
    ///   `|`, `?`, `*` — also percent-encoded; with `%` and `&`, what IIS refuses by default too;
    /// - an encoded `\` or `/` (kept with `allow_encoded_slashes`): IIS reads `%5C` as a separator;
    /// - an 8.3 short name (`ADMINI~1`: `~` followed by a digit);
    /// - a non-ASCII letter whose upper case is ASCII (`ı` → `I`, `ſ` → `S`): NTFS compares names
    ///   upper-cased, so `adm\u{131}n` would be `ADMIN`.
    pub fn refuse_windows_aliases(&self) -> Result<(), PathError> {
        let alias = self.forward.split('/').any(|segment| {
            let decoded = percent_decoded(segment);
            let name = String::from_utf8_lossy(&decoded);
            // The name before matrix parameters is what a Windows backend may resolve.
            let base = name.split(';').next().unwrap_or(&name);
            base.ends_with(['.', ' ', '\t'])
                || name.ends_with(['.', ' ', '\t'])
                || name.contains([':', '<', '>', '"', '|', '?', '*', '%', '&', '\\', '/'])
                || name
                    .as_bytes()
                    .windows(2)
                    .any(|pair| pair[0] == b'~' && pair[1].is_ascii_digit())
                || name
                    .chars()
                    .any(|c| !c.is_ascii() && c.to_uppercase().any(|upper| upper.is_ascii()))
        });
        if alias {
            return Err(PathError::WindowsAlias);
        }
        Ok(())
    }

    /// The same path lower-cased, for `server.case_insensitive_routes`: both the decision and the
    /// forwarded path are folded, so what was decided is exactly what the backend receives.
    pub fn fold_case(&self) -> CanonicalPath {
        CanonicalPath {
            decision: fold_case(&self.decision),
            forward: fold_case(&self.forward),
        }
    }
}

/// Lower-cases a canonical path: ASCII letters, and the UTF-8 text its escapes of non-ASCII bytes
/// spell (`%C3%89` → `%C3%A9`). Escapes of ASCII bytes keep their upper-case hex digits, and a
/// run of escapes that is not UTF-8 is kept as it is. The result is canonical again.
pub fn fold_case(path: &str) -> String {
    let bytes = path.as_bytes();
    // The byte `%XX` at `at` stands for, if there is an escape there.
    let escape_at = |at: usize| -> Option<u8> {
        if bytes.get(at) != Some(&b'%') {
            return None;
        }
        Some(hex_value(*bytes.get(at + 1)?)? << 4 | hex_value(*bytes.get(at + 2)?)?)
    };
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match escape_at(i) {
            Some(byte) if !byte.is_ascii() => {
                let mut run = Vec::new();
                while let Some(byte) = escape_at(i).filter(|b| !b.is_ascii()) {
                    run.push(byte);
                    i += 3;
                }
                match String::from_utf8(run) {
                    Ok(text) => text
                        .to_lowercase()
                        .bytes()
                        .for_each(|byte| push_path_byte(&mut out, byte)),
                    Err(err) => err
                        .into_bytes()
                        .into_iter()
                        .for_each(|byte| push_escaped(&mut out, byte)),
                }
            }
            Some(_) => {
                out.push_str(&path[i..i + 3]);
                i += 3;
            }
            None => {
                match bytes[i] {
                    byte if byte.is_ascii() => out.push(char::from(byte.to_ascii_lowercase())),
                    byte => push_escaped(&mut out, byte),
                }
                i += 1;
            }
        }
    }
    out
}

/// Whether `byte` stands for itself in a canonical path segment: unreserved characters, the
/// sub-delimiters, `:` and `@` (RFC 3986 `pchar`). `%`, `/` and `;` have their own rules; every other
/// byte is percent-encoded.
fn stays_raw(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

/// Appends a byte of a decoded or folded path in canonical form.
fn push_path_byte(out: &mut String, byte: u8) {
    if stays_raw(byte) {
        out.push(char::from(byte));
    } else {
        push_escaped(out, byte);
    }
}

/// `text` with every byte a canonical path would percent-encode encoded (`/données` →
/// `/donn%C3%A9es`); `%`, `/`, `;` and `\\` are left for [`CanonicalPath::parse`] to judge. Lets a
/// config name a path as people write it.
pub fn escape_raw_bytes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if matches!(byte, b'%' | b'/' | b';' | b'\\') {
            out.push(char::from(byte));
        } else {
            push_path_byte(&mut out, byte);
        }
    }
    out
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.decision)
    }
}

/// The common case, checked without allocating: nothing to decode, merge, resolve or strip.
fn is_already_canonical(rest: &str) -> bool {
    if !rest.bytes().all(|b| b == b'/' || stays_raw(b)) {
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
            match bytes[i] {
                b'\\' if !allow_encoded_slashes => return Err(PathError::Backslash),
                // `;` separates a segment's parameters; `parse` splits on it.
                b';' => out.push(';'),
                // hyper delivers non-ASCII (as UTF-8), `"`, `[`, `]`, `^`, `{`, `|`, `}` and `\\`
                // raw: encoded, they meet their percent-encoded spelling.
                byte => push_path_byte(&mut out, byte),
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

/// The bytes a canonical segment stands for (its escapes are well-formed: checked when parsing).
fn percent_decoded(segment: &str) -> Vec<u8> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            )
        {
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
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
    fn raw_backslash_is_refused_like_its_escape() {
        assert_eq!(
            decision("/public/..\\..\\admin").unwrap_err(),
            PathError::Backslash
        );
        assert_eq!(decision("/a\\b").unwrap_err(), PathError::Backslash);
        let allowed = CanonicalPath::parse("/public/..\\..\\admin", true).unwrap();
        assert_eq!(allowed.decision(), "/public/..%5C..%5Cadmin");
        assert_eq!(allowed.forward(), "/public/..%5C..%5Cadmin");
        assert_eq!(
            allowed,
            CanonicalPath::parse("/public/..%5c..%5Cadmin", true).unwrap()
        );
    }

    #[test]
    fn raw_non_ascii_and_its_escape_are_one_path() {
        for spelling in [
            "/données",
            "/donn%C3%A9es",
            "/donn%c3%a9es",
            "/donn%C3%a9es/",
        ] {
            let path = CanonicalPath::parse(spelling, false).unwrap();
            assert_eq!(
                path.decision().trim_end_matches('/'),
                "/donn%C3%A9es",
                "{spelling}"
            );
            assert_eq!(
                path.forward().trim_end_matches('/'),
                "/donn%C3%A9es",
                "{spelling}"
            );
        }
        assert_eq!(decision("/日本/x;p=é").unwrap(), "/%E6%97%A5%E6%9C%AC/x");
        assert_eq!(
            CanonicalPath::parse("/x;p=é", false).unwrap().forward(),
            "/x;p=%C3%A9"
        );
    }

    #[test]
    fn characters_a_uri_path_cannot_hold_raw_meet_their_escapes() {
        // hyper passes these through raw; a URI must encode them, so both spellings are one path.
        for (raw, escaped) in [
            ("/a{b}", "/a%7Bb%7D"),
            ("/a|b", "/a%7Cb"),
            ("/a^b", "/a%5Eb"),
            ("/a\"b", "/a%22b"),
            ("/a[b]", "/a%5Bb%5D"),
        ] {
            assert_eq!(decision(raw).unwrap(), escaped, "{raw}");
            assert_eq!(decision(escaped).unwrap(), escaped, "{escaped}");
        }
        // Sub-delimiters, `:` and `@` stay as written: their escapes may mean something else.
        assert_eq!(decision("/a:b@c!$&'()*+,=").unwrap(), "/a:b@c!$&'()*+,=");
    }

    #[test]
    fn folded_paths_are_lower_case_and_canonical() {
        let folded = |raw: &str| CanonicalPath::parse(raw, true).unwrap().fold_case();
        assert_eq!(folded("/ADMIN/Users").decision(), "/admin/users");
        assert_eq!(
            folded("/Admin;JSESSIONID=X").forward(),
            "/admin;jsessionid=x"
        );
        assert_eq!(folded("/DONNÉES").decision(), "/donn%C3%A9es");
        assert_eq!(folded("/DONN%C3%89ES").decision(), "/donn%C3%A9es");
        // Escapes of ASCII keep upper-case hex; what is not UTF-8 is kept.
        assert_eq!(folded("/A%2FB%20C").decision(), "/a%2Fb%20c");
        assert_eq!(folded("/A%FF%C3").decision(), "/a%FF%C3");
        // The Kelvin sign folds to an ASCII `k`, which a canonical path holds raw.
        assert_eq!(folded("/%E2%84%AAB").decision(), "/kb");
    }

    #[test]
    fn names_windows_reads_as_another_are_refused_for_case_insensitive_backends() {
        let check = |raw: &str| {
            CanonicalPath::parse(raw, true)
                .unwrap()
                .fold_case()
                .refuse_windows_aliases()
        };
        for alias in [
            "/admin.",
            "/admin..",
            "/admin%20",
            "/admin%09",
            "/admin%2E",
            "/admin./x",
            "/admin::$DATA",
            "/ADMIN::$data/x",
            "/admin.;p=1",
            "/admin:stream",
            "/admin%3A%3A%24DATA",
            "/ADMINI~1/secret",
            "/admin%22",
            "/admin*",
            "/admin%3C",
            "/adm%C4%B1n",
            "/%C5%BFecret",
            "/public/..%5C..%5Cadmin",
            "/a%2Fb",
        ] {
            assert_eq!(check(alias), Err(PathError::WindowsAlias), "{alias}");
        }
        for fine in [
            "/admin",
            "/admin/",
            "/a.b/c",
            "/donn%C3%A9es",
            "/a~b",
            "/x;p=1",
            "/",
            "/x/.hidden",
        ] {
            assert_eq!(check(fine), Ok(()), "{fine}");
        }
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
        const PIECES: [&str; 12] = [
            "/", ".", "..", "%2e", "%2f", "%5c", ";x", "a", "%41", "%zz", "\\", "É",
        ];
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
            assert!(decision.is_ascii(), "{input:?} -> {decision:?}");
            let folded = path.fold_case();
            assert_eq!(
                folded.fold_case(),
                folded,
                "folding {input:?} is not stable"
            );
            let reparsed =
                CanonicalPath::parse(folded.decision(), false).expect("a folded path stays valid");
            assert_eq!(reparsed.decision(), folded.decision(), "{input:?}");
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
