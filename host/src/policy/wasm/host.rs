//! What the host gives a policy: the world's `log` import, and the answers of the `request` and
//! `identity` handles (read from the store's [`HostState`]).

use wasmtime::component::Resource;

use super::bindings;
use super::bindings::portcullis::policy::types as wit;
use super::state::{HostState, IdentityHandle, RequestHandle};
use crate::policy::identity::PolicyIdentity;
use crate::policy::input;

impl bindings::PolicyImports for HostState {
    fn log(&mut self, level: wit::Level, message: String) {
        // Control characters shown escaped: a newline from a claim must not forge a log line.
        let mut shown = String::with_capacity(message.len().min(4096));
        for c in message.chars().take(4096) {
            if c.is_control() {
                shown.extend(c.escape_default());
            } else {
                shown.push(c);
            }
        }
        let message = shown;
        let (route, file) = (&self.route, &*self.file);
        match level {
            wit::Level::Debug => {
                tracing::debug!(target: "portcullis::policy", route, file, "{message}")
            }
            wit::Level::Info => {
                tracing::info!(target: "portcullis::policy", route, file, "{message}")
            }
            wit::Level::Warn => {
                tracing::warn!(target: "portcullis::policy", route, file, "{message}")
            }
            wit::Level::Error => {
                tracing::error!(target: "portcullis::policy", route, file, "{message}")
            }
        }
    }
}

impl wit::Host for HostState {}

impl HostState {
    /// The call's user. A guest can only use handles it was given, so a call without a user
    /// cannot ask; if it could, it would see nobody.
    fn identity(&self) -> &PolicyIdentity {
        static NOBODY: std::sync::LazyLock<PolicyIdentity> =
            std::sync::LazyLock::new(PolicyIdentity::anonymous);
        self.identity.as_ref().unwrap_or(&NOBODY)
    }
}

impl wit::HostRequest for HostState {
    fn method(&mut self, _: Resource<RequestHandle>) -> String {
        self.request.part(0).to_owned()
    }

    fn path(&mut self, _: Resource<RequestHandle>) -> String {
        self.request.part(1).to_owned()
    }

    fn query(&mut self, _: Resource<RequestHandle>) -> String {
        self.request.part(2).to_owned()
    }

    fn host(&mut self, _: Resource<RequestHandle>) -> String {
        self.request.part(3).to_owned()
    }

    fn header(&mut self, _: Resource<RequestHandle>, name: String) -> Option<String> {
        let fields = self.request.headers.iter();
        input::combine(
            &name,
            fields
                .filter(|(key, _)| key.as_str().eq_ignore_ascii_case(&name))
                .map(|(_, value)| value),
        )
    }

    fn headers(&mut self, _: Resource<RequestHandle>) -> Vec<wit::Header> {
        self.request
            .headers
            .iter()
            .map(|(name, value)| wit::Header {
                name: name.as_str().to_owned(),
                value: input::value_text(value).into_owned(),
            })
            .collect()
    }

    fn client_ip(&mut self, _: Resource<RequestHandle>) -> String {
        self.request
            .client_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default()
    }

    fn route(&mut self, _: Resource<RequestHandle>) -> String {
        self.route.clone()
    }

    fn drop(&mut self, _: Resource<RequestHandle>) -> wasmtime::Result<()> {
        // Only borrows are ever handed out: nothing to free.
        Ok(())
    }
}

impl wit::HostIdentity for HostState {
    fn subject(&mut self, _: Resource<IdentityHandle>) -> String {
        self.identity().subject().to_owned()
    }

    fn has_group(&mut self, _: Resource<IdentityHandle>, group: String) -> bool {
        self.identity().has_group(&group)
    }

    fn groups(&mut self, _: Resource<IdentityHandle>) -> Vec<String> {
        self.identity().groups().to_vec()
    }

    fn username(&mut self, _: Resource<IdentityHandle>) -> Option<String> {
        self.identity().username().map(str::to_owned)
    }

    fn email(&mut self, _: Resource<IdentityHandle>) -> Option<String> {
        self.identity().email().map(str::to_owned)
    }

    fn claim(&mut self, _: Resource<IdentityHandle>, name: String) -> Option<String> {
        self.identity()
            .claims()
            .get(&name)
            .map(|value| value.to_string())
    }

    fn claims_json(&mut self, _: Resource<IdentityHandle>) -> String {
        self.identity().claims_json().to_owned()
    }

    fn drop(&mut self, _: Resource<IdentityHandle>) -> wasmtime::Result<()> {
        Ok(())
    }
}
