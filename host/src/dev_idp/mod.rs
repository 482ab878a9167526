//! A development identity provider — **for trying Portcullis out, never for production.**
//!
//! Started only by `portcullis demo` or an explicit `[dev_idp]` section (loopback addresses only),
//! it is a small OpenID Connect provider with three demo users ([`users::DEMO_USERS`]): discovery,
//! JWKS (an RS256 key generated at start), an authorization endpoint with a login page, a token
//! endpoint (authorization code with PKCE S256 — required — and rotating refresh tokens), userinfo
//! and end-session. It registers exactly one client: the `[oidc]` section of the same config, so
//! Portcullis's ordinary relying party logs in against it like against any provider.
//!
//! What it leaves out on purpose: consent, a login session of its own (every login asks for the
//! password; logout is a redirect), persistence (a restart forgets codes and tokens), and any
//! hardening beyond the protocol checks the relying party relies on.

mod keys;
mod page;
pub mod users;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use crate::config::DevClient;
use keys::TokenSigner;
use users::DemoUser;

/// How long an authorization code may be redeemed.
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// Access and ID token lifetime (short, so the demo shows silent renewal).
const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// Refresh token lifetime.
const REFRESH_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Largest request body read (login form, token request).
const MAX_BODY: usize = 64 * 1024;

/// A running development provider.
pub struct DevIdp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its issuer URL (`http://<addr>`).
    pub issuer: String,
}

impl DevIdp {
    /// Generates the signing key and serves on `listener` until the runtime ends.
    pub fn start(listener: std::net::TcpListener, client: DevClient) -> Result<Self, String> {
        let addr = listener
            .local_addr()
            .map_err(|err| format!("development provider listener: {err}"))?;
        let issuer = format!("http://{addr}");
        let provider = Arc::new(Provider {
            issuer: issuer.clone(),
            client,
            signer: TokenSigner::generate()?,
            codes: Mutex::default(),
            refresh_tokens: Mutex::default(),
            access_tokens: Mutex::default(),
        });
        crate::server::accept::spawn_http1(listener, move |request| {
            let provider = provider.clone();
            async move { provider.handle(request).await }
        })
        .map_err(|err| format!("development provider listener: {err}"))?;
        tracing::warn!(%issuer, "development identity provider started: demo users, not for production");
        Ok(DevIdp { addr, issuer })
    }
}

/// A code waiting to be redeemed.
struct PendingCode {
    user: &'static DemoUser,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    expires: Instant,
}

/// Who a refresh or access token belongs to, until when.
struct Grant {
    user: &'static DemoUser,
    expires: Instant,
}

struct Provider {
    issuer: String,
    client: DevClient,
    signer: TokenSigner,
    codes: Mutex<HashMap<String, PendingCode>>,
    refresh_tokens: Mutex<HashMap<String, Grant>>,
    access_tokens: Mutex<HashMap<String, Grant>>,
}

/// The authorization request's parameters, as received (query or login form).
struct AuthorizeParams {
    redirect_uri: String,
    state: String,
    nonce: Option<String>,
    code_challenge: String,
}

type Answer = Response<Full<Bytes>>;

impl Provider {
    async fn handle(&self, request: Request<Incoming>) -> Answer {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        match (request.method().clone(), path.as_str()) {
            (Method::GET, "/.well-known/openid-configuration") => {
                json_answer(StatusCode::OK, &self.discovery())
            }
            (Method::GET, "/jwks") => json_answer(StatusCode::OK, &self.signer.jwks()),
            (Method::GET, "/authorize") => self.authorize_page(&form(&query)),
            (Method::POST, "/authorize") => match read_form(request).await {
                Ok(fields) => self.authorize_submit(&fields),
                Err(answer) => answer,
            },
            (Method::POST, "/token") => {
                let basic = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                match read_form(request).await {
                    Ok(fields) => self.token(basic.as_deref(), &fields),
                    Err(answer) => answer,
                }
            }
            (Method::GET, "/userinfo") => self.userinfo(request.headers()),
            (Method::GET, "/logout") => self.end_session(&form(&query)),
            _ => html_answer(
                StatusCode::NOT_FOUND,
                page::message(
                    "Not found",
                    "The development identity provider has no such page.",
                ),
            ),
        }
    }

