//! A hostile identity provider on loopback: discovery, JWKS, an authorization endpoint that
//! approves at once, and a token endpoint whose ID tokens the test scripts — badly signed, for the
//! wrong audience, expired, with another nonce, and so on.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::signature::RsaKeyPair;
use serde_json::{Value, json};

/// One of the two fixture RSA keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    A,
    B,
}

impl Key {
    fn kid(self) -> &'static str {
        match self {
            Key::A => "hostile-a",
            Key::B => "hostile-b",
        }
    }

    fn jwk(self) -> Value {
        let text = match self {
            Key::A => include_str!("../../fixtures/hostile-rsa-a.jwk.json"),
            Key::B => include_str!("../../fixtures/hostile-rsa-b.jwk.json"),
        };
        serde_json::from_str(text).unwrap()
    }

    fn pair(self) -> RsaKeyPair {
        let der: &[u8] = match self {
            Key::A => include_bytes!("../../fixtures/hostile-rsa-a.der"),
            Key::B => include_bytes!("../../fixtures/hostile-rsa-b.der"),
        };
        RsaKeyPair::from_der(der).unwrap()
    }

    fn public_pem(self) -> &'static str {
        match self {
            Key::A => include_str!("../../fixtures/hostile-rsa-a.pub.pem"),
            Key::B => include_str!("../../fixtures/hostile-rsa-b.pub.pem"),
        }
    }
}

/// How an ID token is signed.
#[derive(Clone, Debug)]
pub enum Signing {
    /// RS256 with this key, its kid in the header.
    Rs256(Key),
    /// RS256 with this key, but the signature bytes flipped.
    Rs256Tampered(Key),
    /// `alg: none`, no signature.
    None,
    /// HS256 keyed with the PEM of this key's public key (the classic key-confusion attack).
    Hs256WithPublicKey(Key),
}

/// What the nonce claim holds.
#[derive(Clone, Debug)]
pub enum NonceChoice {
    /// The nonce of the login.
    Echo,
    /// Another value.
    Wrong,
    /// No nonce claim.
    Missing,
}

/// An ID token to issue, relative to now.
#[derive(Clone, Debug)]
pub struct Recipe {
    pub signing: Signing,
    pub iss: Option<String>,
    pub aud: Option<Value>,
    pub sub: String,
    pub exp_in: i64,
    pub iat_in: i64,
    pub nonce: NonceChoice,
    pub extra: Value,
}

impl Recipe {
    /// A correct ID token for `alice`, signed with key A.
    pub fn good() -> Self {
        Recipe {
            signing: Signing::Rs256(Key::A),
            iss: None,
            aud: None,
            sub: "alice".into(),
            exp_in: 300,
            iat_in: 0,
            nonce: NonceChoice::Echo,
            extra: json!({ "preferred_username": "alice", "groups": ["admins", "staff"] }),
        }
    }
}

/// What the provider does; the test changes it between steps.
#[derive(Clone, Debug)]
pub struct Script {
    /// Keys in the JWKS.
    pub jwks: Vec<Key>,
    /// The ID token issued for a code.
    pub login: Recipe,
    /// The ID token issued on refresh (`None`: the refresh answer has no ID token).
    pub refresh: Option<Recipe>,
    /// Answer refresh with `invalid_grant`.
    pub refresh_invalid_grant: bool,
    /// Answer refresh with 503 (the provider is down for a while).
    pub refresh_unavailable: bool,
    /// Token answers carry no refresh token.
    pub no_refresh_token: bool,
    /// `expires_in` of access tokens.
    pub access_expires_in: u64,
    /// Bytes of filler in the discovery document (an oversized answer).
    pub discovery_padding: usize,
    /// The issuer the discovery document names, when not this provider's own (a provider whose
    /// public name is configured differently).
    pub discovery_issuer: Option<String>,
    /// Bytes of filler in token answers.
    pub token_padding: usize,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            jwks: vec![Key::A],
            login: Recipe::good(),
            refresh: None,
            refresh_invalid_grant: false,
            refresh_unavailable: false,
            no_refresh_token: false,
            access_expires_in: 300,
            discovery_padding: 0,
            discovery_issuer: None,
            token_padding: 0,
        }
    }
}

