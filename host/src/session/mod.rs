//! Sessions: ids, cookies, lifetimes and records, above a narrow [`SessionStore`].
//!
//! - A session id is 32 random bytes, sent to the browser base64url-encoded in the cookie. The store
//!   is keyed by `"s" + SHA-256(id)`, so a copy of the store does not hold usable cookie values.
//! - A new id is made at every login; an id the browser brings is never adopted.
//! - A session ends at `created + lifetime` or `last_seen + idle_timeout`, whichever is first.
//! - A new session is flushed to disk before its cookie is sent.
//! - Pending logins (state → nonce, PKCE verifier, where to return) live in the same store under
//!   `"p" + SHA-256(state)` for 10 minutes and can be taken once.
//! - A session's lease lock lives in the store too, under `"l" + SHA-256(id)`: every change to a
//!   session record after its creation (a refresh, a touch) is made under it, so two instances
//!   never refresh one session at once, and neither writes back a copy older than the other's.
//! - Records kept outside the process (sled, Redis) are sealed ([`sealing`]): the store holds no
//!   token and no claim.
//! - A bounded in-memory cache sits in front of the store. This instance's writes keep it
//!   current; an entry is used for at most `cache_lifetime`, which bounds how long a change made
//!   by another instance sharing the store (a logout) takes to reach this one.

mod cache;
mod memory;
mod outage_log;
mod redis_store;
mod sealed_store;
pub mod sealing;
mod sled_store;
mod store;

#[cfg(test)]
mod conformance;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use cache::SessionCache;
pub use memory::MemoryStore;
pub use redis_store::RedisStore;
pub use sealed_store::SealedStore;
pub use sealing::SealingKeys;
pub use sled_store::SledStore;
pub use store::{Clock, ManualClock, SessionStore, StoreError, SystemClock, UnixTime};

use crate::config::{SessionConfig, StoreKind};
use crate::policy::PolicyIdentity;

/// How long a login may take from redirect to callback.
pub const PENDING_LOGIN_TTL: u64 = 600;

/// `last_seen` is written at most this often per session (idle tracking without a write per request).
const TOUCH_INTERVAL: u64 = 60;

/// How long a session's lease lock holds when its holder never lets go (a process killed while
/// refreshing): longer than a refresh may take (the provider's 10 s timeout).
pub const LEASE: u64 = 20;

/// A session id as carried by the cookie. Never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId([u8; 32]);

