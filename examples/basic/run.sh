#!/usr/bin/env bash
# Runs Portcullis with examples/basic/portcullis.toml in front of Python's static web server, which
# serves this repository on 127.0.0.1:8081. Open http://127.0.0.1:8080/ ; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m http.server 8081 --bind 127.0.0.1 --directory . >/dev/null 2>&1 &
backend=$!
trap 'kill "$backend" 2>/dev/null || true' EXIT
cargo run --release -p portcullis -- run --config examples/basic/portcullis.toml
