//! [`ProxyError`]: every way a request can fail, and the one place each maps to an HTTP answer.
//!
//! The client sees a status and a short fixed text; the detail (upstream address, OS error) goes to
//! the log only, so nothing internal — and never a token — leaks into a response.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::canonical::{HostError, PathError};
use crate::oidc::AuthError;
use crate::policy::PolicyError;
use crate::proxy::upstream::UpstreamError;

/// Errors as they travel through boxed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response Portcullis sends: streamed from an upstream or generated here.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

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

/// A plain-text answer Portcullis makes itself, never cached: `body` as it is.
pub fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A plain-text answer reading `"403 Forbidden: <message>"`.
pub fn status_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let reason = status.canonical_reason().unwrap_or("");
    text_response(status, format!("{} {reason}: {message}\n", status.as_u16()))
}

/// How Portcullis words its own answers (errors, denials) for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// A small HTML page, for browsers (`Accept` names `text/html`).
    Html,
    /// `{"status": 403, "error": "Forbidden", "message": "…"}`, for every other client (API
    /// clients, curl, scripts) unless it asks for plain text.
    Json,
    /// `403 Forbidden: …`, for clients whose `Accept` names `text/plain` (and not HTML).
    Text,
}

impl ResponseFormat {
    /// The format a request's `Accept` header asks for.
    pub fn for_request(headers: &http::HeaderMap) -> Self {
        // Runs for every request: look at the header values as they are, no joined copy.
        let accepts = |kind: &str| {
            headers
                .get_all(header::ACCEPT)
                .iter()
                .any(|value| value.to_str().is_ok_and(|text| text.contains(kind)))
        };
        if accepts("text/html") {
            ResponseFormat::Html
        } else if accepts("text/plain") && !accepts("application/json") {
            ResponseFormat::Text
        } else {
            ResponseFormat::Json
        }
    }
}

/// An answer saying `status` and `message` in `format`. `message` may come from a policy: it is
/// escaped for HTML and JSON.
pub fn negotiated_response(
    status: StatusCode,
    message: &str,
    format: ResponseFormat,
) -> Response<ProxyBody> {
    let reason = status.canonical_reason().unwrap_or("");
    let code = status.as_u16();
    let (content_type, body) = match format {
        ResponseFormat::Text => return status_response(status, message),
        ResponseFormat::Json => (
            "application/json",
            serde_json::json!({ "status": code, "error": reason, "message": message }).to_string(),
        ),
        ResponseFormat::Html => {
            let message = html_escape(message);
            (
                "text/html; charset=utf-8",
                format!(
                    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code} {reason}</title>\n\
                     <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
                     h1{{font-size:1.4rem}}</style></head>\n\
                     <body><h1>{code} {reason}</h1>\n<p>{message}</p>\n<p><a href=\"/\">Home</a></p></body></html>\n"
                ),
            )
        }
    };
    let mut response = text_response(status, body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `text` with `&`, `<`, `>`, `"` and `'` escaped.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A body with fixed content.
pub fn full_body(content: impl Into<Bytes>) -> ProxyBody {
    Full::new(content.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body with nothing in it.
pub fn empty_body() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> ResponseFormat {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        ResponseFormat::for_request(&headers)
    }

    async fn body(response: Response<ProxyBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn browsers_get_html_those_asking_for_text_text_and_everyone_else_json() {
        assert_eq!(
            accept("text/html,application/xhtml+xml,*/*;q=0.8"),
            ResponseFormat::Html
        );
        assert_eq!(accept("application/json"), ResponseFormat::Json);
        assert_eq!(accept("*/*"), ResponseFormat::Json);
        assert_eq!(accept("text/plain"), ResponseFormat::Text);
        assert_eq!(
            ResponseFormat::for_request(&http::HeaderMap::new()),
            ResponseFormat::Json
        );
    }

    #[tokio::test]
    async fn a_policy_reason_is_escaped_in_html_and_json() {
        let reason = "<script>alert('x')</script> & \"more\"";
        let html = body(negotiated_response(
            StatusCode::FORBIDDEN,
            reason,
            ResponseFormat::Html,
        ))
        .await;
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;")
        );
        let json: serde_json::Value = serde_json::from_str(
            &body(negotiated_response(
                StatusCode::UNAUTHORIZED,
                reason,
                ResponseFormat::Json,
            ))
            .await,
        )
        .unwrap();
        assert_eq!(json["status"], 401);
        assert_eq!(json["error"], "Unauthorized");
        assert_eq!(json["message"], reason);
    }
}