impl SessionId {
    fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        SessionId(bytes)
    }

    /// Parses a cookie value; `None` unless it is exactly 32 bytes of base64url.
    pub fn from_cookie_value(value: &str) -> Option<Self> {
        if value.len() != 43 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        Some(SessionId(bytes.try_into().ok()?))
    }

    /// The cookie value.
    pub fn cookie_value(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    fn store_key(&self) -> Vec<u8> {
        hashed_key(b's', &self.0)
    }

    fn lock_key(&self) -> Vec<u8> {
        hashed_key(b'l', &self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

fn hashed_key(prefix: u8, secret: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(prefix);
    key.extend_from_slice(&Sha256::digest(secret));
    key
}

/// What a session holds: the user's claims and tokens, and its timestamps.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    /// Every claim of the (latest) ID token.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The raw ID token (for `id_token_hint` at logout).
    pub id_token: String,
    /// The access token.
    pub access_token: String,
    /// The refresh token, when the provider issued one.
    pub refresh_token: Option<String>,
    /// When the access token expires, if the provider said.
    pub access_expires_at: Option<UnixTime>,
    /// When the session was created (login).
    pub created_at: UnixTime,
    /// Last request seen (to within [`TOUCH_INTERVAL`]).
    pub last_seen: UnixTime,
    /// When the cookie was last sent.
    pub cookie_issued_at: UnixTime,
    /// The claims converted for policies: built on first use, then shared by every request of
    /// this session (never stored).
    #[serde(skip)]
    pub policy_claims: OnceLock<PolicyIdentity>,
    /// The claims as header values ([`crate::claim_header`]: lists joined with `,`, elements
    /// escaped): built on first use, then shared by
    /// every request of this session (never stored).
    #[serde(skip)]
    pub header_values: OnceLock<HashMap<String, HeaderValue>>,
}

impl Session {
    /// The user's `sub` claim, for logs (`-` when it is not a string).
    pub fn subject(&self) -> &str {
        self.claims
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("-")
    }

    /// The claims as policies see them, converted once per session.
    pub fn policy_claims(&self) -> &PolicyIdentity {
        self.policy_claims
            .get_or_init(|| PolicyIdentity::from_json(&self.claims))
    }

    /// Every claim that can be a header value, converted once per session (identity headers).
    pub fn header_values(&self) -> &HashMap<String, HeaderValue> {
        self.header_values.get_or_init(|| {
            self.claims
                .iter()
                .filter_map(|(name, value)| {
                    let header = crate::claim_header::claim_header_value(value);
                    if header.is_none() && (value.is_string() || value.is_array()) {
                        // Fail closed (no header), but say so: the backend sees the user without
                        // it. The value is never logged.
                        tracing::warn!(claim = %name, "a claim holds characters a header cannot carry; its identity header is left out for this session");
                    }
                    Some((name.clone(), header?))
                })
                .collect()
        })
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("sub", &self.claims.get("sub"))
            .field("created_at", &self.created_at)
            .field("last_seen", &self.last_seen)
            .field("access_expires_at", &self.access_expires_at)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

/// A login in progress, stored server-side under its `state`.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
    /// Same-origin path (and query) to return to after login.
    pub return_to: String,
    /// SHA-256 (base64url) of the browser's login-binding cookie.
    pub binding_hash: String,
}

/// A live session found for a request.
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// Its id.
    pub id: SessionId,
    /// Its content.
    pub session: Arc<Session>,
}

/// A session's lease lock, held: changes to the session may be made. Give it back with
/// [`SessionManager::unlock`]; one never given back lapses after [`LEASE`] seconds.
#[must_use = "a lease lock is given back with SessionManager::unlock"]
pub struct SessionLock {
    key: Vec<u8>,
}

/// Owns ids, serialization, expiry and renewal of sessions and pending logins.
pub struct SessionManager {
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    config: SessionConfig,
    /// `<cookie_name>_login`, made once (it is checked on every proxied request).
    binding_cookie_name: String,
    cache: SessionCache,
}

impl SessionManager {
    /// Opens the configured store; records kept outside the process are sealed with the
    /// configured secrets.
    pub fn open(config: &SessionConfig, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let store: Arc<dyn SessionStore> = match &config.store {
            StoreKind::Sled(path) => {
                let keys = SealingKeys::load(&config.sealing)?;
                let sled = Arc::new(SledStore::open(path, clock.clone())?);
                Arc::new(SealedStore::new(sled, keys))
            }
            StoreKind::Redis(redis) => {
                let keys = SealingKeys::load(&config.sealing)?;
                let redis = Arc::new(RedisStore::open(redis, clock.clone())?);
                Arc::new(SealedStore::new(redis, keys))
            }
            StoreKind::Memory => Arc::new(MemoryStore::new(clock.clone())),
        };
        Ok(Self::with_store(store, config.clone(), clock))
    }

    /// A manager over an existing store.
    pub fn with_store(
        store: Arc<dyn SessionStore>,
        config: SessionConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        SessionManager {
            store,
            clock,
            binding_cookie_name: crate::cookies::binding_cookie_name(&config.cookie_name),
            cache: SessionCache::new(config.cache_entries, config.cache_lifetime),
            config,
        }
    }

    /// The session settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The current time of the manager's clock.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    fn expires_at(&self, session: &Session) -> UnixTime {
        let absolute = session.created_at + self.config.lifetime.as_secs();
        let idle = session.last_seen + self.config.idle_timeout.as_secs();
        absolute.min(idle)
    }

    /// Stores a new session under a fresh id and flushes it to disk; the cookie may then be sent.
    pub async fn create(&self, mut session: Session) -> Result<LiveSession, StoreError> {
        let now = self.now();
        session.created_at = now;
        session.last_seen = now;
        session.cookie_issued_at = now;
        let id = SessionId::random();
        let session = Arc::new(session);
        self.write(&id, &session).await?;
        self.flush().await?;
        self.cache
            .insert(self.cache.epoch(), id.store_key(), session.clone());
        Ok(LiveSession { id, session })
    }

    /// Stores a new session without flushing and returns its cookie value: for filling a store
    /// with many sessions in benches (a login always goes through [`Self::create`]).
    #[cfg(feature = "bench")]
    pub async fn insert_unflushed(&self, mut session: Session) -> Result<String, StoreError> {
        let now = self.now();
        session.created_at = now;
        session.last_seen = now;
        session.cookie_issued_at = now;
        let id = SessionId::random();
        self.write(&id, &Arc::new(session)).await?;
        Ok(id.cookie_value())
    }

    /// Replaces a session's content (after a refresh, a touch or a cookie renewal), only while it
    /// still exists: `None` when it ended meanwhile (a logout while a refresh was in flight), and
    /// then it stays ended. Call it holding the session's [`SessionLock`].
    pub async fn update(
        &self,
        _lock: &SessionLock,
        id: &SessionId,
        session: Session,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        let session = Arc::new(session);
        let value = Self::encode(&session)?;
        let key = id.store_key();
        let epoch = self.cache.epoch();
        if !self
            .store
            .replace(&key, &value, self.expires_at(&session))
            .await?
        {
            self.cache.forget(&key);
            return Ok(None);
        }
        self.cache.insert(epoch, key, session.clone());
        Ok(Some(session))
    }

    fn encode(session: &Session) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(session).map_err(|err| StoreError(err.to_string()))
    }

    async fn write(&self, id: &SessionId, session: &Session) -> Result<(), StoreError> {
        self.store
            .put(
                &id.store_key(),
                &Self::encode(session)?,
                self.expires_at(session),
            )
            .await
    }

    /// Makes completed writes durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.store.flush().await
    }

    /// The live session for a cookie value, if any: from the cache when it was read within
    /// `cache_lifetime`, else from the store.
    pub async fn load(&self, cookie_value: &str) -> Result<Option<LiveSession>, StoreError> {
        let Some(id) = SessionId::from_cookie_value(cookie_value) else {
            return Ok(None);
        };
        let session = match self.cache.get(&id.store_key()) {
            Some(session) => session,
            None => match self.read(&id).await? {
                Some(session) => session,
                None => return Ok(None),
            },
        };
        self.live(id, session)
    }

    /// The live session `id` as the store holds it now, never a cached copy: what changes are
    /// made to, under the session's lock.
    pub async fn load_fresh(&self, id: &SessionId) -> Result<Option<LiveSession>, StoreError> {
        match self.read(id).await? {
            Some(session) => self.live(id.clone(), session),
            None => Ok(None),
        }
    }

    /// `session` if it has not ended by its lifetimes.
    fn live(
        &self,
        id: SessionId,
        session: Arc<Session>,
    ) -> Result<Option<LiveSession>, StoreError> {
        if self.expires_at(&session) <= self.now() {
            self.cache.forget(&id.store_key());
            return Ok(None);
        }
        Ok(Some(LiveSession { id, session }))
    }

    /// Reads a session from the store and caches it. Records that do not parse are dropped with
    /// a warning (the user logs in again).
    async fn read(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let key = id.store_key();
        let epoch = self.cache.epoch();
        let Some(bytes) = self.store.get(&key).await? else {
            self.cache.forget(&key);
            return Ok(None);
        };
        match serde_json::from_slice::<Session>(&bytes) {
            Ok(session) => {
                let session = Arc::new(session);
                self.cache.insert(epoch, key, session.clone());
                Ok(Some(session))
            }
            Err(_) => {
                tracing::warn!(
                    "dropping a session record that does not parse; the user will log in again"
                );
                self.store.remove(&key).await?;
                self.cache.forget(&key);
                Ok(None)
            }
        }
    }

    /// Takes the session's lease lock if no one holds it (in this instance or another sharing the
    /// store); `None` when someone does.
    pub async fn try_lock(&self, id: &SessionId) -> Result<Option<SessionLock>, StoreError> {
        let key = id.lock_key();
        // A value of its own: a lock is never mistaken for another holder's.
        let taken = self
            .store
            .put_new(&key, random_token().as_bytes(), self.now() + LEASE)
            .await?;
        Ok(taken.then_some(SessionLock { key }))
    }

    /// Gives a lease lock back.
    pub async fn unlock(&self, lock: SessionLock) -> Result<(), StoreError> {
        self.store.remove(&lock.key).await
    }

    /// Records activity and renews the cookie when due. Returns the session to use and whether a
    /// `Set-Cookie` must be sent; `None` when the session ended meanwhile.
    ///
    /// The write is made under the session's lock, to the record as the store holds it now (never
    /// a cached copy that another instance's refresh has replaced). When someone else holds the
    /// lock (a refresh), or the store refuses the write (full), this request writes nothing: the
    /// next one will.
    pub async fn touch(
        &self,
        live: LiveSession,
    ) -> Result<Option<(LiveSession, bool)>, StoreError> {
        let now = self.now();
        let renew_cookie =
            now.saturating_sub(live.session.cookie_issued_at) >= self.config.renew.as_secs();
        let touch_interval = TOUCH_INTERVAL.min(self.config.idle_timeout.as_secs() / 10);
        let stale = now.saturating_sub(live.session.last_seen) >= touch_interval;
        if !renew_cookie && !stale {
            return Ok(Some((live, false)));
        }
        // A touch that cannot be written (a full or read-only store) is skipped, not fatal: the
        // session is still good, and the next request tries again.
        let lock = match self.try_lock(&live.id).await {
            Ok(Some(lock)) => lock,
            Ok(None) => return Ok(Some((live, false))),
            Err(err) => {
                tracing::debug!(error = %err, "session activity not recorded this time");
                return Ok(Some((live, false)));
            }
        };
        let touched = self.touch_locked(&lock, live.clone(), renew_cookie).await;
        if let Err(err) = self.unlock(lock).await {
            tracing::debug!(error = %err, "a session lock not given back; it lapses by itself");
        }
        match touched {
            Err(err) => {
                tracing::debug!(error = %err, "session activity not recorded this time");
                Ok(Some((live, false)))
            }
            touched => touched,
        }
    }

    async fn touch_locked(
        &self,
        lock: &SessionLock,
        live: LiveSession,
        renew_cookie: bool,
    ) -> Result<Option<(LiveSession, bool)>, StoreError> {
        let Some(current) = self.load_fresh(&live.id).await? else {
            return Ok(None);
        };
        let now = self.now();
        let mut session = (*current.session).clone();
        session.last_seen = now;
        if renew_cookie {
            session.cookie_issued_at = now;
        }
        let Some(session) = self.update(lock, &live.id, session).await? else {
            return Ok(None);
        };
        Ok(Some((
            LiveSession {
                id: live.id,
                session,
            },
            renew_cookie,
        )))
    }

    /// Ends a session (logout, refused refresh).
    pub async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        let key = id.store_key();
        let removed = self.store.remove(&key).await;
        // After the store removal: a read or write that started before it does not put it back.
        self.cache.deleted(&key);
        removed
    }

    /// Whether the store does what sessions need: a read, a write, a record taken, a lease taken
    /// (a conditional write) and a record removed, on a probe key of its own. Tried three times, 300 ms apart,
    /// before it says no: a connection may be on its way (a cluster whose listed node is silent).
    pub async fn probe(&self) -> Result<(), StoreError> {
        let mut tries = 3;
        loop {
            match self.probe_once().await {
                Err(_) if tries > 1 => {
                    tries -= 1;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                done => return done,
            }
        }
    }

    async fn probe_once(&self) -> Result<(), StoreError> {
        let key = hashed_key(b'c', random_token().as_bytes());
        self.store.get(&key).await?;
        self.store.put(&key, b"", self.now() + 10).await?;
        self.store.take(&key).await?;
        self.store.put_new(&key, b"", self.now() + 10).await?;
        self.store.remove(&key).await?;
        self.store.check_setup().await
    }

    /// Stores a pending login under its state for [`PENDING_LOGIN_TTL`].
    pub async fn put_pending(&self, state: &str, pending: &PendingLogin) -> Result<(), StoreError> {
        let value = serde_json::to_vec(pending).map_err(|err| StoreError(err.to_string()))?;
        self.store
            .put(
                &hashed_key(b'p', state.as_bytes()),
                &value,
                self.now() + PENDING_LOGIN_TTL,
            )
            .await
    }

    /// Takes the pending login of a state: at most once, and only within its 10 minutes.
    pub async fn take_pending(&self, state: &str) -> Result<Option<PendingLogin>, StoreError> {
        let Some(bytes) = self.store.take(&hashed_key(b'p', state.as_bytes())).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Removes expired sessions and pending logins every `interval`, for as long as the process
    /// runs — unless the store drops them by itself (Redis).
    pub fn spawn_sweeper(self: &Arc<Self>, interval: Duration) {
        if self.store.expires_records_itself() {
            return;
        }
        let manager = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(manager) = manager.upgrade() else {
                    return;
                };
                match manager.store.sweep().await {
                    Ok(removed) if removed > 0 => {
                        tracing::debug!(removed, "swept expired sessions")
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "session sweep failed"),
                }
            }
        });
    }

    /// The `Set-Cookie` value carrying a session id.
    pub fn session_cookie(&self, live: &LiveSession) -> HeaderValue {
        let remaining =
            (live.session.created_at + self.config.lifetime.as_secs()).saturating_sub(self.now());
        let max_age = self.config.cookie_persistent.then_some(remaining);
        self.cookie(&self.config.cookie_name, &live.id.cookie_value(), max_age)
    }

    /// A `Set-Cookie` value that removes the session cookie.
    pub fn expired_session_cookie(&self) -> HeaderValue {
        self.cookie(&self.config.cookie_name, "", Some(0))
    }

    /// Name of the cookie binding a login in progress to the browser that started it.
    pub fn binding_cookie_name(&self) -> &str {
        &self.binding_cookie_name
    }

    /// A `Set-Cookie` value for a login binding.
    pub fn binding_cookie(&self, value: &str) -> HeaderValue {
        self.cookie(self.binding_cookie_name(), value, Some(PENDING_LOGIN_TTL))
    }

    fn cookie(&self, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
        let mut cookie = cookie::Cookie::build((name.to_owned(), value.to_owned()))
            .http_only(true)
            .secure(self.config.cookie_secure)
            .same_site(cookie::SameSite::Lax)
            .path("/");
        if let Some(domain) = &self.config.cookie_domain {
            cookie = cookie.domain(domain.clone());
        }
        if let Some(seconds) = max_age {
            cookie = cookie.max_age(cookie::time::Duration::seconds(
                i64::try_from(seconds).unwrap_or(i64::MAX),
            ));
        }
        HeaderValue::from_str(&cookie.build().to_string())
            .expect("cookie names and values are validated")
    }
}

