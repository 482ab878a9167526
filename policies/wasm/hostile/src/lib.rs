//! hostile: misbehaves on purpose, as `config.mode` says, so the sandbox tests can show that the
//! proxy stops it: `loop`, `memory`, `recursion`, `panic`, `bad-header`, or `log` (logs, then allows).
//! `counter` keeps state between calls on purpose: it allows with `X-Uses`, the number of decisions
//! this instance has made, so tests can see when a pooled instance is replaced.

use std::sync::atomic::{AtomicU64, Ordering};

use portcullis_sdk::{Config, Decision, Identity, Policy, Request, export_policy, log};

/// Decisions made by this instance (a fresh instance starts at zero).
static USES: AtomicU64 = AtomicU64::new(0);

struct Hostile;

#[inline(never)]
#[allow(unconditional_recursion)] // on purpose: the sandbox must stop it
fn recurse(depth: u64, trail: &mut Vec<u64>) -> u64 {
    trail.push(depth);
    recurse(depth + 1, trail) + trail[trail.len() / 2]
}

impl Policy for Hostile {
    fn decide(_request: &Request, _identity: Option<&Identity>, config: &Config) -> Decision {
        match config.str("mode").unwrap_or("") {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => {
                let mut trail = Vec::new();
                Decision::deny_status(500 + (recurse(0, &mut trail) % 2) as u16)
            }
            "panic" => panic!("hostile policy panics on purpose"),
            "bad-header" => Decision::allow().header("X-Evil", "a\r\nSet-Cookie: stolen=1"),
            "counter" => {
                let uses = USES.fetch_add(1, Ordering::Relaxed) + 1;
                Decision::allow().header("X-Uses", uses.to_string())
            }
            "log" => {
                log::warn("hello from a wasm policy");
                Decision::allow()
            }
            _ => Decision::deny(400, "unknown mode"),
        }
    }
}

export_policy!(Hostile);
