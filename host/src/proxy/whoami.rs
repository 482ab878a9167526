//! `/.portcullis/whoami`: the signed-in user's claims and the identity headers their route sends,
//! for finding out why a policy decides as it does (a group claim the provider does not send, a
//! header named otherwise). Off unless `[oidc] whoami` or the route's `whoami` turns it on; served
//! after authentication (no session: the route's usual login or refusal) and before the policy,
//! so that a user the policy refuses can still see why. Shows claims, never a token.

use http::{HeaderValue, StatusCode, header};

use super::ctx::RequestCtx;
use crate::response::{ProxyBody, ResponseFormat, html_escape, text_response};

/// The path it is served at, on every host.
pub const WHOAMI_PATH: &str = "/.portcullis/whoami";

/// The page, when this request asks for it and its route serves it.
pub(super) fn answer(ctx: &RequestCtx) -> Option<http::Response<ProxyBody>> {
    if ctx.path.as_ref()?.decision() != WHOAMI_PATH {
        return None;
    }
    let route = ctx.route()?;
    let global = ctx.auth.as_ref()?.oidc.config().whoami;
    if !route.config.whoami.unwrap_or(global) {
        return None;
    }
    let live = ctx.session.as_ref()?;
    let values = live.session.header_values();
    let identity_headers: serde_json::Map<String, serde_json::Value> = route
        .config
        .identity_headers
        .0
        .iter()
        .filter_map(|(name, claim)| {
            let value = values.get(claim)?.to_str().ok()?;
            Some((name.as_str().to_owned(), value.into()))
        })
        .collect();
    let shown = serde_json::json!({
        "route": route.config.name,
        "claims": live.session.claims,
        "identity_headers": identity_headers,
    });
    let pretty = serde_json::to_string_pretty(&shown).unwrap_or_default();
    let (content_type, body) = match ctx.response_format {
        ResponseFormat::Html => (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Who am I</title></head>\n\
                 <body><h1>Signed in as {}</h1>\n<p>Your ID token's claims, and the identity headers route {} sends its service:</p>\n<pre>{}</pre></body></html>\n",
                html_escape(live.session.subject()),
                html_escape(&route.config.name),
                html_escape(&pretty)
            ),
        ),
        ResponseFormat::Json | ResponseFormat::Text => ("application/json", pretty + "\n"),
    };
    let mut response = text_response(StatusCode::OK, body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Personal data: never kept by a cache on the way.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(response)
}