/// The one client this provider knows, as the tests configure Portcullis. The secret holds `:`,
/// `%` and `+`, which HTTP Basic client authentication must form-encode (RFC 6749 §2.3.1): a
/// client that sends them raw splits the secret at `:` or decodes `+` as a space, and fails here.
pub const CLIENT_ID: &str = "portcullis";
pub const CLIENT_SECRET: &str = "hostile:test%secret+";

/// What an authorization request bound its code to, checked when the code is redeemed, as a real
/// provider checks it: a PKCE or client-authentication regression must fail the login.
#[derive(Clone)]
struct IssuedCode {
    nonce: String,
    redirect_uri: String,
    /// `S256` challenge (`None`: the request sent none, or another method).
    code_challenge: Option<String>,
}

#[derive(Default)]
struct State {
    script: Script,
    /// code → what its login request bound it to.
    codes: HashMap<String, IssuedCode>,
    used_codes: HashSet<String>,
    issued_id_tokens: Vec<String>,
    issued_refresh_tokens: Vec<String>,
    revoked: Vec<String>,
    client_auth_methods: Vec<&'static str>,
}

/// The running hostile provider.
#[derive(Clone)]
pub struct HostileIdp {
    pub issuer: String,
    state: Arc<Mutex<State>>,
    token_calls: Arc<AtomicUsize>,
    refresh_calls: Arc<AtomicUsize>,
    discovery_calls: Arc<AtomicUsize>,
    jwks_calls: Arc<AtomicUsize>,
    /// Whether refresh grants are answered (`false`: held until released).
    refreshes_open: Arc<tokio::sync::watch::Sender<bool>>,
}

impl HostileIdp {
    /// Starts on a loopback port.
    pub async fn start(script: Script) -> Self {
        Self::start_at("127.0.0.1:0".parse().unwrap(), script).await
    }

    /// Starts on a given loopback address (a provider that comes up late).
    pub async fn start_at(addr: SocketAddr, script: Script) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let idp = HostileIdp {
            issuer: format!("http://{addr}"),
            state: Arc::new(Mutex::new(State {
                script,
                ..State::default()
            })),
            token_calls: Arc::default(),
            refresh_calls: Arc::default(),
            discovery_calls: Arc::default(),
            jwks_calls: Arc::default(),
            refreshes_open: Arc::new(tokio::sync::watch::channel(true).0),
        };
        let server = idp.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let idp = server.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let idp = idp.clone();
                        async move { Ok::<_, Infallible>(idp.handle(request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        idp
    }

    /// Changes what the provider does from now on.
    pub fn script(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.state.lock().unwrap().script);
    }

    /// Holds every refresh grant from now on (counted in [`Self::refresh_calls`] on arrival)
    /// until [`Self::release_refreshes`].
    pub fn hold_refreshes(&self) {
        self.refreshes_open.send_replace(false);
    }

    /// Answers the held refresh grants, and every later one at once.
    pub fn release_refreshes(&self) {
        self.refreshes_open.send_replace(true);
    }

    /// Calls to the token endpoint so far.
    pub fn token_calls(&self) -> usize {
        self.token_calls.load(Ordering::SeqCst)
    }

    /// Discovery-document fetches so far.
    pub fn discovery_calls(&self) -> usize {
        self.discovery_calls.load(Ordering::SeqCst)
    }

    /// JWKS fetches so far.
    pub fn jwks_calls(&self) -> usize {
        self.jwks_calls.load(Ordering::SeqCst)
    }

    /// Refresh-token grants so far.
    pub fn refresh_calls(&self) -> usize {
        self.refresh_calls.load(Ordering::SeqCst)
    }

    /// Every ID token issued (to check none of them reached a log).
    pub fn issued_id_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().issued_id_tokens.clone()
    }

