//! The login flow as the proxy runs it: the callback and logout endpoints, turning a session
//! cookie into an identity (refreshing tokens when due, once per session), and sending a request
//! without one to log in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::{LoginError, Oidc, RefreshError, Tokens};
use crate::config::Unauthenticated;
use crate::cookies::CookieValues;
use crate::response::{ProxyBody, empty_body, text_response};
use crate::session::{
    LiveSession, PendingLogin, Session, SessionId, SessionLock, SessionManager, StoreError,
    hash_token, is_token, random_token,
};

/// The longest a request waits for another instance's refresh of its session: a little more
/// than the provider may take to answer it.
const REFRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(12);

/// How a wait for the session's lease lock ended.
enum Refreshed {
    /// Refreshed here, or found refreshed (or ended) by the holder.
    Done(Result<Option<LiveSession>, AuthError>),
    /// The holder kept the lock past [`REFRESH_WAIT`]: the session as it was.
    GaveUp(LiveSession),
}

/// After a wait for another instance's refresh in vain: the session with its current tokens while
/// they are valid; else a 503 (the session is intact: it ends only when the provider refuses a
/// refresh, not because a lock was not given back).
fn current_tokens(expired: bool, live: LiveSession) -> Result<Option<LiveSession>, AuthError> {
    if expired {
        return Err(AuthError::Store(StoreError(
            "the session's tokens are being refreshed by a process that does not finish; its lease lapses within 20 s".to_owned(),
        )));
    }
    Ok(Some(live))
}

/// How often a waiting request looks whether the other instance's refresh is done.
const REFRESH_POLL: std::time::Duration = std::time::Duration::from_millis(25);

/// Why a login endpoint or an authentication refused a request.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The callback came without `state`.
    #[error("callback without state")]
    StateMissing,
    /// The state is unknown, expired or already used.
    #[error("unknown, expired or replayed login state")]
    StateUnknown,
    /// The browser sent back no login binding cookie: cookies blocked, a `Secure` cookie over
    /// plain HTTP, or another browser.
    #[error("the login binding cookie was not sent back")]
    BindingMissing,
    /// The browser completing the login is not the one that started it.
    #[error("login binding cookie not matching")]
    BindingMismatch,
    /// The callback came without `code`.
    #[error("callback without code")]
    CodeMissing,
    /// The provider answered the login with an error (e.g. `access_denied`).
    #[error("the provider refused the login: {0}")]
    ProviderDenied(String),
    /// Code exchange or ID-token checks failed.
    #[error(transparent)]
    Login(#[from] LoginError),
    /// Discovery has not succeeded: login cannot start.
    #[error("the identity provider is not available yet")]
    Unavailable,
    /// No session on a route that requires one, and the client is not sent to log in.
    #[error("login required")]
    Unauthenticated(StatusCode),
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::StateMissing
            | AuthError::StateUnknown
            | AuthError::BindingMissing
            | AuthError::BindingMismatch
            | AuthError::CodeMissing => StatusCode::BAD_REQUEST,
            AuthError::ProviderDenied(_) => StatusCode::FORBIDDEN,
            AuthError::Login(LoginError::NotReady) | AuthError::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AuthError::Login(LoginError::IdToken(_) | LoginError::CodeRefused(_)) => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::Login(_) => StatusCode::BAD_GATEWAY,
            AuthError::Unauthenticated(status) => *status,
            AuthError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The sentence the client receives.
    pub fn public_text(&self) -> &'static str {
        match self {
            AuthError::StateMissing
            | AuthError::StateUnknown
            | AuthError::BindingMismatch
            | AuthError::CodeMissing => {
                "this login link is not valid (expired, used already, or opened in another browser); please start again"
            }
            AuthError::BindingMissing => {
                "your browser did not send back the cookie set when this login started (cookies blocked, the login finished in another browser, or a site served over plain HTTP with secure cookies); please start again, and tell the site's operator if it keeps happening"
            }
            AuthError::ProviderDenied(_) => "the identity provider did not log you in",
            AuthError::Login(LoginError::IdToken(_) | LoginError::CodeRefused(_)) => {
                "the login could not be verified; please start again"
            }
            AuthError::Login(_) | AuthError::Unavailable => {
                "login is not available right now; please try again later"
            }
            AuthError::Unauthenticated(_) => "login required",
            AuthError::Store(_) => {
                "sessions cannot be checked right now (the session store is not working); please try again in a moment"
            }
        }
    }

    /// A stable reason code for the log.
    pub fn reason_code(&self) -> &'static str {
        match self {
            AuthError::StateMissing => "state_missing",
            AuthError::StateUnknown => "state_unknown",
            AuthError::BindingMissing => "binding_missing",
            AuthError::BindingMismatch => "binding_mismatch",
            AuthError::CodeMissing => "code_missing",
            AuthError::ProviderDenied(_) => "provider_denied",
            AuthError::Login(err) => err.reason_code(),
            AuthError::Unavailable => "provider_not_ready",
            AuthError::Unauthenticated(_) => "unauthenticated",
            AuthError::Store(_) => "store_unavailable",
        }
    }
}

