//! Portcullis's own cookies (the session cookie and the login binding): which names are ours,
//! their default names and prefix rules, taking them out of a request's `Cookie` headers before
//! anything else reads the request, and recognising them in an upstream's `Set-Cookie`.
//!
//! - `Cookie` headers are read as bytes: a byte a `&str` cannot hold (`l=français`) in another
//!   cookie never makes us skip a header. Every `Cookie` field counts (HTTP/1.1 clients may send
//!   several; HTTP/2 splits cookies into one field each); what is left is joined into one field.
//! - A name is ours in every spelling a browser or a backend may take for ours: any case, with or
//!   without a `__Host-`/`__Secure-` prefix, with whitespace around it, and behind a `,` (old
//!   RFC 2965 parsers split on commas too). The default name stays ours when another is configured,
//!   since session ids issued under it may still be live in the store.
//! - Only the exact configured names are *read* as the session and the binding (a browser sends a
//!   cookie under the name it was set with). A name sent with several different values is
//!   ambiguous: [`CookieValues::single`] gives none of them.

use http::header::{self, HeaderMap, HeaderValue};

/// The session cookie's name when none is configured, before its prefix.
pub const DEFAULT_SESSION_COOKIE: &str = "portcullis_session";

/// The login-binding cookie is named `<session cookie name>_login`.
pub fn binding_cookie_name(session_cookie_name: &str) -> String {
    format!("{session_cookie_name}_login")
}

/// A cookie-name prefix that browsers enforce (RFC 6265bis §4.1.3), matched without regard to
/// case as current browsers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePrefix {
    /// `__Host-`: only set with `Secure`, `Path=/` and no `Domain`, from a secure origin — so
    /// neither a sibling subdomain nor a plain-HTTP attacker can set it.
    Host,
    /// `__Secure-`: only set with `Secure`, from a secure origin.
    Secure,
    /// No prefix: anyone who can set a cookie for the host can set it.
    None,
}

const HOST_PREFIX: &[u8] = b"__host-";
const SECURE_PREFIX: &[u8] = b"__secure-";

impl NamePrefix {
    /// The prefix `name` carries.
    pub fn of(name: &str) -> Self {
        let name = name.as_bytes();
        if starts_with_ignore_case(name, HOST_PREFIX) {
            NamePrefix::Host
        } else if starts_with_ignore_case(name, SECURE_PREFIX) {
            NamePrefix::Secure
        } else {
            NamePrefix::None
        }
    }

    /// Whether a cookie with these attributes may carry this prefix; the reason when it may not
    /// (a browser would refuse to store such a cookie).
    pub fn allows(self, secure: bool, domain: bool) -> Result<(), &'static str> {
        match self {
            NamePrefix::Host if !secure || domain => {
                Err("a __Host- cookie must be Secure and have no Domain")
            }
            NamePrefix::Secure if !secure => Err("a __Secure- cookie must be Secure"),
            _ => Ok(()),
        }
    }
}

/// The session cookie name used when none is configured: `__Host-portcullis_session` for a
/// `Secure` cookie without `Domain` (nobody but this origin can set it), `__Secure-…` for a
/// `Secure` cookie with a `Domain`, and the plain name for plain-HTTP use (`Secure` off).
pub fn default_session_cookie_name(secure: bool, domain: bool) -> String {
    match (secure, domain) {
        (true, false) => format!("__Host-{DEFAULT_SESSION_COOKIE}"),
        (true, true) => format!("__Secure-{DEFAULT_SESSION_COOKIE}"),
        (false, _) => DEFAULT_SESSION_COOKIE.to_owned(),
    }
}