    /// Refresh tokens issued, in order.
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().issued_refresh_tokens.clone()
    }

    /// How the client authenticated at each token request.
    pub fn client_auth_methods(&self) -> Vec<&'static str> {
        self.state.lock().unwrap().client_auth_methods.clone()
    }

    /// Tokens revoked at the revocation endpoint, in order.
    pub fn revoked(&self) -> Vec<String> {
        self.state.lock().unwrap().revoked.clone()
    }

    /// The discovery URL for `[oidc] discovery`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        match path.as_str() {
            "/.well-known/openid-configuration" => {
                self.discovery_calls.fetch_add(1, Ordering::SeqCst);
                let mut discovery = self.discovery();
                let script = &self.state.lock().unwrap().script;
                if script.discovery_padding > 0 {
                    discovery["x_filler"] = Value::String("x".repeat(script.discovery_padding));
                }
                if let Some(issuer) = &script.discovery_issuer {
                    discovery["issuer"] = Value::String(issuer.clone());
                }
                json_response(StatusCode::OK, discovery)
            }
            "/jwks" => {
                self.jwks_calls.fetch_add(1, Ordering::SeqCst);
                let keys: Vec<Value> = self
                    .state
                    .lock()
                    .unwrap()
                    .script
                    .jwks
                    .iter()
                    .map(|k| k.jwk())
                    .collect();
                json_response(StatusCode::OK, json!({ "keys": keys }))
            }
            "/authorize" => self.authorize(&query),
            "/token" => {
                let authorization = request.headers().get(header::AUTHORIZATION).cloned();
                let basic = authorization.is_some();
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let client_authenticated = client_authenticated(authorization.as_ref(), &body);
                let posted = url::form_urlencoded::parse(&body).any(|(k, _)| k == "client_secret");
                let method = match (basic, posted) {
                    (true, false) => "client_secret_basic",
                    (false, true) => "client_secret_post",
                    _ => "unclear",
                };
                self.state.lock().unwrap().client_auth_methods.push(method);
                let refresh = url::form_urlencoded::parse(&body)
                    .any(|(k, v)| k == "grant_type" && v == "refresh_token");
                if refresh {
                    self.refresh_calls.fetch_add(1, Ordering::SeqCst);
                    let mut open = self.refreshes_open.subscribe();
                    let _ = open.wait_for(|open| *open).await;
                }
                if !client_authenticated {
                    self.token_calls.fetch_add(1, Ordering::SeqCst);
                    return json_response(
                        StatusCode::UNAUTHORIZED,
                        json!({ "error": "invalid_client" }),
                    );
                }
                self.token(&body)
            }
            "/revoke" => {
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let form: HashMap<String, String> =
                    url::form_urlencoded::parse(&body).into_owned().collect();
                if let Some(token) = form.get("token") {
                    self.state.lock().unwrap().revoked.push(token.clone());
                }
                json_response(StatusCode::OK, json!({}))
            }
            _ => json_response(StatusCode::NOT_FOUND, json!({ "error": "not_found" })),
        }
    }

    fn discovery(&self) -> Value {
        let issuer = &self.issuer;
        json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "end_session_endpoint": format!("{issuer}/logout"),
            "revocation_endpoint": format!("{issuer}/revoke"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            // Advertising HMAC and none must not make the proxy accept them.
            "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
        })
    }

    /// Approves at once: redirects back with a fresh code bound to the login's nonce.
    fn authorize(&self, query: &str) -> Response<Full<Bytes>> {
        let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let code = format!("code-{}", rand_suffix());
        let code_challenge = params
            .get("code_challenge")
            .filter(|_| params.get("code_challenge_method").map(String::as_str) == Some("S256"))
            .cloned();
        self.state.lock().unwrap().codes.insert(
            code.clone(),
            IssuedCode {
                nonce: params.get("nonce").cloned().unwrap_or_default(),
                redirect_uri: params.get("redirect_uri").cloned().unwrap_or_default(),
                code_challenge,
            },
        );
        let location = format!(
            "{}?code={code}&state={}",
            params["redirect_uri"],
            url::form_urlencoded::byte_serialize(params["state"].as_bytes()).collect::<String>()
        );
        Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, location)
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    fn token(&self, body: &[u8]) -> Response<Full<Bytes>> {
        self.token_calls.fetch_add(1, Ordering::SeqCst);
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        let mut state = self.state.lock().unwrap();
        let script = state.script.clone();
        let (recipe, nonce) = match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let code = form.get("code").cloned().unwrap_or_default();
                let Some(issued) = state.codes.get(&code).cloned() else {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        json!({ "error": "invalid_grant" }),
                    );
                };
                // RFC 6749 §4.1.3: the same redirect_uri as the authorization request; RFC 7636
                // §4.6: the verifier whose S256 is the challenge.
                let verifier_matches = match (&issued.code_challenge, form.get("code_verifier")) {
                    (Some(challenge), Some(verifier)) => {
                        URL_SAFE_NO_PAD.encode(ring::digest::digest(
                            &ring::digest::SHA256,
                            verifier.as_bytes(),
                        )) == *challenge
                    }
                    _ => false,
                };
                if form.get("redirect_uri") != Some(&issued.redirect_uri) || !verifier_matches {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        json!({ "error": "invalid_grant" }),
                    );
                }
                let nonce = issued.nonce;
                if !state.used_codes.insert(code) {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        json!({ "error": "invalid_grant" }),
                    );
                }
                (Some(script.login.clone()), nonce)
            }
            Some("refresh_token") => {
                if script.refresh_unavailable {
                    return json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({ "error": "temporarily_unavailable" }),
                    );
                }
                if script.refresh_invalid_grant {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        json!({ "error": "invalid_grant" }),
                    );
                }
                (script.refresh.clone(), String::new())
            }
            _ => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "unsupported_grant_type" }),
                );
            }
        };
        let mut answer = json!({
            "access_token": format!("at-{}", rand_suffix()),
            "token_type": "Bearer",
            "expires_in": script.access_expires_in,
            "refresh_token": format!("rt-{}", rand_suffix()),
        });
        if script.no_refresh_token {
            answer.as_object_mut().unwrap().remove("refresh_token");
        }
        if let Some(token) = answer["refresh_token"].as_str() {
            state.issued_refresh_tokens.push(token.to_owned());
        }
        if script.token_padding > 0 {
            answer["x_filler"] = Value::String("x".repeat(script.token_padding));
        }
        if let Some(recipe) = recipe {
            let id_token = self.id_token(&recipe, &nonce);
            state.issued_id_tokens.push(id_token.clone());
            answer["id_token"] = Value::String(id_token);
        }
        json_response(StatusCode::OK, answer)
    }

    fn id_token(&self, recipe: &Recipe, login_nonce: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut claims = json!({
            "iss": recipe.iss.clone().unwrap_or_else(|| self.issuer.clone()),
            "aud": recipe.aud.clone().unwrap_or_else(|| json!("portcullis")),
            "sub": recipe.sub,
            "exp": now + recipe.exp_in,
            "iat": now + recipe.iat_in,
        });
        match recipe.nonce {
            NonceChoice::Echo => claims["nonce"] = json!(login_nonce),
            NonceChoice::Wrong => claims["nonce"] = json!("not-the-nonce"),
            NonceChoice::Missing => {}
        }
        if let Value::Object(extra) = &recipe.extra {
            for (key, value) in extra {
                claims[key] = value.clone();
            }
        }
        sign(&recipe.signing, &claims)
    }
}

