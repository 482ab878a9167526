//! Portcullis's own answers: the response body type, and short pages in the format a client asked
//! for (HTML for browsers, JSON for APIs, plain text). Every layer that answers by itself — the
//! pipeline, login, the development provider, the admin listener — builds its responses here.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

/// Errors as they travel through boxed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response Portcullis sends: streamed from an upstream or generated here.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

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
