//! The OpenID Connect relying party: discovery, login URLs, code exchange, ID-token checks,
//! refresh and logout URLs. Protocol work is the `openidconnect` crate's; this module decides
//! policy (which algorithms, how much clock skew, when to refetch keys) and never logs a token.
//!
//! Discovery runs in the background at start and is retried with backoff while the provider is
//! down; until it succeeds [`Oidc::provider`] is `None`, login cannot start, and
//! [`Oidc::status`] (shown by `/readyz` and `/reload`) says why. An answer that does not fit the
//! config (another issuer, no discovery document) is a [`DiscoveryError::Misconfigured`]. The JWKS is cached
//! and refetched when an ID token names an unknown key, at most once per [`JWKS_REFETCH_INTERVAL`].

mod flow;
mod http;
mod verify;

pub use flow::{Auth, AuthError, Authenticated};
pub use http::MAX_PROVIDER_RESPONSE;
use http::{FetchError, ProviderHttp};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadataWithLogout, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse,
};
use serde_json::{Map, Value};
use url::Url;

use crate::config::{ClientAuth, OidcConfig};
pub use verify::IdTokenRejection;

/// Minimum time between two JWKS refetches caused by unknown key ids.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Longest wait between two discovery attempts.
const MAX_DISCOVERY_BACKOFF: Duration = Duration::from_secs(30);

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What discovery learned, ready to use.
pub struct Provider {
    metadata: ProviderMetadataWithLogout,
    client: Client,
    allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    end_session_endpoint: Option<Url>,
    revocation_endpoint: Option<Url>,
}

/// Tokens from the token endpoint, with the ID token checked and its claims decoded.
pub struct Tokens {
    /// Every claim of the ID token.
    pub claims: Map<String, Value>,
    /// The raw ID token.
    pub id_token: String,
    /// The access token.
    pub access_token: String,
    /// The refresh token, if issued.
    pub refresh_token: Option<String>,
    /// Seconds until the access token expires, if the provider said.
    pub expires_in: Option<Duration>,
}

/// A login that is ready to redirect to the provider.
pub struct LoginStart {
    /// The authorization URL.
    pub url: Url,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: String,
}

/// Why a login could not complete. Each has a short reason code for the log.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Discovery has not succeeded yet.
    #[error("the identity provider is not available yet")]
    NotReady,
    /// The token endpoint could not be reached or answered nonsense.
    #[error("token exchange failed: {0}")]
    TokenExchange(String),
    /// The provider refused the code (used already, expired, not ours).
    #[error("the provider refused the code: {0}")]
    CodeRefused(String),
    /// The token response had no ID token.
    #[error("the token response has no ID token")]
    NoIdToken,
    /// The ID token failed a check.
    #[error("ID token refused: {0}")]
    IdToken(#[from] IdTokenRejection),
}

impl LoginError {
    /// A stable reason code for logs and metrics.
    pub fn reason_code(&self) -> &'static str {
        match self {
            LoginError::NotReady => "provider_not_ready",
            LoginError::TokenExchange(_) => "token_exchange_failed",
            LoginError::CodeRefused(_) => "code_refused",
            LoginError::NoIdToken => "no_id_token",
            LoginError::IdToken(rejection) => rejection.reason_code(),
        }
    }
}

/// The outcome of a refresh that did not produce tokens.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The provider refused the refresh token (`invalid_grant`): the session is over.
    #[error("the provider refused the refresh token")]
    Refused,
    /// The provider could not be reached; the session may go on until its tokens expire.
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
    /// The refreshed ID token failed a check, or names another user.
    #[error("refreshed ID token refused: {0}")]
    IdToken(#[from] IdTokenRejection),
    /// Anything else (bad response, not ready).
    #[error("refresh failed: {0}")]
    Failed(String),
}