fn sign(signing: &Signing, claims: &Value) -> String {
    let (alg, kid) = match signing {
        Signing::Rs256(key) | Signing::Rs256Tampered(key) => ("RS256", Some(key.kid())),
        Signing::None => ("none", None),
        Signing::Hs256WithPublicKey(key) => ("HS256", Some(key.kid())),
    };
    let mut header = json!({ "alg": alg, "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = match signing {
        Signing::None => Vec::new(),
        Signing::Rs256(key) | Signing::Rs256Tampered(key) => {
            let pair = key.pair();
            let mut signature = vec![0u8; pair.public().modulus_len()];
            pair.sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .unwrap();
            if matches!(signing, Signing::Rs256Tampered(_)) {
                signature[10] ^= 0xff;
            }
            signature
        }
        Signing::Hs256WithPublicKey(key) => {
            let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.public_pem().as_bytes());
            ring::hmac::sign(&hmac, input.as_bytes()).as_ref().to_vec()
        }
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn rand_suffix() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Client authentication as RFC 6749 §2.3.1 has it: HTTP Basic with the form-encoded id and
/// secret, or both in the body — exactly one of the two.
fn client_authenticated(authorization: Option<&http::HeaderValue>, body: &[u8]) -> bool {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let basic = authorization
        .and_then(|value| {
            value
                .to_str()
                .ok()?
                .strip_prefix("Basic ")
                .map(str::to_owned)
        })
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok());
    match (basic, form.get("client_secret")) {
        (Some(pair), None) => {
            let Some((id, secret)) = pair.split_once(':') else {
                return false;
            };
            let decode = |part: &str| {
                url::form_urlencoded::parse(format!("x={part}").as_bytes())
                    .next()
                    .map(|(_, value)| value.into_owned())
            };
            decode(id).as_deref() == Some(CLIENT_ID)
                && decode(secret).as_deref() == Some(CLIENT_SECRET)
        }
        (None, Some(secret)) => {
            form.get("client_id").map(String::as_str) == Some(CLIENT_ID) && secret == CLIENT_SECRET
        }
        _ => false,
    }
}

fn json_response(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
