//! The demo backend: a page listing the identity headers Portcullis sent it (JSON for clients that
//! do not ask for HTML). Loopback only, for `portcullis demo`.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use crate::response::html_escape;

/// Serves on `listener` until the runtime ends.
pub fn start(listener: std::net::TcpListener) -> std::io::Result<()> {
    crate::server::accept::spawn_http1(listener, |request| {
        let response = page(&request);
        async move { response }
    })
}

/// The identity headers of a request (`X-Auth-*` and `X-Role`), in order.
fn identity_headers(request: &Request<Incoming>) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-auth-") || name.as_str() == "x-role")
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

fn page(request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let headers = identity_headers(request);
    let path = request.uri().path();
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let (content_type, body) = if wants_html {
        ("text/html; charset=utf-8", html(path, &headers))
    } else {
        let map: serde_json::Map<String, serde_json::Value> = headers
            .into_iter()
            .map(|(name, value)| (name, value.into()))
            .collect();
        (
            "application/json",
            json!({ "path": path, "identity_headers": map }).to_string(),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::OK;
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONTENT_TYPE, content_type.parse().expect("static"));
    response_headers.insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    response
}

fn html(path: &str, headers: &[(String, String)]) -> String {
    let user = headers
        .iter()
        .find(|(name, _)| name == "x-auth-username")
        .map(|(_, value)| html_escape(value));
    let greeting = match &user {
        Some(user) => format!("Hello, <span id=\"user\">{user}</span>"),
        None => "Hello, anonymous visitor".to_owned(),
    };
    let rows: String = headers
        .iter()
        .map(|(name, value)| {
            format!(
                "<tr><th>{}</th><td>{}</td></tr>\n",
                html_escape(name),
                html_escape(value)
            )
        })
        .collect();
    let table = if rows.is_empty() {
        "<p>No identity headers: this route does not require a login.</p>".to_owned()
    } else {
        format!("<table id=\"identity\">\n{rows}</table>")
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Portcullis demo backend</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;color:#222}}\
         th{{text-align:left;padding-right:1.5rem;font-family:monospace}}td{{font-family:monospace}}\
         nav a{{margin-right:1rem}}</style></head>\n<body>\n<h1>{greeting}</h1>\n\
         <p>The demo backend received <code>{}</code> with these identity headers from Portcullis:</p>\n{table}\n\
         <nav><a href=\"/\">Home</a><a href=\"/admin\">/admin</a><a href=\"/api\">/api</a><a href=\"/public\">/public</a><a href=\"/logout\" id=\"logout\">Log out</a></nav>\n\
         </body></html>\n",
        html_escape(path)
    )
}
