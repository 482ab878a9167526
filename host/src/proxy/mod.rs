//! The request pipeline: named phases in order, one [`RequestCtx`] carried through them.
//!
//! ```text
//! early → route → auth endpoints → authenticate → authorize (on a policy thread)
//!       → upstream request → forward → response → log (always)
//! ```
//! Phases before the upstream request return [`Flow`]: go on, or answer now. Failures are
//! [`ProxyError`]s, turned into responses in [`ProxyError::into_response`] only. The log phase runs
//! for every request, whatever happened. `docs/architecture.md` draws this chart.

pub mod ctx;
pub mod error;
pub mod flow;
pub mod headers;
pub mod whoami;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;

use crate::canonical::{CanonicalPath, PathError, canonical_host};
use crate::config::AuthMode;
use crate::cookies::{self, ReadNames, TakenCookies};
use crate::oidc::{Auth, AuthError};
use crate::policy::{Decision, PolicyError, PolicyRequest};
use crate::response::{BoxError, ProxyBody, empty_body};
use crate::session::Session;
use crate::snapshot::Snapshot;
use crate::upstream::{self, ConnectionHold, PooledBody, SendError, limited_body};
pub use ctx::{ConnInfo, Refusal, RequestCtx};
use error::ProxyError;
pub use flow::Flow;

/// The proxy: serves requests from the current [`Snapshot`]. Cheap to clone; clones share the
/// snapshot, so a [`Proxy::swap`] applies to all of them.
#[derive(Clone)]
pub struct Proxy {
    /// What new requests are served with.
    current: Arc<ArcSwap<Snapshot>>,
}

impl Proxy {
    /// A proxy serving `snapshot` (login only if the snapshot has it).
    pub fn new(snapshot: Snapshot) -> Self {
        Proxy {
            current: Arc::new(ArcSwap::from_pointee(snapshot)),
        }
    }

    /// Serves `snapshot` from the next request on. Requests already running finish on the
    /// snapshot they took.
    pub fn swap(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    /// Login and sessions of the current snapshot, when configured.
    pub fn auth(&self) -> Option<Arc<Auth>> {
        self.current.load().auth.clone()
    }

    /// The snapshot new requests are served with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Serves one request: runs the phases and always the log phase. Never fails: errors become
    /// responses. Usable without sockets (tests drive it with in-memory bodies).
    pub async fn handle<B>(&self, request: Request<B>, conn: ConnInfo) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let snapshot = self.current.load_full();
        let auth = snapshot.auth.clone();
        let mut ctx = RequestCtx {
            snapshot,
            conn,
            started: Instant::now(),
            request_id: headers::request_id(request.headers()),
            method: request.method().clone(),
            response_format: crate::response::ResponseFormat::for_request(request.headers()),
            host: None,
            host_header: None,
            path: None,
            route: None,
            upstream_status: None,
            auth,
            own_cookies: TakenCookies::default(),
            session: None,
            set_cookies: Vec::new(),
            policy_headers: Vec::new(),
            refusal: None,
        };
        let mut response = match run_phases(&mut ctx, request).await {
            Ok(response) => response,
            Err(err) => {
                // A policy failure was logged where it happened, with its route and file: one
                // line per failure.
                if matches!(err, ProxyError::Policy(_)) {
                } else if matches!(err, ProxyError::Auth(AuthError::Store(_))) {
                    // The store logs its outages itself, sparingly: one line per request would
                    // flood the log while it lasts.
                    tracing::debug!(request_id = ?ctx.request_id, error = %err, "request failed");
                } else if err.status().is_server_error() {
                    tracing::warn!(request_id = ?ctx.request_id, error = %err, "request failed");
                } else {
                    tracing::debug!(request_id = ?ctx.request_id, error = %err, "request refused");
                }
                err.into_response(ctx.response_format)
            }
        };
        let response_headers = response.headers_mut();
        response_headers.insert(headers::X_REQUEST_ID.clone(), ctx.request_id.clone());
        for cookie in ctx.set_cookies.drain(..) {
            response_headers.append(header::SET_COOKIE, cookie);
        }
        log(&ctx, response.status());
        response
    }
}

/// The client side of a requested upgrade: its connection once switched, and what keeps its
/// place in `server.max_connections` while a tunnel runs.
struct ClientUpgrade {
    connection: OnUpgrade,
    hold: Option<ConnectionHold>,
}