fn starts_with_ignore_case(text: &[u8], prefix: &[u8]) -> bool {
    text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Optional whitespace (RFC 9110 §5.6.3) around cookie names and values.
fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// A name without its whitespace and its `__Host-`/`__Secure-` prefixes (any case, any number).
fn stem(name: &[u8]) -> &[u8] {
    let mut name = trim_ows(name);
    loop {
        if starts_with_ignore_case(name, HOST_PREFIX) {
            name = &name[HOST_PREFIX.len()..];
        } else if starts_with_ignore_case(name, SECURE_PREFIX) {
            name = &name[SECURE_PREFIX.len()..];
        } else {
            return name;
        }
    }
}

/// `name=value` split at the first `=`, both trimmed; a pair without `=` is all name.
fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    match pair.iter().position(|&b| b == b'=') {
        Some(at) => (trim_ows(&pair[..at]), trim_ows(&pair[at + 1..])),
        None => (trim_ows(pair), &[]),
    }
}

/// The `name=value` pieces of one `Cookie` field, trimmed, empty ones skipped.
fn pieces(field: &[u8]) -> impl Iterator<Item = &[u8]> {
    field
        .split(|&b| b == b';')
        .map(trim_ows)
        .filter(|piece| !piece.is_empty())
}

/// The names Portcullis owns, as stems (lower case, no prefix), for matching in every spelling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnCookieNames {
    stems: Vec<Vec<u8>>,
}

impl OwnCookieNames {
    /// Ours: each session cookie name given (the configured one, and the running one when a
    /// reload changed it) and its login binding, and the default name and its binding.
    pub fn new<'a>(session_cookie_names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut stems: Vec<Vec<u8>> = Vec::new();
        for session in session_cookie_names
            .into_iter()
            .chain([DEFAULT_SESSION_COOKIE])
        {
            for name in [session.to_owned(), binding_cookie_name(session)] {
                let stem = stem(name.as_bytes()).to_ascii_lowercase();
                if !stems.contains(&stem) {
                    stems.push(stem);
                }
            }
        }
        OwnCookieNames { stems }
    }

    /// Whether a cookie name (as sent or set, untrimmed) is one of ours in any spelling.
    pub fn is_own(&self, name: &[u8]) -> bool {
        let stem = stem(name);
        self.stems.iter().any(|own| stem.eq_ignore_ascii_case(own))
    }

    /// Whether one `;`-piece of a `Cookie` field is or smuggles one of ours (`a=1, ours=x` reads
    /// as two cookies to a parser that splits on commas).
    fn is_own_piece(&self, piece: &[u8]) -> bool {
        piece
            .split(|&b| b == b',')
            .any(|part| self.is_own(split_pair(part).0))
    }

    /// Whether a `Set-Cookie` value sets one of ours. A nameless cookie (`=ours=x`, or no `=`)
    /// is judged by its value too: browsers send it as its bare value, which reads as `ours=x`.
    pub fn is_set_by(&self, set_cookie: &HeaderValue) -> bool {
        let bytes = set_cookie.as_bytes();
        let pair = bytes.split(|&b| b == b';').next().unwrap_or_default();
        let (name, value) = split_pair(pair);
        if self.is_own(name) {
            return true;
        }
        name.is_empty() && self.is_own(split_pair(value).0)
    }
}

/// The different values a request sent under one of our exact names, in the order sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CookieValues(Vec<String>);

/// At most this many different values are kept per name: more are as ambiguous as two.
const MAX_VALUES: usize = 8;

impl CookieValues {
    fn add(&mut self, value: &[u8]) {
        // Our values are ASCII tokens: one that is not UTF-8 is kept (it makes the name
        // ambiguous or absent-in-effect) but can never match a session or a binding.
        let value = String::from_utf8_lossy(value);
        if self.0.len() < MAX_VALUES && !self.0.iter().any(|known| *known == value) {
            self.0.push(value.into_owned());
        }
    }

