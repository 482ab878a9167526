//! [`ProxyError`]: every way a request can fail, and the one place each maps to an HTTP answer.
//!
//! The client sees a status and a short fixed text; the detail (upstream address, OS error) goes to
//! the log only, so nothing internal — and never a token — leaks into a response.

use http::{HeaderValue, Response, StatusCode, header};

use crate::canonical::{HostError, PathError};
use crate::oidc::AuthError;
use crate::policy::PolicyError;
use crate::response::{ProxyBody, ResponseFormat, negotiated_response};
use crate::upstream::UpstreamError;

/// A request that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The path has no canonical form (400).
    #[error(transparent)]
    BadPath(#[from] PathError),
    /// The Host header is missing or malformed (400).
    #[error(transparent)]
    BadHost(#[from] HostError),
    /// No route matches the host and path (404).
    #[error("no route matches this host and path")]
    NoRoute,
    /// The request body is over the route's limit (413).
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit that applied, in bytes.
        limit: u64,
    },
    /// The upstream could not be reached or did not answer in time (502/504).
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Login, logout or authentication refused the request (400/401/403/502/503/500).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The route's policy failed (500: fail closed).
    #[error("policy failed: {0}")]
    Policy(#[from] PolicyError),
}

impl ProxyError {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadPath(_) | ProxyError::BadHost(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Upstream(err) if err.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Auth(err) => err.status(),
            ProxyError::Policy(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The short text the client receives: safe to show, with no internal detail.
    fn public_text(&self) -> &'static str {
        match self {
            ProxyError::BadPath(_) => "the request path is not valid",
            ProxyError::BadHost(_) => "the Host header is missing or not valid",
            ProxyError::NoRoute => "nothing is served at this address",
            ProxyError::BodyTooLarge { .. } => "the request body is too large",
            ProxyError::Upstream(err) if err.is_timeout() => "the service did not answer in time",
            ProxyError::Upstream(_) => "the service is not reachable",
            ProxyError::Auth(err) => err.public_text(),
            ProxyError::Policy(_) => "the request could not be authorized",
        }
    }

    /// The response for this error, in the format the client asked for.
    pub fn into_response(self, format: ResponseFormat) -> Response<ProxyBody> {
        let status = self.status();
        let mut response = negotiated_response(status, self.public_text(), format);
        if matches!(
            self,
            ProxyError::Auth(AuthError::Unauthenticated(StatusCode::UNAUTHORIZED))
        ) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis\""),
            );
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body was not read: the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
