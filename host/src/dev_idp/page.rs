//! The provider's HTML: the login page and short messages. Every value is escaped.

use std::collections::HashMap;

use super::users::DEMO_USERS;
use crate::response::html_escape;

/// The authorization request's fields carried through the login form.
const CARRIED: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.3rem}label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=password]{width:100%;padding:.4rem;box-sizing:border-box}\
button{margin-top:1rem;padding:.5rem 1.2rem}.error{color:#a00}.note{color:#555;font-size:.9rem;border-top:1px solid #ddd;margin-top:2rem;padding-top:.5rem}";

/// The login page for an authorization request (`fields`), with an error line after a failed try.
pub fn login(fields: &HashMap<String, String>, error: Option<&str>) -> String {
    let hidden: String = CARRIED
        .iter()
        .filter_map(|name| {
            fields.get(*name).map(|value| {
                format!(
                    "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
                    html_escape(value)
                )
            })
        })
        .collect();
    let error = error
        .map(|text| {
            format!(
                "<p class=\"error\" id=\"error\">{}</p>\n",
                html_escape(text)
            )
        })
        .unwrap_or_default();
    let users: String = DEMO_USERS
        .iter()
        .map(|user| {
            let groups = if user.groups.is_empty() {
                "no groups".to_owned()
            } else {
                user.groups.join(", ")
            };
            format!(
                "<li><code>{}</code> / <code>{}</code> — {}</li>",
                user.username, user.password, groups
            )
        })
        .collect();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in — development provider</title>\
         <style>{STYLE}</style></head>\n<body>\n<h1>Sign in</h1>\n{error}\
         <form method=\"post\" action=\"/authorize\">\n{hidden}\
         <label for=\"username\">User name</label><input type=\"text\" id=\"username\" name=\"username\" autofocus autocomplete=\"username\">\n\
         <label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\">\n\
         <button type=\"submit\" id=\"sign-in\">Sign in</button>\n</form>\n\
         <div class=\"note\">Portcullis development identity provider — demo users only, never for production:<ul>{users}</ul></div>\n\
         </body></html>\n"
    )
}

/// A page with a title and one sentence.
pub fn message(title: &str, text: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>{STYLE}</style></head>\n\
         <body><h1>{title}</h1><p>{}</p></body></html>\n",
        html_escape(text)
    )
}