async fn run_phases<B>(
    ctx: &mut RequestCtx,
    mut request: Request<B>,
) -> Result<Response<ProxyBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    if let Flow::Respond(response) = early(ctx, &mut request)? {
        return Ok(response);
    }
    if let Flow::Respond(response) = route(ctx, &request)? {
        return Ok(response);
    }
    if let Flow::Respond(response) = auth_endpoints(ctx, &request).await? {
        return Ok(response);
    }
    if ctx.route.is_none() {
        return Err(ProxyError::NoRoute);
    }
    if let Flow::Respond(response) = authenticate(ctx, &request).await? {
        return Ok(response);
    }
    if let Some(response) = whoami::answer(ctx) {
        return Ok(response);
    }
    if let Flow::Respond(response) = authorize(ctx, &mut request).await? {
        return Ok(response);
    }
    let (upstream_request, client_upgrade) = upstream_request(ctx, request)?;
    let upstream_response = forward(ctx, upstream_request).await?;
    response(ctx, upstream_response, client_upgrade)
}

/// Phase 1, early: removes what a client must never be able to send us, in every spelling (see
/// [`crate::header_ownership`]): identity headers, and forwarding headers unless the peer is a
/// trusted proxy. Takes Portcullis's own cookies out of the request, keeping their values in the
/// context: no policy and no upstream ever sees them, on any route.
fn early<B>(ctx: &mut RequestCtx, request: &mut Request<B>) -> Result<Flow, ProxyError> {
    let peer_trusted = ctx.peer_trusted();
    headers::remove_untrusted(
        request.headers_mut(),
        peer_trusted,
        &ctx.snapshot.identity_header_names,
    );
    let read = ctx.auth.as_ref().map(|auth| ReadNames {
        session: &auth.sessions.config().cookie_name,
        binding: auth.sessions.binding_cookie_name(),
    });
    ctx.own_cookies =
        cookies::take_own_cookies(request.headers_mut(), &ctx.snapshot.own_cookies, read);
    Ok(Flow::Continue)
}

/// Phase 2, route: canonical host and path, computed once, then the route they select.
fn route<B>(ctx: &mut RequestCtx, request: &Request<B>) -> Result<Flow, ProxyError> {
    // Two Host fields are refused (RFC 9112 §3.2): the proxy and a backend could each pick another.
    let mut hosts = request.headers().get_all(header::HOST).iter();
    if hosts.next().is_some() && hosts.next().is_some() {
        return Err(crate::canonical::HostError.into());
    }
    // HTTP/2 and absolute-form requests carry the host in the URI; it wins over a Host header.
    let host_header = match request.uri().authority() {
        Some(authority) => {
            HeaderValue::from_str(authority.as_str()).map_err(|_| crate::canonical::HostError)?
        }
        None => request
            .headers()
            .get(header::HOST)
            .cloned()
            .ok_or(crate::canonical::HostError)?,
    };
    let host = canonical_host(
        host_header
            .to_str()
            .map_err(|_| crate::canonical::HostError)?,
    )?;
    let mut path = CanonicalPath::parse(
        request.uri().path(),
        ctx.snapshot.server.allow_encoded_slashes,
    )?;
    if ctx.snapshot.server.case_insensitive_routes {
        path = path.fold_case();
        path.refuse_windows_aliases()?;
    }
    ctx.route = ctx.snapshot.table.lookup(&host, path.decision());
    ctx.host = Some(host);
    ctx.host_header = Some(host_header);
    ctx.path = Some(path);
    // No route is not decided yet: the callback and logout paths need none.
    Ok(Flow::Continue)
}

/// Phase 3, auth endpoints: the OIDC callback and logout, served by the proxy itself.
async fn auth_endpoints<B>(ctx: &mut RequestCtx, request: &Request<B>) -> Result<Flow, ProxyError> {
    let (Some(auth), Some(path)) = (&ctx.auth, &ctx.path) else {
        return Ok(Flow::Continue);
    };
    let response = if auth.is_callback(path.decision()) {
        auth.callback(request.uri().query(), &ctx.own_cookies.binding)
            .await
    } else if auth.is_logout(path.decision()) {
        auth.logout(&ctx.own_cookies.session).await
    } else {
        return Ok(Flow::Continue);
    };
    match response {
        Ok(response) => Ok(Flow::Respond(response)),
        Err(err) => {
            if err.status().is_client_error() || err.status().is_server_error() {
                tracing::warn!(request_id = ?ctx.request_id, reason = err.reason_code(), error = %err, "login refused");
            }
            Err(err.into())
        }
    }
}

