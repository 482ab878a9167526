//! Shared fixtures for the Portcullis benchmarks (`cargo bench -p portcullis-benches`).

use std::path::Path;

/// A config text with `count` host-less routes `/svc{i}/api` plus one host-specific route per ten,
/// all pointing at a loopback upstream that is never contacted.
pub fn many_routes_config(count: usize) -> String {
    let mut text = String::from("[server]\nlisten = \"127.0.0.1:0\"\n");
    for i in 0..count {
        let host = if i % 10 == 0 {
            format!("host = \"svc{i}.example.com\"\n")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "\n[[routes]]\nname = \"svc{i}\"\n{host}path = \"/svc{i}/api\"\nupstream = \"http://127.0.0.1:9/\"\n"
        ));
    }
    text
}

/// Parses a benchmark config (it names no files).
pub fn config(text: &str) -> portcullis::Config {
    portcullis::config::parse(text, Path::new(".")).expect("benchmark config is valid")
}

/// Builds the sample Wasm policies (`policies/wasm`) for `wasm32-wasip2` and returns the folder
/// with the `.wasm` files. Panics with the command to run when the target is missing.
pub fn build_wasm_policies() -> std::path::PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = repo.join("target/wasm-policies");
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(repo.join("policies/wasm/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run cargo");
    assert!(
        status.success(),
        "building policies/wasm failed (missing target? run `rustup target add wasm32-wasip2`)"
    );
    target_dir.join("wasm32-wasip2/release")
}
