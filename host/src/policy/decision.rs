//! What a policy answers: a [`Decision`] (a deny is a value), or a [`PolicyError`] when it failed.

use std::fmt;

use http::{HeaderName, HeaderValue, StatusCode};

/// What a policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through, setting these headers on the upstream request.
    Allow {
        /// Validated header edits.
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// Refuse with this status (4xx or 5xx) and an optional reason shown to the client.
    Deny {
        /// The status.
        status: StatusCode,
        /// The reason, if given.
        reason: Option<String>,
    },
    /// Send the user to log in (again).
    Login,
}

impl Decision {
    /// The decision as `portcullis policy test` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Decision::Allow { headers } => {
                let headers: serde_json::Map<String, serde_json::Value> = headers
                    .iter()
                    .map(|(name, value)| {
                        (
                            name.to_string(),
                            String::from_utf8_lossy(value.as_bytes())
                                .into_owned()
                                .into(),
                        )
                    })
                    .collect();
                serde_json::json!({ "decision": "allow", "headers": headers })
            }
            Decision::Deny { status, reason } => {
                let mut json = serde_json::json!({ "decision": "deny", "status": status.as_u16() });
                if let Some(reason) = reason {
                    json["reason"] = reason.clone().into();
                }
                json
            }
            Decision::Login => serde_json::json!({ "decision": "login" }),
        }
    }

    /// `allow`, `deny` or `login`.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Deny { .. } => "deny",
            Decision::Login => "login",
        }
    }
}

/// A policy failed: it did not compile, failed while running, exceeded a limit, or returned
/// something that is not a valid decision. Carries where (file and line) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The policy file as written in the config.
    pub file: String,
    /// `line:column` in the file, when known.
    pub position: Option<(usize, usize)>,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for PolicyError {}