/// A random token for states, nonces and login bindings: 32 bytes, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `value` has the shape of a [`random_token`]: 43 base64url characters.
pub fn is_token(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// SHA-256 of a value, base64url (what is stored of a login binding).
pub fn hash_token(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn manager(clock: Arc<ManualClock>) -> SessionManager {
        let config = SessionConfig {
            store: StoreKind::Memory,
            cookie_name: "sess".into(),
            cookie_secure: true,
            cookie_persistent: true,
            cookie_domain: None,
            renew: Duration::from_secs(3600),
            lifetime: Duration::from_secs(24 * 3600),
            idle_timeout: Duration::from_secs(8 * 3600),
            cache_entries: 2,
            sweep_interval: Duration::from_secs(60),
            cache_lifetime: Duration::from_secs(3600),
            sealing: crate::config::Sealing {
                current: crate::config::SecretSource::Env,
                previous: Vec::new(),
            },
        };
        SessionManager::with_store(Arc::new(MemoryStore::new(clock.clone())), config, clock)
    }

    fn session() -> Session {
        let mut claims = serde_json::Map::new();
        claims.insert("sub".into(), "alice".into());
        Session {
            claims,
            id_token: "id".into(),
            access_token: "at".into(),
            refresh_token: None,
            access_expires_at: None,
            created_at: 0,
            last_seen: 0,
            cookie_issued_at: 0,
            policy_claims: OnceLock::new(),
            header_values: OnceLock::new(),
        }
    }

    #[tokio::test]
    async fn a_created_session_loads_by_its_cookie_value_only() {
        let manager = manager(Arc::new(ManualClock::new(1_000_000)));
        let live = manager.create(session()).await.unwrap();
        let value = live.id.cookie_value();
        assert_eq!(value.len(), 43);
        let loaded = manager.load(&value).await.unwrap().expect("session");
        assert_eq!(loaded.session.claims["sub"], "alice");
        assert!(manager.load("not-a-session-id").await.unwrap().is_none());
        assert!(
            manager
                .load(&SessionId::random().cookie_value())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn sessions_end_after_idle_timeout_and_after_lifetime() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let manager = manager(clock.clone());
        let idle = manager.create(session()).await.unwrap();
        clock.advance(8 * 3600);
        assert!(
            manager
                .load(&idle.id.cookie_value())
                .await
                .unwrap()
                .is_none(),
            "idle for 8h"
        );

        let active = manager.create(session()).await.unwrap();
        for _ in 0..4 {
            clock.advance(5 * 3600);
            let live = manager
                .load(&active.id.cookie_value())
                .await
                .unwrap()
                .expect("active within idle timeout");
            manager.touch(live).await.unwrap().expect("still live");
        }
        // 25h after creation: past the 24h lifetime although never idle.
        clock.advance(5 * 3600);
        assert!(
            manager
                .load(&active.id.cookie_value())
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn the_cookie_is_renewed_after_the_renew_interval() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let manager = manager(clock.clone());
        let live = manager.create(session()).await.unwrap();
        let (live, renewed) = manager.touch(live).await.unwrap().unwrap();
        assert!(!renewed);
        clock.advance(3600);
        let (_, renewed) = manager.touch(live).await.unwrap().unwrap();
        assert!(renewed);
    }

    #[tokio::test]
    async fn cookies_have_the_safe_attributes() {
        let manager = manager(Arc::new(ManualClock::new(1_000_000)));
        let live = manager.create(session()).await.unwrap();
        let cookie = manager.session_cookie(&live);
        let text = cookie.to_str().unwrap();
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=86400",
        ] {
            assert!(text.contains(attribute), "{attribute} missing in {text}");
        }
        assert!(
            manager
                .expired_session_cookie()
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
    }

    #[tokio::test]
    async fn browser_session_cookies_and_domain_cookies() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let mut config = manager(clock.clone()).config.clone();
        config.cookie_persistent = false;
        config.cookie_domain = Some("example.com".into());
        config.cookie_secure = false;
        let manager =
            SessionManager::with_store(Arc::new(MemoryStore::new(clock.clone())), config, clock);
        let live = manager.create(session()).await.unwrap();
        let text = manager.session_cookie(&live).to_str().unwrap().to_owned();
        assert!(
            !text.contains("Max-Age"),
            "a browser-session cookie: {text}"
        );
        assert!(text.contains("Domain=example.com"), "{text}");
        assert!(!text.contains("Secure"), "{text}");
        assert!(
            text.contains("HttpOnly") && text.contains("SameSite=Lax"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_corrupted_record_is_dropped_not_fatal() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let store = Arc::new(MemoryStore::new(clock.clone()));
        let manager =
            SessionManager::with_store(store.clone(), manager(clock.clone()).config.clone(), clock);
        let id = SessionId::random();
        store
            .put(&id.store_key(), b"{not json", 2_000_000)
            .await
            .unwrap();
        assert!(manager.load(&id.cookie_value()).await.unwrap().is_none());
        assert!(
            store.get(&id.store_key()).await.unwrap().is_none(),
            "the bad record is removed"
        );
    }

    #[tokio::test]
    async fn an_update_after_logout_does_not_revive_the_session() {
        let manager = manager(Arc::new(ManualClock::new(1_000_000)));
        let live = manager.create(session()).await.unwrap();
        let value = live.id.cookie_value();
        // A refresh read the session, then the user logged out before it wrote the new tokens.
        let mut refreshed = (*live.session).clone();
        refreshed.access_token = "new".into();
        manager.delete(&live.id).await.unwrap();
        let lock = manager.try_lock(&live.id).await.unwrap().expect("free");
        assert!(
            manager
                .update(&lock, &live.id, refreshed)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            manager.load(&value).await.unwrap().is_none(),
            "logged out for good"
        );
    }

    /// Two instances over one store: B's touch (its cached copy is from before A's refresh) must
    /// not write B's old tokens over A's new ones, and a touch never waits for the lock a refresh
    /// holds.
    #[tokio::test]
    async fn a_touch_never_writes_back_an_older_copy_than_the_store_has() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let store = Arc::new(MemoryStore::new(clock.clone()));
        let config = manager(clock.clone()).config.clone();
        let a = SessionManager::with_store(store.clone(), config.clone(), clock.clone());
        let b = SessionManager::with_store(store.clone(), config, clock.clone());
        let live = a.create(session()).await.unwrap();
        let value = live.id.cookie_value();
        let stale = b.load(&value).await.unwrap().expect("B has it cached");
        clock.advance(TOUCH_INTERVAL);

        let lock = a.try_lock(&live.id).await.unwrap().expect("free");
        assert!(b.try_lock(&live.id).await.unwrap().is_none(), "one holder");
        let mut refreshed = (*live.session).clone();
        refreshed.access_token = "refreshed on A".into();
        a.update(&lock, &live.id, refreshed).await.unwrap().unwrap();
        let (untouched, _) = b.touch(stale.clone()).await.unwrap().unwrap();
        assert_eq!(
            untouched.session.last_seen, stale.session.last_seen,
            "while A holds the lock, B's touch writes nothing"
        );
        a.unlock(lock).await.unwrap();

        let (touched, _) = b.touch(stale).await.unwrap().unwrap();
        assert_eq!(touched.session.last_seen, clock.now());
        assert_eq!(touched.session.access_token, "refreshed on A");
        let stored = a.load_fresh(&live.id).await.unwrap().unwrap();
        assert_eq!(stored.session.access_token, "refreshed on A");
        assert_eq!(stored.session.last_seen, clock.now());
    }

    #[tokio::test]
    async fn pending_logins_are_single_use_and_expire() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let manager = manager(clock.clone());
        let pending = PendingLogin {
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            return_to: "/x".into(),
            binding_hash: "b".into(),
        };
        manager.put_pending("state-1", &pending).await.unwrap();
        manager.put_pending("state-2", &pending).await.unwrap();
        manager.put_pending("state-3", &pending).await.unwrap();
        assert!(manager.take_pending("state-1").await.unwrap().is_some());
        assert!(
            manager.take_pending("state-1").await.unwrap().is_none(),
            "replayed state"
        );
        // Ten minutes, as oidc.md promises: a login may take 9 minutes 59 seconds, not 10.
        clock.advance(599);
        assert!(manager.take_pending("state-2").await.unwrap().is_some());
        clock.advance(1);
        assert!(
            manager.take_pending("state-3").await.unwrap().is_none(),
            "expired state"
        );
    }
}