    /// The value, when the request sent exactly one (however often repeated). `None` when it
    /// sent none, or several different ones: a planted duplicate then wins nothing.
    pub fn single(&self) -> Option<&str> {
        match self.0.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// Whether several different values were sent.
    pub fn is_ambiguous(&self) -> bool {
        self.0.len() > 1
    }

    /// Every different value sent (at most [`MAX_VALUES`]).
    pub fn all(&self) -> &[String] {
        &self.0
    }
}

/// What [`take_own_cookies`] took out of a request: the values of the session cookie and the login
/// binding, for the phases that need them (callback, logout, authenticate, login).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TakenCookies {
    /// Values of the session cookie, under its exact configured name.
    pub session: CookieValues,
    /// Values of the login-binding cookie, under its exact name.
    pub binding: CookieValues,
}

/// The exact names whose values are read: the session cookie's and the login binding's.
#[derive(Debug, Clone, Copy)]
pub struct ReadNames<'a> {
    /// The session cookie's name.
    pub session: &'a str,
    /// The login binding's name.
    pub binding: &'a str,
}

/// Removes every cookie of ours, in every spelling, from a request's `Cookie` fields (the early
/// phase, before routing and policies), and returns the values sent under the exact names in
/// `read`. Leaves one `Cookie` field with the other cookies (or none when nothing is left); a
/// request with one field and none of ours is left untouched.
pub fn take_own_cookies(
    headers: &mut HeaderMap,
    own: &OwnCookieNames,
    read: Option<ReadNames<'_>>,
) -> TakenCookies {
    let mut taken = TakenCookies::default();
    let mut fields = 0;
    let mut found_own = false;
    for field in headers.get_all(header::COOKIE) {
        fields += 1;
        for piece in pieces(field.as_bytes()) {
            if !own.is_own_piece(piece) {
                continue;
            }
            found_own = true;
            let Some(read) = read else { continue };
            let (name, value) = split_pair(piece);
            if name == read.session.as_bytes() {
                taken.session.add(value);
            } else if name == read.binding.as_bytes() {
                taken.binding.add(value);
            }
        }
    }
    if !found_own && fields <= 1 {
        return taken;
    }
    let mut kept: Vec<u8> = Vec::new();
    for field in headers.get_all(header::COOKIE) {
        for piece in pieces(field.as_bytes()).filter(|piece| !own.is_own_piece(piece)) {
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(piece);
        }
    }
    headers.remove(header::COOKIE);
    // The pieces come from valid header values, so this cannot fail; if it did, no cookie at all
    // is safer than ours.
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_bytes(&kept)
    {
        headers.insert(header::COOKIE, value);
    }
    taken
}