/// Why discovery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The provider could not be reached, or answered with a server error: it is retried.
    #[error("{0}")]
    Unavailable(String),
    /// The provider answered, and the answer does not fit the config (another issuer, not a
    /// discovery document, no usable signing algorithm): asking again will not help; the config
    /// (or the provider's settings) must change.
    #[error("configuration error: {0}")]
    Misconfigured(String),
}

impl DiscoveryError {
    fn fetching(what: &str, err: FetchError) -> Self {
        match err {
            FetchError::Unavailable(problem) => {
                DiscoveryError::Unavailable(format!("cannot fetch {what}: {problem}"))
            }
            FetchError::Refused(problem) => {
                DiscoveryError::Misconfigured(format!("cannot fetch {what}: {problem}"))
            }
        }
    }
}

/// Why the JWKS could not be had.
#[derive(Debug)]
enum JwksError {
    Fetch(FetchError),
    Parse(String),
}

impl std::fmt::Display for JwksError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksError::Fetch(err) => write!(f, "cannot fetch the JWKS: {err}"),
            JwksError::Parse(problem) => f.write_str(problem),
        }
    }
}

/// Where discovery stands, for `/readyz` and `/reload`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProviderStatus {
    /// The issuer the config names.
    pub issuer: String,
    /// Whether discovery succeeded (logins can start).
    pub discovered: bool,
    /// Failed attempts so far.
    pub failed_attempts: u64,
    /// The last failure, if any (kept after a success, for the record).
    pub last_error: Option<String>,
}

/// The relying party. One per process (rebuilt only when `[oidc]` changes).
pub struct Oidc {
    config: OidcConfig,
    http: ProviderHttp,
    provider: ArcSwapOption<Provider>,
    last_jwks_refetch: Mutex<Option<Instant>>,
    /// Failed discovery attempts and the last error.
    failures: Mutex<(u64, Option<String>)>,
}

impl Oidc {
    /// A relying party for `config`; call [`Oidc::start_discovery`] to make it usable.
    pub fn new(config: OidcConfig) -> Self {
        Oidc {
            config,
            http: ProviderHttp::new(),
            provider: ArcSwapOption::empty(),
            last_jwks_refetch: Mutex::new(None),
            failures: Mutex::new((0, None)),
        }
    }

    /// Where discovery stands.
    pub fn status(&self) -> ProviderStatus {
        let (failed_attempts, last_error) = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        ProviderStatus {
            issuer: self.config.issuer.clone(),
            discovered: self.provider().is_some(),
            failed_attempts,
            last_error,
        }
    }

