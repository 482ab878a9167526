//! The code generated from `sdk/wit/policy.wit`, and only here. The contract's two resources are
//! handles to the call in progress ([`super::state`]).

wasmtime::component::bindgen!({
    path: "../sdk/wit",
    world: "policy",
    with: {
        "portcullis:policy/types.request": super::state::RequestHandle,
        "portcullis:policy/types.identity": super::state::IdentityHandle,
    },
});
