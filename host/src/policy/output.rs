//! Checks on the headers a policy asks to set: a policy can never smuggle a header line, set a
//! header the proxy owns ([`crate::header_ownership`]: framing, hop-by-hop, forwarding, `Cookie`,
//! the request id), or (unless the route allows it) override identity headers.

use http::{HeaderName, HeaderValue};

use super::decision::Decision;
use super::limits::PolicyLimits;
use crate::header_ownership::{self, HeaderClass};

/// What the headers of one route's decisions may be.
#[derive(Debug, Clone)]
pub struct OutputRules {
    /// The bounds.
    pub limits: PolicyLimits,
    /// Identity header names of the route, [`header_ownership::normalise`]d.
    pub identity_headers: Vec<String>,
    /// Whether the policy may set identity headers (`X-Auth-*` and the route's configured ones).
    pub may_set_identity_headers: bool,
}

impl OutputRules {
    /// Validates `(name, value)` pairs returned by a policy; the error text says which and why.
    pub fn check(
        &self,
        headers: Vec<(String, String)>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        if headers.is_empty() {
            return Ok(Vec::new());
        }
        if headers.len() > self.limits.max_headers {
            return Err(format!(
                "the policy sets {} headers; at most {} are allowed (policy_limits.max_headers)",
                headers.len(),
                self.limits.max_headers
            ));
        }
        headers
            .into_iter()
            .map(|(name, value)| self.check_one(&name, &value))
            .collect()
    }

    /// Validates a deny: the status must be 400–599 and the reason fit a header value.
    pub fn denial(&self, status: i64, reason: Option<String>) -> Result<Decision, String> {
        let status = u16::try_from(status)
            .ok()
            .and_then(|s| http::StatusCode::from_u16(s).ok())
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or_else(|| format!("deny({status}): the status must be 400–599"))?;
        if reason
            .as_ref()
            .is_some_and(|r| r.len() > self.limits.max_header_value_size)
        {
            return Err("deny(): the reason is too long".to_owned());
        }
        Ok(Decision::Deny { status, reason })
    }

    fn check_one(&self, name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(format!("header {name:?}: the value contains CR, LF or NUL"));
        }
        if value.len() > self.limits.max_header_value_size {
            return Err(format!(
                "header {name:?}: the value has {} bytes; at most {} are allowed (policy_limits.max_header_value_size)",
                value.len(),
                self.limits.max_header_value_size
            ));
        }
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a valid header name"))?;
        match header_ownership::classify_with(header.as_str(), &self.identity_headers) {
            Some(HeaderClass::Identity) if !self.may_set_identity_headers => {
                return Err(format!(
                    "header {name:?} is an identity header; set policy_may_set_identity_headers = true on the route to allow it"
                ));
            }
            Some(class) if !class.policy_may_set(self.may_set_identity_headers) => {
                return Err(format!(
                    "header {name:?} is managed by the proxy; a policy cannot set it"
                ));
            }
            _ => {}
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("header {name:?}: the value is not valid in a header"))?;
        Ok((header, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(identity: &str, may_set_identity_headers: bool) -> OutputRules {
        OutputRules {
            limits: PolicyLimits::default(),
            identity_headers: vec![crate::header_ownership::normalise(identity)],
            may_set_identity_headers,
        }
    }

    #[test]
    fn a_configured_identity_header_is_protected_in_both_spellings() {
        for (configured, set) in [
            ("X_Remote_User", "X-Remote-User"),
            ("X-Remote-User", "x_remote_user"),
            ("X_Remote_User", "X_REMOTE_USER"),
        ] {
            let header = vec![(set.to_owned(), "root".to_owned())];
            let refused = rules(configured, false).check(header.clone()).unwrap_err();
            assert!(refused.contains("identity header"), "{set}: {refused}");
            assert!(rules(configured, true).check(header).is_ok(), "{set}");
        }
        assert!(
            rules("X_Remote_User", false)
                .check(vec![("X-Remote".to_owned(), "x".to_owned())])
                .is_ok()
        );
    }
}