/// Phase 4, authenticate: the session cookie → a live session (tokens refreshed when due). A
/// request without one on an `auth = "required"` route is sent to log in or denied — also when the
/// snapshot has no login at all (config validation refuses that; a snapshot built by hand must not
/// open the route either).
async fn authenticate<B>(ctx: &mut RequestCtx, request: &Request<B>) -> Result<Flow, ProxyError> {
    let mode = ctx.route().ok_or(ProxyError::NoRoute)?.config.auth;
    let auth = match (mode, ctx.auth.clone()) {
        (AuthMode::None, _) | (AuthMode::Optional, None) => return Ok(Flow::Continue),
        (AuthMode::Required, None) => {
            tracing::warn!(request_id = ?ctx.request_id, "route requires a login but none is configured; request refused");
            return Err(AuthError::Unauthenticated(StatusCode::UNAUTHORIZED).into());
        }
        (AuthMode::Required | AuthMode::Optional, Some(auth)) => auth,
    };
    let found = auth.authenticate(&ctx.own_cookies.session).await?;
    ctx.set_cookies.extend(found.set_cookies);
    ctx.session = found.session;
    if ctx.session.is_some() || mode == AuthMode::Optional {
        return Ok(Flow::Continue);
    }
    ctx.refusal = Some(Refusal {
        decision: "login",
        reason: "no session".to_owned(),
    });
    Ok(Flow::Respond(
        auth.unauthenticated(
            request.headers(),
            &ctx.own_cookies.binding,
            return_to(ctx, request),
        )
        .await?,
    ))
}

/// The longest place to come back to that a pending login keeps. Every browser request without a
/// session stores one for 10 minutes, so its size is what anyone can make the store hold: a
/// longer path and query (a link people follow is far shorter) comes back to the path alone, or
/// to `/`.
const RETURN_TO_MAX: usize = 2048;

/// Where to come back to after a login: this request's canonical path and query, on this origin.
fn return_to<B>(ctx: &RequestCtx, request: &Request<B>) -> String {
    // As stored: JSON writes `"` and `\` as two bytes each.
    let stored =
        |text: &str| text.len() + text.bytes().filter(|b| matches!(b, b'"' | b'\\')).count();
    let path = ctx.path.as_ref().map_or("/", CanonicalPath::forward);
    match request.uri().query() {
        Some(query) if stored(path) + 1 + stored(query) <= RETURN_TO_MAX => {
            format!("{path}?{query}")
        }
        _ if stored(path) <= RETURN_TO_MAX => path.to_owned(),
        _ => "/".to_owned(),
    }
}