/// Login and sessions for the proxy: one per process.
pub struct Auth {
    /// The relying party.
    pub oidc: Arc<Oidc>,
    /// The sessions.
    pub sessions: Arc<SessionManager>,
    /// One queue per session being refreshed by this instance: its requests take turns asking the
    /// store for the session's lease lock. It holds when the last of them gave up waiting for a
    /// holder that never finished, so that the next ones do not wait that long again.
    refreshing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>>>,
}

/// What authentication found for a request.
pub struct Authenticated {
    /// The live session, if any.
    pub session: Option<LiveSession>,
    /// `Set-Cookie` values to send with the response (renewed or expired cookie).
    pub set_cookies: Vec<HeaderValue>,
}

impl Auth {
    /// Login and sessions from their parts.
    pub fn new(oidc: Arc<Oidc>, sessions: Arc<SessionManager>) -> Self {
        Auth {
            oidc,
            sessions,
            refreshing: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `path` (canonical) is the callback.
    pub fn is_callback(&self, path: &str) -> bool {
        path == self.oidc.config().callback_path
    }

    /// Whether `path` (canonical) is the logout endpoint.
    pub fn is_logout(&self, path: &str) -> bool {
        path == self.oidc.config().logout_path
    }

    /// Phase 3: the callback. Checks state (single use, bound to this browser by the login
    /// binding cookie's `binding` values, taken from the request by the early phase) before any
    /// call to the provider, exchanges the code, checks the ID token, creates a new session
    /// (flushed) and sends the browser back to where it started. A binding sent with several
    /// different values binds nothing.
    pub async fn callback(
        &self,
        query: Option<&str>,
        binding: &CookieValues,
    ) -> Result<Response<ProxyBody>, AuthError> {
        let params: HashMap<String, String> =
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let state = params.get("state").ok_or(AuthError::StateMissing)?;
        let pending = self
            .sessions
            .take_pending(state)
            .await?
            .ok_or(AuthError::StateUnknown)?;
        if binding.all().is_empty() {
            // The browser reached this callback at `redirect_uri`, so that is its scheme.
            let over_https = self.oidc.config().redirect_uri.scheme() == "https";
            if self.sessions.config().cookie_secure && !over_https {
                tracing::warn!(
                    "a login's binding cookie did not come back: the callback came over plain HTTP and [session] cookie_secure = true, so browsers keep the cookie to themselves. Serve HTTPS (an https redirect_uri), or set cookie_secure = false for plain-HTTP local use"
                );
            }
            return Err(AuthError::BindingMissing);
        }
        if binding.single().map(hash_token).as_deref() != Some(pending.binding_hash.as_str()) {
            return Err(AuthError::BindingMismatch);
        }
        if let Some(error) = params.get("error") {
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            return Err(AuthError::ProviderDenied(error));
        }
        let code = params.get("code").ok_or(AuthError::CodeMissing)?;
        let tokens = self
            .oidc
            .complete_login(code, &pending.nonce, &pending.pkce_verifier)
            .await?;
        let live = self
            .sessions
            .create(self.session_from(tokens, None))
            .await?;
        tracing::info!(sub = live.session.subject(), "login completed; new session");
        let mut response = redirect(&pending.return_to);
        let headers = response.headers_mut();
        // The login binding stays: other tabs of this browser may be logging in with it.
        headers.append(header::SET_COOKIE, self.sessions.session_cookie(&live));
        Ok(response)
    }

    fn session_from(&self, tokens: Tokens, previous: Option<&Session>) -> Session {
        let now = self.sessions.now();
        Session {
            claims: tokens.claims,
            id_token: tokens.id_token,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            access_expires_at: tokens.expires_in.map(|d| now + d.as_secs()),
            created_at: previous.map_or(now, |p| p.created_at),
            last_seen: now,
            cookie_issued_at: previous.map_or(now, |p| p.cookie_issued_at),
            policy_claims: std::sync::OnceLock::new(),
            header_values: std::sync::OnceLock::new(),
        }
    }

    /// Phase 3: logout. Ends the session here, expires the cookie, optionally revokes tokens, and
    /// sends the browser to the provider's end-session endpoint (or `post_logout_redirect_uri`).
    /// With several different session cookie values, every session they name ends (the user
    /// asked to be logged out; a planted duplicate must not keep their real session alive).
    pub async fn logout(&self, session: &CookieValues) -> Result<Response<ProxyBody>, AuthError> {
        let mut ended = Vec::new();
        for value in session.all() {
            if let Some(live) = self.sessions.load(value).await? {
                ended.push(live);
            }
        }
        for live in &ended {
            self.sessions.delete(&live.id).await?;
            // Final at once, as a login is: a restart right after must not bring it back.
            self.sessions.flush().await?;
            if self.oidc.config().revoke_tokens_on_logout {
                match &live.session.refresh_token {
                    Some(token) => self.oidc.revoke(token, "refresh_token").await,
                    None => {
                        self.oidc
                            .revoke(&live.session.access_token, "access_token")
                            .await
                    }
                }
            }
            tracing::info!(sub = live.session.subject(), "logged out");
        }
        let id_token = match ended.as_slice() {
            [live] => Some(live.session.id_token.as_str()),
            _ => None,
        };
        let mut response = match self.oidc.logout_redirect(id_token) {
            Some(url) => redirect(url.as_str()),
            None => text_response(StatusCode::OK, "You are logged out.\n"),
        };
        response
            .headers_mut()
            .append(header::SET_COOKIE, self.sessions.expired_session_cookie());
        Ok(response)
    }

    /// Phase 4: the session for this request (its cookie's values were taken from the request by
    /// the early phase), refreshed if due. `None` when there is none (or it just ended); the
    /// cookies to send back come along. Several different values name no session: the cookie is
    /// expired, so the next login leaves the browser with one.
    pub async fn authenticate(&self, session: &CookieValues) -> Result<Authenticated, AuthError> {
        let mut result = Authenticated {
            session: None,
            set_cookies: Vec::new(),
        };
        if session.is_ambiguous() {
            tracing::warn!("several different session cookies sent; none used");
            result
                .set_cookies
                .push(self.sessions.expired_session_cookie());
            return Ok(result);
        }
        let Some(value) = session.single() else {
            return Ok(result);
        };
        let Some(live) = self.sessions.load(value).await? else {
            return Ok(result);
        };
        let Some(live) = self.refresh_if_due(live).await? else {
            result
                .set_cookies
                .push(self.sessions.expired_session_cookie());
            return Ok(result);
        };
        let Some((live, renew_cookie)) = self.sessions.touch(live).await? else {
            // Ended while this request was under way (a logout in another tab).
            result
                .set_cookies
                .push(self.sessions.expired_session_cookie());
            return Ok(result);
        };
        if renew_cookie {
            result.set_cookies.push(self.sessions.session_cookie(&live));
        }
        result.session = Some(live);
        Ok(result)
    }

    fn refresh_due(&self, session: &Session) -> bool {
        let leeway = self.oidc.config().access_token_expires_leeway.as_secs();
        session
            .access_expires_at
            .is_some_and(|expires| expires <= self.sessions.now() + leeway)
    }

    fn access_expired(&self, session: &Session) -> bool {
        session
            .access_expires_at
            .is_some_and(|expires| expires <= self.sessions.now())
    }

    /// Refreshes the tokens when they expire within the leeway: one refresh per session at a time,
    /// across every instance sharing the store; requests that waited for it use its result.
    async fn refresh_if_due(&self, live: LiveSession) -> Result<Option<LiveSession>, AuthError> {
        let renew = self.oidc.config().renew_access_token_on_expiry;
        if !self.refresh_due(&live.session) {
            return Ok(Some(live));
        }
        if !renew || live.session.refresh_token.is_none() {
            // Nothing to renew with: the session lasts as long as its access token.
            return Ok((!self.access_expired(&live.session)).then_some(live));
        }
        // Requests of this instance queue here, so only one of them asks the store for the lock.
        let cookie_value = live.id.cookie_value();
        let local = {
            let mut refreshing = self.refreshing.lock().unwrap_or_else(|p| p.into_inner());
            refreshing.entry(cookie_value.clone()).or_default().clone()
        };
        let mut gave_up = local.lock().await;
        let recently = gave_up.is_some_and(|at| at.elapsed() < REFRESH_WAIT);
        let outcome = if recently {
            // The request before this one waited in vain: the holder is gone (its lease lapses
            // by itself). Use the current tokens while they last, as it did.
            current_tokens(self.access_expired(&live.session), live)
        } else {
            match self.refresh_across_instances(live).await {
                Refreshed::GaveUp(live) => {
                    *gave_up = Some(tokio::time::Instant::now());
                    current_tokens(self.access_expired(&live.session), live)
                }
                Refreshed::Done(outcome) => outcome,
            }
        };
        drop(gave_up);
        {
            // Kept while a give-up is recent, so that the session's next requests know it too
            // (a rare case: the holder died; its lease lapses within seconds).
            let gave_up_lately = local
                .try_lock()
                .is_ok_and(|gave_up| gave_up.is_some_and(|at| at.elapsed() < REFRESH_WAIT));
            let mut refreshing = self.refreshing.lock().unwrap_or_else(|p| p.into_inner());
            if Arc::strong_count(&local) <= 2 && !gave_up_lately {
                refreshing.remove(&cookie_value);
            }
        }
        outcome
    }

    /// Takes the session's lease lock in the store, or waits for whoever holds it (another
    /// instance) to finish and uses what it wrote. What the store holds is the truth, never a
    /// copy read before waiting: another request may have refreshed the session meanwhile, or
    /// the user logged out.
    async fn refresh_across_instances(&self, live: LiveSession) -> Refreshed {
        let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
        let mut waited = false;
        loop {
            let attempt: Result<Option<Option<LiveSession>>, AuthError> = async {
                let lock = match self.sessions.try_lock(&live.id).await {
                    Ok(lock) => lock,
                    // The store refuses writes (full): no refresh now; the tokens serve while
                    // they are valid, as when the provider cannot be reached.
                    Err(err) if !self.access_expired(&live.session) => {
                        tracing::debug!(error = %err, "token refresh put off: the session store refused the lock");
                        return Ok(Some(Some(live.clone())));
                    }
                    Err(err) => return Err(err.into()),
                };
                if let Some(lock) = lock {
                    let outcome = self.refresh_locked(&lock, &live.id).await;
                    self.sessions.unlock(lock).await?;
                    return outcome.map(Some);
                }
                if waited {
                    let Some(current) = self.sessions.load_fresh(&live.id).await? else {
                        return Ok(Some(None));
                    };
                    if !self.refresh_due(&current.session) {
                        return Ok(Some(Some(current)));
                    }
                }
                Ok(None)
            }
            .await;
            match attempt {
                Ok(Some(outcome)) => return Refreshed::Done(Ok(outcome)),
                Err(err) => return Refreshed::Done(Err(err)),
                Ok(None) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                // The holder neither finished nor let go (it may have died: its lease lapses).
                tracing::warn!(
                    "another instance has been refreshing this session's tokens for too long; serving the current ones while they last"
                );
                return Refreshed::GaveUp(live);
            }
            waited = true;
            tokio::time::sleep(REFRESH_POLL).await;
        }
    }

    /// Under the session's lease lock. Reads the session again from the store and refreshes it
    /// if that is still due.
    async fn refresh_locked(
        &self,
        lock: &SessionLock,
        id: &SessionId,
    ) -> Result<Option<LiveSession>, AuthError> {
        let Some(live) = self.sessions.load_fresh(id).await? else {
            return Ok(None);
        };
        if !self.refresh_due(&live.session) {
            return Ok(Some(live));
        }
        let session = &live.session;
        let refresh_token = session.refresh_token.as_deref().unwrap_or_default();
        match self
            .oidc
            .refresh(refresh_token, &session.claims, &session.id_token)
            .await
        {
            Ok(tokens) => {
                let updated = self.session_from(tokens, Some(session));
                let Some(session) = self.sessions.update(lock, &live.id, updated).await? else {
                    // Logged out while the provider answered: the new tokens are dropped.
                    tracing::info!(
                        reason = "ended_during_refresh",
                        "the session ended while its tokens were refreshed"
                    );
                    return Ok(None);
                };
                tracing::debug!("access token refreshed");
                Ok(Some(LiveSession {
                    id: live.id,
                    session,
                }))
            }
            Err(RefreshError::Refused) => {
                tracing::info!(reason = "refresh_refused", "the provider ended the session");
                self.sessions.delete(&live.id).await?;
                Ok(None)
            }
            Err(RefreshError::IdToken(rejection)) => {
                tracing::warn!(
                    reason = rejection.reason_code(),
                    "refreshed ID token refused; session ended"
                );
                self.sessions.delete(&live.id).await?;
                Ok(None)
            }
            Err(err @ (RefreshError::Unreachable(_) | RefreshError::Failed(_))) => {
                let expired = self.access_expired(session);
                tracing::warn!(error = %err, session_kept = !expired, "token refresh failed");
                Ok((!expired).then_some(live))
            }
        }
    }

    /// A request without a session on a route that needs one: a redirect to log in (browsers, or
    /// everyone with `unauthenticated = "redirect"`), or a denial.
    pub async fn unauthenticated(
        &self,
        headers: &HeaderMap,
        binding: &CookieValues,
        return_to: String,
    ) -> Result<Response<ProxyBody>, AuthError> {
        let config = self.oidc.config();
        if self.oidc.provider().is_none() {
            // Until discovery succeeds nobody can log in: say so rather than deny.
            return Err(AuthError::Unavailable);
        }
        let browser = headers
            .get_all(header::ACCEPT)
            .iter()
            .any(|value| value.to_str().is_ok_and(|v| v.contains("text/html")));
        let redirect_to_login = match config.unauthenticated {
            Unauthenticated::Auto => browser,
            Unauthenticated::Redirect => true,
            Unauthenticated::Deny => false,
        };
        if !redirect_to_login {
            return Err(AuthError::Unauthenticated(config.unauthenticated_status));
        }
        self.start_login(binding, return_to).await
    }

    /// Starts a login: stores the pending login and redirects to the provider. Also used when a
    /// policy asks for a (new) login. `binding` holds the login binding cookie's values as the
    /// browser sent them.
    pub async fn start_login(
        &self,
        binding: &CookieValues,
        return_to: String,
    ) -> Result<Response<ProxyBody>, AuthError> {
        if self.oidc.provider().is_none() {
            return Err(AuthError::Unavailable);
        }
        // One binding per browser, shared by its tabs: several logins may be under way at once.
        // Only a single value shaped like one we issue is kept; anything else gets a new one.
        let binding = binding
            .single()
            .filter(|value| is_token(value))
            .map(str::to_owned)
            .unwrap_or_else(random_token);
        let state = random_token();
        let start = self.oidc.begin_login(&state)?;
        let pending = PendingLogin {
            nonce: start.nonce,
            pkce_verifier: start.pkce_verifier,
            return_to,
            binding_hash: hash_token(&binding),
        };
        self.sessions.put_pending(&state, &pending).await?;
        let mut response = redirect(start.url.as_str());
        response
            .headers_mut()
            .append(header::SET_COOKIE, self.sessions.binding_cookie(&binding));
        Ok(response)
    }
}

/// A `302 Found` to `location`, never cached.
fn redirect(location: &str) -> Response<ProxyBody> {
    let mut response = Response::new(empty_body());
    *response.status_mut() = StatusCode::FOUND;
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