    fn discovery(&self) -> Value {
        let issuer = &self.issuer;
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "jwks_uri": format!("{issuer}/jwks"),
            "end_session_endpoint": format!("{issuer}/logout"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "groups"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "preferred_username", "name", "email", "email_verified", "groups", "locale"],
        })
    }

    /// Checks an authorization request. An unknown client or redirect URI is answered with a page
    /// here, never with a redirect to an address nobody registered.
    fn authorize_params(
        &self,
        fields: &HashMap<String, String>,
    ) -> Result<AuthorizeParams, &'static str> {
        let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
        let refuse = Err;
        if field("client_id") != self.client.id {
            return refuse("Unknown client_id: this provider only knows the client of its config.");
        }
        if field("redirect_uri") != self.client.redirect_uri.as_str() {
            return refuse("The redirect_uri is not the registered one.");
        }
        if field("response_type") != "code" {
            return refuse("Only response_type=code is supported.");
        }
        if !field("scope").split(' ').any(|scope| scope == "openid") {
            return refuse("The scope must include openid.");
        }
        if field("code_challenge_method") != "S256" || field("code_challenge").is_empty() {
            return refuse("PKCE with code_challenge_method=S256 is required.");
        }
        if field("state").is_empty() {
            return refuse("A state parameter is required.");
        }
        Ok(AuthorizeParams {
            redirect_uri: field("redirect_uri"),
            state: field("state"),
            nonce: fields.get("nonce").cloned(),
            code_challenge: field("code_challenge"),
        })
    }

    fn authorize_page(&self, fields: &HashMap<String, String>) -> Answer {
        if let Err(refusal) = self.authorize_params(fields) {
            return refused_login(refusal);
        }
        html_answer(StatusCode::OK, page::login(fields, None))
    }

    fn authorize_submit(&self, fields: &HashMap<String, String>) -> Answer {
        let params = match self.authorize_params(fields) {
            Ok(params) => params,
            Err(refusal) => return refused_login(refusal),
        };
        let username = fields.get("username").map_or("", String::as_str);
        let password = fields.get("password").map_or("", String::as_str);
        let Some(user) = users::authenticate(username, password) else {
            return html_answer(
                StatusCode::UNAUTHORIZED,
                page::login(fields, Some("Wrong user name or password.")),
            );
        };
        let code = random_token();
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.retain(|_, pending| pending.expires > Instant::now());
        codes.insert(
            code.clone(),
            PendingCode {
                user,
                redirect_uri: params.redirect_uri.clone(),
                code_challenge: params.code_challenge,
                nonce: params.nonce,
                expires: Instant::now() + CODE_LIFETIME,
            },
        );
        let mut target = self.client.redirect_uri.clone();
        target
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &params.state)
            .append_pair("iss", &self.issuer);
        redirect(target.as_str())
    }

    fn client_authenticated(&self, basic: Option<&str>, fields: &HashMap<String, String>) -> bool {
        let (id, secret) = match basic.and_then(|value| value.strip_prefix("Basic ")) {
            Some(encoded) => {
                let decoded = STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .unwrap_or_default();
                let (id, secret) = decoded.split_once(':').unwrap_or((&decoded, ""));
                (form_decode(id), Some(form_decode(secret)))
            }
            None => (
                fields.get("client_id").cloned().unwrap_or_default(),
                fields.get("client_secret").cloned(),
            ),
        };
        id == self.client.id
            && match &self.client.secret {
                Some(expected) => secret.as_deref() == Some(expected.as_str()),
                None => true,
            }
    }

    fn token(&self, basic: Option<&str>, fields: &HashMap<String, String>) -> Answer {
        if !self.client_authenticated(basic, fields) {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        }
        match fields.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let code = fields.get("code").map_or("", String::as_str);
                let Some(pending) = self
                    .codes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(code)
                else {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                };
                let verifier = fields.get("code_verifier").map_or("", String::as_str);
                let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
                let valid = pending.expires > Instant::now()
                    && fields.get("redirect_uri") == Some(&pending.redirect_uri)
                    && !verifier.is_empty()
                    && challenge == pending.code_challenge;
                if !valid {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                }
                self.issue_tokens(pending.user, pending.nonce.as_deref())
            }
            Some("refresh_token") => {
                let token = fields.get("refresh_token").map_or("", String::as_str);
                let grant = self
                    .refresh_tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(token);
                match grant {
                    Some(grant) if grant.expires > Instant::now() => {
                        self.issue_tokens(grant.user, None)
                    }
                    _ => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
                }
            }
            _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        }
    }

    fn issue_tokens(&self, user: &'static DemoUser, nonce: Option<&str>) -> Answer {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut claims = user.claims();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("aud".into(), self.client.id.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + TOKEN_LIFETIME.as_secs()).into());
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), nonce.into());
        }
        let id_token = self.signer.sign(&Value::Object(claims));
        let (access_token, refresh_token) = (random_token(), random_token());
        let now = Instant::now();
        let mut access = self.access_tokens.lock().unwrap_or_else(|p| p.into_inner());
        access.retain(|_, grant| grant.expires > now);
        access.insert(
            access_token.clone(),
            Grant {
                user,
                expires: now + TOKEN_LIFETIME,
            },
        );
        let mut refresh = self
            .refresh_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        refresh.retain(|_, grant| grant.expires > now);
        refresh.insert(
            refresh_token.clone(),
            Grant {
                user,
                expires: now + REFRESH_LIFETIME,
            },
        );
        let mut answer = json_answer(
            StatusCode::OK,
            &json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME.as_secs(),
                "refresh_token": refresh_token,
                "id_token": id_token,
                "scope": "openid profile email groups",
            }),
        );
        answer.headers_mut().insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        answer
    }

    fn userinfo(&self, headers: &http::HeaderMap) -> Answer {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        let access = self.access_tokens.lock().unwrap_or_else(|p| p.into_inner());
        match access.get(token) {
            Some(grant) if grant.expires > Instant::now() => {
                json_answer(StatusCode::OK, &Value::Object(grant.user.claims()))
            }
            _ => oauth_error(StatusCode::UNAUTHORIZED, "invalid_token"),
        }
    }

    /// Logout: there is no provider session to end; send the browser back where it was registered
    /// to go (and nowhere else).
    fn end_session(&self, fields: &HashMap<String, String>) -> Answer {
        let registered = self.client.post_logout_redirect_uri.as_ref();
        match (fields.get("post_logout_redirect_uri"), registered) {
            (Some(asked), Some(registered)) if asked == registered.as_str() => {
                let mut target = registered.clone();
                if let Some(state) = fields.get("state") {
                    target.query_pairs_mut().append_pair("state", state);
                }
                redirect(target.as_str())
            }
            (Some(_), _) => html_answer(
                StatusCode::BAD_REQUEST,
                page::message(
                    "Logout request refused",
                    "The post_logout_redirect_uri is not the registered one.",
                ),
            ),
            (None, _) => html_answer(
                StatusCode::OK,
                page::message(
                    "Signed out",
                    "You are signed out of the development provider.",
                ),
            ),
        }
    }
}

fn refused_login(why: &str) -> Answer {
    html_answer(
        StatusCode::BAD_REQUEST,
        page::message("Login request refused", why),
    )
}

/// 32 random bytes, base64url.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn form(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

fn form_decode(text: &str) -> String {
    form(&format!("v={text}")).remove("v").unwrap_or_default()
}

async fn read_form(request: Request<Incoming>) -> Result<HashMap<String, String>, Answer> {
    match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => Ok(url::form_urlencoded::parse(&body.to_bytes())
            .into_owned()
            .collect()),
        Err(_) => Err(html_answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            page::message("Too large", "The request body is too large."),
        )),
    }
}

fn json_answer(status: StatusCode, body: &Value) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body.to_string())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    answer
}

fn oauth_error(status: StatusCode, error: &str) -> Answer {
    json_answer(status, &json!({ "error": error }))
}

fn html_answer(status: StatusCode, html: String) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(html)));
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    answer
}

fn redirect(location: &str) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = StatusCode::FOUND;
    if let Ok(value) = http::HeaderValue::from_str(location) {
        answer.headers_mut().insert(header::LOCATION, value);
    }
    answer
}
