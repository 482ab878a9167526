//! Builds the sample Wasm policies (`policies/wasm/`, their own workspace) for `wasm32-wasip2`
//! once per test process. Never skipped: without the target the build fails and says how to add it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The folder holding `require_group.wasm`, `identity_headers.wasm`, `echo_inputs.wasm`,
/// `report_inputs.wasm` and `hostile.wasm`.
pub fn built_policies() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasm-policies");
        let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
            .arg(repo.join("policies/wasm/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .output()
            .expect("run cargo to build the sample Wasm policies");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let hint = if stderr.contains("wasm32-wasip2") && (stderr.contains("not installed") || stderr.contains("can't find crate")) {
                "\nThe Rust target is missing: run `rustup target add wasm32-wasip2` (scripts/test does)."
            } else {
                ""
            };
            panic!("building policies/wasm failed:{hint}\n{stderr}");
        }
        target_dir.join("wasm32-wasip2/release")
    })
}

/// The path of one built sample, e.g. `policy("require_group")`.
pub fn policy(name: &str) -> PathBuf {
    built_policies().join(format!("{name}.wasm"))
}
