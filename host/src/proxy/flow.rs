//! [`Flow`]: what a phase tells the pipeline to do next.

use http::Response;

use crate::response::ProxyBody;

/// The outcome of a phase that succeeded: go on, or answer now without running later phases.
///
/// An early answer is a value (a login redirect, a policy's deny), not an error: errors are
/// [`ProxyError`](super::error::ProxyError) and are turned into responses in one place.
pub enum Flow {
    /// Run the next phase.
    Continue,
    /// Send this response; later phases are skipped (the log phase always runs).
    Respond(Response<ProxyBody>),
}