/// Phase 5, authorize: the route's policy decides on the request and the user's claims. A deny is
/// an answer (a value); a policy that fails is a 500 — fail closed.
///
/// A decision remembered for the session is served at once. Otherwise the policy runs here, on
/// the worker, for at most [`crate::policy::INLINE_BUDGET`]; a policy that needs longer is
/// stopped, runs again on the snapshot's policy threads, and runs there from then on
/// ([`crate::policy::placement`]): a script that spins until its limits stop it holds a policy
/// thread, not the connections this worker serves. This task waits for a policy thread's
/// decision at most `policy_limits.timeout` plus a grace, then fails closed.
async fn authorize<B>(ctx: &mut RequestCtx, request: &mut Request<B>) -> Result<Flow, ProxyError> {
    let snapshot = ctx.snapshot.clone();
    let Some(route_id) = ctx.route else {
        return Ok(Flow::Continue);
    };
    let route = &snapshot.routes[route_id];
    let Some(route_policy) = &route.config.policy else {
        return Ok(Flow::Continue);
    };
    let session = ctx.session.as_ref().map(|live| live.session.clone());
    let remembered = route_policy
        .policy
        .remembered(session.as_deref().map(Session::policy_claims));
    let inline = match remembered {
        Some(decision) => Some(Ok(decision)),
        None if route_policy.placement.inline() => {
            decide_inline(ctx, route_policy, session.as_deref(), request)
        }
        None => None,
    };
    let decision = match inline {
        Some(decided) => decided,
        None => decide_on_policy_thread(ctx, route_id, session, request).await,
    }
    .inspect_err(|err| {
        tracing::warn!(request_id = ?ctx.request_id, route = %route.config.name, error = %err, "policy failed; request refused");
    });
    let decision = match decision {
        Ok(decision) => decision,
        Err(err) => {
            ctx.refusal = Some(Refusal {
                decision: "policy_error",
                reason: "the policy failed (see the warning with this request_id)".to_owned(),
            });
            return Err(err.into());
        }
    };
    match decision {
        Decision::Allow { headers } => {
            ctx.policy_headers = headers;
            Ok(Flow::Continue)
        }
        Decision::Deny { status, reason } => {
            ctx.refusal = Some(Refusal {
                decision: "deny",
                reason: reason.clone().unwrap_or_else(|| "-".to_owned()),
            });
            Ok(Flow::Respond(denied(
                status,
                reason.as_deref(),
                ctx.response_format,
            )))
        }
        Decision::Login => {
            ctx.refusal = Some(Refusal {
                decision: "login",
                reason: "the policy asks for a login".to_owned(),
            });
            let Some(auth) = ctx.auth.clone() else {
                return Err(ProxyError::Policy(PolicyError {
                    file: route_policy.policy.file().to_owned(),
                    position: None,
                    message: "login() needs an [oidc] section".into(),
                }));
            };
            Ok(Flow::Respond(
                auth.start_login(&ctx.own_cookies.binding, return_to(ctx, request))
                    .await?,
            ))
        }
    }
}

/// Runs the route's policy here, stopped after [`crate::policy::INLINE_BUDGET`]. `None` when it
/// failed or was stopped: this decision is made again on the policy threads with the route's full
/// limits (and after a few stops at the budget in a row the policy moves there).
fn decide_inline<B>(
    ctx: &RequestCtx,
    route_policy: &crate::config::RoutePolicy,
    session: Option<&Session>,
    request: &Request<B>,
) -> Option<Result<Decision, PolicyError>> {
    let until = Instant::now() + crate::policy::INLINE_BUDGET;
    let host = ctx.host.as_deref().unwrap_or_default();
    let input = PolicyRequest {
        method: request.method().as_str(),
        path: ctx.path.as_ref().map_or("/", CanonicalPath::decision),
        query: request.uri().query().unwrap_or(""),
        host,
        headers: request.headers(),
        client_ip: ctx.conn.peer.ip().to_canonical(),
        route: ctx.route().map_or("", |route| route.config.name.as_str()),
    };
    // A panic in an engine costs this decision (500), not the connections of this worker.
    let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        route_policy.policy.decide_by(
            &input,
            session.map(Session::policy_claims),
            &route_policy.rules,
            Some(until),
        )
    }));
    let within_budget = Instant::now() < until;
    if within_budget {
        route_policy.placement.finished();
    }
    match decided {
        Ok(Ok(decision)) => Some(Ok(decision)),
        // A failure within the budget is not a stop, but it is made again on a policy thread
        // too, and that answer stands: what failed may be the worker's own (a pooled Wasm
        // instance this worker could not create: the engine's instance slots are shared by every
        // thread), and a policy's own error fails there the same way.
        Ok(Err(_)) if within_budget => None,
        Ok(Err(stopped)) => {
            if route_policy.placement.stopped() {
                tracing::info!(
                    route = input.route,
                    policy = route_policy.policy.file(),
                    budget = ?crate::policy::INLINE_BUDGET,
                    stopped_by = %stopped.message,
                    "the policy ran past its budget on the worker; it runs on the policy threads from now on"
                );
            }
            None
        }
        Err(_) => Some(Err(PolicyError {
            file: route_policy.policy.file().to_owned(),
            position: None,
            message: "the policy engine failed unexpectedly".into(),
        })),
    }
}

