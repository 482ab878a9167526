//! What sending a request upstream can end in, besides a response, and how a failed exchange is
//! sorted into it.

use std::error::Error as _;
use std::time::Duration;

use super::limited_body::BodyTooLarge;

/// Why no upstream response came back.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP or TLS connection failed.
    #[error("cannot connect to upstream {authority}: {detail}")]
    Connect {
        /// The upstream `host:port`.
        authority: String,
        /// The cause, for the log.
        detail: String,
    },
    /// TCP or TLS connection did not complete in time.
    #[error("connecting to upstream {authority} timed out")]
    ConnectTimeout {
        /// The upstream `host:port`.
        authority: String,
    },
    /// No response headers within the route's `response_timeout`.
    #[error("upstream {authority} sent no response within {timeout:?}")]
    ResponseTimeout {
        /// The upstream `host:port`.
        authority: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// The connection broke, or the upstream spoke broken HTTP.
    #[error("upstream {authority} failed: {detail}")]
    Protocol {
        /// The upstream `host:port`.
        authority: String,
        /// The cause, for the log.
        detail: String,
    },
}

impl UpstreamError {
    /// Timeouts answer 504, everything else 502.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout { .. } | UpstreamError::ResponseTimeout { .. }
        )
    }
}

/// What sending a request upstream can end in, besides a response.
#[derive(Debug)]
pub enum SendError {
    /// The upstream failed.
    Upstream(UpstreamError),
    /// The client's body went over the limit while it was being sent.
    BodyTooLarge(u64),
}

/// Sorts a failed exchange into what the client is told: 413 when our own limit on the client's
/// body stopped it, else 502.
pub(super) fn classify_send(err: hyper::Error, authority: String) -> SendError {
    let mut detail = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(too_large) = cause.downcast_ref::<BodyTooLarge>() {
            return SendError::BodyTooLarge(too_large.limit);
        }
        detail = format!("{detail}: {cause}");
        source = cause.source();
    }
    SendError::Upstream(UpstreamError::Protocol { authority, detail })
}
