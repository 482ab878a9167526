//! What a policy's store holds ([`HostState`]): its memory limiter, who it is (for its log
//! lines), and the request and user of the call in progress.
//!
//! A store outlives any borrow of the pipeline's request, so the request's values are copied into
//! the store's [`CallRequest`] for the call — into buffers the store keeps, so a reused instance
//! copies without allocating. The user is a shared [`PolicyIdentity`], built once per session.
//! Only one call runs on a store at a time, so each handle has one representation, [`CURRENT`]:
//! "the request (or user) of this call".

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::policy::identity::PolicyIdentity;
use crate::policy::input::PolicyRequest;

/// The representation of both handles: the call's own request and user.
pub(super) const CURRENT: u32 = 0;

/// The type of the `request` handle (it carries nothing: the store's [`CallRequest`] is what it
/// reads).
pub struct RequestHandle;

/// The type of the `identity` handle (it carries nothing: the store's identity is what it reads).
pub struct IdentityHandle;

/// The store's data.
pub(super) struct HostState {
    pub(super) limiter: MemoryLimiter,
    pub(super) route: String,
    pub(super) file: Arc<str>,
    /// The request the call's `request` handle reads.
    pub(super) request: CallRequest,
    /// The user the call's `identity` handle reads, if it was given one.
    pub(super) identity: Option<PolicyIdentity>,
}

impl HostState {
    /// A store's data before any call.
    pub(super) fn new(route: &str, file: Arc<str>, max_memory: usize) -> Self {
        HostState {
            limiter: MemoryLimiter {
                max_memory,
                refused: false,
            },
            route: route.to_owned(),
            file,
            request: CallRequest::default(),
            identity: None,
        }
    }
}

/// Caps linear memory and remembers that it refused, so the error can say why the guest failed.
pub(super) struct MemoryLimiter {
    max_memory: usize,
    /// Whether it refused to grow a memory.
    pub(super) refused: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_memory;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The request of the call in progress, as the `request` handle answers it.
#[derive(Default)]
pub(super) struct CallRequest {
    /// Method, path, query and host, one after the other (one buffer, reused).
    text: String,
    /// Where method, path and query end in `text` (host runs to the end).
    ends: [usize; 3],
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) client_ip: Option<IpAddr>,
}

impl CallRequest {
    /// Takes the values of `request` (reusing this call's buffers).
    pub(super) fn fill(&mut self, request: &PolicyRequest<'_>) {
        self.text.clear();
        let mut ends = [0; 3];
        for (end, part) in ends
            .iter_mut()
            .zip([request.method, request.path, request.query])
        {
            self.text.push_str(part);
            *end = self.text.len();
        }
        self.text.push_str(request.host);
        self.ends = ends;
        self.headers.clear();
        self.headers.extend(
            request
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        self.client_ip = Some(request.client_ip);
    }

    /// Forgets the request (a pooled store outlives it; its query can carry codes or tokens). The
    /// buffers keep their capacity for the next call.
    pub(super) fn clear(&mut self) {
        self.text.clear();
        self.ends = [0; 3];
        self.headers.clear();
        self.client_ip = None;
    }

    /// Method (0), path (1), query (2) or host (3).
    pub(super) fn part(&self, index: usize) -> &str {
        let start = match index {
            0 => 0,
            _ => self.ends[index - 1],
        };
        let end = self.ends.get(index).copied().unwrap_or(self.text.len());
        &self.text[start..end]
    }
}