    fn record_failure(&self, err: &DiscoveryError) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.0 += 1;
        failures.1 = Some(err.to_string());
    }

    /// The settings.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The discovered provider, once discovery has succeeded.
    pub fn provider(&self) -> Option<Arc<Provider>> {
        self.provider.load_full()
    }

    /// Runs discovery once and, when it succeeds, makes the relying party usable. A reload calls
    /// this before swapping in a changed `[oidc]`, so a provider that cannot be reached never
    /// replaces one that works.
    pub async fn discover_now(&self) -> Result<(), DiscoveryError> {
        let provider = self
            .discover()
            .await
            .inspect_err(|err| self.record_failure(err))?;
        self.provider.store(Some(Arc::new(provider)));
        Ok(())
    }

    /// Runs discovery in the background until it succeeds, backing off up to 30 s between tries.
    pub fn start_discovery(self: &Arc<Self>) {
        let oidc = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            loop {
                match oidc.discover().await {
                    Ok(provider) => {
                        oidc.provider.store(Some(Arc::new(provider)));
                        tracing::info!(issuer = %oidc.config.issuer, "OIDC discovery succeeded");
                        return;
                    }
                    Err(err) => {
                        oidc.record_failure(&err);
                        match &err {
                            DiscoveryError::Misconfigured(_) => {
                                tracing::error!(issuer = %oidc.config.issuer, error = %err, retry_in = ?backoff, "OIDC discovery failed; logins cannot start until the config or the provider is fixed")
                            }
                            DiscoveryError::Unavailable(_) => {
                                tracing::warn!(issuer = %oidc.config.issuer, error = %err, retry_in = ?backoff, "OIDC discovery failed")
                            }
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_DISCOVERY_BACKOFF);
                    }
                }
            }
        });
    }

    /// Fetches and checks the discovery document and the JWKS.
    async fn discover(&self) -> Result<Provider, DiscoveryError> {
        let url = self.config.discovery_url.as_str();
        let body = self
            .http
            .get(url)
            .await
            .map_err(|err| DiscoveryError::fetching("the discovery document", err))?;
        let metadata: ProviderMetadataWithLogout =
            serde_json::from_slice(&body).map_err(|err| {
                DiscoveryError::Misconfigured(format!(
                    "the answer at {url} is not a discovery document: {err}"
                ))
            })?;
        let named = metadata.issuer().as_str();
        if named != self.config.issuer {
            // The hint quotes the issuer as written only when it is plain text (a document
            // could carry a newline into the log, `check` and `/readyz`).
            let hint = if named.chars().any(char::is_control) {
                String::new()
            } else {
                format!(
                    " Set `discovery = \"{named}/.well-known/openid-configuration\"`, or correct the issuer the provider is configured with (e.g. its public hostname)"
                )
            };
            return Err(DiscoveryError::Misconfigured(format!(
                "the discovery document at {url} names the issuer {named:?}, but `[oidc] discovery` implies {:?}: ID tokens would name {named:?} and be refused.{hint}",
                self.config.issuer
            )));
        }
        let raw: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let revocation_endpoint = raw["revocation_endpoint"]
            .as_str()
            .and_then(|u| Url::parse(u).ok());
        let jwks = self
            .fetch_jwks(metadata.jwks_uri().url())
            .await
            .map_err(|err| match err {
                JwksError::Fetch(err) => DiscoveryError::fetching("the JWKS", err),
                JwksError::Parse(problem) => DiscoveryError::Misconfigured(problem),
            })?;
        self.provider_from(metadata.set_jwks(jwks), revocation_endpoint)
            .map_err(DiscoveryError::Misconfigured)
    }

    /// Fetches the provider's keys (through the size-capped client).
    async fn fetch_jwks(&self, url: &Url) -> Result<CoreJsonWebKeySet, JwksError> {
        let body = self
            .http
            .get(url.as_str())
            .await
            .map_err(JwksError::Fetch)?;
        serde_json::from_slice(&body)
            .map_err(|err| JwksError::Parse(format!("the JWKS at {url} does not parse: {err}")))
    }

    fn provider_from(
        &self,
        metadata: ProviderMetadataWithLogout,
        revocation_endpoint: Option<Url>,
    ) -> Result<Provider, String> {
        let allowed_algs =
            verify::asymmetric_algs(metadata.id_token_signing_alg_values_supported());
        if allowed_algs.is_empty() {
            return Err("the provider signs ID tokens only with HMAC or `none`; an asymmetric algorithm is required".into());
        }
        let end_session_endpoint = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|url| url.url().clone());
        let redirect = RedirectUrl::new(self.config.redirect_uri.to_string())
            .map_err(|err| err.to_string())?;
        let mut client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            self.config
                .client_secret
                .as_ref()
                .map(|secret| ClientSecret::new(secret.expose().to_owned())),
        )
        .set_redirect_uri(redirect);
        if self.config.client_auth == ClientAuth::Post {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        Ok(Provider {
            metadata,
            client,
            allowed_algs,
            end_session_endpoint,
            revocation_endpoint,
        })
    }

    /// Refetches the JWKS after an unknown key id, unless one was refetched recently.
    /// Returns the provider to retry with, or `None` when rate-limited or failed.
    async fn refetch_jwks(&self, current: &Provider) -> Option<Arc<Provider>> {
        {
            let mut last = self
                .last_jwks_refetch
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < JWKS_REFETCH_INTERVAL) {
                tracing::warn!("unknown ID-token key id; JWKS refetch skipped (rate-limited)");
                return None;
            }
            *last = Some(Instant::now());
        }
        let jwks = match self.fetch_jwks(current.metadata.jwks_uri().url()).await {
            Ok(jwks) => jwks,
            Err(err) => {
                tracing::warn!(error = %err, "JWKS refetch failed");
                return None;
            }
        };
        let provider = self
            .provider_from(
                current.metadata.clone().set_jwks(jwks),
                current.revocation_endpoint.clone(),
            )
            .ok()?;
        let provider = Arc::new(provider);
        self.provider.store(Some(provider.clone()));
        tracing::info!("JWKS refetched after an unknown key id");
        Some(provider)
    }

    /// Builds the authorization URL for a new login with this `state`.
    pub fn begin_login(&self, state: &str) -> Result<LoginStart, LoginError> {
        let provider = self.provider().ok_or(LoginError::NotReady)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let mut request = provider
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                Nonce::new_random,
            )
            .add_scopes(
                self.config
                    .scopes
                    .iter()
                    .filter(|s| *s != "openid")
                    .cloned()
                    .map(Scope::new),
            )
            .set_pkce_challenge(challenge);
        for (name, value) in &self.config.authorization_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (url, _, nonce) = request.url();
        Ok(LoginStart {
            url,
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges a code and checks the ID token against the login's nonce.
    pub async fn complete_login(
        &self,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<Tokens, LoginError> {
        let provider = self.provider().ok_or(LoginError::NotReady)?;
        let request = provider
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|err| LoginError::TokenExchange(err.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()));
        let response = request
            .request_async(&self.http)
            .await
            .map_err(|err| match err {
                RequestTokenError::ServerResponse(refusal) => {
                    LoginError::CodeRefused(refusal.error().to_string())
                }
                other => LoginError::TokenExchange(describe_token_error(&other)),
            })?;
        let id_token = response.id_token().ok_or(LoginError::NoIdToken)?.clone();
        let nonce = Nonce::new(nonce.to_owned());
        let claims = self.verify(&provider, &id_token, Some(&nonce)).await?;
        Ok(Tokens {
            claims,
            id_token: id_token.to_string(),
            access_token: response.access_token().secret().clone(),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            expires_in: response.expires_in(),
        })
    }

    /// Refreshes tokens. A new ID token (optional in a refresh response) must name the same issuer
    /// and subject as `previous_claims`; without one the previous claims and ID token are kept.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        previous_claims: &Map<String, Value>,
        previous_id_token: &str,
    ) -> Result<Tokens, RefreshError> {
        let provider = self
            .provider()
            .ok_or_else(|| RefreshError::Unreachable("discovery pending".into()))?;
        let token = RefreshToken::new(refresh_token.to_owned());
        let request = provider
            .client
            .exchange_refresh_token(&token)
            .map_err(|err| RefreshError::Failed(err.to_string()))?;
        let response = match request.request_async(&self.http).await {
            Ok(response) => response,
            Err(RequestTokenError::ServerResponse(err))
                if *err.error() == CoreErrorResponseType::InvalidGrant =>
            {
                return Err(RefreshError::Refused);
            }
            Err(RequestTokenError::Request(err)) => {
                return Err(RefreshError::Unreachable(err.to_string()));
            }
            Err(err) => return Err(RefreshError::Failed(describe_token_error(&err))),
        };
        let (claims, id_token) = match response.id_token() {
            Some(id_token) => {
                let claims =
                    self.verify(&provider, id_token, None)
                        .await
                        .map_err(|err| match err {
                            LoginError::IdToken(rejection) => RefreshError::IdToken(rejection),
                            other => RefreshError::Failed(other.to_string()),
                        })?;
                for claim in ["iss", "sub"] {
                    if claims.get(claim) != previous_claims.get(claim) {
                        return Err(RefreshError::IdToken(IdTokenRejection::SubjectChanged));
                    }
                }
                (claims, id_token.to_string())
            }
            None => (previous_claims.clone(), previous_id_token.to_owned()),
        };
        Ok(Tokens {
            claims,
            id_token,
            access_token: response.access_token().secret().clone(),
            refresh_token: Some(
                response
                    .refresh_token()
                    .map(|t| t.secret().clone())
                    .unwrap_or_else(|| refresh_token.to_owned()),
            ),
            expires_in: response.expires_in(),
        })
    }

    /// Checks an ID token; on an unknown key id, refetches the JWKS once (rate-limited) and retries.
    async fn verify(
        &self,
        provider: &Arc<Provider>,
        id_token: &openidconnect::core::CoreIdToken,
        nonce: Option<&Nonce>,
    ) -> Result<Map<String, Value>, LoginError> {
        let check = |provider: &Provider| {
            verify::id_token(
                provider.client.id_token_verifier(),
                &provider.allowed_algs,
                self.config.clock_skew,
                id_token,
                nonce,
            )
        };
        match check(provider) {
            Err(IdTokenRejection::UnknownKey) => {
                let refreshed = self
                    .refetch_jwks(provider)
                    .await
                    .ok_or(IdTokenRejection::UnknownKey)?;
                Ok(check(&refreshed)?)
            }
            other => Ok(other?),
        }
    }

    /// Where to send the browser after the local session is gone: the provider's end-session
    /// endpoint when it has one, else `post_logout_redirect_uri`.
    pub fn logout_redirect(&self, id_token: Option<&str>) -> Option<Url> {
        let post_logout = self.config.post_logout_redirect_uri.clone();
        let Some(mut url) = self.provider().and_then(|p| p.end_session_endpoint.clone()) else {
            return post_logout;
        };
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("client_id", &self.config.client_id);
            if let Some(post_logout) = &post_logout {
                query.append_pair("post_logout_redirect_uri", post_logout.as_str());
            }
            if self.config.logout_id_token_hint
                && let Some(id_token) = id_token
            {
                query.append_pair("id_token_hint", id_token);
            }
        }
        Some(url)
    }

    /// Revokes a token at the provider's revocation endpoint (RFC 7009), if it has one. Failures
    /// are logged, never fatal: the local session is already gone.
    pub async fn revoke(&self, token: &str, hint: &str) {
        let Some(endpoint) = self.provider().and_then(|p| p.revocation_endpoint.clone()) else {
            return;
        };
        let mut form = vec![("token", token), ("token_type_hint", hint)];
        let mut request = self.http.client().post(endpoint.as_str());
        let secret = self
            .config
            .client_secret
            .as_ref()
            .map(|s| s.expose().to_owned());
        match (self.config.client_auth, &secret) {
            (ClientAuth::Basic, Some(secret)) => {
                request = request.basic_auth(&self.config.client_id, Some(secret))
            }
            (_, secret) => {
                form.push(("client_id", &self.config.client_id));
                if let Some(secret) = secret {
                    form.push(("client_secret", secret));
                }
            }
        }
        match request.form(&form).send().await {
            Ok(response) if response.status().is_success() => {
                tracing::debug!("token revoked at logout")
            }
            Ok(response) => tracing::warn!(status = %response.status(), "token revocation refused"),
            Err(err) => tracing::warn!(error = %err, "token revocation failed"),
        }
    }
}

/// A description of a token-endpoint failure that carries no token material.
fn describe_token_error<
    RE: std::error::Error + 'static,
    T: openidconnect::ErrorResponse + 'static,
>(
    err: &RequestTokenError<RE, T>,
) -> String {
    match err {
        RequestTokenError::ServerResponse(response) => {
            format!("the provider answered an error: {response}")
        }
        RequestTokenError::Request(err) => format!("request failed: {err}"),
        RequestTokenError::Parse(err, _) => format!("the response does not parse: {err}"),
        RequestTokenError::Other(text) => text.clone(),
    }
}