/// Runs the route's policy on a policy thread and waits for its decision. The request's headers
/// travel with the job (moved, not copied) and are put back with the decision; on any failure the
/// request is refused, so they are not needed again.
async fn decide_on_policy_thread<B>(
    ctx: &RequestCtx,
    route_id: crate::routes::RouteId,
    session: Option<Arc<Session>>,
    request: &mut Request<B>,
) -> Result<Decision, PolicyError> {
    let snapshot = ctx.snapshot.clone();
    let headers = std::mem::take(request.headers_mut());
    let method = request.method().clone();
    let path = ctx
        .path
        .as_ref()
        .map_or("/", CanonicalPath::decision)
        .to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let host = ctx.host.clone().unwrap_or_default();
    let client_ip = ctx.conn.peer.ip().to_canonical();
    let job = move |deadline| {
        let route = &snapshot.routes[route_id];
        let route_policy = route
            .config
            .policy
            .as_ref()
            .expect("the authorize phase checked the route has a policy");
        let input = PolicyRequest {
            method: method.as_str(),
            path: &path,
            query: &query,
            host: &host,
            headers: &headers,
            client_ip,
            route: &route.config.name,
        };
        let decision = route_policy.policy.decide_by(
            &input,
            session.as_deref().map(Session::policy_claims),
            &route_policy.rules,
            Some(deadline),
        );
        (decision, headers)
    };
    match ctx.snapshot.policy_pool.run(job).await {
        Ok((decision, headers)) => {
            *request.headers_mut() = headers;
            decision
        }
        Err(err) => {
            let policy = ctx.route().and_then(|route| route.config.policy.as_ref());
            Err(PolicyError {
                file: policy.map_or("", |p| p.policy.file()).to_owned(),
                position: None,
                message: err.to_string(),
            })
        }
    }
}

/// The answer to a policy's deny: its status and reason (or "access denied").
fn denied(
    status: StatusCode,
    reason: Option<&str>,
    format: crate::response::ResponseFormat,
) -> Response<ProxyBody> {
    crate::response::negotiated_response(status, reason.unwrap_or("access denied"), format)
}

/// Phase 6, upstream request: the request the upstream receives — canonical path, cleaned
/// headers, forwarding headers, request id, a body limited to the route's maximum.
fn upstream_request<B>(
    ctx: &mut RequestCtx,
    mut request: Request<B>,
) -> Result<(Request<ProxyBody>, Option<ClientUpgrade>), ProxyError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let snapshot = ctx.snapshot.clone();
    let (Some(route_id), Some(path), Some(host_header)) = (ctx.route, &ctx.path, &ctx.host_header)
    else {
        unreachable!("the route phase sets route, path and host before this phase runs");
    };
    let route = &snapshot.routes[route_id];
    let limit = route.config.max_request_body;
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let client_upgrade = headers::is_upgrade_request(request.headers()).then(|| ClientUpgrade {
        hold: request.extensions().get::<ConnectionHold>().cloned(),
        connection: hyper::upgrade::on(&mut request),
    });

    let (mut parts, body) = request.into_parts();
    // HTTP/1.1 to an origin server: the request target is the path and query alone; the route's
    // target says where it goes.
    let uri = Uri::try_from(route.upstream_path_and_query(path.forward(), parts.uri.query()))
        .map_err(|_| ProxyError::BadPath(PathError::BadEscape))?;

    let headers = &mut parts.headers;
    // Portcullis's cookies left with the early phase, which also joined split `Cookie` fields.
    headers::remove_hop_by_hop(headers, client_upgrade.is_some());
    headers::set_forwarded(
        headers,
        &headers::Forwarded {
            peer_header: ctx.conn.peer_header(),
            tls: ctx.conn.tls,
            host: host_header,
            peer_trusted: ctx.peer_trusted(),
            trusted_proxies: &snapshot.server.trusted_proxies,
        },
    );
    headers.insert(headers::X_REQUEST_ID.clone(), ctx.request_id.clone());
    if let Some(live) = &ctx.session {
        headers::set_identity(
            headers,
            &route.config.identity_headers,
            live.session.header_values(),
        );
        if route.config.forward_access_token
            && let Ok(value) =
                HeaderValue::from_str(&format!("Bearer {}", live.session.access_token))
        {
            headers.insert(header::AUTHORIZATION, value);
        }
    }
    headers::set_policy_headers(headers, std::mem::take(&mut ctx.policy_headers));
    let host = if route.config.preserve_host {
        host_header.clone()
    } else {
        route.upstream_host.clone()
    };
    headers.insert(header::HOST, host);

    let body = limited_body::LimitedBody::new(body, limit).boxed_unsync();
    let mut upstream_request = Request::from_parts(parts, body);
    *upstream_request.uri_mut() = uri;
    *upstream_request.version_mut() = Version::HTTP_11;
    upstream_request.extensions_mut().clear();
    Ok((upstream_request, client_upgrade))
}