/// Removes every `Set-Cookie` that would set one of ours from an upstream's response, and returns
/// the names it tried to set (for the log; never the values).
pub fn drop_own_set_cookies(headers: &mut HeaderMap, own: &OwnCookieNames) -> Vec<String> {
    let all = headers.get_all(header::SET_COOKIE);
    if !all.iter().any(|value| own.is_set_by(value)) {
        return Vec::new();
    }
    let all: Vec<HeaderValue> = all.iter().cloned().collect();
    headers.remove(header::SET_COOKIE);
    let (dropped, kept): (Vec<HeaderValue>, Vec<HeaderValue>) =
        all.into_iter().partition(|value| own.is_set_by(value));
    for value in kept {
        headers.append(header::SET_COOKIE, value);
    }
    dropped
        .iter()
        .map(|value| {
            let pair = value.as_bytes().split(|&b| b == b';').next();
            let (mut name, value) = split_pair(pair.unwrap_or_default());
            if name.is_empty() {
                name = split_pair(value).0;
            }
            String::from_utf8_lossy(&name[..name.len().min(64)]).into_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> OwnCookieNames {
        OwnCookieNames::new(["__Host-portcullis_session"])
    }

    const READ: ReadNames<'static> = ReadNames {
        session: "__Host-portcullis_session",
        binding: "__Host-portcullis_session_login",
    };

    fn request(fields: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for field in fields {
            headers.append(header::COOKIE, HeaderValue::from_bytes(field).unwrap());
        }
        headers
    }

    fn left(headers: &HeaderMap) -> Vec<&[u8]> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect()
    }

    #[test]
    fn default_names_carry_the_strongest_prefix_the_attributes_allow() {
        assert_eq!(
            default_session_cookie_name(true, false),
            "__Host-portcullis_session"
        );
        assert_eq!(
            default_session_cookie_name(true, true),
            "__Secure-portcullis_session"
        );
        assert_eq!(
            default_session_cookie_name(false, false),
            "portcullis_session"
        );
        assert_eq!(
            default_session_cookie_name(false, true),
            "portcullis_session"
        );
        for (secure, domain) in [(true, false), (true, true), (false, false), (false, true)] {
            let name = default_session_cookie_name(secure, domain);
            assert_eq!(
                NamePrefix::of(&name).allows(secure, domain),
                Ok(()),
                "{name}"
            );
        }
    }

    #[test]
    fn prefixes_are_recognised_in_any_case_and_checked_against_the_attributes() {
        assert_eq!(NamePrefix::of("__Host-a"), NamePrefix::Host);
        assert_eq!(NamePrefix::of("__HOST-a"), NamePrefix::Host);
        assert_eq!(NamePrefix::of("__secure-a"), NamePrefix::Secure);
        assert_eq!(NamePrefix::of("_Host-a"), NamePrefix::None);
        assert!(NamePrefix::Host.allows(true, false).is_ok());
        assert!(NamePrefix::Host.allows(false, false).is_err());
        assert!(NamePrefix::Host.allows(true, true).is_err());
        assert!(NamePrefix::Secure.allows(true, true).is_ok());
        assert!(NamePrefix::Secure.allows(false, false).is_err());
        assert!(NamePrefix::None.allows(false, true).is_ok());
    }

    #[test]
    fn own_names_match_in_every_spelling_and_nothing_else() {
        let own = OwnCookieNames::new(["sess"]);
        for name in [
            "sess",
            "SESS",
            "__Host-sess",
            "__host-SESS_login",
            "__Secure-sess",
            "__Secure-__Host-sess",
            " sess\t",
            "portcullis_session",
            "__Host-portcullis_session_login",
        ] {
            assert!(own.is_own(name.as_bytes()), "{name:?} is ours");
        }
        for name in [
            "session",
            "sess_",
            "xsess",
            "sess_login2",
            "__Host-other",
            "",
        ] {
            assert!(!own.is_own(name.as_bytes()), "{name:?} is not ours");
        }
    }

    #[test]
    fn own_cookies_are_removed_from_a_header_with_non_utf8_bytes() {
        let mut headers =
            request(&[b"__Host-portcullis_session=abc; l=fran\xc3\xa7ais; x=\xff\xfe"]);
        let taken = take_own_cookies(&mut headers, &own(), Some(READ));
        assert_eq!(left(&headers), [&b"l=fran\xc3\xa7ais; x=\xff\xfe"[..]]);
        assert_eq!(taken.session.single(), Some("abc"));
    }

    #[test]
    fn own_cookies_are_removed_from_every_field_and_the_rest_joined() {
        let mut headers = request(&[
            b"a=1; portcullis_session=planted",
            b"__Host-portcullis_session=abc",
            b"  b=2 ;; ",
            b"__Host-portcullis_session_login=bind",
        ]);
        let taken = take_own_cookies(&mut headers, &own(), Some(READ));
        assert_eq!(left(&headers), [&b"a=1; b=2"[..]]);
        assert_eq!(
            taken.session.single(),
            Some("abc"),
            "only the exact name is read"
        );
        assert_eq!(taken.binding.single(), Some("bind"));
    }

    #[test]
    fn every_spelling_of_an_own_cookie_is_removed() {
        let mut headers = request(&[
            b"  __Host-portcullis_session  =  abc  ; __HOST-PORTCULLIS_SESSION=x; \
              __secure-portcullis_session=y; portcullis_session; keep=1, portcullis_session=z; \
              __Host-portcullis_session_login=q; Portcullis_Session_Login=r; last=2",
        ]);
        let taken = take_own_cookies(&mut headers, &own(), Some(READ));
        assert_eq!(left(&headers), [&b"last=2"[..]]);
        assert_eq!(taken.session.single(), Some("abc"));
        assert_eq!(taken.binding.single(), Some("q"));
    }

    #[test]
    fn a_header_of_only_own_cookies_is_removed_whole() {
        let mut headers = request(&[b"__Host-portcullis_session=abc", b"portcullis_session=x"]);
        take_own_cookies(&mut headers, &own(), None);
        assert!(!headers.contains_key(header::COOKIE));
    }

    #[test]
    fn a_request_without_own_cookies_is_left_as_sent() {
        let mut headers = request(&[b"a=1;b=2"]);
        let taken = take_own_cookies(&mut headers, &own(), Some(READ));
        assert_eq!(left(&headers), [&b"a=1;b=2"[..]]);
        assert_eq!(taken, TakenCookies::default());
        let mut split = request(&[b"a=1", b"b=2"]);
        take_own_cookies(&mut split, &own(), Some(READ));
        assert_eq!(left(&split), [&b"a=1; b=2"[..]], "split fields are joined");
    }

    #[test]
    fn a_duplicated_own_cookie_is_used_only_when_every_copy_agrees() {
        let mut same = request(&[b"__Host-portcullis_session=abc; __Host-portcullis_session=abc"]);
        let taken = take_own_cookies(&mut same, &own(), Some(READ));
        assert_eq!(taken.session.single(), Some("abc"));
        let mut planted = request(&[
            b"__Host-portcullis_session=planted",
            b"__Host-portcullis_session=abc",
        ]);
        let taken = take_own_cookies(&mut planted, &own(), Some(READ));
        assert_eq!(taken.session.single(), None);
        assert!(taken.session.is_ambiguous());
        assert_eq!(taken.session.all(), ["planted", "abc"]);
    }

    #[test]
    fn a_very_long_header_is_cleaned_in_full() {
        let mut field = Vec::new();
        for i in 0..2000 {
            field.extend_from_slice(format!("c{i}=v; ").as_bytes());
            if i % 500 == 0 {
                field.extend_from_slice(b"__Host-portcullis_session=abc; ");
            }
        }
        field.extend_from_slice(&[b'x'; 32 * 1024]);
        field.extend_from_slice(b"=1; portcullis_session=tail");
        let mut headers = request(&[&field]);
        let taken = take_own_cookies(&mut headers, &own(), Some(READ));
        let cleaned = left(&headers)[0];
        assert!(!cleaned.windows(18).any(|w| w == b"portcullis_session"));
        assert!(cleaned.starts_with(b"c0=v; c1=v"));
        assert_eq!(taken.session.single(), Some("abc"));
    }

    #[test]
    fn upstream_set_cookies_naming_own_cookies_are_dropped() {
        let own = own();
        let mut headers = HeaderMap::new();
        for value in [
            "theme=dark; Path=/",
            "portcullis_session_login=X; Path=/",
            "__Host-portcullis_session_login=X; Secure; Path=/",
            "__SECURE-Portcullis_Session=X",
            "=portcullis_session_login=X; Path=/",
            " portcullis_session ; Path=/",
            "lang=fr",
        ] {
            headers.append(header::SET_COOKIE, HeaderValue::from_str(value).unwrap());
        }
        let dropped = drop_own_set_cookies(&mut headers, &own);
        assert_eq!(dropped.len(), 5, "{dropped:?}");
        assert!(
            dropped.iter().all(|name| !name.contains('X')),
            "{dropped:?}"
        );
        let kept: Vec<&str> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(kept, ["theme=dark; Path=/", "lang=fr"]);
    }
}
