#!/usr/bin/env bash
# Resident memory of Portcullis with 100,000 and 1,000,000 sessions stored (sled on disk): at start,
# and after looking up every 1000th session through the proxy. The stores are the session bench's
# (built under target/bench-data on first use: the 1M one takes minutes and ~5 GB of disk).
#
#   benches/load/memory.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { printf '== %s\n' "$*" >&2; }
cargo build --release --locked -p portcullis
for count in 100000 1000000; do
  if [[ ! -e "target/bench-data/sealed-sessions-$count/cookies.txt" ]]; then
    say "building a store with $count sessions (the session bench does it)"
    PORTCULLIS_BENCH_SESSIONS=$count cargo bench --locked -p portcullis-benches --bench session -- \
      --warm-up-time 0.1 --measurement-time 0.1 "sled read" >/dev/null
  fi
done
work=$(mktemp -d /tmp/portcullis-memory-XXXXXX)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
nowhere=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf '| sessions stored | resident at start | after %s lookups |\n|---:|---:|---:|\n' "sampled"
for count in 100000 1000000; do
  store=$PWD/target/bench-data/sealed-sessions-$count
  cat > "$work/portcullis.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[log]
level = "error"
[oidc]
discovery = "http://127.0.0.1:$nowhere/.well-known/openid-configuration"
client_id = "memory"
client_secret = "memory"
redirect_uri = "http://127.0.0.1:$port/auth"
[session]
path = "$store/sled"
cookie_name = "session"
cache_entries = 10000
[[routes]]
name = "app"
path = "/"
upstream = "http://127.0.0.1:$nowhere"
TOML
  target/release/portcullis run --config "$work/portcullis.toml" > "$work/out" 2> "$work/log" &
  pid=$!
  for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  rss() { awk '/^VmRSS:/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$pid/status"; }
  start=$(rss)
  lookups=0
  while read -r cookie; do
    curl -s -o /dev/null -H "Cookie: session=$cookie" "http://127.0.0.1:$port/"
    lookups=$((lookups + 1))
  done < "$store/cookies.txt"
  printf '| %s | %s | %s (%s lookups) |\n' "$count" "$start" "$(rss)" "$lookups"
  kill $pid; wait $pid 2>/dev/null || true
done
