//! The `request` and `identity` handles a policy reads through: what each method answers, and the
//! per-call data behind them.
//!
//! A store outlives any borrow of the pipeline's request, so the request's values are copied into
//! the store's [`CallRequest`] for the call — into buffers the store keeps, so a reused instance
//! copies without allocating. The identity is shared, converted once per session. Only one call
//! runs on a store at a time, so each handle has one representation, [`CURRENT`]: "the request
//! (or user) of this call".

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use wasmtime::component::Resource;

use super::HostState;
use super::bindings::portcullis::policy::types as wit;
use crate::policy::input::{PolicyClaims, PolicyRequest};

/// The representation of both handles: the call's own request and user.
pub(super) const CURRENT: u32 = 0;

/// The request of the call in progress, as the `request` handle answers it.
#[derive(Default)]
pub struct CallRequest {
    /// Method, path, query and host, one after the other (one buffer, reused).
    text: String,
    /// Where method, path and query end in `text` (host runs to the end).
    ends: [usize; 3],
    headers: Vec<(HeaderName, HeaderValue)>,
    client_ip: Option<IpAddr>,
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

    fn part(&self, index: usize) -> &str {
        let start = match index {
            0 => 0,
            _ => self.ends[index - 1],
        };
        let end = self.ends.get(index).copied().unwrap_or(self.text.len());
        &self.text[start..end]
    }
}

/// A user as the `identity` handle answers it: built once per session, shared by its requests.
#[derive(Debug)]
pub struct WasmIdentity {
    subject: String,
    groups: Arc<Vec<String>>,
    username: Option<String>,
    email: Option<String>,
    claims: serde_json::Map<String, serde_json::Value>,
    claims_json: Arc<str>,
}

impl PolicyClaims {
    /// The user as Wasm policies see them (converted on first use, then shared).
    pub(super) fn wasm_identity(&self) -> Arc<WasmIdentity> {
        self.wasm_identity
            .get_or_init(|| {
                let claims: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&self.json).unwrap_or_default();
                let text =
                    |name: &str| claims.get(name).and_then(|v| v.as_str()).map(str::to_owned);
                Arc::new(WasmIdentity {
                    subject: text("sub").unwrap_or_default(),
                    username: text("preferred_username"),
                    email: text("email"),
                    groups: self.groups.clone(),
                    claims_json: self.json.clone(),
                    claims,
                })
            })
            .clone()
    }
}

/// Answers for a handle used when its call had no user. The component model only lets a guest use
/// handles it was given, so this cannot happen; if it did, the guest would see nobody.
static NOBODY: std::sync::LazyLock<WasmIdentity> = std::sync::LazyLock::new(|| WasmIdentity {
    subject: String::new(),
    groups: Arc::default(),
    username: None,
    email: None,
    claims: serde_json::Map::new(),
    claims_json: "{}".into(),
});

impl HostState {
    fn identity(&self) -> &WasmIdentity {
        self.identity.as_deref().unwrap_or(&NOBODY)
    }
}

impl wit::HostRequest for HostState {
    fn method(&mut self, _: Resource<CallRequest>) -> String {
        self.request.part(0).to_owned()
    }

    fn path(&mut self, _: Resource<CallRequest>) -> String {
        self.request.part(1).to_owned()
    }

    fn query(&mut self, _: Resource<CallRequest>) -> String {
        self.request.part(2).to_owned()
    }

    fn host(&mut self, _: Resource<CallRequest>) -> String {
        self.request.part(3).to_owned()
    }

    fn header(&mut self, _: Resource<CallRequest>, name: String) -> Option<String> {
        self.request
            .headers
            .iter()
            .find(|(key, _)| key.as_str().eq_ignore_ascii_case(&name))
            .and_then(|(_, value)| value.to_str().ok())
            .map(str::to_owned)
    }

    fn headers(&mut self, _: Resource<CallRequest>) -> Vec<wit::Header> {
        self.request
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some(wit::Header {
                    name: name.as_str().to_owned(),
                    value: value.to_str().ok()?.to_owned(),
                })
            })
            .collect()
    }

    fn client_ip(&mut self, _: Resource<CallRequest>) -> String {
        self.request
            .client_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default()
    }

    fn route(&mut self, _: Resource<CallRequest>) -> String {
        self.route.clone()
    }

    fn drop(&mut self, _: Resource<CallRequest>) -> wasmtime::Result<()> {
        // Only borrows are ever handed out: nothing to free.
        Ok(())
    }
}

impl wit::HostIdentity for HostState {
    fn subject(&mut self, _: Resource<WasmIdentity>) -> String {
        self.identity().subject.clone()
    }

    fn has_group(&mut self, _: Resource<WasmIdentity>, group: String) -> bool {
        self.identity().groups.contains(&group)
    }

    fn groups(&mut self, _: Resource<WasmIdentity>) -> Vec<String> {
        self.identity().groups.to_vec()
    }

    fn username(&mut self, _: Resource<WasmIdentity>) -> Option<String> {
        self.identity().username.clone()
    }

    fn email(&mut self, _: Resource<WasmIdentity>) -> Option<String> {
        self.identity().email.clone()
    }

    fn claim(&mut self, _: Resource<WasmIdentity>, name: String) -> Option<String> {
        self.identity()
            .claims
            .get(&name)
            .map(|value| value.to_string())
    }

    fn claims_json(&mut self, _: Resource<WasmIdentity>) -> String {
        self.identity().claims_json.to_string()
    }

    fn drop(&mut self, _: Resource<WasmIdentity>) -> wasmtime::Result<()> {
        Ok(())
    }
}
