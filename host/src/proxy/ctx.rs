//! [`RequestCtx`]: everything the phases learn about one request, carried from the first to the last.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, HeaderValue, Method, StatusCode};

use crate::canonical::CanonicalPath;
use crate::cookies::TakenCookies;
use crate::oidc::Auth;
use crate::routes::RouteId;
use crate::session::LiveSession;
use crate::snapshot::{Route, Snapshot};

/// What the listener knows about the connection a request came on. Made once per connection;
/// each request gets a copy (cheap: the address text is shared).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer (the client, or a proxy in front of us).
    pub peer: SocketAddr,
    /// Whether the connection is TLS (sets `X-Forwarded-Proto`).
    pub tls: bool,
    /// The peer's address as `X-Forwarded-For` and `X-Real-IP` carry it (IPv4-mapped IPv6 as
    /// IPv4), written once here rather than on every request.
    peer_header: HeaderValue,
}

impl ConnInfo {
    /// The connection from `peer`, over TLS or not.
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        let peer_header =
            HeaderValue::from_str(&crate::proxy::headers::ip_text(peer.ip().to_canonical()))
                .expect("an IP address is a valid header value");
        ConnInfo {
            peer,
            tls,
            peer_header,
        }
    }

    /// The peer's address as a header value.
    pub fn peer_header(&self) -> &HeaderValue {
        &self.peer_header
    }
}

/// Per-request state. Created by the early phase; read by the log phase whatever happened between.
pub struct RequestCtx {
    /// The snapshot this request is served by, from start to end, even if a reload swaps it.
    pub snapshot: Arc<Snapshot>,
    /// The connection.
    pub conn: ConnInfo,
    /// When the request arrived.
    pub started: Instant,
    /// Client-supplied (when well-formed) or generated; sent upstream and back.
    pub request_id: HeaderValue,
    /// The request method, for the log.
    pub method: Method,
    /// How Portcullis's own answers (errors, denials) are worded for this client.
    pub response_format: crate::response::ResponseFormat,
    /// Canonical host, once known.
    pub host: Option<String>,
    /// The host as the client sent it (Host header or URI authority), once known.
    pub host_header: Option<HeaderValue>,
    /// Canonical path, once known.
    pub path: Option<CanonicalPath>,
    /// The route, once chosen.
    pub route: Option<RouteId>,
    /// The upstream's status, when a response came back.
    pub upstream_status: Option<StatusCode>,
    /// Login and sessions, when `[oidc]` is configured.
    pub auth: Option<Arc<Auth>>,
    /// The values of Portcullis's own cookies, taken out of the request by the early phase: the
    /// later phases read them here, never from the headers.
    pub own_cookies: TakenCookies,
    /// The user's session, once authenticated.
    pub session: Option<LiveSession>,
    /// `Set-Cookie` values for the response (renewed or expired session cookie).
    pub set_cookies: Vec<HeaderValue>,
    /// Headers the route's policy set for the upstream request.
    pub policy_headers: Vec<(HeaderName, HeaderValue)>,
    /// Why Portcullis itself refused the request, when it did: for the access log.
    pub refusal: Option<Refusal>,
}

/// A refusal for the access log: what decided it, and why.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// `deny`, `login` (sent to log in), or `policy_error`.
    pub decision: &'static str,
    /// The policy's reason, or what was missing.
    pub reason: String,
}

impl RequestCtx {
    /// The chosen route. Only called by phases that run after routing.
    pub fn route(&self) -> Option<&Route> {
        self.route.map(|id| &self.snapshot.routes[id])
    }

    /// Whether the TCP peer is one of `server.trusted_proxies`.
    pub fn peer_trusted(&self) -> bool {
        let peer = self.conn.peer.ip().to_canonical();
        self.snapshot
            .server
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer))
    }
}