/// Phase 7, forward: sends the request on the route's pooled client within its deadline.
async fn forward(
    ctx: &mut RequestCtx,
    request: Request<ProxyBody>,
) -> Result<Response<PooledBody>, ProxyError> {
    let snapshot = ctx.snapshot.clone();
    let route = &snapshot.routes[ctx.route.expect("forward runs after routing")];
    let timeout = route.config.response_timeout;
    match upstream::send(&route.client, &route.target, request, timeout).await {
        Ok(response) => {
            ctx.upstream_status = Some(response.status());
            Ok(response)
        }
        Err(SendError::BodyTooLarge(limit)) => Err(ProxyError::BodyTooLarge { limit }),
        Err(SendError::Upstream(err)) => Err(ProxyError::Upstream(err)),
    }
}

/// Phase 8, response: hop-by-hop headers removed; an upstream's `Set-Cookie` for one of
/// Portcullis's cookies dropped (an upstream must not plant a session or a login binding); a
/// `101 Switching Protocols` starts the tunnel.
fn response(
    ctx: &mut RequestCtx,
    mut upstream_response: Response<PooledBody>,
    client_upgrade: Option<ClientUpgrade>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let switching = upstream_response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ProxyError::Upstream(upstream::UpstreamError::Protocol {
                authority: ctx
                    .route()
                    .map(|r| r.config.upstream.authority.to_string())
                    .unwrap_or_default(),
                detail: "101 Switching Protocols to a request that asked for no upgrade".into(),
            }));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut upstream_response);
        let request_id = ctx.request_id.to_str().unwrap_or_default().to_owned();
        upstream::spawn_tunnel(
            client_upgrade.connection,
            upstream_upgrade,
            request_id,
            client_upgrade.hold,
        );
    }
    let (mut parts, body) = upstream_response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, switching);
    let planted = cookies::drop_own_set_cookies(&mut parts.headers, &ctx.snapshot.own_cookies);
    if !planted.is_empty() {
        let route = ctx.route().map_or("-", |route| route.config.name.as_str());
        tracing::warn!(
            request_id = ?ctx.request_id,
            route,
            cookies = ?planted,
            "the upstream tried to set Portcullis's own cookies; Set-Cookie dropped"
        );
    }
    let body = if switching {
        empty_body()
    } else {
        body.map_err(BoxError::from).boxed_unsync()
    };
    Ok(Response::from_parts(parts, body))
}

/// The most of a path an access-log line shows: a line per request of a 60 KB path would let
/// anyone fill the log 60 KB at a time.
const LOGGED_PATH_MAX: usize = 1024;

/// Phase 9, log: one access-log line per request. The path is the canonical one, without the
/// query (queries can carry codes and tokens), cut at [`LOGGED_PATH_MAX`] bytes (marked `…`).
fn log(ctx: &RequestCtx, status: StatusCode) {
    let route = ctx.route().map(|r| r.config.name.as_str()).unwrap_or("-");
    let full = ctx
        .path
        .as_ref()
        .map(CanonicalPath::decision)
        .unwrap_or("-");
    let path: std::borrow::Cow<'_, str> = if full.len() <= LOGGED_PATH_MAX {
        full.into()
    } else {
        let mut cut = LOGGED_PATH_MAX;
        while !full.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &full[..cut]).into()
    };
    let path = path.as_ref();
    let user = ctx
        .session
        .as_ref()
        .map_or("-", |live| live.session.subject());
    // Two decimals: a log line is read by people.
    let duration_ms = (ctx.started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
    tracing::info!(
        target: "portcullis::access",
        request_id = ?ctx.request_id,
        method = %ctx.method,
        host = ctx.host.as_deref().unwrap_or("-"),
        path,
        route,
        user,
        status = status.as_u16(),
        upstream_status = ctx.upstream_status.map(|s| s.as_u16()),
        duration_ms,
        peer = %ctx.conn.peer.ip(),
        decision = ctx.refusal.as_ref().map(|refusal| refusal.decision),
        reason = ctx.refusal.as_ref().map(|refusal| refusal.reason.as_str()),
    );
}
